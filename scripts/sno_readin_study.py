"""How resolution-consistent is the SNO's grid read-in (:func:`funcgen.nets.sno_ops.grid_splat`)?

One field per function, read onto a 28x28 grid from its values at 28x28 (the grid's own nodes), at 28x28
points jittered inside their cells, and at 56x56; each compared with the 112x112 reading: the variance ratio
and the relative L2 difference. Fields: band-limited nearly white noise (the FDP MNIST noise: SE spectrum,
lengthscale 0.02, modes <= 14), the FDP spectrum (modes <= 16) and a smooth field (SE 0.1, modes <= 6).

    OMP_NUM_THREADS=1 python scripts/sno_readin_study.py [--widths 1 1.5 2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from funcgen.nets.sno_ops import grid_splat  # noqa: E402
from funcgen.pointset import grid_coords  # noqa: E402
from funcgen.processes.noise import SpectralNoise  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--widths", type=float, nargs="+", default=[1.0, 1.5, 2.0])
    p.add_argument("--batch", type=int, default=64)
    args = p.parse_args(argv)
    size, b = 28, args.batch
    fields = {"se l=0.02 modes 14": SpectralNoise(2, "se", modes=14, lengthscale=0.02),
              "fdp modes 16": SpectralNoise(2, "fdp", modes=16),
              "smooth se l=0.1": SpectralNoise(2, "se", modes=6, lengthscale=0.1)}
    print("| field | half-width (cells) | reading | variance / 4x | rel. L2 diff to 4x |")
    print("| --- | --- | --- | --- | --- |")
    for name, noise in fields.items():
        for width in args.widths:
            feats = {}
            for label, res, jitter in (("1x nodes", 28, False), ("1x jittered", 28, True), ("2x", 56, False),
                                       ("4x", 112, False)):
                c = grid_coords((res, res)).expand(b, -1, -1).clone()
                if jitter:
                    c = c + (torch.rand(c.shape, generator=torch.Generator().manual_seed(5)) - 0.5) / res
                v = noise.sample(c, 1, torch.Generator().manual_seed(1))  # the same field at every reading
                feats[label] = grid_splat(c, v, size, width)
            ref = feats["4x"]
            for label in ("1x nodes", "1x jittered", "2x"):
                f = feats[label]
                print(f"| {name} | {width} | {label} | {float(f.var() / ref.var()):.3f} | "
                      f"{float((f - ref).norm() / ref.norm()):.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
