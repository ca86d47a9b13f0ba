"""Benchmarks (docs/protocol.md): tasks, their evaluation, the smoke suite and cost studies.

Training goes through :func:`funcgen.train.fit`; nothing here builds command-line strings.
"""

from .run import METHODS, QUICK_MAX_STEPS, TASKS, Task, run_bench

__all__ = ["run_bench", "TASKS", "Task", "METHODS", "QUICK_MAX_STEPS"]
