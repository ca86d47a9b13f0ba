"""Variance of a 1-d model's samples along the eigenvectors of the data's exact covariance (grf1d: SE, lengthscale
0.1, jitter 1e-6), against the data's own variance there: where a model puts spurious variance.

    OMP_NUM_THREADS=1 python scripts/eigen_variance.py MODEL.safetensors [MODEL ...] [--num 2048] [--points 128]

Prints, per model, ``model / data`` variance at a few eigen-directions (0 = the largest). docs/conditioning.md
uses it to explain GP-regression errors.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from funcgen.generator import load
from funcgen.pointset import grid_coords

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conditional_bench import kernel  # noqa: E402  (the grf1d data's covariance, jitter included)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+")
    p.add_argument("--num", type=int, default=2048)
    p.add_argument("--points", type=int, default=128)
    p.add_argument("--directions", type=int, nargs="+", default=[0, 5, 10, 12, 15, 20, 25, 30, 40, 60])
    ns = p.parse_args()
    x = grid_coords((ns.points,)).double()
    lam, u = torch.linalg.eigh(kernel(x))
    lam, u = lam.flip(0), u.flip(1)
    print("direction " + " ".join(f"{i:>9d}" for i in ns.directions))
    print("data      " + " ".join(f"{lam[i]:9.1e}" for i in ns.directions))
    for path in ns.models:
        gen = load(path)
        v = gen.sample(ns.num, coords=x.float()[None].expand(ns.num, -1, -1), seed=1, batch_size=512).values[..., 0]
        var = ((v.double() - v.double().mean(0)) @ u).var(0)
        print(f"{path}\n          " + " ".join(f"{var[i]:9.1e}" for i in ns.directions))


if __name__ == "__main__":
    main()
