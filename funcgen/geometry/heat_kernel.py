"""Heat kernels on symmetric spaces: log density, score and exact sampling (Lou et al. 2023, sec. 3).

Convention (DESIGN.md, "Riemannian diffusion"): Brownian motion with generator ``Laplacian / 2``
run to time ``sigma^2``, so ``p_sigma(x | x0) = sum_l exp(-lambda_l sigma^2 / 2) phi_l(x) phi_l(x0)``,
a density w.r.t. the Riemannian volume. On ``S^n`` and SO(3) it depends on the geodesic distance
``theta`` only; on the torus it is a product of wrapped normals.

Evaluation (everything runs in float64 internally and in log space, results come back in the
input's dtype, so float32 callers never see NaN in the tails):

* ``S^n`` (n != 3): Gegenbauer series ``|S^n|^-1 sum_l (2l+n-1)/(n-1) C_l^((n-1)/2)(cos theta)
  exp(-l(l+n-1) sigma^2/2)`` with normalised polynomials ``C_l / C_l(1)`` (bounded by 1) and
  log-weights, for ``sigma >= 0.1`` and where its estimated cancellation error is small
  (``sum |terms| / sum terms < 1e6``); elsewhere the Varadhan asymptotic with the Jacobian
  (van Vleck) factor and the first heat-invariant in exponential form:
  ``log p = -n/2 log(2 pi sigma^2) - theta^2/(2 sigma^2) + m log(theta / sin theta) + sigma^2 b(theta) / 2``,
  ``m = (n-1)/2``, ``b = m^2 + m(1-m)(1/theta - cot theta)/theta`` (``u_1/u_0`` of the
  Minakshisundaram-Pleijel transport equation; constant ``n(n-1)/6 = R/6`` at ``theta = 0``,
  exact for ``n = 3``), plus the second-order diagonal term ``(a_2 - a_1^2/2) t^2 =
  -n(n-1)(n-3)/180 (sigma^2/2)^2``. For ``n > 10`` (Varadhan's third-order error grows like
  ``n^4 sigma^6``) the series is tried down to ``sigma = 0.03`` and accepted up to a cancellation ratio
  of ``1e10``. ``b`` is frozen beyond ``theta = pi - 0.1`` (it diverges at the cut locus, where the
  series takes over whenever it is accurate).
* ``S^3``: exact sum over images ``(2 pi sigma^2)^(-3/2) e^(sigma^2/2) sum_k theta_k / sin theta
  exp(-theta_k^2/(2 sigma^2))``, ``theta_k = theta + 2 pi k``, for ``sigma < 1.5``; series above.
* SO(3) (metric ``1/2 tr``, distance = rotation angle): exact sum over images
  ``(2 pi sigma^2)^(-3/2) e^(sigma^2/8) sum_j theta_j / (2 sin(theta_j / 2)) exp(-theta_j^2/(2 sigma^2))``
  (Poisson summation of the character series) for ``sigma < 1.5``, the character series
  ``(8 pi^2)^-1 sum_l (2l+1) e^(-l(l+1) sigma^2/2) sin((2l+1) theta/2) / sin(theta/2)`` above.
* ``T^n``: wrapped normal per angle, a sum of positive images (exact at every sigma).
* SU(3): class functions of the eigen-angles, see :mod:`funcgen.geometry.su3` (images / characters,
  closed-form score, rejection sampling with an analytic bound); the three entry points below dispatch there.

Accuracy (the contract the tests check): against the 60-digit reference ``data/heat_kernel/reference.csv``
(sigma 0.02 to 4, theta from sigma/4 to 3), ``tests/geometry/test_heat_kernel.py`` requires ``|log p - ref|`` and the
relative error of ``d log p / d theta`` below ``1e-7`` for ``theta <= 5 sigma`` on S^2, S^3 and SO(3), and in
the far tail (``p`` down to ``e^-48``, where the S^2 series cancels and Varadhan is used) below
``5e-3`` / ``3e-3`` on S^2 and ``1e-10`` / ``1e-7`` on S^3 and SO(3); ``tests/geometry/test_high_dim_sphere.py``
compares S^127 and S^255 with the series summed in mpmath, where the series is taken, to ``1e-12 + 3e-13 R``
(``R = sum |terms| / sum terms``, its cancellation ratio: the error grows with ``R``, up to ``CANCEL_MAX_HIGH_DIM``),
and checks the normalisation across sigma.
Limitation: beyond about 4 standard deviations of the radial law (mass ``< e^-10``) Varadhan is still used
where the series cancels, so the log density there is approximate; at ``n >= 511`` and ``sigma ~ 0.05``
this reaches the bulk and the sampler refuses (it raises) rather than return biased samples. The
measured errors behind these choices: docs/results/extra.md, "Numerical accuracy of the geometry code".

Scores: ``d log p / d theta`` by autograd of these float64 expressions, and the Riemannian score
``grad_x log p(x | x0) = -(d log p/d theta) / theta * log_x(x0)`` (unit tangent pointing away from ``x0``).

Exact forward sampling (radial rejection, envelopes on high-dimensional spheres) lives in
:mod:`funcgen.geometry.heat_sampling`.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from .manifolds import SO3, Manifold, Sphere, Torus, wrap_angle
from .su3 import SU3, su3_heat_kernel_score, su3_log_heat_kernel

__all__ = ["sphere_log_heat_kernel", "so3_log_heat_kernel", "torus_log_heat_kernel", "radial_log_heat_kernel",
           "radial_dlogp_dtheta", "heat_kernel_log_prob", "heat_kernel_score"]

SERIES_MIN_SIGMA = 0.1  # below: Varadhan only on S^n, 3 != n <= 10
SERIES_MIN_SIGMA_HIGH_DIM = 0.03  # n > 10: Varadhan's third-order error grows like n^4 sigma^6, so the
# series is tried down to here wherever it does not cancel
IMAGES_MAX_SIGMA = 1.5  # S^3 and SO(3): images below, eigen-series above (both exact in float64)
CANCEL_MAX = 1e6  # series accepted where sum|terms| / sum terms < this (rel. error ~ 1e-16 * this)
CANCEL_MAX_HIGH_DIM = 1e10  # n > 10, where Varadhan is much worse than a series cancelling this much
_F64 = torch.float64


def _log_sphere_area(n: int) -> float:
    """log |S^n|."""
    return math.log(2.0) + 0.5 * (n + 1) * math.log(math.pi) - math.lgamma(0.5 * (n + 1))


def _prep(theta: Tensor, sigma: Tensor | float) -> tuple[Tensor, Tensor]:
    th = torch.as_tensor(theta, dtype=_F64)
    s = torch.as_tensor(sigma, dtype=_F64, device=th.device)
    if (s <= 0).any() or not torch.isfinite(s).all():
        raise ValueError("heat kernel needs finite sigma > 0")
    th, s = torch.broadcast_tensors(th, s)
    return th, s


@functools.lru_cache(maxsize=64)
def _log_dims_table(n: int, size: int = 20000) -> Tensor:
    """Cached :func:`_log_dims` for ``l = 0 .. size - 1`` (CPU, float64)."""
    return _log_dims(torch.arange(size, dtype=_F64), n)


def _num_terms(n: int, sigma_min: float, drop: float = 60.0) -> int:
    """Terms ``l < L`` of the S^n series whose log-weights lie within ``drop`` of the largest."""
    table = _log_dims_table(n)
    ls = torch.arange(table.shape[0], dtype=_F64)
    logw = table - ls * (ls + n - 1) * sigma_min**2 / 2
    keep = (logw > logw.max() - drop).nonzero()
    return int(keep.max()) + 2


def _log_dims(ls: Tensor, n: int) -> Tensor:
    """log of the multiplicity (2l+n-1)/(n-1) C_l^((n-1)/2)(1) of eigenvalue l(l+n-1) on S^n."""
    if n == 1:
        return torch.where(ls == 0, 0.0, math.log(2.0)) + 0 * ls
    return (torch.log(2 * ls + n - 1) - math.log(n - 1) + torch.lgamma(ls + n - 1) - math.lgamma(n - 1)
            - torch.lgamma(ls + 1))


SERIES_CHUNK = 2**21  # elements of one [rows, L] block of the S^n series (float64: 16 MB)


def _sphere_series(th: Tensor, s: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """(log p, cancellation ratio) from the Gegenbauer series (normalised polynomials, log weights).

    Row blocks of ``[rows, L]`` (:data:`SERIES_CHUNK` elements): the log-weights of all terms in one op and
    a two-op recurrence per degree, so small inputs (a training batch's pending draws) do not pay ~14
    tensor ops per term; memory stays bounded for large ones.
    """
    L = _num_terms(n, float(s.min()))
    rows = max(1, SERIES_CHUNK // L)
    if th.numel() > rows:
        parts = [_sphere_series(a, b, n) for a, b in zip(th.reshape(-1).split(rows), s.reshape(-1).split(rows))]
        return (torch.cat([p[0] for p in parts]).reshape(th.shape),
                torch.cat([p[1] for p in parts]).reshape(th.shape))
    lam = 0.5 * (n - 1)
    t = torch.cos(th)
    ls = torch.arange(L, dtype=th.dtype, device=th.device)
    logw = (_log_dims_table(n)[:L].to(th.device) - ls * (ls + n - 1) * (s[..., None] ** 2 / 2))  # [..., L]
    wmax = logw.amax(-1)
    w = torch.exp(logw - wmax[..., None])
    polys = [torch.ones_like(t), t]  # C_l / C_l(1) by the three-term recurrence
    for deg in range(2, L):
        a, b = 2 * (deg + lam - 1) / (deg + 2 * lam - 1), (deg - 1) / (deg + 2 * lam - 1)
        polys.append(torch.addcmul(polys[-2] * -b, t, polys[-1], value=a))
    pl = torch.stack(polys[:L], -1)
    total = (w * pl).sum(-1)
    absum = (w * pl.abs()).sum(-1)
    cancel = absum / total.clamp_min(1e-300)
    cancel = torch.where(total > 0, cancel, torch.full_like(cancel, math.inf))
    return wmax + torch.log(total.clamp_min(1e-300)) - _log_sphere_area(n), cancel


def _g_over_theta(th: Tensor) -> Tensor:
    """(1/theta - cot theta) / theta, with its Taylor series near 0."""
    small = th < 1e-2
    ts = torch.where(small, torch.ones_like(th), th)
    return torch.where(small, 1 / 3 + th**2 / 45 + 2 * th**4 / 945, (1 / ts - 1 / torch.tan(ts)) / ts)


def _log_theta_over_sin(th: Tensor, half: bool = False) -> Tensor:
    """log(theta / sin theta) (or log(theta / (2 sin(theta/2))) with ``half``), stable near 0."""
    u = th / 2 if half else th
    small = u < 1e-3
    us = torch.where(small, torch.ones_like(u), u)
    return torch.where(small, u**2 / 6 + u**4 / 180, torch.log(us / torch.sin(us)))


def _sphere_varadhan(th: Tensor, s: Tensor, n: int) -> Tensor:
    m = 0.5 * (n - 1)
    thb = th.clamp(max=math.pi - 0.1)
    b = m * m + m * (1 - m) * _g_over_theta(thb)
    t = s**2 / 2  # heat time of the operator d/dt = Laplacian
    # second-order term of log p on the diagonal: a_2 - a_1^2/2 = -n(n-1)(n-3)/180 on the unit S^n
    c2 = -n * (n - 1) * (n - 3) / 180.0
    return (-0.5 * n * torch.log(2 * math.pi * s**2) - th**2 / (2 * s**2) + m * _log_theta_over_sin(th)
            + t * b + c2 * t**2)


def _image_log_sum(th: Tensor, s: Tensor, alternate: bool) -> Tensor:
    """log sum_k (+-1)^k (theta_k / theta) exp(-(theta_k^2 - theta^2)/(2 s^2)), theta_k = theta + 2 pi k.

    Pairs ``k, -k`` are combined into ``2 e^(-a)[cosh x - (4 pi^2 k^2 / s^2) sinh(x)/x]`` with
    ``a = 2 pi^2 k^2 / s^2`` and ``x = 2 pi k theta / s^2`` (finite at ``theta = 0``, no overflow).
    """
    kmax = int(math.ceil(float(s.max()) * 9 / (2 * math.pi))) + 2
    total = torch.ones_like(th)
    for k in range(1, kmax + 1):
        a = 2 * math.pi**2 * k * k / s**2
        x = 2 * math.pi * k * th / s**2
        ec = 0.5 * (torch.exp(x - a) + torch.exp(-x - a))
        small = x < 1e-4
        xs = torch.where(small, torch.ones_like(x), x)
        es = torch.where(small, torch.exp(-a) * (1 + x**2 / 6), (torch.exp(xs - a) - torch.exp(-xs - a)) / (2 * xs))
        term = 2 * (ec - (4 * math.pi**2 * k * k / s**2) * es)
        total = total + ((-1) ** k if alternate else 1) * term
    return torch.log(total.clamp_min(1e-300))


def sphere_log_heat_kernel(theta: Tensor, sigma: Tensor | float, n: int) -> Tensor:
    """log p_sigma on ``S^n`` at geodesic distance ``theta`` ``[...]`` (broadcast with ``sigma``) -> ``[...]``
    float64."""
    th, s = _prep(theta, sigma)
    th = th.clamp(0.0, math.pi - 1e-9)
    if n == 1:
        return torus_log_heat_kernel(th[..., None], s)
    big = s >= (IMAGES_MAX_SIGMA if n == 3 else SERIES_MIN_SIGMA if n <= 10 else SERIES_MIN_SIGMA_HIGH_DIM)
    if n == 3:
        small = (-1.5 * torch.log(2 * math.pi * s**2) + s**2 / 2 - th**2 / (2 * s**2) + _log_theta_over_sin(th)
                 + _image_log_sum(th, s, alternate=False))
    else:
        small = _sphere_varadhan(th, s, n)
    if not big.any():
        return small
    ok = torch.zeros_like(big)
    full = torch.zeros_like(small)
    # the number of terms grows like 1/sigma: evaluate sigma buckets separately with their own count
    edges = (0.0, 0.06, 0.3, 1.0, math.inf)
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = big & (s >= lo) & (s < hi)
        if sel.any():
            ser, cancel = _sphere_series(th[sel], s[sel], n)
            ok[sel] = cancel < (CANCEL_MAX if n <= 10 else CANCEL_MAX_HIGH_DIM)
            full[sel] = ser
    return torch.where(ok, full, small)


def so3_log_heat_kernel(theta: Tensor, sigma: Tensor | float) -> Tensor:
    """log p_sigma on SO(3) (metric 1/2 tr) at rotation angle ``theta`` ``[...]`` -> ``[...]`` float64."""
    th, s = _prep(theta, sigma)
    th = th.clamp(0.0, math.pi)
    images = (-1.5 * torch.log(2 * math.pi * s**2) + s**2 / 8 - th**2 / (2 * s**2)
              + _log_theta_over_sin(th, half=True) + _image_log_sum(th, s, alternate=True))
    big = s >= IMAGES_MAX_SIGMA
    if not big.any():
        return images
    sb, tb = s[big], th[big]
    L = int(math.ceil(math.sqrt(2 * 60) / float(sb.min()))) + 2
    half = torch.sin(tb / 2)
    tiny = half < 1e-6
    hs = torch.where(tiny, torch.ones_like(half), half)
    total = torch.zeros_like(tb)
    for deg in range(L):
        chi = torch.where(tiny, torch.full_like(tb, 2 * deg + 1.0), torch.sin((2 * deg + 1) * tb / 2) / hs)
        total = total + (2 * deg + 1) * torch.exp(-deg * (deg + 1) * sb**2 / 2) * chi
    full = torch.zeros_like(images)
    full[big] = torch.log(total.clamp_min(1e-300)) - math.log(8 * math.pi**2)
    return torch.where(big, full, images)


def torus_log_heat_kernel(delta: Tensor, sigma: Tensor | float) -> Tensor:
    """log p_sigma on ``T^n`` for angle gaps ``delta`` ``[..., n]`` -> ``[...]`` float64 (product of wrapped
    normals)."""
    d = wrap_angle(torch.as_tensor(delta, dtype=_F64))
    s = torch.as_tensor(sigma, dtype=_F64, device=d.device)
    if (s <= 0).any() or not torch.isfinite(s).all():
        raise ValueError("heat kernel needs finite sigma > 0")
    s = s[..., None]
    kmax = int(math.ceil(float(s.max()) * 9 / (2 * math.pi))) + 1
    ks = torch.arange(-kmax, kmax + 1, dtype=_F64, device=d.device)
    z = -((d[..., None] + 2 * math.pi * ks) ** 2) / (2 * s[..., None] ** 2)
    per = torch.logsumexp(z, -1) - 0.5 * torch.log(2 * math.pi * s**2)
    return per.sum(-1)


def radial_log_heat_kernel(manifold: Manifold, theta: Tensor, sigma: Tensor | float) -> Tensor:
    """log p_sigma at geodesic distance ``theta`` on a ``Sphere`` or ``SO3`` (float64)."""
    if isinstance(manifold, Sphere):
        return sphere_log_heat_kernel(theta, sigma, manifold.n)
    if isinstance(manifold, SO3):
        return so3_log_heat_kernel(theta, sigma)
    raise TypeError(f"no radial heat kernel for {manifold!r}; the torus kernel is torus_log_heat_kernel")


def radial_dlogp_dtheta(manifold: Manifold, theta: Tensor, sigma: Tensor | float) -> Tensor:
    """``d log p_sigma / d theta`` (float64) by autograd of :func:`radial_log_heat_kernel`."""
    th = torch.as_tensor(theta, dtype=_F64).detach().clamp_min(1e-7).requires_grad_(True)
    with torch.enable_grad():
        lp = radial_log_heat_kernel(manifold, th, torch.as_tensor(sigma, dtype=_F64).detach())
        (g,) = torch.autograd.grad(lp.sum(), th)
    return g


def _sigma_like(sigma: Tensor | float, x: Tensor) -> Tensor:
    s = torch.as_tensor(sigma, dtype=_F64, device=x.device)
    return s.expand(x.shape[:-1]) if s.ndim == 0 else s


def heat_kernel_log_prob(manifold: Manifold, x: Tensor, x0: Tensor, sigma: Tensor | float) -> Tensor:
    """log p_sigma(x | x0) ``[...]`` (w.r.t. the Riemannian volume) for points ``[..., D]``; input dtype."""
    s = _sigma_like(sigma, x)
    if isinstance(manifold, Torus):
        return torus_log_heat_kernel(manifold.log(x0, x), s).to(x.dtype)
    if isinstance(manifold, SU3):
        return su3_log_heat_kernel(manifold.class_angles(x0, x), s).to(x.dtype)
    return radial_log_heat_kernel(manifold, manifold.dist(x0, x).to(_F64), s).to(x.dtype)


def heat_kernel_score(manifold: Manifold, x: Tensor, x0: Tensor, sigma: Tensor | float) -> Tensor:
    """Riemannian gradient ``grad_x log p_sigma(x | x0)`` ``[..., D]``, a tangent vector at ``x``; input dtype."""
    s = _sigma_like(sigma, x)
    if isinstance(manifold, Torus):
        d = manifold.log(x0.to(_F64), x.to(_F64)).requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(torus_log_heat_kernel(d, s).sum(), d)
        return g.to(x.dtype)
    if isinstance(manifold, SU3):
        return su3_heat_kernel_score(x, x0, s)
    xd, x0d = x.to(_F64), x0.to(_F64)
    v = manifold.log(xd, x0d)  # points to x0, Riemannian norm theta
    th = manifold.dist(xd, x0d).clamp_min(1e-7)
    coef = radial_dlogp_dtheta(manifold, th, s) / th
    return (-coef[..., None] * v).to(x.dtype)
