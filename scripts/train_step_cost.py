"""CPU seconds per training step of a shipped config (one thread): the method's loss, backward and an AdamW
update on one batch of the config's own datamodule, the median of ``--repeats`` blocks of ``--steps`` steps
(process CPU time, so other processes on the machine change it little). Compares code versions when run
with ``PYTHONPATH`` pointing at each checkout (a ``git worktree`` of the older commit).

    OMP_NUM_THREADS=1 FUNCGEN_DATA=../shared/data PYTHONPATH=. python scripts/train_step_cost.py \\
        configs/fdp/mnist.yaml configs/pfgmpp/mnist.yaml --out docs/results/train-step-cost_sno.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch


def step_seconds(config: str, steps: int, repeats: int) -> float:
    """Median CPU seconds per optimizer step of ``config`` (built as ``funcgen fit`` builds it) over ``repeats``
    blocks of ``steps`` steps."""
    from funcgen.pointset import PointSet
    from funcgen.train.fit import prepare

    torch.set_num_threads(1)
    run = prepare([config], seed=0, settings={"trainer.logger": False})
    method, net = run.module.method, run.module.net
    run.datamodule.setup("fit")
    b = next(iter(run.datamodule.train_dataloader()))
    batch = b if isinstance(b, PointSet) else PointSet(b[0], b[1], b[2] if len(b) > 2 else None)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)

    def step() -> None:
        loss, _ = method.loss(net, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(3):  # warm-up
        step()
    blocks = []
    for _ in range(repeats):
        t0 = time.process_time()
        for _ in range(steps):
            step()
        blocks.append((time.process_time() - t0) / steps)
    return statistics.median(blocks)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("configs", nargs="+")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None, help="JSON record (key step_seconds@config=PATH)")
    ns = ap.parse_args()
    metrics = {}
    for config in ns.configs:
        metrics[f"step_seconds@config={config}"] = round(step_seconds(config, ns.steps, ns.repeats), 4)
        print(config, metrics[f"step_seconds@config={config}"], flush=True)
    if ns.out is not None:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        record = {"task": "train-step-cost", "metrics": metrics, "commit": commit, "torch": torch.__version__,
                  "threads": 1, "steps": ns.steps, "repeats": ns.repeats,
                  "command": "OMP_NUM_THREADS=1 PYTHONPATH=. python scripts/train_step_cost.py "
                             + " ".join(sys.argv[1:])}
        ns.out.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
