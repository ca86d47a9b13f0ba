"""Time steppers shared by the methods (no method-specific logic here)."""

from __future__ import annotations

from typing import Callable, Literal

import torch
from torch import Tensor

__all__ = ["euler_maruyama", "exp_euler_maruyama", "sigma_ode"]


def euler_maruyama(x: Tensor, ts: Tensor, drift: Callable[[Tensor, Tensor], Tensor],
                   diffusion: Callable[[Tensor], Tensor], increment: Callable[[], Tensor]) -> Tensor:
    """Integrate ``dx = f(x, t) dt + g(t) dW`` over the grid ``ts`` (increasing or decreasing).

    Args:
        x: initial state ``[...]``.
        ts: ``[K + 1]`` times.
        drift: ``f(x, t)`` with ``t`` a 0-d tensor.
        diffusion: ``g(t)`` (scalar tensor).
        increment: draws a standard increment ``dW / sqrt(|dt|)`` shaped like ``x`` (white or coloured).

    Returns:
        the state at ``ts[-1]``.
    """
    for t0, t1 in zip(ts[:-1], ts[1:]):
        dt = t1 - t0
        x = x + drift(x, t0) * dt + diffusion(t0) * dt.abs().sqrt() * increment()
    return x


def sigma_ode(denoise: Callable[[Tensor, float], Tensor], x: Tensor, sigmas: Tensor, *,
              solver: Literal["heun", "euler"] = "heun",
              inject: Callable[[Tensor, float], Tensor] | None = None,
              progress: Callable[[range], range] | None = None) -> Tensor:
    """Integrate the denoiser ODE ``dx/dsigma = (x - D(x, sigma)) / sigma`` down a grid of noise levels.

    This is the probability-flow ODE of EDM (Karras et al. 2022, eq. 4 with ``s = 1``) and, with the
    alignment ``r = sigma sqrt(D)``, the PFGM++ ODE ``dx/dr = (x - E[y | x]) / r`` (Xu et al. 2023).
    The contract is k-diffusion's: the stepper only sees ``denoise(x, sigma) -> x0_hat``.

    Args:
        denoise: ``D(x, sigma)``, ``x`` shaped like the state, ``sigma`` a python float.
        x: the state at ``sigmas[0]``.
        sigmas: ``[K + 1]`` decreasing noise levels; the last may be 0 (then the last step is Euler,
            as a Heun corrector would divide by 0).
        solver: ``heun`` (2nd order, ``2K - 1`` evaluations when ``sigmas[-1] = 0``) or ``euler``.
        inject: optional ``inject(x, sigma) -> x`` applied before each step (e.g. the noise-injection
            robustness study ``x + alpha sigma eps``); None = deterministic.
        progress: optional wrapper of the step range (e.g. ``tqdm``).

    Returns:
        the state at ``sigmas[-1]``.
    """
    if solver not in ("heun", "euler"):
        raise ValueError(f"unknown solver {solver!r}; choose heun or euler")
    levels = [float(s) for s in sigmas]
    if len(levels) < 2 or any(b >= a for a, b in zip(levels[:-1], levels[1:])) or levels[-1] < 0:
        raise ValueError(f"sigmas must be a decreasing grid of >= 2 non-negative levels; got {levels}")
    steps = range(len(levels) - 1)
    for i in (progress(steps) if progress is not None else steps):
        s0, s1 = levels[i], levels[i + 1]
        if inject is not None:
            x = inject(x, s0)
        d0 = (x - denoise(x, s0)) / s0
        x_next = x + (s1 - s0) * d0
        if solver == "heun" and s1 > 0:
            d1 = (x_next - denoise(x_next, s1)) / s1
            x_next = x + (s1 - s0) * 0.5 * (d0 + d1)
        x = x_next
    return x


def exp_euler_maruyama(x: Tensor, ts: Tensor, drift: Callable[[Tensor, Tensor], Tensor],
                       diffusion: Callable[[Tensor], Tensor] | None, exp: Callable[[Tensor, Tensor], Tensor],
                       tangent_noise: Callable[[Tensor], Tensor] | None = None,
                       callback: Callable[[int, Tensor], None] | None = None) -> Tensor:
    """Exponential-map Euler(-Maruyama) on a manifold (geodesic random walk; Lou et al. 2023, sec. 4).

    ``x_{k+1} = exp_{x_k}(f(x_k, t_k) dt + g(t_k) sqrt(|dt|) xi_k)`` with ``dt = t_{k+1} - t_k`` (signed) and
    ``xi_k`` a standard Gaussian tangent vector at ``x_k``. With ``diffusion=None`` it is the
    exponential-map Euler scheme of the ODE ``dx/dt = f(x, t)``.

    Args:
        x: initial points ``[..., D]`` on the manifold.
        ts: ``[K + 1]`` times (increasing or decreasing).
        drift: ``f(x, t)`` -> tangent vectors ``[..., D]`` at ``x`` (``t`` a 0-d tensor).
        diffusion: ``g(t)`` (scalar tensor) or None for an ODE.
        exp: the manifold's exponential map ``exp(x, v)``.
        tangent_noise: draws ``xi`` at ``x`` (needed when ``diffusion`` is given).
        callback: called as ``callback(k, x_k)`` before step ``k``.

    Returns:
        the points at ``ts[-1]``.
    """
    if diffusion is not None and tangent_noise is None:
        raise ValueError("exp_euler_maruyama needs tangent_noise when a diffusion coefficient is given")
    for k, (t0, t1) in enumerate(zip(ts[:-1], ts[1:])):
        if callback is not None:
            callback(k, x)
        dt = t1 - t0
        v = drift(x, t0) * dt
        if diffusion is not None:
            v = v + diffusion(t0) * dt.abs().sqrt() * tangent_noise(x)
        x = exp(x, v)
    return x
