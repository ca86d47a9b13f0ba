"""Render MDF samples on their surface (and real functions beside them) as a PNG.

    FUNCGEN_DATA=../shared/data python scripts/mdf_render.py --config configs/mdf/mnist_sphere.yaml \
        --ckpt runs/bench/mdf_mnist_sphere.safetensors --factor 1 --out docs/figures/mdf_mnist_sphere.png

The data module of ``--config`` gives the surface: its eigen-coordinates at the vertices of the
training mesh (``--factor 1``) or of its 4x subdivision (``--factor 4``), and its renderer. Top
picture: ``--num`` generated functions; bottom: as many exact samples of the field at the same
points (random-field data) or held-out data functions (MNIST on the sphere). ``--chart`` (MNIST on the
sphere): instead of the surface, the digit's 28x28 chart read back from the mesh
(:func:`funcgen.data.mesh.chart_images`, what the bench's LeNet scores), 3x enlarged.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from funcgen.apps.cli import make_cli
from funcgen.generator import load
from funcgen.viz.plotting import save_png


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="the MDF config the model was trained with")
    p.add_argument("--ckpt", required=True, help="generator (.safetensors) or Lightning checkpoint")
    p.add_argument("--out", required=True)
    p.add_argument("--factor", type=int, default=1, choices=(1, 4), help="mesh refinement of the query points")
    p.add_argument("--num", type=int, default=8)
    p.add_argument("--steps", type=int, default=None, help="sampler steps (default: the method's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chart", action="store_true", help="MNIST on the sphere: draw the digit charts, not the sphere")
    a = p.parse_args()

    dm = make_cli(["--config", a.config], run=False).datamodule
    dm.setup("fit")
    gen = load(a.ckpt)
    coords = dm.validation_coords(a.factor, a.num)
    ps = gen.sample(coords=coords, seed=a.seed, steps=a.steps, denormalize=False, progress=True)
    top = dm.render(ps.coords, ps.values, title=f"MDF samples at {ps.num_points} points")
    real, what = dm.reference(coords, torch.Generator().manual_seed(a.seed + 1)), "exact samples"
    if real is None:  # no exact sampler (e.g. MNIST on the sphere): held-out functions at the vertices
        if a.factor != 1:
            raise SystemExit("held-out data lives on the training mesh: use --factor 1 for this data set")
        real, what = torch.stack([dm.val_set[i][1] for i in range(a.num)]), "held-out data"
    if a.chart:
        from funcgen.data.mesh import chart_images

        if a.factor != 1:
            raise SystemExit("--chart reads the training mesh's vertices: use --factor 1")
        rows = [chart_images(dm.denormalize(v).cpu(), dm.mesh).clamp(0, 1) for v in (ps.values, real)]
        tiles = [torch.cat(list(r), dim=1) for r in rows]  # [28, 28 num] each: generated, then held-out
        gap = torch.ones(4, tiles[0].shape[1])
        grey = (torch.cat([tiles[0], gap, tiles[1]]).repeat_interleave(3, 0).repeat_interleave(3, 1) * 255).byte()
        print(f"wrote {save_png(np.repeat(grey.numpy()[..., None], 3, axis=2), a.out)} (top: MDF samples, "
              f"bottom: {what})")
        return
    bottom = dm.render(coords, real, title=what)
    width = max(top.shape[1], bottom.shape[1])
    pad = [np.pad(x, ((0, 0), (0, width - x.shape[1]), (0, 0)), constant_values=255) for x in (top, bottom)]
    rgb = np.concatenate(pad, axis=0)
    print(f"wrote {save_png(rgb, a.out)}")


if __name__ == "__main__":
    main()
