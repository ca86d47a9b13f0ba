"""Euler-Maruyama for SDEs in Euclidean space (a reference integrator; the diffusion samplers in
:mod:`funcgen.samplers.diffusion` integrate the same processes exactly in their Gaussian part)."""

from __future__ import annotations

from typing import Callable

from torch import Tensor

__all__ = ["euler_maruyama"]


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
