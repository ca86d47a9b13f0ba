"""infty-Diff train-throughput: step time and peak memory at subsampling rates 1, 1/2, 1/4, 1/8.

Same model (the PerceiverNet of configs/ablations/inftydiff/grf2d_perceiver.yaml), same 32x32 GRF batches;
each rate runs in its own process so its peak RSS (CPU) or peak CUDA memory is its own. Writes the JSON of
docs/protocol.md (keys ``step_seconds@rate=R``, ``peak_mb@rate=R``).

    PYTHONPATH=. python scripts/inftydiff_throughput.py --out docs/results/train-throughput_inftydiff.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

RATES = (1.0, 0.5, 0.25, 0.125)


def one_rate(rate: float, steps: int, batch: int, device: str) -> dict[str, float]:
    from funcgen.methods import InftyDiff
    from funcgen.nets import PerceiverNet
    from funcgen.pointset import PointSet, grid_coords
    from funcgen.processes.noise import GaussianRandomField

    gen = torch.Generator().manual_seed(0)
    net = PerceiverNet(2, 1, 1, width=96, num_latents=32, depth=3, heads=4, num_bands=5).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    method = InftyDiff(width=1 / 32, dim=2, subsample=rate)
    coords = grid_coords((32, 32)).expand(batch, -1, -1)
    ps = PointSet(coords, GaussianRandomField("se", 0.1).sample(coords, 1, gen)).to(device)
    times = []
    for i in range(steps + 3):  # 3 warm-up steps
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss, _ = method.loss(net, ps, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= 3:
            times.append(time.perf_counter() - t0)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"step_seconds": sorted(times)[len(times) // 2], "peak_mb": peak}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--rate", type=float, default=None, help="internal: measure one rate, print JSON")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    if a.rate is not None:
        print(json.dumps(one_rate(a.rate, a.steps, a.batch, a.device)))
        return
    metrics: dict[str, float] = {}
    for r in RATES:
        cmd = [sys.executable, __file__, "--rate", str(r), "--steps", str(a.steps), "--batch", str(a.batch),
               "--device", a.device]
        stdout = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        res = json.loads(stdout.strip().splitlines()[-1])
        metrics[f"step_seconds@rate={r}"] = res["step_seconds"]
        metrics[f"peak_mb@rate={r}"] = res["peak_mb"]
    for r in RATES[1:]:
        metrics[f"speedup@rate={r}"] = metrics["step_seconds@rate=1.0"] / metrics[f"step_seconds@rate={r}"]
        metrics[f"memory_ratio@rate={r}"] = metrics["peak_mb@rate=1.0"] / metrics[f"peak_mb@rate={r}"]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    out = {"task": "train-throughput", "method": "inftydiff", "seed": 0,
           "config": ["configs/inftydiff/grf2d.yaml", "configs/ablations/inftydiff/grf2d_perceiver.yaml"],
           "device": a.device, "batch": a.batch, "resolution": 32, "metrics": metrics,
           "torch": torch.__version__, "commit": commit}
    text = json.dumps(out, indent=1)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
