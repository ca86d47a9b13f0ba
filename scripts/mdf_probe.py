"""Short MDF training probes: training eps-loss against the exact Bayes eps-loss (docs/mdf.md).

Trains a backbone for a fixed CPU time on sphere_grf (Adam, no EMA) and prints the running mean of the
training loss every 250 steps, beside the exact Bayes eps-loss of the same objective (the loss of the
exact posterior mean, averaged over the training times; a net can only approach it from above).

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python scripts/mdf_probe.py --net branch_trunk --seconds 180
"""

from __future__ import annotations

import argparse
import time

import torch

from funcgen.data.mesh import SphereGRFDataModule
from funcgen.methods import ManifoldDiffusionField
from funcgen.nets import BranchTrunkPerceiverNet, PerceiverNet
from funcgen.pointset import PointSet


def bayes_eps_loss(mdf: ManifoldDiffusionField, c2: torch.Tensor, n: int, grid: int = 2000) -> float:
    """Exact ``E |xi - E[xi | y_t]|^2`` per point, averaged over ``t ~ U[t_min, 1]`` (context = all ``n`` points)."""
    t = mdf.t_min + (1 - mdf.t_min) * (torch.arange(grid, dtype=torch.float64) + 0.5) / grid
    a, s = mdf.schedule.alpha(t)[:, None], mdf.schedule.sigma(t)[:, None]
    if mdf.noise_modes is not None:  # per eigen-mode: noise variance 1/K, posterior variance of the noise part
        k = mdf.noise_modes
        return float((a**2 * c2 / (a**2 * c2 + s**2 / k) / k).sum(1).mean())
    # white noise at n evenly spread points: the m noise components along the field's modes are
    # identifiable up to their posterior variance; the n - m others are known exactly (x_t - projection)
    return float((a**2 * c2 * n / (a**2 * c2 * n + s**2)).sum(1).mean() / n)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--net", choices=("perceiver", "branch_trunk", "branch_latents"), default="branch_trunk")
    p.add_argument("--noise-modes", type=int, default=36, help="0: white noise")
    p.add_argument("--seconds", type=float, default=180.0)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--batch", type=int, default=16)
    args = p.parse_args()
    torch.manual_seed(0)
    dm = SphereGRFDataModule(subdivisions=3, num_eigs=36, num_train=2000, num_val=8, batch_size=args.batch)
    dm.setup("fit")
    mdf = ManifoldDiffusionField(context="full", noise_modes=args.noise_modes or None)
    kw = dict(width=args.width, num_latents=32, depth=3, heads=4, num_bands=0)
    net = (PerceiverNet(36, 1, 1, **kw) if args.net == "perceiver"
           else BranchTrunkPerceiverNet(36, 1, 1, projection=args.net == "branch_trunk", **kw))
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(0)
    print(f"exact Bayes eps-loss: {bayes_eps_loss(mdf, dm.coef_std.double() ** 2, dm.mesh.num_vertices):.4f}")
    t0, step, run = time.process_time(), 0, []
    loader = dm.train_dataloader()
    while time.process_time() - t0 < args.seconds:
        for coords, values in loader:
            loss, _ = mdf.loss(net, PointSet(coords, values), gen)
            opt.zero_grad()
            loss.backward()
            opt.step()
            run.append(float(loss))
            step += 1
            if step % 250 == 0:
                print(f"step {step} cpu {time.process_time() - t0:.0f}s loss(last 250) {sum(run[-250:]) / 250:.4f}",
                      flush=True)
            if time.process_time() - t0 >= args.seconds:
                break
    print(f"{args.net}: {step} steps, final loss(last 250) {sum(run[-250:]) / len(run[-250:]):.4f}")


if __name__ == "__main__":
    main()
