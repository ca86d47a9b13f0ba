"""Variance of a 1-d model's samples along the eigenvectors of the data's exact covariance (grf1d: SE, lengthscale
0.1, jitter 1e-6), against the data's own variance there: where a model puts spurious variance.

    OMP_NUM_THREADS=1 python scripts/eigen_variance.py MODEL.safetensors [MODEL ...] [--num 2048] [--points 128]
        [--trace]

Prints, per model, its samples' variance at a few eigen-directions (0 = the largest) beside the data's, and the
model's driving noise's variance there (``noise``; the sampler starts from it). ``--trace`` (diffusion-type
models) follows the sampler: after each step, the variance of the state and of the denoiser's estimate ``x0_hat`` in
directions 20-49 (where the data have almost none), as a share of the noise's variance there.
docs/conditioning.md uses it to explain GP-regression errors.
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
    p.add_argument("--trace", action="store_true", help="the share of the noise left in directions 20-49 per step")
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
        cov = gen.method.noise.covariance(x, x).double()
        noise = torch.einsum("ni,nm,mi->i", u, cov, u)
        print(f"{path}\n          " + " ".join(f"{var[i]:9.1e}" for i in ns.directions))
        print("noise     " + " ".join(f"{noise[i]:9.1e}" for i in ns.directions))
        if ns.trace:
            trace(gen, x.float(), u[:, 20:50], noise[20:50], ns.num)


def trace(gen, x: torch.Tensor, hi: torch.Tensor, noise: torch.Tensor, num: int) -> None:
    """Variance of the sampler's state and ``x0_hat`` along ``hi`` ``[N, K]`` after each step, over ``noise`` ``[K]``
    (mean over the K directions), for ``num`` samples at the points ``x`` ``[N, 1]``."""
    coords = x[None].expand(num, -1, -1)

    def share(v: torch.Tensor) -> float:
        return float(((v[..., 0].double() @ hi).var(0) / noise).mean())

    print("  step      t  state/noise  x0_hat/noise")

    def callback(i, t, state, x0):
        print(f"  {i:4d} {t:6.3f} {share(state):12.4f} {share(x0):13.4f}")

    with torch.no_grad():
        gen.method.sample(gen.net, coords, 1, generator=torch.Generator().manual_seed(1), callback=callback)


if __name__ == "__main__":
    main()
