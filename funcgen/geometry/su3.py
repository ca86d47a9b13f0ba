"""SU(3): the manifold, its heat kernel (images / characters), score and exact forward sampling.

Representation. A point ``U`` (3x3 complex unitary, ``det U = 1``) is stored as a REAL flat vector
``[..., 18]`` = (real parts, imaginary parts) of ``U`` row-major, so that nets, PointSets and solvers
see real tensors like for every other manifold. Internally everything runs in complex128.

Metric. The Frobenius metric ``<A, B> = Re tr(A^dagger B)``, which is exactly the Euclidean inner
product of the 18-vectors: tangent vectors at ``U`` are ``U X`` with ``X`` in su(3) (anti-Hermitian,
traceless), the tangent projection is Euclidean-orthogonal, ``exp_U(U X) = U expm(X)`` and the distance
is ``|theta| = sqrt(theta_1^2 + theta_2^2 + theta_3^2)`` for the eigen-angles ``theta`` of ``U^dagger V``
(the representative with ``sum theta = 0`` of least norm). Volume (Macdonald's formula for this
metric): ``|SU(3)| = sqrt(3) (2 pi)^5 / 2`` (checked in the tests: the image sum, normalised by local
Euclidean Gaussians, integrates to one against Haar samples with this volume).

Heat kernel (generator ``Laplacian / 2`` run to time ``sigma^2``, DESIGN.md). With orthonormal
generators ``T_a = i lambda_a / sqrt 2`` (Gell-Mann ``lambda_a``) the Laplacian on the entries of the
fundamental representation is ``sum_a T_a^2 = -(1/2) sum_a lambda_a^2 = -(1/2)(16/3) I``, i.e. the
Casimir ``8/3 = 2 C_F`` (``C_F = 4/3`` in the physics normalisation ``tr(t_a t_b) = delta_ab / 2``). In
general the irrep ``(p, q)`` has eigenvalue ``lam = 2 (p^2 + q^2 + p q + 3 p + 3 q) / 3`` and dimension
``d = (p+1)(q+1)(p+q+2)/2``, so for Brownian motion ``E[U] = U0 exp(-(8/3) sigma^2 / 2)`` and

    E tr(U0^dagger U) = 3 exp(-4 sigma^2 / 3),      E |tr(U0^dagger U)|^2 = 1 + 8 exp(-3 sigma^2)

(``|tr V|^2 = chi_(1,1) + 1``, ``lam_(1,1) = 6``). The kernel depends on the class of
``V = U0^dagger U`` only:

* characters (large sigma): ``p = |SU(3)|^-1 sum_(p,q) d chi_(p,q)(V) exp(-lam sigma^2 / 2)`` with
  ``chi_(p,q) = h_(p+q) h_q - h_(p+q+1) h_(q-1)`` (Jacobi-Trudi), ``h_k`` the complete symmetric
  polynomials of the eigenvalues: ``h_k = z h_(k-1) - conj(z) h_(k-2) + h_(k-3)``, ``z = tr V``
  (no division, finite on the walls of the Weyl chamber);
* images on the maximal torus (small sigma; Poisson summation of the above, ``|rho|^2 = 2``):
  ``p = (2 pi sigma^2)^-4 e^(sigma^2) sum_k prod_(i<j) phi_ij / (2 sin(theta_ij / 2)) exp(-|phi|^2 / (2 sigma^2))``,
  ``phi = theta + 2 pi k``, ``k`` in Z^3 with ``sum k = 0``, ``phi_ij = phi_i - phi_j``.

Switch: characters for ``sigma >= SWITCH_SIGMA`` (1.0), images below. At small sigma the character
series cancels (it sums terms up to ``d^2`` for a kernel as small as ``e^(-|theta|^2 / (2 sigma^2))``);
the image sum stays exact at large sigma too, but it divides by the Weyl denominator near the walls,
the characters never do. ``tests/geometry/test_su3.py`` checks that the two agree to ``1e-9`` for sigma >= 0.8, that
``|SU(3)| E_Haar p = 1`` over Haar samples (which also checks the volume), and that the switched kernel
integrates to 1 within ``1e-9`` by the Weyl integration formula (2-d quadrature on the torus, grid points
on the walls and the cut locus included) for sigma from 1e-3 to 4, finite everywhere. The measured
differences that set the switch: docs/results/extra.md, "Numerical accuracy of the geometry code".

Exact sampling by rejection (the acceptance bound is analytic, not a grid maximum):

* Gaussian proposal ``U = U0 expm(X)``, ``X ~ N(0, sigma^2 I_8)`` in su(3). Its density w.r.t. the volume
  is ``g = (2 pi sigma^2)^-4 sum_k exp(-|phi|^2 / (2 sigma^2)) / J(phi)`` over all logarithms, with the
  Jacobian of ``exp`` ``J(phi) = prod_(i<j) (2 sin(phi_ij/2) / phi_ij)^2``. Term by term
  ``|p_k| / g_k = e^(sigma^2) |prod 2 sin(theta_ij/2) / phi_ij| <= e^(sigma^2)``, so ``p <= e^(sigma^2) g``:
  accept with ``p / (e^(sigma^2) g)`` (rate ``e^(-sigma^2)``);
* Haar proposal: ``p(V) <= p(I)`` (``|chi| <= d``): accept with ``p(V) / p(I)`` (rate ``1 / (|SU(3)| p(I))``).

Each draw uses the proposal with the smaller bound.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from ..rng import randn
from .manifolds import Manifold

__all__ = ["SU3", "su3_log_heat_kernel", "su3_images_log_kernel", "su3_character_log_kernel", "su3_heat_kernel_score",
           "sample_su3_heat_kernel", "minimal_angles", "SWITCH_SIGMA"]

_F64, _C128 = torch.float64, torch.complex128
SWITCH_SIGMA = 1.0
LOG_VOLUME = math.log(math.sqrt(3.0) * (2 * math.pi) ** 5 / 2)


def _eye(dtype: torch.dtype, device: torch.device) -> Tensor:
    return torch.eye(3, dtype=dtype, device=device)


def su3_project(a: Tensor) -> Tensor:
    """Orthogonal (Frobenius) projection of complex ``[..., 3, 3]`` onto su(3): anti-Hermitian, traceless."""
    ah = (a - a.mH) / 2
    tr = ah.diagonal(dim1=-2, dim2=-1).sum(-1)
    return ah - (tr / 3)[..., None, None] * _eye(a.dtype, a.device)


def minimal_angles(a: Tensor) -> Tensor:
    """Angles ``[..., 3]`` of eigenvalues (any branch, ``sum = 0 mod 2 pi``) -> the representative with
    ``sum = 0`` of least norm (in ``(-pi, pi]`` save one shifted by ``2 pi``), float64."""
    a = torch.remainder(a.to(_F64) + math.pi, 2 * math.pi) - math.pi
    m = torch.round(a.sum(-1) / (2 * math.pi))
    hi = torch.nn.functional.one_hot(a.argmax(-1), 3).to(_F64)
    lo = torch.nn.functional.one_hot(a.argmin(-1), 3).to(_F64)
    a = a - 2 * math.pi * ((m > 0)[..., None] * hi - (m < 0)[..., None] * lo)
    return a - a.mean(-1, keepdim=True)


def unitary_eig(v: Tensor) -> tuple[Tensor, Tensor]:
    """``V = W diag(e^(i theta)) W^dagger`` for ``V`` in SU(3) ``[..., 3, 3]``: (theta ``[..., 3]``, unitary ``W``).

    ``torch.linalg.eig`` eigenvectors are re-orthonormalised by QR (for a normal matrix they are
    orthogonal across distinct eigenvalues, so clusters of close eigenvalues keep their span)."""
    lam, w = torch.linalg.eig(v)
    return minimal_angles(torch.angle(lam)), torch.linalg.qr(w).Q


class SU3(Manifold):
    """The special unitary group SU(3) with the Frobenius metric, points stored as real ``[..., 18]``.

    See the module docstring for the representation, metric, distance and volume.
    """

    on_manifold_hint = ("SU(3) points are [..., 18] = (Re U, Im U) row-major with U^dagger U = I and det U = 1; "
                        "build them with funcgen.geometry.SU3.from_matrix (and SU3().wrap to remove drift)")

    def __init__(self) -> None:
        self.dim, self.ambient_dim = 8, 18

    @staticmethod
    def as_matrix(x: Tensor) -> Tensor:
        """Real ``[..., 18]`` -> complex128 ``[..., 3, 3]``."""
        xd = x.to(_F64)
        return torch.complex(xd[..., :9], xd[..., 9:]).reshape(*x.shape[:-1], 3, 3)

    @staticmethod
    def from_matrix(u: Tensor, dtype: torch.dtype = _F64) -> Tensor:
        """Complex ``[..., 3, 3]`` -> real ``[..., 18]`` of ``dtype``."""
        f = u.reshape(*u.shape[:-2], 9)
        return torch.cat([f.real, f.imag], -1).to(dtype)

    def class_angles(self, x0: Tensor, x: Tensor) -> Tensor:
        """Eigen-angles ``[..., 3]`` (float64, minimal representative) of ``x0^dagger x``."""
        v = self.as_matrix(x0).mH @ self.as_matrix(x)
        return minimal_angles(torch.angle(torch.linalg.eigvals(v)))

    def exp(self, x: Tensor, v: Tensor) -> Tensor:
        u = self.as_matrix(x)
        return self.from_matrix(u @ torch.linalg.matrix_exp(su3_project(u.mH @ self.as_matrix(v))), x.dtype)

    def log(self, x: Tensor, y: Tensor) -> Tensor:
        u = self.as_matrix(x)
        th, w = unitary_eig(u.mH @ self.as_matrix(y))
        return self.from_matrix(u @ (w * (1j * th).to(_C128)[..., None, :]) @ w.mH, x.dtype)

    def proj(self, x: Tensor, v: Tensor) -> Tensor:
        u = self.as_matrix(x)
        return self.from_matrix(u @ su3_project(u.mH @ self.as_matrix(v)), torch.promote_types(x.dtype, v.dtype))

    def dist(self, x: Tensor, y: Tensor) -> Tensor:
        return self.class_angles(x, y).norm(dim=-1).to(x.dtype)

    def random_uniform(self, num: int, generator: torch.Generator | None = None,
                       dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Tensor:
        """Haar draws: QR of a complex Ginibre matrix with the phases of ``diag R`` moved into ``Q`` (Haar on
        U(3)), then ``Q det(Q)^(-1/3)`` (principal cube root): the law is left-invariant, hence Haar on SU(3)."""
        z = randn((num, 2, 3, 3), generator, dtype=torch.float64)
        q, r = torch.linalg.qr(torch.complex(z[:, 0], z[:, 1]))
        d = r.diagonal(dim1=-2, dim2=-1)
        q = q * (d / d.abs())[..., None, :]
        q = q * torch.exp(-1j * torch.angle(torch.linalg.det(q)) / 3)[..., None, None]
        return self.from_matrix(q, dtype).to(device if device is not None else q.device)

    def log_volume(self) -> float:
        return LOG_VOLUME

    def wrap(self, x: Tensor) -> Tensor:
        u, _, vh = torch.linalg.svd(self.as_matrix(x))
        q = u @ vh
        q = q * torch.exp(-1j * torch.angle(torch.linalg.det(q)) / 3)[..., None, None]
        return self.from_matrix(q, x.dtype)

    def belongs(self, x: Tensor, atol: float | None = None) -> Tensor:
        atol = self.default_atol(x) if atol is None else atol
        u = self.as_matrix(x)
        err = (u.mH @ u - _eye(u.dtype, u.device)).abs().amax((-2, -1))
        return (err <= atol) & ((torch.linalg.det(u) - 1.0).abs() <= 3 * atol) & torch.isfinite(x).all(-1)


# ------------------------------------------------------------------------------- heat kernel
def _roots(phi: Tensor) -> Tensor:
    """Positive-root values ``[..., 3]``: ``phi_1 - phi_2, phi_1 - phi_3, phi_2 - phi_3``."""
    return torch.stack([phi[..., 0] - phi[..., 1], phi[..., 0] - phi[..., 2], phi[..., 1] - phi[..., 2]], -1)


@functools.lru_cache(maxsize=32)
def _lattice(kmax: int) -> Tensor:
    """``2 pi k`` for ``k`` in Z^3, ``sum k = 0``, ``|k_i| <= kmax`` -> ``[M, 3]`` float64 (CPU)."""
    r = torch.arange(-kmax, kmax + 1, dtype=_F64)
    k1, k2 = torch.meshgrid(r, r, indexing="ij")
    k = torch.stack([k1.reshape(-1), k2.reshape(-1), -(k1 + k2).reshape(-1)], -1)
    return 2 * math.pi * k[k[:, 2].abs() <= kmax]


def _image_terms(theta: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
    """Images ``phi = theta + 2 pi k`` ``[..., M, 3]`` and ``-(|phi|^2 - |theta|^2) / (2 s^2)`` ``[..., M]``.

    The window ``|k_i| <= K`` keeps every image with ``|phi|^2 - |theta|^2 < 80 sigma^2``
    (``|theta|^2 <= 8 pi^2 / 3``): the rest weigh less than ``e^(-40)``."""
    kmax = int(math.ceil((math.sqrt(80 * float(s.max()) ** 2 + 27) + 4.2) / (2 * math.pi)))
    phi = theta[..., None, :] + _lattice(kmax).to(theta.device)
    expo = -((phi**2).sum(-1) - (theta**2).sum(-1, keepdim=True)) / (2 * s[..., None] ** 2)
    return phi, expo


def _log_x_over_2sin(x: Tensor) -> Tensor:
    """log(x / (2 sin(x/2))) for ``|x| < 2 pi``, stable near 0."""
    small = x.abs() < 1e-3
    xs = torch.where(small, torch.ones_like(x), x)
    return torch.where(small, x**2 / 24, torch.log(xs / (2 * torch.sin(xs / 2))))


def su3_images_log_kernel(theta: Tensor, sigma: Tensor | float) -> Tensor:
    """log p_sigma (sum over images) at class angles ``theta`` ``[..., 3]`` (sum 0 mod 2 pi) -> ``[...]`` float64."""
    th = minimal_angles(theta)  # the image window and the k = 0 factor assume the least-norm representative
    s = torch.as_tensor(sigma, dtype=_F64, device=th.device).expand(th.shape[:-1])
    rt = _roots(th)
    phi, expo = _image_terms(th, s)
    # the k = 0 factor prod theta_ij / (2 sin(theta_ij/2)) in closed form, the images relative to it
    # (roots clamped away from 0: the k != 0 terms there weigh <= e^(-(8 pi^2 - 4 pi |theta_ij|)/(2 sigma^2)))
    rts = torch.where(rt >= 0, rt.clamp_min(1e-6), rt.clamp_max(-1e-6))[..., None, :]
    rel = (1 + _roots(phi - th[..., None, :]) / rts).prod(-1) * torch.exp(expo)  # k = 0: exactly 1
    total = rel.sum(-1).clamp_min(1e-300)
    return (-4 * torch.log(2 * math.pi * s**2) + s**2 - (th**2).sum(-1) / (2 * s**2)
            + _log_x_over_2sin(rt).sum(-1) + torch.log(total))


@functools.lru_cache(maxsize=64)
def _irreps(nmax: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(p, q, dimension, Laplacian eigenvalue) of the irreps with ``p + q <= nmax`` (float64, CPU)."""
    pq = torch.tensor([(p, n - p) for n in range(nmax + 1) for p in range(n + 1)], dtype=torch.long)
    p, q = pq[:, 0].to(_F64), pq[:, 1].to(_F64)
    return pq[:, 0], pq[:, 1], (p + 1) * (q + 1) * (p + q + 2) / 2, 2 * (p * p + q * q + p * q + 3 * p + 3 * q) / 3


def su3_character_log_kernel(theta: Tensor, sigma: Tensor | float, drop: float = 60.0) -> Tensor:
    """log p_sigma by the character expansion (terms down to ``e^(-drop)``) -> ``[...]`` float64."""
    th = theta.to(_F64)
    s = torch.as_tensor(sigma, dtype=_F64, device=th.device).expand(th.shape[:-1])
    smin = float(s.min())
    nmax = int(math.ceil(-2 + math.sqrt(4 + 4 * (drop + 10) / smin**2))) + 1  # lam >= n^2/2 + 2n, n = p + q
    p, q, d, lam = (t.to(th.device) for t in _irreps(nmax))
    z = torch.exp(1j * th.to(_C128)).sum(-1)
    h = [torch.ones_like(z), z, z * z - z.conj()]
    for _ in range(3, nmax + 2):
        h.append(z * h[-1] - z.conj() * h[-2] + h[-3])
    hs = torch.stack([torch.zeros_like(z)] + h, -1)  # hs[..., k + 1] = h_k
    chi = hs[..., p + q + 1] * hs[..., q + 1] - hs[..., p + q + 2] * hs[..., q]
    w = d * torch.exp(-lam * s[..., None] ** 2 / 2)
    total = (w * chi.real).sum(-1)
    return torch.log(total.clamp_min(1e-300)) - LOG_VOLUME


def su3_log_heat_kernel(theta: Tensor, sigma: Tensor | float) -> Tensor:
    """log p_sigma at class angles ``theta`` ``[..., 3]``: images below :data:`SWITCH_SIGMA`, characters above."""
    th = theta.to(_F64)
    s = torch.as_tensor(sigma, dtype=_F64, device=th.device)
    if (s <= 0).any() or not torch.isfinite(s).all():
        raise ValueError("heat kernel needs finite sigma > 0")
    s = s.expand(th.shape[:-1])
    big = s >= SWITCH_SIGMA
    out = torch.zeros(th.shape[:-1], dtype=_F64, device=th.device)
    if (~big).any():
        out = out.index_put((~big,), su3_images_log_kernel(th[~big], s[~big]))
    if big.any():
        out = out.index_put((big,), su3_character_log_kernel(th[big], s[big]))
    return out


def su3_heat_kernel_score(x: Tensor, x0: Tensor, sigma: Tensor | float) -> Tensor:
    """Riemannian gradient ``grad_x log p_sigma(x | x0)`` ``[..., 18]`` (tangent at ``x``; input dtype).

    With ``x0^dagger x = W diag(e^(i theta)) W^dagger`` and ``g = d log p / d theta`` (autograd, projected
    onto ``sum = 0``), the gradient is ``U W diag(i g) W^dagger`` (only the commuting directions change the class).
    """
    m = SU3()
    u = m.as_matrix(x)
    th, w = unitary_eig(m.as_matrix(x0).mH @ u)
    s = torch.as_tensor(sigma, dtype=_F64, device=th.device)
    with torch.enable_grad():
        tg = th.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(su3_log_heat_kernel(tg, s).sum(), tg)
    g = g - g.mean(-1, keepdim=True)
    return m.from_matrix(u @ (w * (1j * g).to(_C128)[..., None, :]) @ w.mH, x.dtype)


def _log_gauss_ratio(theta: Tensor, s: Tensor) -> Tensor:
    """log p / (e^(sigma^2) g) for the Gaussian proposal (module docstring), <= 0."""
    phi, expo = _image_terms(theta, s)
    rp = _roots(phi).prod(-1)
    e = torch.exp(expo)
    num = (rp * e).sum(-1)
    den = (rp * rp * e).sum(-1)
    sines = (2 * torch.sin(_roots(theta) / 2)).prod(-1)
    return torch.log((sines * num / den).clamp_min(1e-300))


def sample_su3_heat_kernel(x0: Tensor, sigma: Tensor | float, generator: torch.Generator | None = None,
                           max_rounds: int = 10000) -> Tensor:
    """Exact draws ``x ~ p_sigma(. | x0)`` ``[..., 18]`` (input dtype) by rejection (module docstring)."""
    m = SU3()
    s_all = torch.as_tensor(sigma, dtype=_F64, device=x0.device).expand(x0.shape[:-1]).reshape(-1)
    if (s_all <= 0).any() or not torch.isfinite(s_all).all():
        raise ValueError("heat kernel sampling needs finite sigma > 0")
    u0 = m.as_matrix(x0).reshape(-1, 3, 3)
    b = u0.shape[0]
    log_p0 = su3_log_heat_kernel(torch.zeros(b, 3, dtype=_F64, device=x0.device), s_all)
    gauss = s_all**2 < log_p0 + LOG_VOLUME
    out = torch.empty_like(u0)
    todo = torch.arange(b, device=x0.device)
    gdev = generator.device if generator is not None else x0.device
    for _ in range(max_rounds):
        if todo.numel() == 0:
            return m.from_matrix(u0 @ out, x0.dtype).reshape(*x0.shape[:-1], 18).to(x0.device)
        s, gs, n = s_all[todo], gauss[todo], todo.numel()
        v = torch.empty(n, 3, 3, dtype=_C128, device=x0.device)
        log_r = torch.zeros(n, dtype=_F64, device=x0.device)
        ng = int(gs.sum())
        if ng:
            sg = s[gs]
            zg = randn((ng, 18), generator, device=sg.device, dtype=torch.float64).to(sg)
            x = sg[:, None, None] * su3_project(torch.complex(zg[:, :9], zg[:, 9:]).reshape(ng, 3, 3))
            v[gs] = torch.linalg.matrix_exp(x)
            log_r[gs] = _log_gauss_ratio(minimal_angles(torch.linalg.eigvalsh(-1j * x)), sg)
        if ng < n:
            vh = m.as_matrix(m.random_uniform(n - ng, generator, dtype=_F64)).to(x0.device)
            v[~gs] = vh
            th_haar = minimal_angles(torch.angle(torch.linalg.eigvals(vh)))
            log_r[~gs] = su3_log_heat_kernel(th_haar, s[~gs]) - log_p0[todo][~gs]
        if (log_r > 1e-9).any():
            raise RuntimeError("SU(3) heat-kernel rejection bound violated (ratio > 1); please report these sigmas: "
                               f"{s[log_r > 1e-9][:3].tolist()}")
        acc = torch.log(torch.rand(n, generator=generator, device=gdev, dtype=_F64).to(x0.device)) < log_r
        out[todo[acc]] = v[acc]
        todo = todo[~acc]
    raise RuntimeError(f"SU(3) heat-kernel rejection sampling did not finish in {max_rounds} rounds")
