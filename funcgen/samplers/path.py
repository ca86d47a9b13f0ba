"""The Gaussian-path view that every diffusion-type method shares, for conditioning and likelihoods.

A diffusion-type method's state at level ``t`` (a time or a noise level, in the method's own units) is

    x_t = a(t) x_data + s(t) xi,          xi ~ the method's function-space noise (covariance C),

with ``a, s`` scalars: a variance-preserving diffusion (``a = alpha, s = sigma``, functional diffusion,
infty-Diff, MDF), the EDM / PFGM++ perturbation (``a = 1, s = sigma``, ``xi`` a Student-t process) and the
straight flow-matching path (``a = t, s = 1 - (1 - sigma_min) t``). Dividing by ``a`` gives the
variance-exploding form ``y = x / a = x_data + rho xi`` with ``rho = s / a``, whose probability-flow ODE is
``dy / drho = (y - D(a y, t)) / rho`` for any noise law (the velocity ``E[xi | y]``; Karras et al. 2022,
eq. 4 with ``s = 1``), ``D(x, t) = E[x_data | x_t = x]`` the method's denoiser. :func:`funcgen.samplers.likelihood`
and :mod:`funcgen.samplers.guidance` work with this view only, so they serve every such method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..processes.noise import FunctionNoise

__all__ = ["GaussianPath"]


@dataclass(frozen=True)
class GaussianPath:
    """``x_t = a(t) x_data + s(t) xi`` between the data end ``t_data`` and the prior end ``t_prior``.

    Attributes:
        scales: ``t -> (a(t), s(t))`` as Python floats.
        noise: the law of ``xi`` (its :meth:`~funcgen.processes.noise.FunctionNoise.covariance` and
            :meth:`~funcgen.processes.noise.FunctionNoise.log_prob`).
        t_data: the level nearest the data where the denoiser is trained (``rho`` smallest).
        t_prior: the level of the sampler's prior draw ``x ~ s(t_prior) xi`` (``rho`` largest).
    """

    scales: Callable[[float], tuple[float, float]]
    noise: FunctionNoise
    t_data: float
    t_prior: float

    def rho(self, t: float) -> float:
        """Noise-to-signal ratio ``s(t) / a(t)`` (``inf`` where ``a = 0``)."""
        a, s = self.scales(t)
        return s / a if a > 0 else float("inf")

    def level(self, rho: float, iters: int = 80) -> float:
        """The level ``t`` between ``t_data`` and ``t_prior`` with ``s(t) / a(t) = rho`` (bisection; ``rho`` is
        monotone along the path), clamped to the ends."""
        lo, hi = self.t_data, self.t_prior  # rho(lo) < rho(hi), whichever way t runs
        if rho <= self.rho(lo):
            return lo
        if rho >= self.rho(hi):
            return hi
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            if self.rho(mid) < rho:
                lo = mid
            else:
                hi = mid
        return 0.5 * (lo + hi)
