"""The shared samplers against closed forms: Gaussian data, whose exact denoiser is linear.

For data ``x0 ~ N(0, v)`` (one value per point, independent points) and white noise, the denoiser of the
VP marginal ``x_t = alpha x0 + sigma xi`` is ``E[x0 | x_t] = alpha v / (alpha^2 v + sigma^2) x_t`` and the
probability-flow ODE maps ``x_1`` to ``x_0 = x_1 sqrt(v / (alpha_1^2 v + sigma_1^2))`` exactly. In the noise
level (EDM / PFGM++ with D = inf), ``D(x, sigma) = v / (v + sigma^2) x`` and
``x(sigma) = x(sigma_max) sqrt((v + sigma^2) / (v + sigma_max^2))``. Every sampler here is linear in its
state, so its gain on ``x = 1`` measures its discretisation error, whose order in the step count each
test asserts.
"""

from __future__ import annotations

import math

import pytest
import torch

from funcgen.processes.schedules import CosineSchedule, karras_sigmas
from funcgen.samplers import ddim, dpm_solver_2m, sigma_ode, time_grid

V = 0.25  # data variance


def vp_denoiser(schedule):
    def denoise(x, t):
        tt = torch.tensor(t, dtype=torch.float64)
        a, s = float(schedule.alpha(tt)), float(schedule.sigma(tt))
        return a * V / (a * a * V + s * s) * x
    return denoise


def vp_exact_gain(schedule, t_start: float, t_end: float) -> float:
    """``x_end / x_start`` along the exact probability-flow ODE: the marginal std ratio."""
    def std(t):
        t = torch.tensor(t, dtype=torch.float64)
        a, s = float(schedule.alpha(t)), float(schedule.sigma(t))
        return math.sqrt(a * a * V + s * s)
    return std(t_end) / std(t_start)


@pytest.mark.parametrize("solver,order", [("ddim", 1), ("dpm2m", 2)])
def test_vp_samplers_converge_to_the_exact_flow_at_their_order(solver, order):
    sched = CosineSchedule()
    # part-way grids (as from a noised observation), ending at t = 0.05: the step to t = 0 returns x0_hat,
    # a first-order step of the cosine schedule (sigma^2 ~ t there) that would mask the solvers' order
    exact = vp_exact_gain(sched, 0.9, 0.05)

    def run(steps):
        x = torch.ones(1, 1, 1, dtype=torch.float64)
        ts = torch.linspace(0.9, 0.05, steps + 1, dtype=torch.float64)
        if solver == "ddim":
            return float(ddim(vp_denoiser(sched), sched, x, ts))
        return float(dpm_solver_2m(vp_denoiser(sched), sched, x, ts))

    errs = [abs(run(k) - exact) for k in (40, 80, 160)]
    ratios = [errs[0] / errs[1], errs[1] / errs[2]]
    assert all(abs(math.log2(r) - order) < 0.3 for r in ratios), (errs, ratios)
    assert errs[-1] < 1e-2 * exact


def flow_path_variance(steps: int, eta: float) -> float:
    """Variance of DDIM's output on flow matching's straight path (``alpha = t``, ``sigma = 1 - (1 - 1e-4) t``, run in
    ``u = 1 - t``), from a unit-variance start, with the exact denoiser of ``N(0, V)`` data. The sampler is linear
    in its start and its noise draws, so the state is kept as coefficients over them (``noise()`` returns the next
    unit vector) and the output variance is the coefficients' squared norm: exact, no Monte Carlo."""
    k = 1.0 - 1e-4

    def scales(u):
        return 1.0 - u, 1.0 - k * (1.0 - u)

    x = torch.zeros(1, steps + 2, 1, dtype=torch.float64)
    x[0, 0, 0] = 1.0
    drawn = [0]

    def noise():
        drawn[0] += 1
        e = torch.zeros_like(x)
        e[0, drawn[0], 0] = 1.0
        return e

    def denoise(x, u):
        a, s = scales(u)
        return a * V / (a * a * V + s * s) * x

    out = ddim(denoise, scales, x, torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64), eta=eta, noise=noise)
    return float((out**2).sum())


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_on_a_non_variance_preserving_path_converges_to_the_data_variance(eta):
    """Deterministic and ancestral DDIM on the flow-matching path reach the data variance at first order. The
    ancestral noise must be the variance of ``q(x_s | x_t, x_0)`` for this path: the variance-preserving formula
    ``(sigma_s^2 / sigma_t^2)(1 - alpha_t^2 / alpha_s^2)`` in its place has no order (errors 2.8e-3, 5e-5, 5.7e-4
    at 100 / 200 / 400 steps: its limit is another variance, crossed on the way)."""
    errs = [abs(flow_path_variance(k, eta) - V) for k in (100, 200, 400)]
    ratios = [errs[0] / errs[1], errs[1] / errs[2]]
    assert all(abs(math.log2(r) - 1.0) < 0.2 for r in ratios), (errs, ratios)
    assert errs[-1] < 0.03 * V


def test_heun_in_sigma_converges_at_second_order_and_euler_at_first():
    smax = 20.0

    def denoise(x, sigma):
        return V / (V + sigma * sigma) * x

    def gain(steps, solver):
        sig = karras_sigmas(steps, 0.05, smax)[:-1]  # stop at sigma_min (the flow is smooth there)
        return float(sigma_ode(denoise, torch.ones(1, dtype=torch.float64), sig, solver=solver))

    exact = math.sqrt((V + 0.05**2) / (V + smax**2))
    for solver, order in (("euler", 1), ("heun", 2)):
        errs = [abs(gain(k, solver) - exact) for k in (20, 40, 80)]
        ratios = [errs[0] / errs[1], errs[1] / errs[2]]
        assert all(abs(math.log2(r) - order) < 0.35 for r in ratios), (solver, errs, ratios)


def test_callback_sees_every_step_and_its_return_replaces_the_state():
    sched = CosineSchedule()
    seen = []

    def callback(i, t, x, x0):
        seen.append((i, t))
        return torch.full_like(x, 7.0) if i == 1 else None

    ts = time_grid(4)
    x = torch.ones(2, 3, 1, dtype=torch.float64)
    calls = []

    def denoise(x, t):
        calls.append(x.clone())
        return torch.zeros_like(x)

    ddim(denoise, sched, x, ts, callback=callback)
    assert [i for i, _ in seen] == [0, 1, 2, 3] and [t for _, t in seen] == [float(t) for t in ts[1:]]
    assert torch.equal(calls[2], torch.full_like(x, 7.0))  # step 2 starts from the replaced state
    with pytest.raises(ValueError, match="callback returned shape"):
        ddim(denoise, sched, x, ts, callback=lambda i, t, x, x0: x[:1])


def test_ancestral_ddim_needs_noise_and_uses_it():
    sched = CosineSchedule()
    x = torch.zeros(1, 4, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match="noise sampler"):
        ddim(lambda x, t: x, sched, x, time_grid(3), eta=1.0)
    draws = []

    def noise():
        draws.append(1)
        return torch.ones_like(x)

    out = ddim(lambda x, t: torch.zeros_like(x), sched, x, time_grid(3), eta=1.0, noise=noise)
    assert len(draws) == 2  # every step but the last one (to t = 0, which returns x0_hat)
    assert torch.equal(out, torch.zeros_like(x))


def test_grids_are_checked():
    with pytest.raises(ValueError, match="decrease"):
        ddim(lambda x, t: x, CosineSchedule(), torch.zeros(1), torch.tensor([0.5, 0.7]))
    with pytest.raises(ValueError, match="t_start"):
        time_grid(4, t_start=1.5)
