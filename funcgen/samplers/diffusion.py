"""Samplers of Gaussian-path diffusions in function space, from a denoiser ``x0_hat = D(x, t)``.

The forward marginal is ``x_t = alpha(t) x_0 + sigma(t) xi`` with ``xi`` the method's function-space noise: a
variance-preserving schedule (:mod:`funcgen.processes.schedules`) or any scales ``t -> (alpha, sigma)``, e.g. the
straight flow-matching path (:mod:`funcgen.samplers.path`). With ``eps_hat = (x_t - alpha_t x0_hat) / sigma_t``,
one step from ``t`` to ``s < t`` (DDIM, Song et al. 2021, eq. 12) is

    x_s = alpha_s x0_hat + sqrt(sigma_s^2 - c^2) eps_hat + c xi',
    c^2 = eta^2 (sigma_s^2 / sigma_t^2) (sigma_t^2 - (alpha_t / alpha_s)^2 sigma_s^2),

``eta = 0`` the first-order exponential integrator of the probability-flow ODE, ``eta = 1`` ancestral
sampling (``c^2`` the variance of ``q(x_s | x_t, x_0)``; for a variance-preserving schedule
``c^2 = eta^2 (sigma_s^2 / sigma_t^2) (1 - alpha_t^2 / alpha_s^2)``, eq. 16), ``xi'`` a fresh draw of the same
noise (the same ``C^(1/2)`` colouring as the forward process). DPM-Solver++(2M) (Lu et al. 2022, eq. 9 /
Alg. 2) is the second-order multistep exponential integrator of the same ODE: in ``lambda = log(alpha / sigma)``,

    x_s = (sigma_s / sigma_t) x_t - alpha_s (exp(-h) - 1) D,        h = lambda_s - lambda_t,
    D = (1 + 1 / (2 r)) x0_hat - 1 / (2 r) x0_hat_prev,              r = h_prev / h,

with ``D = x0_hat`` (the DDIM step) where no finite previous step exists. A step to ``s = 0`` returns
``x0_hat``.

**Resampling** (RePaint, Lugmayr et al. 2022, Alg. 1 with jump length 1): with ``resample = r > 1`` each step
``t -> s`` is taken ``r`` times, the state carried back from ``s`` to ``t`` between repeats by the forward
transition of the path,

    x_t = (alpha_t / alpha_s) x_s + sqrt(sigma_t^2 - (alpha_t / alpha_s)^2 sigma_s^2) xi',

``xi'`` a fresh draw of the noise (the exact transition ``q(x_t | x_s)`` for this noise). With the exact denoiser
a repeat leaves the marginal at ``t`` unchanged; with a conditional denoiser it lets the unobserved part of the
state catch up with what the observations imposed on the last step.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from ..processes.schedules import VPSchedule
from .base import Callback, ModelFn, NoiseFn, apply_callback, decreasing_levels, steps_of

__all__ = ["Scales", "as_scales", "ddim", "dpm_solver_2m", "time_grid"]

#: ``t -> (alpha(t), sigma(t))`` as Python floats (:attr:`funcgen.samplers.GaussianPath.scales`)
Scales = Callable[[float], "tuple[float, float]"]


def as_scales(schedule: VPSchedule | Scales) -> Scales:
    """A schedule's ``t -> (alpha(t), sigma(t))``; scales pass through."""
    if not isinstance(schedule, VPSchedule):
        return schedule

    def scales(t: float) -> tuple[float, float]:
        tt = torch.tensor(t, dtype=torch.float64)
        return float(schedule.alpha(tt)), float(schedule.sigma(tt))

    return scales


def time_grid(steps: int, t_start: float = 1.0) -> Tensor:
    """``steps + 1`` evenly spaced times from ``t_start`` down to 0, float64 ``[steps + 1]``."""
    if steps < 1 or not 0.0 < t_start <= 1.0:
        raise ValueError(f"need steps >= 1 and 0 < t_start <= 1; got steps={steps}, t_start={t_start}")
    return torch.linspace(t_start, 0.0, steps + 1, dtype=torch.float64)


def ddim(denoise: ModelFn, schedule: VPSchedule | Scales, x: Tensor, ts: Tensor, *, eta: float = 0.0,
         noise: NoiseFn | None = None, callback: Callback | None = None, progress: bool = False,
         resample: int = 1) -> Tensor:
    """DDIM / ancestral sampling from the state ``x`` ``[B, N, c]`` at ``ts[0]`` down the grid ``ts`` ``[K + 1]``.

    Args:
        denoise: ``D(x, t) -> x0_hat`` ``[B, N, c]``.
        schedule: the variance-preserving schedule, or the path's scales ``t -> (alpha(t), sigma(t))`` with
            ``sigma / alpha`` decreasing along ``ts`` and ``alpha > 0`` after the first level.
        x: the state at ``ts[0]`` (a draw of the noise at ``t = 1``, or a noised observation part-way).
        ts: decreasing times; a final 0 returns the last ``x0_hat``.
        eta: 0 (probability-flow ODE) to 1 (ancestral); ``noise`` is required when ``eta > 0``.
        noise: draws a fresh function-space noise sample shaped like ``x``.
        callback: ``callback(i, t, x, x0_hat)`` after each step (:mod:`funcgen.samplers.base`), after its
            last repeat.
        resample: repeats of each step (module docstring; 1 = none); ``noise`` is required when ``> 1``.
    """
    if not 0.0 <= eta <= 1.0 or (eta > 0 and noise is None):
        raise ValueError(f"need 0 <= eta <= 1, and a noise sampler when eta > 0; got eta={eta}")
    if not isinstance(resample, int) or resample < 1 or (resample > 1 and noise is None):
        raise ValueError(f"resample must be an integer >= 1, with a noise sampler when > 1; got {resample!r}")
    levels = decreasing_levels(ts, "the time grid")
    scales = as_scales(schedule)
    for i in steps_of(len(levels) - 1, progress):
        t, s = levels[i], levels[i + 1]
        if s <= 0:
            x0 = denoise(x, t)
            x = apply_callback(callback, i, s, x0, x0)
            continue
        (a_t, s_t), (a_s, s_s) = scales(t), scales(s)
        c = eta * max((s_s**2 / s_t**2) * (s_t**2 - (a_t / a_s) ** 2 * s_s**2), 0.0) ** 0.5
        for rep in range(resample):
            if rep > 0:  # back from s to t by the forward transition q(x_t | x_s)
                q = a_t / a_s
                x = q * x + max(s_t**2 - q * q * s_s**2, 0.0) ** 0.5 * noise()  # type: ignore[misc]
            x0 = denoise(x, t)
            eps = (x - a_t * x0) / s_t
            x = a_s * x0 + max(s_s**2 - c**2, 0.0) ** 0.5 * eps
            if c > 0:
                x = x + c * noise()  # type: ignore[misc]
        x = apply_callback(callback, i, s, x, x0)
    return x


def dpm_solver_2m(denoise: ModelFn, schedule: VPSchedule, x: Tensor, ts: Tensor, *,
                  callback: Callback | None = None, progress: bool = False) -> Tensor:
    """DPM-Solver++(2M) on the probability-flow ODE from ``x`` ``[B, N, c]`` at ``ts[0]`` down ``ts`` ``[K + 1]``.

    Same arguments as :func:`ddim` (deterministic: no noise). The multistep memory is reset when the
    callback replaces the state, so a conditioning step never mixes with a stale extrapolation.
    """
    levels = decreasing_levels(ts, "the time grid")
    scales = as_scales(schedule)
    prev: tuple[Tensor, float] | None = None  # (x0_hat, h) of the previous step
    for i in steps_of(len(levels) - 1, progress):
        t, s = levels[i], levels[i + 1]
        x0 = denoise(x, t)
        if s <= 0:
            x = apply_callback(callback, i, s, x0, x0)
            continue
        (a_t, s_t), (a_s, s_s) = scales(t), scales(s)
        h = math.log(a_s / s_s) - (math.log(a_t / s_t) if a_t > 0 else -math.inf)
        d = x0
        if prev is not None and math.isfinite(prev[1]) and math.isfinite(h):
            r = prev[1] / h
            d = (1.0 + 0.5 / r) * x0 - (0.5 / r) * prev[0]
        prev = (x0, h)
        eps = (x - a_t * d) / s_t
        x_new = a_s * d + s_s * eps
        x = apply_callback(callback, i, s, x_new, x0)
        if x is not x_new:
            prev = None
    return x
