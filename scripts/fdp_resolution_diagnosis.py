"""Where a grf1d functional-diffusion model loses accuracy at 4x its training resolution.

    PYTHONPATH=. python scripts/fdp_resolution_diagnosis.py runs/bench/fdp_grf1d_shifted.safetensors

Prints, for 64- and 256-point grids (seeded):
1. the mean squared error of the x0 prediction on exact GRF draws noised to time t;
2. the relative difference of the latents pooled from all 256 points vs from a 64-point subset
   (every 4th point), next to that between two such subsets;
3. the per-position variance of generated samples in 32 bins over [0, 1];
4. the power spectrum of generated samples at 64 points over that of exact draws, per frequency
   (cycles per unit; Hann-windowed, mean over the samples): which scales the model gets wrong.
"""

import argparse

import torch

from funcgen.data import GRFDataModule
from funcgen.generator import load
from funcgen.pointset import grid_coords


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="grf1d FDP export (.safetensors) or checkpoint")
    p.add_argument("--num", type=int, default=512, help="functions per check")
    p.add_argument("--steps", type=int, default=None, help="sampler steps (default: the model's)")
    args = p.parse_args()
    torch.set_num_threads(1)
    g = load(args.model)
    net, method = g.net.eval(), g.method
    dm = GRFDataModule(dim=1, resolution=64, num_train=8, num_val=8)
    gen = torch.Generator().manual_seed(0)
    c256 = grid_coords((256,)).expand(args.num, -1, -1)
    sub, sub2 = slice(1, None, 4), slice(3, None, 4)
    for t in (0.1, 0.3, 0.5, 0.7, 0.9, 0.97):
        x0 = dm.reference(c256, gen)
        tt = torch.full((args.num,), t)
        xt, _ = method.perturb(x0, c256, tt, gen)
        with torch.no_grad():
            mse = {n: float(((method.denoise(net, c[:, s], xt[:, s], tt)[0] - x0[:, s]) ** 2).mean())
                   for n, c, s in ((256, c256, slice(None)), (64, c256, sub))}
            lat = net.encode(c256, xt, tt)[0]
            lat_a, lat_b = net.encode(c256[:, sub], xt[:, sub], tt)[0], net.encode(c256[:, sub2], xt[:, sub2], tt)[0]
        rel = lambda a, b: float((a - b).norm() / b.norm())  # noqa: E731
        print(f"t={t}: x0 mse at 256 points {mse[256]:.4f}, at 64 {mse[64]:.4f}; latents 256 vs 64: "
              f"{rel(lat, lat_a):.4f}, 64 vs another 64: {rel(lat_b, lat_a):.4f}")
    for n in (64, 256):
        var = g.sample(args.num, n, seed=1, steps=args.steps, batch_size=500, denormalize=False).values[..., 0].var(0)
        print(f"sample variance by position, {n} points:", [round(float(v), 2) for v in var.reshape(32, -1).mean(1)])
    ps = g.sample(args.num, 64, seed=1, steps=args.steps, batch_size=500, denormalize=False)
    exact = dm.reference(ps.coords, gen)
    window = torch.hann_window(64, periodic=False, dtype=torch.float64)

    def power(x: torch.Tensor) -> torch.Tensor:
        x = x[..., 0].double()
        return (torch.fft.rfft((x - x.mean(0)) * window, dim=-1).abs() ** 2).mean(0)

    ratio = power(ps.values) / power(exact)
    print("sample / exact power by frequency (cycles per unit) at 64 points:",
          {k: round(float(ratio[k]), 2) for k in (0, 1, 2, 3, 4, 5, 6, 8, 16, 32)})


if __name__ == "__main__":
    main()
