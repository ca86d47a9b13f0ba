"""MDF's sampler with the exact Bayes denoiser in place of the network (docs/mdf.md, "Oracle measurements").

The GRF of ``sphere_grf`` (or ``mesh_grf``) is Gaussian in the mesh eigenbasis, so ``E[y_0 | y_t]`` is linear
and exact (tests/methods/gaussian_oracle.py). This isolates the sampler, the context rule and the noise from
the network: whatever error remains is theirs. Prints covariance / variance / angular power spectrum errors
at the training mesh and its 4x subdivision, against the floor of exact samples of the same size.

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python scripts/mdf_oracle.py --num 256
"""

from __future__ import annotations

import argparse
import itertools

import torch

from funcgen.data.mesh import MeshGRFDataModule, SphereGRFDataModule
from funcgen.methods import ManifoldDiffusionField
from funcgen.metrics.moments import covariance_error
from tests.methods.gaussian_oracle import GaussianEigenOracle


def evaluate(dm, values: torch.Tensor, coords: torch.Tensor, aps: bool) -> dict[str, float]:
    cov = dm.covariance(coords[0], coords[0])
    out = {"cov_err": covariance_error(values[..., 0], cov),
           "var": float(values[..., 0].double().var(0).mean() / cov.diagonal().mean())}
    if aps:
        out["aps_err"] = float((dm.estimate_power_spectrum(values) / dm.angular_power_spectrum() - 1).abs().mean())
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", choices=("sphere_grf", "mesh_grf"), default="sphere_grf")
    p.add_argument("--num", type=int, default=256)
    p.add_argument("--steps", type=int, nargs="+", default=[50, 200])
    args = p.parse_args()
    if args.data == "sphere_grf":
        dm = SphereGRFDataModule(subdivisions=3, num_eigs=36, lengthscale=0.5, nu=1.5)
    else:
        dm = MeshGRFDataModule(mesh="deformed_sphere", subdivisions=3, num_eigs=32, lengthscale=0.5, nu=1.5)
    sphere = args.data == "sphere_grf"
    for factor in (1, 4):
        coords = dm.validation_coords(factor, args.num).double()
        floors = [evaluate(dm, dm.reference(coords, torch.Generator().manual_seed(100 + r)), coords,
                           sphere and factor == 1) for r in range(5)]
        floor = {k: sorted(f[k] for f in floors)[2] for k in floors[0]}
        print(f"N={coords.shape[1]} exact-sample floor (median of 5 sets of {args.num}): {floor}")
        for noise, context, steps in itertools.product((None, dm.dim), ("full", "random"), args.steps):
            mdf = ManifoldDiffusionField(steps=steps, eta=1.0, context=context, num_context=128, noise_modes=noise)
            oracle = GaussianEigenOracle(mdf, dm.coef_std)
            x = mdf.sample(oracle, coords, 1, generator=torch.Generator().manual_seed(0))
            r = evaluate(dm, x, coords, sphere and factor == 1)
            name = "white" if noise is None else f"eigen{noise}"
            print(f"N={coords.shape[1]} noise={name} context={context} steps={steps}: "
                  + ", ".join(f"{k}={v:.3f}" for k, v in r.items()))


if __name__ == "__main__":
    main()
