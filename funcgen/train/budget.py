"""Training budgets in CPU time: a run's budget means the same work on a busy machine as on an idle one.

The project's budgets are single-thread CPU minutes. Lightning's ``max_time`` counts wall-clock time, so
a run that shares its cores with another gets fewer steps for the same "minutes". :class:`CpuTimeBudget`
counts this process's CPU time (``time.process_time``: every thread of the process, user + system) and
stops training once it reaches the budget. With one thread (``OMP_NUM_THREADS=1``) that is exactly the
single-thread CPU minutes of the protocol; with T busy threads it is T times the wall time.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import lightning as L

__all__ = ["CpuTimeBudget", "budget_fraction"]


class CpuTimeBudget(L.Callback):
    """Stop training after ``minutes`` of this process's CPU time spent in ``Trainer.fit``.

    The time counts from the start of training (validation inside ``fit`` included, as Lightning's
    ``Timer`` does) and is carried by checkpoints, so a resumed run spends only what is left.

    Args:
        minutes: the budget (>= 0; 0 stops after the first step).
        clock: seconds of CPU time; ``time.process_time`` by default (a test passes a fake clock).
    """

    def __init__(self, minutes: float, clock: Callable[[], float] = time.process_time) -> None:
        if not minutes >= 0:
            raise ValueError(f"minutes must be >= 0; got {minutes}")
        self.seconds = float(minutes) * 60.0
        self._clock = clock
        self._spent = 0.0  # CPU seconds spent before the current fit (a resumed run)
        self._start: float | None = None

    def spent(self) -> float:
        """CPU seconds spent training so far (this fit and those before a resume)."""
        running = 0.0 if self._start is None else self._clock() - self._start
        return self._spent + running

    def fraction(self) -> float:
        """The spent share of the budget, in [0, inf)."""
        return self.spent() / self.seconds if self.seconds > 0 else float("inf")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = self._clock()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._spent, self._start = self.spent(), None

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self.fraction() >= 1.0:
            trainer.should_stop = True

    def state_dict(self) -> dict[str, float]:
        return {"spent": self.spent()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._spent = float(state_dict.get("spent", 0.0))


def budget_fraction(trainer: L.Trainer) -> float | None:
    """The spent share of the trainer's time budget: its :class:`CpuTimeBudget`, else Lightning's ``Timer``
    of ``max_time`` (wall clock), else None when the run has no time budget."""
    from lightning.pytorch.callbacks import Timer

    for cb in trainer.callbacks:
        if isinstance(cb, CpuTimeBudget):
            return cb.fraction()
    for cb in trainer.callbacks:
        if isinstance(cb, Timer) and getattr(cb, "_duration", None):
            return cb.time_elapsed("train") / cb._duration
    return None
