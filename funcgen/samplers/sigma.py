"""The denoiser ODE in the noise level: EDM's probability-flow ODE and, with ``r = sigma sqrt(D)``, PFGM++'s.

    dx / dsigma = (x - D(x, sigma)) / sigma                  (Karras et al. 2022, eq. 4 with s = 1)

integrated down a grid of noise levels with Euler or Heun (second order; ``2K - 1`` denoiser calls for
``K`` intervals ending at 0, whose last step is Euler as a corrector would divide by 0).
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from .base import Callback, ModelFn, NoiseFn, apply_callback, decreasing_levels, steps_of

__all__ = ["sigma_ode", "sigma_ode_nfe"]

SigmaSolver = Literal["heun", "euler"]


def sigma_ode(denoise: ModelFn, x: Tensor, sigmas: Tensor, *, solver: SigmaSolver = "heun",
              noise: NoiseFn | None = None, inject_alpha: float = 0.0, callback: Callback | None = None,
              progress: bool = False) -> Tensor:
    """Integrate from ``x`` ``[B, N, c]`` at ``sigmas[0]`` down the decreasing levels ``sigmas`` ``[K + 1]``.

    Args:
        denoise: ``D(x, sigma) -> x0_hat`` shaped like ``x`` (``sigma`` a Python float).
        x: the state at ``sigmas[0]``.
        sigmas: decreasing non-negative levels; the last may be 0.
        solver: ``heun`` or ``euler``.
        noise: draws the method's noise shaped like ``x``; with ``inject_alpha > 0`` the state gets
            ``x += inject_alpha sigma xi`` before each step (the PFGM++ robustness study).
        inject_alpha: per-step noise injection strength (0: deterministic).
        callback: ``callback(i, sigma, x, x0_hat)`` after each step (:mod:`funcgen.samplers.base`).
    """
    if solver not in ("heun", "euler"):
        raise ValueError(f"unknown solver {solver!r}; choose heun or euler")
    if inject_alpha < 0 or (inject_alpha > 0 and noise is None):
        raise ValueError(f"need inject_alpha >= 0, and a noise sampler when it is positive; got {inject_alpha}")
    levels = decreasing_levels(sigmas, "sigmas")
    for i in steps_of(len(levels) - 1, progress):
        s0, s1 = levels[i], levels[i + 1]
        if inject_alpha > 0:
            x = x + inject_alpha * s0 * noise()
        x0 = denoise(x, s0)
        d0 = (x - x0) / s0
        x_next = x + (s1 - s0) * d0
        if solver == "heun" and s1 > 0:
            d1 = (x_next - denoise(x_next, s1)) / s1
            x_next = x + (s1 - s0) * 0.5 * (d0 + d1)
        x = apply_callback(callback, i, s1, x_next, x0)
    return x


def sigma_ode_nfe(steps: int, solver: SigmaSolver = "heun") -> int:
    """Denoiser calls of :func:`sigma_ode` over ``steps`` intervals ending at 0."""
    return 2 * steps - 1 if solver == "heun" else steps
