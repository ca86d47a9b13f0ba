"""Variance-preserving schedules: beta(t) = -d log alpha(t)^2 / dt (finite differences), alpha^2 + sigma^2 = 1."""

import pytest
import torch

from funcgen.processes.schedules import CosineSchedule, LinearSchedule, make_schedule

F64 = torch.float64


@pytest.mark.parametrize("schedule", [CosineSchedule(), LinearSchedule(), CosineSchedule(s=0.02, t_max=0.9),
                                      LinearSchedule(beta_min=0.5, beta_max=7.0)],
                         ids=["cosine", "linear", "cosine-s0.02", "linear-0.5-7"])
def test_beta_is_minus_the_time_derivative_of_log_alpha2(schedule, gen):
    """Central differences with h = 1e-6 (error ~ h^2 |d^3 log alpha^2 / dt^3| / 6 plus rounding: measured
    relative error <= 1.1e-8 on the default cosine schedule near t = 1, 1.1e-10 on the linear one, over 2001
    times); allowed 5e-8."""
    t = torch.cat([torch.tensor([1e-4, 0.5, 1.0 - 1e-4], dtype=F64), torch.rand(20, generator=gen, dtype=F64)])
    t = t.clamp(1e-4, 1.0 - 1e-4)
    h = 1e-6
    fd = -(schedule.log_alpha2(t + h) - schedule.log_alpha2(t - h)) / (2 * h)
    beta = schedule.beta(t)
    assert (beta > 0).all()
    torch.testing.assert_close(beta, fd, rtol=5e-8, atol=0)


@pytest.mark.parametrize("name", ["cosine", "linear"])
def test_alpha_and_sigma_are_variance_preserving(name, gen):
    schedule = make_schedule(name)
    t = torch.rand(50, generator=gen, dtype=F64)
    a, s = schedule.alpha(t), schedule.sigma(t)
    torch.testing.assert_close(a * a + s * s, torch.ones_like(t), rtol=0, atol=1e-14)
    torch.testing.assert_close(schedule.log_snr(t), torch.log(a * a / (s * s)), rtol=1e-10, atol=1e-10)
    tt = torch.linspace(0, 1, 101, dtype=F64)
    assert (schedule.alpha(tt).diff() < 0).all()  # noise grows with time
    with pytest.raises(ValueError, match="unknown schedule"):
        make_schedule("quadratic")  # type: ignore[arg-type]
