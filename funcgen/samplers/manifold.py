"""Samplers on manifolds: the exponential-map Euler(-Maruyama) scheme and the probability-flow ODE likelihood.

Geodesic random walk (Lou et al. 2023, sec. 4): ``x_{k+1} = exp_{x_k}(f(x_k, t_k) dt + g(t_k) sqrt(|dt|) xi_k)``
with ``dt = t_{k+1} - t_k`` (signed) and ``xi_k`` a standard Gaussian tangent vector at ``x_k``; without a
diffusion coefficient it is the exponential-map Euler scheme of the ODE ``dx/dt = f(x, t)``.

Likelihood along the probability-flow ODE ``dx/dt = v(x, t)`` from data (``t = 0``) to the prior:
``log p_0(x_0) = log p_1(x_1) + int_0^1 div_M v(x_t, t) dt``, integrated with Heun's scheme on the manifold
(an exponential-map Euler predictor, the velocity there projected back to the current tangent space, the
trapezoidal average for both the step and the divergence integral).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .base import Callback, apply_callback, steps_of

__all__ = ["exp_euler_maruyama", "manifold_ode_likelihood"]


def exp_euler_maruyama(x: Tensor, ts: Tensor, drift: Callable[[Tensor, Tensor], Tensor],
                       diffusion: Callable[[Tensor], Tensor] | None, exp: Callable[[Tensor, Tensor], Tensor],
                       tangent_noise: Callable[[Tensor], Tensor] | None = None, *,
                       callback: Callback | None = None, progress: bool = False) -> Tensor:
    """Integrate from the points ``x`` ``[..., D]`` at ``ts[0]`` over the times ``ts`` ``[K + 1]``.

    Args:
        x: initial points on the manifold.
        ts: times (increasing or decreasing).
        drift: ``f(x, t)`` -> tangent vectors ``[..., D]`` at ``x`` (``t`` a 0-d tensor).
        diffusion: ``g(t)`` (scalar tensor) or None for an ODE.
        exp: the manifold's exponential map ``exp(x, v)``.
        tangent_noise: draws ``xi`` at ``x`` (needed when ``diffusion`` is given).
        callback: ``callback(i, t, x, x)`` after each step (:mod:`funcgen.samplers.base`; the state is its
            own estimate here).
    """
    if diffusion is not None and tangent_noise is None:
        raise ValueError("exp_euler_maruyama needs tangent_noise when a diffusion coefficient is given")
    for k in steps_of(len(ts) - 1, progress):
        t0, t1 = ts[k], ts[k + 1]
        dt = t1 - t0
        v = drift(x, t0) * dt
        if diffusion is not None:
            v = v + diffusion(t0) * dt.abs().sqrt() * tangent_noise(x)
        x = exp(x, v)
        x = apply_callback(callback, k, float(t1), x, x)
    return x


def manifold_ode_likelihood(field: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]], x: Tensor, ts: Tensor,
                            exp: Callable[[Tensor, Tensor], Tensor], proj: Callable[[Tensor, Tensor], Tensor], *,
                            progress: bool = False) -> tuple[Tensor, Tensor]:
    """Follow the probability-flow ODE from ``x`` ``[M, ..., D]`` over ``ts`` ``[K + 1]`` (data to prior).

    Args:
        field: ``(x, t) -> (v, div)``: the velocity ``[M, ..., D]`` (tangent at ``x``) and its Riemannian
            divergence ``[M]`` (float64).
        x: the data points.
        ts: increasing times from the data end to the prior end.
        exp, proj: the manifold's exponential map and tangent projection.

    Returns:
        ``(x_end, delta)``: the points at ``ts[-1]`` and ``int div v dt`` ``[M]`` (float64), so that
        ``log p(x) = log p_prior(x_end) + delta``.
    """
    delta = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    v0, d0 = field(x, ts[0])
    steps = len(ts) - 1
    for k in steps_of(steps, progress, desc="likelihood"):
        dt = float(ts[k + 1] - ts[k])
        pred = exp(x, v0 * dt)
        v1, d1 = field(pred, ts[k + 1])
        x = exp(x, 0.5 * (v0 + proj(x, v1)) * dt)
        delta = delta + 0.5 * (d0 + d1) * dt
        v0, d0 = field(x, ts[k + 1]) if k + 1 < steps else (v1, d1)
    return x, delta
