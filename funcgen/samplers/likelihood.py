"""Log densities of functions by the probability-flow ODE of a Gaussian path (Song et al. 2021, sec. 4.3).

For ``dx / dr = u(x, r)`` the log density changes along a solution by ``d log p_r(x_r) / dr = -div u``, so

    log p_data(x) = log p_prior(x_end) + int_{r_data}^{r_prior} div u(x_r, r) dr.

:func:`ode_log_likelihood` integrates the state and the divergence integral together with Heun's scheme
(the trapezoidal rule for the integral). The divergence is exact (``N c`` vector-Jacobian products, one
per entry, batched over functions) or Hutchinson's estimate ``E[z^T J z]`` with ``probes`` Gaussian probes
per evaluation (unbiased; its error averages out over steps and probes).

:func:`path_log_likelihood` applies it to a method's :class:`~funcgen.samplers.path.GaussianPath` in the
variance-exploding form ``y = x / a = x_data + rho xi`` (``dy/drho = (y - D(a y, t(rho))) / rho``, smooth on
EDM's rho-grid, whatever the method's own time variable):

    log p_{t_data}(x) = log p_xi(y_end / rho_max) - n log rho_max + int div - n log a(t_data),   n = N c,

the prior taken as ``rho_max xi`` (the data's share ``x_data / rho_max`` of the prior draw is neglected, as
the sampler's prior draw neglects it) and ``log p_xi`` the noise's exact log density at the points
(:meth:`funcgen.processes.noise.FunctionNoise.log_prob`).
"""

from __future__ import annotations

import math
from typing import Callable, Literal

import torch
from torch import Tensor

from ..rng import randn
from .base import ModelFn, steps_of
from .path import GaussianPath

__all__ = ["divergence", "ode_log_likelihood", "path_log_likelihood", "rho_grid", "DivergenceMode"]

DivergenceMode = Literal["auto", "exact", "hutchinson"]


def divergence(fn: Callable[[Tensor], Tensor], x: Tensor, exact: bool, probes: int = 4,
               generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """``(u, div u)``: ``u = fn(x)`` ``[B, N, c]`` (detached) and its divergence ``[B]`` (float64) in ``x``.

    Functions of the batch must not interact (each function's output depends on its own input only).
    Exact: one backward pass per entry ``(i, k)`` of a function (``N c`` of them). Hutchinson: the mean of
    ``z^T J z`` over ``probes`` Gaussian probes ``z`` ``[B, N, c]`` (one backward pass each).
    """
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        u = fn(xg)
        b, n, c = x.shape
        total = torch.zeros(b, dtype=torch.float64, device=x.device)
        if exact:
            count = n * c
            for e in range(count):
                i, k = divmod(e, c)
                (g,) = torch.autograd.grad(u[:, i, k].sum(), xg, retain_graph=e < count - 1)
                total = total + g[:, i, k].double()
        else:
            for p in range(probes):
                z = randn(tuple(x.shape), generator, device=x.device, dtype=x.dtype)
                (g,) = torch.autograd.grad(u, xg, z, retain_graph=p < probes - 1)
                total = total + (g * z).sum(dim=(1, 2)).double() / probes
    return u.detach(), total


def ode_log_likelihood(velocity: ModelFn, x: Tensor, grid: Tensor, *, exact: bool, probes: int = 4,
                       generator: torch.Generator | None = None, progress: bool = False) -> tuple[Tensor, Tensor]:
    """Follow ``dx/dr = velocity(x, r)`` from ``x`` ``[B, N, c]`` over ``grid`` ``[K + 1]`` (data end to prior end)
    with Heun's scheme -> ``(x_end, int div dr)`` (``[B, N, c]``, ``[B]`` float64)."""
    levels = [float(r) for r in grid]
    delta = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    u0, d0 = divergence(lambda z: velocity(z, levels[0]), x, exact, probes, generator)
    for i in steps_of(len(levels) - 1, progress, desc="likelihood"):
        h = levels[i + 1] - levels[i]
        pred = x + h * u0
        u1, d1 = divergence(lambda z: velocity(z, levels[i + 1]), pred, exact, probes, generator)
        x = x + 0.5 * h * (u0 + u1)
        delta = delta + 0.5 * h * (d0 + d1)
        if i + 2 < len(levels):
            u0, d0 = divergence(lambda z: velocity(z, levels[i + 1]), x, exact, probes, generator)
    return x, delta


def rho_grid(steps: int, rho_min: float, rho_max: float, exponent: float = 7.0) -> Tensor:
    """``steps + 1`` increasing levels from ``rho_min`` to ``rho_max`` spaced as EDM's grid (Karras et al. 2022,
    eq. 5, reversed), float64."""
    if steps < 1 or not 0 < rho_min < rho_max:
        raise ValueError(f"need steps >= 1 and 0 < rho_min < rho_max; got {steps}, {rho_min}, {rho_max}")
    i = torch.arange(steps + 1, dtype=torch.float64) / steps
    lo, hi = rho_min ** (1.0 / exponent), rho_max ** (1.0 / exponent)
    return (lo + i * (hi - lo)) ** exponent


def path_log_likelihood(denoise: ModelFn, path: GaussianPath, values: Tensor, coords: Tensor, *, steps: int = 100,
                        divergence_mode: DivergenceMode = "auto", probes: int = 4, exact_limit: int = 64,
                        generator: torch.Generator | None = None, progress: bool = False) -> Tensor:
    """``log p(values)`` ``[B]`` (nats, float64) of functions ``values`` ``[B, N, c]`` at ``coords`` ``[B, N, d]``
    under the model's marginal at the path's data level ``t_data``.

    Args:
        denoise: ``D(x, t) -> E[x_data | x_t = x]`` at these coordinates.
        path: the method's Gaussian path.
        steps: Heun steps on the rho-grid (``2 steps`` velocity evaluations).
        divergence_mode: ``exact``, ``hutchinson`` or ``auto`` (exact when ``N c <= exact_limit``).
        probes: Hutchinson probes per velocity evaluation.
    """
    if divergence_mode not in ("auto", "exact", "hutchinson"):
        raise ValueError(f"unknown divergence {divergence_mode!r}; choose auto, exact or hutchinson")
    n = values.shape[1] * values.shape[2]
    exact = divergence_mode == "exact" or (divergence_mode == "auto" and n <= exact_limit)
    a0, _ = path.scales(path.t_data)
    r_min, r_max = path.rho(path.t_data), path.rho(path.t_prior)
    if not 0 < r_min < r_max < float("inf"):
        raise ValueError(f"the path's noise-to-signal ratio must grow from the data end to the prior end and stay "
                         f"finite; got rho = {r_min} .. {r_max}")
    grid = rho_grid(steps, r_min, r_max)
    levels = {float(r): path.level(float(r)) for r in grid}  # Heun evaluates on the grid only
    levels[float(grid[0])], levels[float(grid[-1])] = path.t_data, path.t_prior
    alphas = {r: path.scales(t)[0] for r, t in levels.items()}

    def velocity(y: Tensor, rho: float) -> Tensor:
        return (y - denoise(alphas[rho] * y, levels[rho])) / rho

    y = values / a0
    y_end, delta = ode_log_likelihood(velocity, y, grid, exact=exact, probes=probes, generator=generator,
                                      progress=progress)
    prior = path.noise.log_prob(y_end / r_max, coords) - n * math.log(r_max)
    return prior + delta - n * math.log(a0)
