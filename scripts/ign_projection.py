"""IGN projection demo: corrupted held-out MNIST digits mapped back by ``f`` (IGN's projection).

    FUNCGEN_DATA=../shared/data python scripts/ign_projection.py --ckpt runs/bench/ign_mnist.safetensors \
        --out docs/figures/ign_projection.png

Rows (each of the first ``--show`` of the ``--num`` test digits 8000.. in a column): the clean digit; Gaussian noise
(std ``--noise`` in pixel units) and ``f`` of it; half of the pixels dropped and ``f`` of it; a centred
10x10 patch erased and ``f`` of it. Dropped pixels and the patch are MISSING points: a mask tells the
projection which points are observed (``project(..., mask=...)``: the observed values are kept, ``f`` fills
in the rest); ``--no-mask`` instead sets them to the background and projects the whole image, as if the
corruption were unknown. Prints the mean squared error to the clean digit (over all pixels) before and
after projection for each corruption, and its relative reduction.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from funcgen.data.mnist import NUM_TRAIN_PROTOCOL, load_mnist_idx, resolve_data_root
from funcgen.generator import load
from funcgen.pointset import grid_coords
from funcgen.viz.plotting import image_grid, save_png


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", required=True, help="IGN generator (.safetensors or Lightning .ckpt) trained on MNIST")
    p.add_argument("--out", default="docs/figures/ign_projection.png")
    p.add_argument("--num", type=int, default=200, help="held-out digits the mean squared errors average over")
    p.add_argument("--show", type=int, default=8, help="digits drawn in the figure (the first of them)")
    p.add_argument("--json", default=None, help="also write the errors to this JSON file")
    p.add_argument("--noise", type=float, default=0.3)
    p.add_argument("--k", type=int, default=1, help="applications of f")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-mask", action="store_true", help="treat dropped pixels and the patch as background values")
    a = p.parse_args()

    gen = load(a.ckpt)
    if not hasattr(gen.method, "project"):
        raise SystemExit(f"{a.ckpt} holds a {type(gen.method).__name__}, not an IGN model")
    images = torch.from_numpy(load_mnist_idx(resolve_data_root(None))[0]).float() / 255.0
    clean = images[NUM_TRAIN_PROTOCOL:NUM_TRAIN_PROTOCOL + a.num].reshape(a.num, 784, 1)
    norm = gen.data.get("normalization", {})
    shift, scale = float(norm.get("shift", 0.0)), float(norm.get("scale", 1.0))
    g = torch.Generator().manual_seed(a.seed)
    noisy = clean + a.noise * torch.randn(clean.shape, generator=g)
    keep_drop = torch.rand(a.num, 784, generator=g) > 0.5
    keep_patch = torch.ones(a.num, 28, 28, dtype=torch.bool)
    keep_patch[:, 9:19, 9:19] = False
    keep_patch = keep_patch.reshape(a.num, 784)
    coords = grid_coords((28, 28)).unsqueeze(0).expand(a.num, -1, -1)

    rows = [clean[:a.show]]
    errors: dict[str, dict[str, float]] = {}
    for name, x, keep in (("noise", noisy, None), ("drop 50%", clean * keep_drop.unsqueeze(-1), keep_drop),
                          ("patch", clean * keep_patch.unsqueeze(-1), keep_patch)):
        mask = None if a.no_mask else keep
        y = gen.method.project(gen.net, coords, (x - shift) / scale, k=a.k, mask=mask,
                               generator=torch.Generator().manual_seed(a.seed)) * scale + shift
        before, after = ((v.clamp(0, 1) - clean).pow(2).mean().item() for v in (x, y))
        how = "" if keep is None else (" (as background)" if a.no_mask else " (as a mask)")
        print(f"{name:9s}{how} mse to clean digit: corrupted {before:.4f} -> projected {after:.4f} "
              f"({100 * (1 - after / before):.0f}% lower)")
        errors[name] = {"corrupted": before, "projected": after, "reduction": 1.0 - after / before}
        rows += [x[:a.show], y[:a.show]]
    grid = image_grid(torch.cat(rows).clamp(0, 1), (28, 28), value_range=(0.0, 1.0), nrow=a.show)
    print(f"wrote {save_png(grid, a.out)}")
    if a.json:
        record = {"ckpt": a.ckpt, "num": a.num, "noise": a.noise, "k": a.k, "mask": not a.no_mask, "mse": errors}
        Path(a.json).write_text(json.dumps(record, indent=2))
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
