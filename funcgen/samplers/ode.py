"""Deterministic ODE sampler for flows: integrate ``dx/dt = v(x, t)`` over a grid of times."""

from __future__ import annotations

from itertools import pairwise
from typing import Literal

from torch import Tensor

from .base import Callback, ModelFn, apply_callback, steps_of

__all__ = ["ODESolver", "flow_ode"]

ODESolver = Literal["euler", "heun", "midpoint"]


def flow_ode(velocity: ModelFn, x: Tensor, ts: Tensor, *, solver: ODESolver = "heun",
             callback: Callback | None = None, progress: bool = False) -> Tensor:
    """Integrate ``dx/dt = v(x, t)`` from ``ts[0]`` to ``ts[-1]`` (increasing or decreasing grid).

    With ``h = t_{i+1} - t_i`` (signed), one step is ``x_{i+1} = x_i + h v_i`` with

        euler:    v_i = v(x_i, t_i)                                            (order 1, 1 evaluation)
        heun:     v_i = (v(x_i, t_i) + v(x_i + h v(x_i, t_i), t_{i+1})) / 2    (order 2, 2 evaluations)
        midpoint: v_i = v(x_i + h/2 v(x_i, t_i), t_i + h/2)                    (order 2, 2 evaluations)

    After step ``i`` the callback gets the new state at ``t_{i+1}`` and, as ``x0_hat``, the end point
    extrapolated along the step's velocity: ``x_i + (ts[-1] - t_i) v_i = x_{i+1} + (ts[-1] - t_{i+1}) v_i``
    (for a straight-path flow, the predicted sample); a tensor it returns replaces the state.

    Args:
        velocity: ``v(x [B, N, c], t: float) -> [B, N, c]``.
        x: the state ``[B, N, c]`` at ``ts[0]``.
        ts: ``[K + 1]`` strictly monotone times.
        solver: ``euler``, ``heun`` or ``midpoint``.
        callback: optional ``callback(i, t_{i+1}, x_{i+1}, x0_hat) -> x or None``.
        progress: show a progress bar over the ``K`` steps.

    Returns:
        the state ``[B, N, c]`` at ``ts[-1]``.
    """
    if solver not in ("euler", "heun", "midpoint"):
        raise ValueError(f"unknown solver {solver!r}; choose euler, heun or midpoint")
    grid = [float(t) for t in ts.reshape(-1)]
    steps = [b - a for a, b in pairwise(grid)]
    if ts.ndim != 1 or not steps or not (all(h > 0 for h in steps) or all(h < 0 for h in steps)):
        raise ValueError(f"ts must be a strictly monotone 1-D grid of >= 2 times; got {grid}")
    end = grid[-1]
    for i in steps_of(len(steps), progress):
        t, h = grid[i], steps[i]
        v = velocity(x, t)
        if solver == "heun":
            v = 0.5 * (v + velocity(x + h * v, grid[i + 1]))
        elif solver == "midpoint":
            v = velocity(x + 0.5 * h * v, t + 0.5 * h)
        x0_hat = x + (end - t) * v
        x = apply_callback(callback, i, grid[i + 1], x + h * v, x0_hat)
    return x
