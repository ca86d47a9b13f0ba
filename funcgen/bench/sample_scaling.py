"""The ``sample-scaling`` benchmark: wall time and peak memory to draw ONE function at growing resolution.

Each resolution runs in a fresh subprocess that loads the generator (exported to a temporary
safetensors file) and draws one sample on the ``n^d`` cell-centre grid with a fixed small number of
sampler steps, so every peak is that resolution's own. What is measured, honestly:

* ``sample_seconds@N``: wall time of ``FunctionGenerator.sample`` (prior noise, every network call,
  the sampler updates and the method's decoding, e.g. infty-Diff's Wiener filter); one run, no warm-up.
  ``sample_cpu_seconds@N``: the child's CPU time over the same span (less sensitive to a shared machine).
* ``peak_rss_mb@N``: the child's peak resident memory, ``VmHWM`` of ``/proc/self/status`` (Linux;
  elsewhere ``ru_maxrss``, which on Linux would also count the forking parent's RSS): the whole
  process, Python, the torch libraries (~0.5 GB on CPU) and the model included, which is why
  ``rss_before_sample_mb@N``, the peak before sampling, is reported next to it. On CUDA also ``peak_cuda_mb@N``
  (``torch.cuda.max_memory_allocated``).
* ``time_exponent``: ``log(t_max / t_prev) / log(N_max / N_prev)`` of the two largest sizes (1 = linear).

The model may be untrained (the task measures cost, not quality): see :data:`funcgen.bench.run.TASKS`.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["eval_sample_scaling", "RESOLUTIONS", "STEPS"]

RESOLUTIONS = (64, 128, 256, 512, 1024)
STEPS = 3

_CHILD = """
import json, resource, sys, time
import torch

def peak_mb():  # this process's own high-water mark; ru_maxrss would include the forking parent's RSS
    try:
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

path, device = sys.argv[1], sys.argv[6]
n, steps, seed, threads = (int(a) for a in sys.argv[2:6])
torch.set_num_threads(threads)
from funcgen.generator import load
gen = load(path)
gen.net.to(device)
before = peak_mb()
if device == "cuda":
    torch.cuda.synchronize()
t0, c0 = time.perf_counter(), time.process_time()
ps = gen.sample(1, n, seed=seed, steps=steps)
if device == "cuda":
    torch.cuda.synchronize()
secs, cpu = time.perf_counter() - t0, time.process_time() - c0
out = {"seconds": secs, "cpu_seconds": cpu, "rss_before": before, "peak_rss": peak_mb(),
       "finite": bool(torch.isfinite(ps.values).all()), "points": ps.num_points}
if device == "cuda":
    out["peak_cuda"] = torch.cuda.max_memory_allocated() / 2**20
print(json.dumps(out))
"""


def eval_sample_scaling(gen: Any, seed: int, resolutions: tuple[int, ...] = RESOLUTIONS, steps: int = STEPS,
                        device: str | None = None) -> tuple[dict[str, float], dict[str, float], float]:
    """Time and peak memory of one sample at ``n^d`` points for each ``n`` in ``resolutions`` (fresh process each).

    Returns ``(metrics, reference, total sample seconds)`` for :func:`funcgen.bench.run.run_bench`.
    Raises RuntimeError with the child's output if a size fails (e.g. out of memory).
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    repo = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")])}
    metrics: dict[str, float] = {}
    reference: dict[str, float] = {"sampler_steps": float(steps), "torch_threads": float(torch.get_num_threads())}
    total = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        path = gen.save(Path(tmp) / "model.safetensors")
        times: list[tuple[int, float]] = []
        for n in resolutions:
            cmd = [sys.executable, "-c", _CHILD, str(path), str(n), str(steps), str(seed),
                   str(torch.get_num_threads()), device]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                raise RuntimeError(f"sample-scaling at resolution {n} failed (exit {proc.returncode}):\n"
                                   f"{proc.stdout[-2000:]}{proc.stderr[-4000:]}")
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            if not res["finite"]:
                raise RuntimeError(f"sample-scaling: the sample at resolution {n} has non-finite values")
            key = f"@N={res['points']}"
            metrics[f"sample_seconds{key}"] = round(res["seconds"], 3)
            metrics[f"sample_cpu_seconds{key}"] = round(res["cpu_seconds"], 3)
            metrics[f"peak_rss_mb{key}"] = round(res["peak_rss"], 1)
            reference[f"rss_before_sample_mb{key}"] = round(res["rss_before"], 1)
            if "peak_cuda" in res:
                metrics[f"peak_cuda_mb{key}"] = round(res["peak_cuda"], 1)
            times.append((res["points"], res["seconds"]))
            total += res["seconds"]
            print(f"sample-scaling N={res['points']}: {res['seconds']:.2f} s, peak RSS {res['peak_rss']:.0f} MB",
                  file=sys.stderr, flush=True)
    if len(times) >= 2:
        (n0, t0), (n1, t1) = times[-2], times[-1]
        metrics["time_exponent"] = round(math.log(t1 / t0) / math.log(n1 / n0), 3)
    return metrics, reference, total
