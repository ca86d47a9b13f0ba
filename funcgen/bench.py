"""``funcgen bench TASK --method M``: train within the task's CPU budget, evaluate, write JSON.

Protocol and JSON format: ../shared/BENCHMARKS.md. Tasks are registered in :data:`TASKS` (an
explicit table, no name look-ups in globals). Each task names its default config
``configs/METHOD/TASK.yaml``, its training budget, and an evaluation function.
"""

from __future__ import annotations

import json
import platform
import resource
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from .metrics import moment_report

__all__ = ["run_bench", "TASKS", "Task"]

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Task:
    """A benchmark task: default budget (minutes) and the evaluation of a trained generator."""

    minutes: float
    evaluate: Callable[[Any, Any, int], tuple[dict[str, float], dict[str, float], float]]


def _eval_grf(gen, datamodule, seed: int, resolutions: tuple[int, ...], num: int = 2000,
              steps: int | None = None, floor_repeats: int = 9) -> tuple[dict[str, float], dict[str, float], float]:
    """Covariance / mean / variance errors of ``num`` samples at each resolution, and the exact floor."""
    metrics: dict[str, float] = {}
    reference: dict[str, float] = {}
    sample_seconds = 0.0
    for n in resolutions:
        t0 = time.time()
        ps = gen.sample(num, n, seed=seed + 1, steps=steps, batch_size=500, denormalize=False, progress=True)
        sample_seconds += time.time() - t0
        c = ps.coords[0]
        cov = datamodule.covariance(c, c)
        metrics.update(moment_report(ps.values[..., 0], cov, f"@N={n ** gen.dim}"))
        # the floor: the same statistics for exact samples, median over independent sets (one set is noisy)
        reps = [moment_report(datamodule.reference(ps.coords, torch.Generator().manual_seed(seed + 2 + r))[..., 0],
                              cov, f"@N={n ** gen.dim}") for r in range(floor_repeats)]
        floor = {k: float(torch.tensor([rep[k] for rep in reps]).median()) for k in reps[0]}
        reference.update({k.replace("cov_err", "floor").replace("mean_err", "floor_mean")
                          .replace("var_err", "floor_var"): v for k, v in floor.items()})
    return metrics, reference, sample_seconds


def _eval_earth(gen, datamodule, seed: int, steps: int = 100) -> tuple[dict[str, float], dict[str, float], float]:
    """Test NLL (nats per point, w.r.t. the area of the unit sphere) of the Earth split's 10% test points."""
    published = {"volcano": -7.93, "earthquake": -0.28, "fire": -1.86, "flood": float("nan")}  # RFM, data/README.md
    datamodule.setup("test")
    pts = datamodule.test_points.to(next(gen.net.parameters()).device)
    t0 = time.time()
    ll = gen.method.log_likelihood(gen.net, pts, steps=steps, generator=torch.Generator().manual_seed(seed),
                                   progress=True)
    name = datamodule.dataset
    metrics = {f"nll@dataset={name}": float(-ll.mean()), f"nll_std_err@dataset={name}": float(ll.std() / len(ll) ** 0.5)}
    reference = {f"uniform_nll@dataset={name}": float(gen.method.manifold.log_volume()),
                 f"rfm_published_nll@dataset={name}": published.get(name, float("nan"))}
    return metrics, reference, time.time() - t0


TASKS: dict[str, Task] = {
    "grf1d": Task(minutes=25.0, evaluate=lambda gen, dm, seed: _eval_grf(gen, dm, seed, (64, 256))),
    "grf2d": Task(minutes=30.0, evaluate=lambda gen, dm, seed: _eval_grf(gen, dm, seed, (32, 64), num=1000)),
    "earth": Task(minutes=20.0, evaluate=_eval_earth),
}


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_bench(task: str, method: str, config: str | None = None, seed: int = 0, out: str | None = None,
              ckpt: str | None = None, minutes: float | None = None, max_steps: int | None = None) -> dict[str, Any]:
    """Train (or load ``ckpt``) and evaluate; returns the JSON record (also written to ``out``)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known tasks: {', '.join(sorted(TASKS))}")
    spec = TASKS[task]
    cfg = Path(config) if config else REPO / "configs" / method / f"{task}.yaml"
    if not cfg.is_file():
        raise FileNotFoundError(f"no config for method {method!r} on task {task!r} at {cfg}; pass --config FILE")
    from .cli import make_cli
    from .generator import load

    commit = _commit()  # the code that trains, not whatever is checked out when it ends
    budget = spec.minutes if minutes is None else minutes
    secs = int(budget * 60)
    max_time = f"{secs // 86400:02d}:{secs % 86400 // 3600:02d}:{secs % 3600 // 60:02d}:{secs % 60:02d}"
    args = ["--config", str(cfg), f"--seed_everything={seed}", f"--trainer.max_time={max_time}"]
    if max_steps is not None:
        args.append(f"--trainer.max_steps={max_steps}")
    cli = make_cli(args, run=False)
    cli.datamodule.setup("fit")
    train_seconds = 0.0
    if ckpt is None:
        t0 = time.time()
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        train_seconds = time.time() - t0
        gen = cli.model.generator()
        steps = int(cli.trainer.global_step)
    else:
        gen, steps = load(ckpt), -1
    metrics, reference, sample_seconds = spec.evaluate(gen, cli.datamodule, seed)
    record = {
        "task": task, "method": method, "seed": seed, "minutes": budget, "config": str(cfg.relative_to(REPO) if cfg.is_relative_to(REPO) else cfg),
        "model": gen.config(), "metrics": metrics, "reference": reference, "train_steps": steps,
        "train_seconds": round(train_seconds, 1), "sample_seconds": round(sample_seconds, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "torch": torch.__version__, "commit": commit, "machine": f"{platform.machine()} {torch.get_num_threads()} threads",
    }
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(record, indent=2))
    return record
