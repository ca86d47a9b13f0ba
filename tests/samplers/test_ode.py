"""flow_ode: convergence order of each solver on an ODE with a known solution, and the callback contract."""

import math
from itertools import pairwise

import numpy as np
import pytest
import torch

from funcgen.samplers import flow_ode


def velocity(x: torch.Tensor, t: float) -> torch.Tensor:
    """dx/dt = x cos(t) + t: linear, time-dependent (so a solver that gets the stage times wrong loses order)."""
    return x * math.cos(t) + t


def exact(x0: torch.Tensor, t0: float, t1: float) -> torch.Tensor:
    """x(t1) = e^{sin t1} (e^{-sin t0} x0 + int_{t0}^{t1} s e^{-sin s} ds), the integral by Gauss-Legendre."""
    nodes, weights = (torch.tensor(a, dtype=torch.float64) for a in np.polynomial.legendre.leggauss(60))
    s = 0.5 * (t1 - t0) * nodes + 0.5 * (t1 + t0)
    integral = 0.5 * (t1 - t0) * (weights * s * torch.exp(-torch.sin(s))).sum()
    return math.exp(math.sin(t1)) * (math.exp(-math.sin(t0)) * x0 + integral)


@pytest.mark.parametrize("t0,t1", [(0.0, 1.5), (1.5, 0.0)])
@pytest.mark.parametrize("solver,order", [("euler", 1), ("heun", 2), ("midpoint", 2)])
def test_convergence_order(solver, order, t0, t1, gen):
    """Halving the step divides the global error by about 2^order, forwards and backwards in time."""
    x0 = torch.randn(3, 5, 2, generator=gen, dtype=torch.float64)
    ref = exact(x0, t0, t1)

    def err(k: int) -> float:
        return float((flow_ode(velocity, x0, torch.linspace(t0, t1, k + 1), solver=solver) - ref).abs().max())

    e = [err(k) for k in (20, 40, 80)]
    for coarse, fine in pairwise(e):
        assert 0.92 * 2**order < coarse / fine < 1.08 * 2**order, (solver, e)


def test_callback_sees_each_step_and_its_return_replaces_the_state(gen):
    x0 = torch.randn(2, 7, 1, generator=gen, dtype=torch.float64)
    ts = torch.linspace(0.0, 1.0, 6)
    seen: list[tuple[int, float]] = []

    def record(i, t, x, x0_hat):
        seen.append((i, t))  # returns None: keeps the state

    plain = flow_ode(velocity, x0, ts)
    assert torch.equal(flow_ode(velocity, x0, ts, callback=record), plain)
    assert seen == [(i, float(t)) for i, t in enumerate(ts[1:])]
    # every solver's map from the state after step 2 to the end is affine, x_end = A x_2 + b: replacing x_2 by
    # 0 gives b, by 2 x_2 gives 2 A x_2 + b, so the replaced runs differ from the plain one in a known way
    doubled = flow_ode(velocity, x0, ts, callback=lambda i, t, x, x0_hat: 2 * x if i == 2 else None)
    zeroed = flow_ode(velocity, x0, ts, callback=lambda i, t, x, x0_hat: torch.zeros_like(x) if i == 2 else None)
    assert torch.allclose(doubled - zeroed, 2 * (plain - zeroed), atol=1e-12)
    assert not torch.allclose(doubled, plain)
    with pytest.raises(ValueError, match="shape"):
        flow_ode(velocity, x0, ts, callback=lambda i, t, x, x0_hat: x[:1])


@pytest.mark.parametrize("solver", ["euler", "heun", "midpoint"])
def test_x0_hat_is_the_extrapolated_end_point(solver, gen):
    """For a constant velocity every step's extrapolation x + (ts[-1] - t) v is the exact end point; for a
    time-dependent one it is x_i + (ts[-1] - t_i) (x_{i+1} - x_i) / h."""
    x0 = torch.randn(2, 4, 1, generator=gen, dtype=torch.float64)
    c = torch.randn(2, 4, 1, generator=gen, dtype=torch.float64)
    hats: list[torch.Tensor] = []
    out = flow_ode(lambda x, t: c, x0, torch.linspace(0.2, 0.9, 5), solver=solver,
                   callback=lambda i, t, x, x0_hat: hats.append(x0_hat))
    assert torch.allclose(out, x0 + 0.7 * c, atol=1e-12)
    assert all(torch.allclose(h, out, atol=1e-12) for h in hats)
    states, hats = [x0], []

    def keep(i, t, x, x0_hat):
        states.append(x)
        hats.append(x0_hat)

    ts = torch.linspace(1.0, 0.0, 4, dtype=torch.float64)
    flow_ode(velocity, x0, ts, solver=solver, callback=keep)
    for i, hat in enumerate(hats):
        h = float(ts[i + 1] - ts[i])
        assert torch.allclose(hat, states[i] + (0.0 - float(ts[i])) * (states[i + 1] - states[i]) / h, atol=1e-12)


def test_invalid_arguments():
    x = torch.zeros(1, 3, 1)
    with pytest.raises(ValueError, match="solver"):
        flow_ode(velocity, x, torch.linspace(0, 1, 3), solver="rk4")  # type: ignore[arg-type]
    for bad in (torch.tensor([0.0]), torch.tensor([0.0, 0.5, 0.5, 1.0]), torch.tensor([0.0, 0.6, 0.3]),
                torch.zeros(2, 2)):
        with pytest.raises(ValueError, match="monotone"):
            flow_ode(velocity, x, bad)
