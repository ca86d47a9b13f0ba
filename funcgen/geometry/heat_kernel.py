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
  -n(n-1)(n-3)/180 (sigma^2/2)^2`` (it cut the S^2 error at sigma = 0.05 from 1.7e-8 to 4e-11 and
  S^127's from 0.29 to 0.05 at sigma = 0.1). For ``n > 10`` the series is tried down to sigma = 0.03. ``b`` is frozen beyond ``theta = pi - 0.1`` (it diverges at the cut locus,
  where the series takes over whenever it is accurate).
* ``S^3``: exact sum over images ``(2 pi sigma^2)^(-3/2) e^(sigma^2/2) sum_k theta_k / sin theta
  exp(-theta_k^2/(2 sigma^2))``, ``theta_k = theta + 2 pi k``, for ``sigma < 1.5``; series above.
* SO(3) (metric ``1/2 tr``, distance = rotation angle): exact sum over images
  ``(2 pi sigma^2)^(-3/2) e^(sigma^2/8) sum_j theta_j / (2 sin(theta_j / 2)) exp(-theta_j^2/(2 sigma^2))``
  (Poisson summation of the character series) for ``sigma < 1.5``, the character series
  ``(8 pi^2)^-1 sum_l (2l+1) e^(-l(l+1) sigma^2/2) sin((2l+1) theta/2) / sin(theta/2)`` above.
* ``T^n``: wrapped normal per angle, a sum of positive images (exact at every sigma).
* SU(3): class functions of the eigen-angles, see :mod:`funcgen.geometry.su3` (images / characters,
  closed-form score, rejection sampling with an analytic bound); the three entry points below dispatch there.

Measured error against the 60-digit reference ``data/heat_kernel/reference.csv`` (sigma 0.02 to 4,
theta from sigma/4 to 3; ``tests/test_heat_kernel.py`` re-measures it on every run), max
``|log p - ref|`` / max relative error of ``d log p / d theta``:
S^2 3.6e-3 / 2.1e-3, both at the far-tail point sigma = 0.3, theta = 3 (p ~ e^-48, Varadhan,
because the series cancels there: float64 series error 2e-3 at theta = 2.5, NaN at 3); for
theta <= 5 sigma 8e-11 / 1.7e-11 (the series points are <= 1e-13). S^3 1.8e-15 / 1.6e-14, SO(3) 7.1e-15 / 6.4e-10. Choosing the series wherever its
cancellation estimate allows, rather than by a fixed sigma, is what keeps sigma = 0.6, theta = 3
at 4e-12 (Varadhan alone: 4e-2, 1e-1 without the heat-invariant term); below sigma = 0.1 Varadhan
(<= 3e-8 against the series on S^2..S^5 in the bulk) is as good as the 100+ series terms would be,
and cheaper. High dimension (measured against the series where it does not cancel): Varadhan's
error on S^10 is 2.5e-6 at sigma = 0.1, on S^127 7.6e-4 at sigma = 0.05 and 5e-2 at 0.1 (where the
series takes over in the bulk), so on S^127 the kernel's bulk is accurate to ~1e-3 at every sigma (normalisation error <= 3e-4
measured for sigma in 0.01..0.5). High dimension (n > 10): the series is accepted up to a cancellation
ratio of 1e10 (measured against 80-digit mpmath sums on S^127 and S^255, sigma 0.05..0.3, theta over
the radial law down to e^-40 of its peak: error <= 2e-6 wherever the series is taken; with the
ratio 1e6 Varadhan took over at +1.6 standard deviations on S^255 at sigma = 0.05, error 1e-2, and
the normalisation was off by 6e-3, now 5e-4). Remaining limitation: beyond ~4 standard deviations
of the radial law (mass < e^-10) Varadhan is still used where the series cancels (error 0.07 on
S^127 at sigma = 0.1, theta = 1.33; up to 1 nat at e^-30); at n >= 511 and sigma ~ 0.05 this
reaches the bulk and the sampler below refuses (it raises) rather than return biased samples.

Scores: ``d log p / d theta`` by autograd of these float64 expressions, and the Riemannian score
``grad_x log p(x | x0) = -(d log p/d theta) / theta * log_x(x0)`` (unit tangent pointing away from ``x0``).

Exact sampling: radial rejection sampling. The distance ``theta`` has density
``f(theta) = |S^(k-1)| s(theta)^(k-1) p(theta)`` with ``s = sin`` on ``S^n`` (``k = n``) and
``s = 2 sin(theta/2)`` on SO(3) (``k = 3``, ``|S^2| = 4 pi``). Two proposals, the better per element:
the Euclidean radial law ``theta = sigma' |N(0, I_k)|`` (chi_k; ratio
``f/g = p (2 pi sigma'^2)^(k/2) e^(theta^2/(2 sigma'^2)) (s(theta)/theta)^(k-1)``: note ``(s/theta)``, not
the inverted factor of the reference code; ``sigma'`` slightly below sigma matches the curvature), or the uniform law (ratio ``|M| p(theta) <= |M| p(0)``).
The chi bound is the maximum of the ratio on a ``RADIAL_BOUND_NODES`` = 32-point grid times 1.05; a
proposal whose ratio exceeds the bound raises instead of silently biasing. The ratio is smooth on the scale
of the grid: over 1500 sigmas from 1e-3 to 4 where chi is chosen, the 32-point maximum falls short of an
8192-point one by at most 1.4e-4 nats on S^2 (0 on S^5 and SO(3)), 350x inside the 1.05 margin; the
256-point grid it replaces made the bound 0.12 s of a 0.27 s training draw of 512 points on S^2. Directions are uniform (isotropy).
On ``S^n`` with ``n > 10`` (where the chi proposal degrades and the grid bound met the kernel's far
tail) the radial law ``sin^(n-1) p`` is sampled instead by rejection from tangent-line envelopes of its
log-concave density at 32 nodes over its bulk (:mod:`funcgen.geometry.envelope`), inflated by 0.1
nats; acceptance measured 0.88..0.91 on S^11..S^255 for sigma from 0.01 to 3 (it was a raised error
at sigma = 0.2 on S^127 and 276 s for 2000 draws at sigma = 0.1 on S^255; now 0.1..2 s).
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from .manifolds import SO3, Manifold, Sphere, Torus, _randn, _so3_exp_vec, vector_to_skew, wrap_angle
from .su3 import SU3, sample_su3_heat_kernel, su3_heat_kernel_score, su3_log_heat_kernel

__all__ = ["sphere_log_heat_kernel", "so3_log_heat_kernel", "torus_log_heat_kernel", "radial_log_heat_kernel",
           "radial_dlogp_dtheta", "heat_kernel_log_prob", "heat_kernel_score", "sample_heat_kernel", "sample_radius"]

SERIES_MIN_SIGMA = 0.1  # below: Varadhan only on S^n, 3 != n <= 10 (measured error <= 3e-8 there)
SERIES_MIN_SIGMA_HIGH_DIM = 0.03  # n > 10: Varadhan's third-order error grows like n^4 sigma^6 (7.6e-4 on
# S^127 at sigma = 0.05), so the series is tried down to here wherever it does not cancel
IMAGES_MAX_SIGMA = 1.5  # S^3 and SO(3): images below, eigen-series above (both exact in float64)
CANCEL_MAX = 1e6  # series accepted where sum|terms| / sum terms < this (rel. error ~ 1e-16 * this)
CANCEL_MAX_HIGH_DIM = 1e10  # n > 10, where Varadhan is much worse: measured series error <= 2e-6 where accepted
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
    for l in range(2, L):
        a, b = 2 * (l + lam - 1) / (l + 2 * lam - 1), (l - 1) / (l + 2 * lam - 1)
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
    """log p_sigma on ``S^n`` at geodesic distance ``theta`` ``[...]`` (broadcast with ``sigma``) -> ``[...]`` float64."""
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
    for l in range(L):
        chi = torch.where(tiny, torch.full_like(tb, 2 * l + 1.0), torch.sin((2 * l + 1) * tb / 2) / hs)
        total = total + (2 * l + 1) * torch.exp(-l * (l + 1) * sb**2 / 2) * chi
    full = torch.zeros_like(images)
    full[big] = torch.log(total.clamp_min(1e-300)) - math.log(8 * math.pi**2)
    return torch.where(big, full, images)


def torus_log_heat_kernel(delta: Tensor, sigma: Tensor | float) -> Tensor:
    """log p_sigma on ``T^n`` for angle gaps ``delta`` ``[..., n]`` -> ``[...]`` float64 (product of wrapped normals)."""
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


# ------------------------------------------------------------------------------- sampling
def _radial_setup(manifold: Manifold) -> tuple[int, bool]:
    if isinstance(manifold, Sphere):
        return manifold.n, False
    if isinstance(manifold, SO3):
        return 3, True
    raise TypeError(f"no radial sampler for {manifold!r}")


def _chi_scale(manifold: Manifold, s: Tensor) -> Tensor:
    """Scale ``sigma'`` of the chi_k proposal: ``1/sigma'^2 = 1/sigma^2 + c`` cancels the ``theta^2`` term of
    ``log f/g`` near 0 (``c = (n-1)/6`` on S^n, ``1/12`` on SO(3)), so the acceptance stays high in high
    dimension (with ``sigma' = sigma`` it is ``E e^(-(n-1) theta^2/12)``, 3% on S^127 at sigma = 0.05)."""
    k, half = _radial_setup(manifold)
    c = 1.0 / 12.0 if half else (k - 1) / 6.0
    return s / torch.sqrt(1.0 + c * s**2)


def _log_ratio_chi(manifold: Manifold, th: Tensor, s: Tensor) -> Tensor:
    """log f(theta)/g_chi(theta) for the chi_k proposal of scale :func:`_chi_scale` (see module docstring)."""
    k, half = _radial_setup(manifold)
    lp = radial_log_heat_kernel(manifold, th, s)
    jac = -_log_theta_over_sin(th, half=half)  # log(s(theta)/theta)
    sp = _chi_scale(manifold, s)
    return lp + (k - 1) * jac + th**2 / (2 * sp**2) + 0.5 * k * torch.log(2 * math.pi * sp**2)


def sample_radius(manifold: Manifold, sigma: Tensor, generator: torch.Generator | None = None,
                  max_rounds: int = 10000) -> Tensor:
    """Exact draws of the geodesic distance ``theta`` ``[B]`` (float64) of heat-kernel samples at ``sigma`` ``[B]``.

    ``S^n`` with ``n > 10``: tangent-envelope rejection (:func:`_sample_radius_envelope`); elsewhere, or
    for a sigma whose radial law is not log-concave on the nodes, the chi / uniform proposals.
    """
    s = sigma.to(_F64).reshape(-1)
    if isinstance(manifold, Sphere) and manifold.n > 10:
        out = _sample_radius_envelope(manifold, s, generator)
        bad = torch.isnan(out)
        if bad.any():
            out[bad] = _sample_radius_bounded(manifold, s[bad], generator, max_rounds)
        return out
    return _sample_radius_bounded(manifold, s, generator, max_rounds)


ENVELOPE_NODES = 32
ENVELOPE_MARGIN = 0.1  # nats added to the envelope: covers the <= 0.07 jump where the S^n kernel switches from
# the series to Varadhan beyond ~4 standard deviations of the radial law (S^127, sigma = 0.1; see module docstring)


def _sample_radius_envelope(manifold: Sphere, s: Tensor, generator: torch.Generator | None) -> Tensor:
    """Radial draws on a high-dimensional sphere: the radial density ``f = sin^(n-1)(theta) p_sigma(theta)`` is
    log-concave, so tangents of ``log f`` at nodes spread over ``arccos(e^(-n sigma^2/2)) +- 8 w``,
    ``w = sqrt((1 - e^(-n sigma^2)) / n)`` (its bulk), give an exact rejection sampler whose acceptance
    stays high at every sigma (:class:`funcgen.geometry.envelope.TangentEnvelope`; measured >= 0.88 on
    S^127 and S^255). Returns NaN where the density is not log-concave on the nodes."""
    from .envelope import TangentEnvelope

    n = manifold.n
    su, inv = torch.unique(s, return_inverse=True)
    c = torch.exp(-n * su**2 / 2)
    centre, w = torch.acos(c), torch.sqrt((1 - c * c) / n) + 1e-12
    lo = (centre - 8 * w).clamp(min=1e-4)
    hi = (centre + 8 * w).clamp(max=math.pi - 1e-4)
    nodes = lo[:, None] + (hi - lo)[:, None] * torch.linspace(0, 1, ENVELOPE_NODES, dtype=_F64, device=s.device)
    sg = su[:, None].expand_as(nodes)
    logf = (n - 1) * torch.log(torch.sin(nodes)) + sphere_log_heat_kernel(nodes, sg, n) + ENVELOPE_MARGIN
    slope = (n - 1) / torch.tan(nodes) + radial_dlogp_dtheta(manifold, nodes, sg)
    env = TangentEnvelope(nodes, logf, slope, 0.0, math.pi)
    out = torch.full_like(s, math.nan)
    good = env.ok[inv]
    if good.any():
        def log_f(th: Tensor, rows: Tensor) -> Tensor:
            return (n - 1) * torch.log(torch.sin(th).clamp_min(1e-300)) + sphere_log_heat_kernel(th, su[rows], n)

        try:
            out[good] = env.sample(inv[good], log_f, generator)
        except RuntimeError as e:
            raise RuntimeError(f"S^{n} radial sampling failed for sigma in [{float(su.min()):.3g}, {float(su.max()):.3g}]: "
                               f"{e}. The kernel's series and Varadhan branches disagree there by more than "
                               f"{ENVELOPE_MARGIN} nats (validated: n <= 255 at every sigma; n = 511 fails at sigma = 0.05)") from None
    return out


MAX_PROPOSALS_PER_ROUND = 64  # cap of the per-element proposals of one rejection round (2, 4, 8, ... per round)
RADIAL_BOUND_NODES = 32  # grid of the chi bound (module docstring: measured deficit <= 1.4e-4 nats vs log 1.05)


def _sample_radius_bounded(manifold: Manifold, sigma: Tensor, generator: torch.Generator | None = None,
                           max_rounds: int = 10000) -> Tensor:
    """Radial draws by the chi / uniform proposals with a grid bound (module docstring)."""
    k, _ = _radial_setup(manifold)
    s = sigma.to(_F64).reshape(-1)
    b = s.shape[0]
    grid = torch.linspace(0.0, math.pi * (1 - 1e-6), RADIAL_BOUND_NODES, dtype=_F64, device=s.device)
    su, inv = torch.unique(s, return_inverse=True)  # bounds once per distinct sigma
    log_m_uni = radial_log_heat_kernel(manifold, torch.zeros_like(su), su) + manifold.log_volume()
    # the chi bound (a grid maximum) is only needed where chi can beat the exact uniform bound
    cand = _log_ratio_chi(manifold, torch.zeros_like(su), su) < log_m_uni
    log_m_chi = torch.full_like(su, math.inf)
    if cand.any():
        sc = su[cand]
        log_m_chi[cand] = _log_ratio_chi(manifold, grid.expand(sc.shape[0], -1), sc[:, None]).amax(-1) + math.log(1.05)
    log_m_chi, log_m_uni = log_m_chi[inv], log_m_uni[inv]
    use_chi = log_m_chi < log_m_uni
    out = torch.full_like(s, math.nan)
    todo = torch.arange(b, device=s.device)
    for rnd in range(max_rounds):
        if todo.numel() == 0:
            return out
        # element e gets `reps` i.i.d. proposals this round and keeps its first accepted one (exact: the
        # first success of a sequence of independent trials); doubling `reps` each round ends the loop
        # in a few rounds where elements with a low acceptance would otherwise take dozens, each paying
        # the per-op overhead of the series on a handful of points
        reps = min(2 ** (rnd + 1), MAX_PROPOSALS_PER_ROUND)
        rows = todo.repeat_interleave(reps)
        st, chi = s[rows], use_chi[rows]
        m = rows.numel()
        r = _randn((m, k), generator, like=st).norm(dim=-1) * _chi_scale(manifold, st)
        u = torch.rand((m,), generator=generator, device=generator.device if generator is not None else s.device,
                       dtype=_F64).to(s.device)
        th = torch.where(chi, r, u * math.pi)
        # uniform proposal: theta has density proportional to s(theta)^(k-1); sample it by inversion-free rejection
        log_ratio = torch.where(chi, _log_ratio_chi(manifold, th.clamp(max=math.pi), st) - log_m_chi[rows],
                                radial_log_heat_kernel(manifold, th, st) + manifold.log_volume() - log_m_uni[rows])
        bad = (log_ratio > 1e-9) & (th <= math.pi)
        if bad.any():
            raise RuntimeError("heat-kernel rejection bound violated (ratio > 1); please report these sigmas: "
                               f"{st[bad][:3].tolist()}")
        acc_u = torch.rand((m,), generator=generator, device=u.device, dtype=_F64).to(s.device)
        ok = (th <= math.pi) & (torch.log(acc_u) < log_ratio)
        if not bool(chi.all()):
            ok = ok & (chi | _accept_uniform_radius(manifold, th, generator))
        okm = ok.view(-1, reps)
        hit = okm.any(1)
        first = okm.to(torch.int8).argmax(1)  # index of the first accepted proposal of each element
        out[todo[hit]] = th.view(-1, reps)[hit, first[hit]]
        todo = todo[~hit]
    raise RuntimeError(f"heat-kernel rejection sampling did not finish in {max_rounds} rounds")


def _accept_uniform_radius(manifold: Manifold, th: Tensor, generator: torch.Generator | None) -> Tensor:
    """Thin ``theta ~ U(0, pi)`` to the radial law of the volume: accept w.p. ``(s(theta)/s_max)^(k-1)``."""
    k, half = _radial_setup(manifold)
    sv = 2 * torch.sin(th / 2) / 2 if half else torch.sin(th)  # s(theta) / max s
    u = torch.rand(th.shape, generator=generator, device=generator.device if generator is not None else th.device,
                   dtype=_F64).to(th.device)
    return u < sv.clamp_min(0) ** (k - 1)


def sample_heat_kernel(manifold: Manifold, x0: Tensor, sigma: Tensor | float,
                       generator: torch.Generator | None = None) -> Tensor:
    """Exact draws ``x ~ p_sigma(. | x0)`` ``[..., D]`` (input dtype and device); ``sigma`` scalar or ``[...]``."""
    s = _sigma_like(sigma, x0)
    if (s <= 0).any():
        raise ValueError("heat kernel sampling needs sigma > 0")
    if isinstance(manifold, Torus):
        z = _randn(tuple(x0.shape), generator, like=x0.to(_F64))
        return wrap_angle(x0.to(_F64) + s[..., None] * z).to(x0)
    if isinstance(manifold, SU3):
        return sample_su3_heat_kernel(x0, s, generator)
    shape = x0.shape[:-1]
    x0f = x0.to(_F64).reshape(-1, manifold.ambient_dim)
    th = sample_radius(manifold, s.reshape(-1), generator)
    if isinstance(manifold, Sphere):
        u = manifold.proj(x0f, _randn(tuple(x0f.shape), generator, like=x0f))
        u = u / u.norm(dim=-1, keepdim=True).clamp_min(1e-300)
        x = torch.cos(th)[:, None] * x0f + torch.sin(th)[:, None] * u
        x = x / x.norm(dim=-1, keepdim=True)
    else:
        a = _randn((x0f.shape[0], 3), generator, like=x0f)
        a = a / a.norm(dim=-1, keepdim=True)
        rot = _so3_exp_vec(a * th[:, None])
        x = SO3.from_matrix(SO3.as_matrix(x0f) @ rot)
    return x.reshape(*shape, manifold.ambient_dim).to(x0)
