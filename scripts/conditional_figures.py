"""Pictures of conditional generation from trained models (docs/figures/conditioning_*.png).

    python scripts/conditional_figures.py grf1d --ckpt GRF1D.safetensors --out docs/figures/conditioning_grf1d.png
    FUNCGEN_DATA=../shared/data python scripts/conditional_figures.py mnist --ckpt MNIST.safetensors \
        --out docs/figures/conditioning_mnist.png

grf1d: the problems of ``scripts/conditional_bench.py grf1d-regression`` (SE kernel, lengthscale 0.1; one exact
GP draw observed noise-free at M uniform random points), ``--num`` conditional samples at 128 grid points for
M = 4, 8 and 16: the model's mean and central 95% band against the exact GP posterior's (dashed / dotted), one
panel per M, stacked.
mnist: ``--digits`` held-out digits (images 8000..), ``--samples`` completions each, for the two tasks of
``conditional_bench.py``: the left half observed (inpainting) and the 7x7 cell averages observed (4x
super-resolution, ``observe="cells"``); rows observed / completions / truth, the two grids stacked.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from funcgen.bench.oracle import gp_regression_problem
from funcgen.generator import load
from funcgen.pointset import PointSet, grid_coords, grid_to_pointset
from funcgen.viz.conditional import completion_grid, posterior_band
from funcgen.viz.plotting import save_png

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conditional_bench import heldout_index, kernel, left_half, mnist_observed, mnist_split  # noqa: E402  (the bench's problems)


def _stack(images: list[np.ndarray]) -> np.ndarray:
    """Stack RGB pictures vertically, padding narrower ones with white on the right."""
    width = max(im.shape[1] for im in images)
    rows = [np.pad(im, ((0, 0), (0, width - im.shape[1]), (0, 0)), constant_values=255) for im in images]
    return np.concatenate(rows, axis=0)


def grf1d_figure(ckpt: str, num: int, seed: int, ms: tuple[int, ...]) -> np.ndarray:
    gen = load(ckpt)
    query = grid_coords((128,)).double()
    panels = []
    for m in ms:
        g = torch.Generator().manual_seed(1000 * seed + 100 * m)  # draw 0 of conditional_bench's problems
        obs, y, mean, cov = gp_regression_problem(query, m, kernel, g)
        ps = gen.sample(num, coords=query.float(), observed=PointSet(obs[None].float(), y[None].float()),
                        seed=seed, batch_size=num, progress=True)
        panels.append(posterior_band(query[:, 0], ps.values[..., 0], obs[:, 0], y[:, 0],
                                     exact=(mean[:, 0], cov.diagonal().clamp_min(0).sqrt()),
                                     title=f"{Path(ckpt).name}: GP regression from M = {m} noise-free values"))
    return _stack(panels)


def mnist_figure(ckpt: str, digits: int, samples: int, seed: int, moment_samples: int, resample: int = 1,
                 eta: float | None = None) -> np.ndarray:
    gen = load(ckpt)
    if eta is not None:
        gen = gen.with_method_args(eta=eta)
    _, images, _ = mnist_split()
    truth = images[heldout_index(seed, digits, len(images))]
    full = grid_to_pointset(truth[:, None])  # [D, 784, .]
    shown = full.values.clone()  # the inpainting row: unobserved pixels as NaN
    shown[:, ~left_half()] = float("nan")
    grids = []
    for task, name, observe in (("mnist-inpaint", "inpainting the left half", "points"),
                                ("mnist-superres", "4x super-resolution from 7x7 averages", "cells")):
        observed = mnist_observed(truth, task)
        ps = gen.sample(samples, 28, observed=observed, seed=seed, batch_size=digits * samples, progress=True,
                        moment_samples=moment_samples, observe=observe, resample=resample)
        comp = ps.values.reshape(digits, samples, 784, -1).clamp(0, 1)
        grid = completion_grid(shown if observe == "points" else observed.values, comp, full.values, (28, 28))
        how = f", resample {resample}" + (f", eta {eta:g}" if eta is not None else "") if resample > 1 else ""
        grids.append(_title(np.kron(grid, np.ones((3, 3, 1), dtype=np.uint8)),
                            f"{Path(ckpt).name}: {name}{how} (rows: observed, {samples} completions, truth)"))
    return _stack(grids)


def _title(rgb: np.ndarray, text: str) -> np.ndarray:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    h, w = rgb.shape[:2]
    fig = plt.figure(figsize=(w / 100, (h + 30) / 100), dpi=100)
    fig.figimage(rgb, xo=0, yo=0)
    fig.text(0.01, 1 - 15 / (h + 30), text, fontsize=9, va="center")
    fig.canvas.draw()
    out = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", choices=["grf1d", "mnist"])
    p.add_argument("--ckpt", required=True)
    p.add_argument("--out", required=True, help="PNG file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num", type=int, default=200, help="grf1d: conditional samples per problem")
    p.add_argument("--ms", type=int, nargs="+", default=[4, 8, 16], help="grf1d: observation counts")
    p.add_argument("--digits", type=int, default=8, help="mnist: held-out digits")
    p.add_argument("--samples", type=int, default=3, help="mnist: completions per digit")
    p.add_argument("--moment-samples", type=int, default=256, help="mnist: unconditional samples for the guidance")
    p.add_argument("--resample", type=int, default=1, help="mnist: repeats of each sampler step (RePaint)")
    p.add_argument("--eta", type=float, default=None, help="mnist: sampler eta (1: ancestral; default: the model's)")
    ns = p.parse_args()
    torch.manual_seed(ns.seed)
    rgb = (grf1d_figure(ns.ckpt, ns.num, ns.seed, tuple(ns.ms)) if ns.task == "grf1d"
           else mnist_figure(ns.ckpt, ns.digits, ns.samples, ns.seed, ns.moment_samples, ns.resample, ns.eta))
    print(f"wrote {save_png(rgb, ns.out)}")


if __name__ == "__main__":
    main()
