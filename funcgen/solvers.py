"""Time steppers shared by the methods (no method-specific logic here)."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

__all__ = ["euler_maruyama", "exp_euler_maruyama"]


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
