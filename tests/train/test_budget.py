"""CPU-time budgets: training stops after the budget's CPU seconds, resumes spend only what is left, and
``prepare(minutes=...)`` counts CPU minutes unless asked for wall-clock ones."""

from __future__ import annotations

import pytest

from funcgen.train.budget import CpuTimeBudget, budget_fraction
from funcgen.train.fit import prepare
from tests.train.test_fit import BASE, REPO, TINY


class FakeClock:
    """CPU seconds that advance only when told to (a stand-in for ``time.process_time``)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_training_stops_when_the_cpu_seconds_run_out(tmp_path):
    """6 CPU seconds per step against a 1-minute budget: the run stops after exactly 10 steps, although
    max_steps allows 1000."""
    run = prepare([BASE, REPO / "configs/fdp/grf1d.yaml"], settings={**TINY, "trainer.default_root_dir": str(tmp_path)},
                  max_steps=1000, minutes=1)
    budgets = [c for c in run.trainer.callbacks if isinstance(c, CpuTimeBudget)]
    assert len(budgets) == 1 and run.trainer.max_steps == 1000
    clock = FakeClock()
    budgets[0]._clock = clock
    run.module.on_train_batch_start = lambda *a: setattr(clock, "now", clock.now + 6.0)
    run.fit()
    assert run.steps == 10
    assert budget_fraction(run.trainer) == pytest.approx(1.0)


def test_a_resumed_budget_spends_only_what_is_left():
    clock = FakeClock()
    first = CpuTimeBudget(2, clock=clock)  # 120 s
    first.on_train_start(None, None)
    clock.now += 90.0
    assert first.fraction() == pytest.approx(0.75)
    state = first.state_dict()
    second = CpuTimeBudget(2, clock=clock)
    second.load_state_dict(state)
    second.on_train_start(None, None)
    clock.now += 20.0

    class T:
        should_stop = False

    second.on_train_batch_end(T)
    assert not T.should_stop and second.spent() == pytest.approx(110.0)
    clock.now += 10.0
    second.on_train_batch_end(T)
    assert T.should_stop


def test_prepare_counts_cpu_minutes_unless_asked_for_wall_clock():
    cpu = prepare([BASE, REPO / "configs/fdp/grf1d.yaml"], settings=TINY, minutes=25)
    (budget,) = [c for c in cpu.trainer.callbacks if isinstance(c, CpuTimeBudget)]
    assert budget.seconds == 1500.0 and budget_fraction(cpu.trainer) == 0.0
    wall = prepare([BASE, REPO / "configs/fdp/grf1d.yaml"], settings=TINY, minutes=25, clock="wall")
    assert not [c for c in wall.trainer.callbacks if isinstance(c, CpuTimeBudget)]
    assert budget_fraction(wall.trainer) == 0.0  # Lightning's Timer of max_time, nothing spent yet
    with pytest.raises(ValueError, match="clock"):
        prepare([BASE, REPO / "configs/fdp/grf1d.yaml"], settings=TINY, minutes=1, clock="gpu")
    with pytest.raises(ValueError, match="minutes"):
        CpuTimeBudget(-1)
