"""Exact draws from heat kernels (Lou et al. 2023, sec. 3): ``x ~ p_sigma(. | x0)`` at every sigma.

Densities and scores: :mod:`funcgen.geometry.heat_kernel` (its conventions apply here).

Exact sampling: radial rejection sampling. The distance ``theta`` has density
``f(theta) = |S^(k-1)| s(theta)^(k-1) p(theta)`` with ``s = sin`` on ``S^n`` (``k = n``) and
``s = 2 sin(theta/2)`` on SO(3) (``k = 3``, ``|S^2| = 4 pi``). Two proposals, the better per element:
the Euclidean radial law ``theta = sigma' |N(0, I_k)|`` (chi_k; ratio
``f/g = p (2 pi sigma'^2)^(k/2) e^(theta^2/(2 sigma'^2)) (s(theta)/theta)^(k-1)``: note ``(s/theta)``, not
the inverted factor of the reference code; ``sigma'`` slightly below sigma matches the curvature), or the uniform
law (ratio ``|M| p(theta) <= |M| p(0)``).
The chi bound is the maximum of the ratio on a ``RADIAL_BOUND_NODES`` = 32-point grid times 1.05; a
proposal whose ratio exceeds the bound raises instead of silently biasing. The ratio is smooth on the scale
of the grid, so the grid maximum falls short of the true one by far less than the 1.05 margin
(``tests/geometry/test_heat_kernel.py``: by less than ``log(1.05) / 10`` against a 4096-point grid on S^2,
S^5 and SO(3)). Directions are uniform (isotropy).
On ``S^n`` with ``n > 10`` (where the chi proposal degrades and a grid bound meets the kernel's far
tail) the radial law ``sin^(n-1) p`` is sampled instead by rejection from tangent-line envelopes of its
log-concave density at 32 nodes over its bulk (:mod:`funcgen.geometry.envelope`), inflated by 0.1
nats. Acceptance rates and timings: docs/results/extra.md, "Numerical accuracy of the geometry code".
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..rng import rand, randn
from .heat_kernel import (
    _F64,
    _log_theta_over_sin,
    _sigma_like,
    radial_dlogp_dtheta,
    radial_log_heat_kernel,
    sphere_log_heat_kernel,
)
from .manifolds import SO3, Manifold, Sphere, Torus, _so3_exp_vec, wrap_angle
from .su3 import SU3, sample_su3_heat_kernel

__all__ = ["sample_heat_kernel", "sample_radius"]


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
ENVELOPE_MARGIN = 0.1  # nats added to the envelope: covers the jump where the S^n kernel switches from the
# series to Varadhan beyond ~4 standard deviations of the radial law (see the heat_kernel docstring)


def _sample_radius_envelope(manifold: Sphere, s: Tensor, generator: torch.Generator | None) -> Tensor:
    """Radial draws on a high-dimensional sphere: the radial density ``f = sin^(n-1)(theta) p_sigma(theta)`` is
    log-concave, so tangents of ``log f`` at nodes spread over ``arccos(e^(-n sigma^2/2)) +- 8 w``,
    ``w = sqrt((1 - e^(-n sigma^2)) / n)`` (its bulk), give an exact rejection sampler whose acceptance
    stays high at every sigma (:class:`funcgen.geometry.envelope.TangentEnvelope`). Returns NaN where the
    density is not log-concave on the nodes."""
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
            raise RuntimeError(
                f"S^{n} radial sampling failed for sigma in [{float(su.min()):.3g}, {float(su.max()):.3g}]: "
                f"{e}. The kernel's series and Varadhan branches disagree there by more than {ENVELOPE_MARGIN} "
                "nats (validated: n <= 255 at every sigma; n = 511 fails at sigma = 0.05)") from None
    return out


MAX_PROPOSALS_PER_ROUND = 64  # cap of the per-element proposals of one rejection round (2, 4, 8, ... per round)
RADIAL_BOUND_NODES = 32  # grid of the chi bound (module docstring; its deficit is checked against log 1.05)


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
        r = randn((m, k), generator, device=st.device, dtype=torch.float64).to(st).norm(dim=-1)
        r = r * _chi_scale(manifold, st)
        u = rand((m,), generator, device=s.device, dtype=_F64)
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
    u = rand(tuple(th.shape), generator, device=th.device, dtype=_F64)
    return u < sv.clamp_min(0) ** (k - 1)


def sample_heat_kernel(manifold: Manifold, x0: Tensor, sigma: Tensor | float,
                       generator: torch.Generator | None = None) -> Tensor:
    """Exact draws ``x ~ p_sigma(. | x0)`` ``[..., D]`` (input dtype and device); ``sigma`` scalar or ``[...]``."""
    s = _sigma_like(sigma, x0)
    if (s <= 0).any():
        raise ValueError("heat kernel sampling needs sigma > 0")
    if isinstance(manifold, Torus):
        z = randn(tuple(x0.shape), generator, device=x0.device, dtype=torch.float64)
        return wrap_angle(x0.to(_F64) + s[..., None] * z).to(x0)
    if isinstance(manifold, SU3):
        return sample_su3_heat_kernel(x0, s, generator)
    shape = x0.shape[:-1]
    x0f = x0.to(_F64).reshape(-1, manifold.ambient_dim)
    th = sample_radius(manifold, s.reshape(-1), generator)
    if isinstance(manifold, Sphere):
        u = manifold.proj(x0f, randn(tuple(x0f.shape), generator, device=x0f.device, dtype=torch.float64).to(x0f))
        u = u / u.norm(dim=-1, keepdim=True).clamp_min(1e-300)
        x = torch.cos(th)[:, None] * x0f + torch.sin(th)[:, None] * u
        x = x / x.norm(dim=-1, keepdim=True)
    else:
        a = randn((x0f.shape[0], 3), generator, device=x0f.device, dtype=torch.float64).to(x0f)
        a = a / a.norm(dim=-1, keepdim=True)
        rot = _so3_exp_vec(a * th[:, None])
        x = SO3.from_matrix(SO3.as_matrix(x0f) @ rot)
    return x.reshape(*shape, manifold.ambient_dim).to(x0)
