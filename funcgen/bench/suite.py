"""``funcgen bench all [--quick]``: every task x applicable method of :data:`funcgen.bench.METHODS`.

A quick pass (``--quick``) is a smoke test of the whole benchmark pipeline: each pair trains for a
handful of steps and evaluates with tiny sizes (:attr:`funcgen.bench.run.Task.quick`), so every config,
datamodule, sampler and metric of every task runs in a few minutes on a CPU. Its numbers mean
nothing; its records carry ``"quick": true`` and ``scripts/make_benchmarks_md.py`` leaves them out.

One JSON record per pair goes to ``OUT_DIR/TASK_METHOD.json`` (the :func:`funcgen.bench.run.run_bench`
record plus ``"status": "ok"``, or ``"status": "failed"`` and the error), and a summary table is printed.
"""

from __future__ import annotations

import json
import math
import time
import traceback
from pathlib import Path
from typing import Any, Sequence

from .run import METHODS, TASKS, run_bench

__all__ = ["pairs", "run_all", "summary_table"]


def pairs(tasks: Sequence[str] | None = None, method: str | None = None) -> list[tuple[str, str]]:
    """``(task, method)`` pairs of :data:`METHODS`, in table order; optionally only ``tasks`` / ``method``."""
    unknown = [t for t in (tasks or ()) if t not in METHODS]
    if unknown:
        raise ValueError(f"unknown task(s) {', '.join(unknown)}; tasks with methods: {', '.join(METHODS)}")
    chosen = [(t, m) for t, methods in METHODS.items() for m in methods
              if (tasks is None or t in tasks) and (method is None or m == method)]
    if not chosen:
        raise ValueError(f"no benchmark pair matches tasks={list(tasks) if tasks else 'all'}, method={method!r}")
    return chosen


def run_all(out_dir: str | Path = "runs/bench_quick", *, quick: bool = True, seed: int = 0,
            tasks: Sequence[str] | None = None, method: str | None = None, max_steps: int | None = None,
            minutes: float | None = None, log: Any = print) -> list[dict[str, Any]]:
    """Run every selected pair (see :func:`pairs`), writing ``out_dir/TASK_METHOD.json`` for each.

    A failing pair does not stop the pass: its record holds ``status: failed`` and the error.
    Returns the records in pair order.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    missing = sorted(set(TASKS) - set(METHODS))
    if missing:
        log(f"note: tasks without a METHODS entry are not run: {', '.join(missing)}")
    todo = pairs(tasks, method)
    records = []
    for i, (task, meth) in enumerate(todo, 1):
        log(f"[{i}/{len(todo)}] bench {task} --method {meth}{' --quick' if quick else ''}")
        t0 = time.time()
        try:
            rec = run_bench(task, meth, seed=seed, quick=quick, max_steps=max_steps, minutes=minutes)
            rec["status"] = "ok"
        except Exception as e:  # a smoke pass reports every broken pair instead of stopping at the first
            rec = {"task": task, "method": meth, "seed": seed, "status": "failed",
                   "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(limit=8)}
            if quick:
                rec["quick"] = True
        rec["wall_seconds"] = round(time.time() - t0, 1)
        path = out / f"{task}_{meth}.json"
        path.write_text(json.dumps(rec, indent=2))
        rec["_file"] = path.as_posix()
        records.append(rec)
    log(summary_table(records))
    return records


def _headline(rec: dict[str, Any]) -> str:
    """The record's first metric as ``key=value`` (or its error)."""
    if rec.get("status") != "ok":
        return rec.get("error", "")[:80]
    for key, val in rec.get("metrics", {}).items():
        return f"{key}={val:.4g}" if isinstance(val, float) and math.isfinite(val) else f"{key}={val}"
    return "(no metrics)"


def summary_table(records: Sequence[dict[str, Any]]) -> str:
    """A markdown table: task, method, status, train steps, train / sample seconds, first metric, file."""
    lines = ["| task | method | status | train steps | train s | sample s | wall s | first metric | file |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in records:
        lines.append(f"| {r['task']} | {r['method']} | {r.get('status', '')} | {r.get('train_steps', '')} | "
                     f"{r.get('train_seconds', '')} | {r.get('sample_seconds', '')} | {r.get('wall_seconds', '')} | "
                     f"{_headline(r)} | {r.get('_file', '')} |")
    ok = sum(r.get("status") == "ok" for r in records)
    return "\n".join(lines) + f"\n\n{ok}/{len(records)} pairs ran"
