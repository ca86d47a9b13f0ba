"""Posterior samplers with the exact Bayes denoiser of Gaussian data, against the exact GP posterior.

Writes docs/results/conditioning_oracle.json (the table of docs/conditioning.md):

    OMP_NUM_THREADS=1 python scripts/conditioning_oracle.py [--num 2000] [--out docs/results/conditioning_oracle.json]

Data GP(0, K), K = SE(lengthscale 0.1) + 1e-4 I (a small nugget keeps the exact denoiser well conditioned at the
data end), M noise-free observations of one exact draw at uniform random points, ``num`` conditional samples at
32 grid points, through FunctionGenerator.sample_conditional with each method's denoiser replaced by the exact
one (funcgen.bench.oracle.GaussianOracle). Errors: ||mean - m|| / sqrt(tr S) and ||cov - S||_F / ||S||_F against
the posterior (m, S); floor: the same errors of ``num`` exact posterior draws.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from torch import nn

from funcgen.bench.oracle import GaussianOracle, gp_regression_problem, moment_errors
from funcgen.generator import FunctionGenerator
from funcgen.methods import PFGMPP, FunctionalDiffusion, FunctionalFlowMatching
from funcgen.pointset import PointSet, grid_coords
from funcgen.processes.noise import SpectralNoise, kernel_matrix

NUGGET = 1e-4


def kernel(x: torch.Tensor) -> torch.Tensor:
    return kernel_matrix(x.double(), x.double(), "se", 0.1) + NUGGET * torch.eye(len(x), dtype=torch.float64)


class Dummy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.zeros((), dtype=torch.float64))


def methods() -> dict[str, object]:
    def noise():
        return SpectralNoise(1, "fdp", modes=32, period=2.0)

    return {"fdp-ddim100": FunctionalDiffusion(noise(), steps=100),
            "fdp-dpm2m25": FunctionalDiffusion(noise(), solver="dpm2m", steps=25),
            "ffm-heun25": FunctionalFlowMatching(noise(), steps=25),
            "pfgmpp-Dinf-heun18": PFGMPP(noise(), D=math.inf, sigma_data=1.0, steps=18)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num", type=int, default=2000)
    p.add_argument("--m", type=int, nargs="+", default=[4, 8])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="docs/results/conditioning_oracle.json")
    ns = p.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(ns.seed)
    query = grid_coords((32,)).double()  # [32, 1]
    rows = []
    for m in ns.m:
        obs, y, mean, cov = gp_regression_problem(query, m, kernel, g)
        exact = mean[:, 0] + torch.randn(ns.num, 32, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(
            cov + 1e-12 * torch.eye(32, dtype=torch.float64)).T
        floor = moment_errors(exact, mean[:, 0], cov)
        rows.append({"M": m, "variant": "exact posterior draws (floor)", "mean_err": floor[0], "cov_err": floor[1]})
        observed = PointSet(obs[None], y[None])
        for name, method in methods().items():
            gen = FunctionGenerator(method, Dummy(), {"dim": 1, "channels": 1, "train_shape": [32]})
            for guidance in ("tweedie", "replace"):
                if guidance == "replace" and name.startswith("ffm"):
                    continue  # the unguided flow calls the network's velocity directly: no oracle denoiser there
                t0 = time.time()
                with GaussianOracle(method, kernel):
                    ps = gen.sample(ns.num, coords=query, observed=observed, guidance=guidance, seed=ns.seed + 1,
                                    batch_size=ns.num)
                err = moment_errors(ps.values[..., 0].double(), mean[:, 0], cov)
                rows.append({"M": m, "variant": f"{name} {guidance}", "mean_err": err[0], "cov_err": err[1],
                             "seconds": round(time.time() - t0, 1)})
                print(json.dumps(rows[-1]), flush=True)
    Path(ns.out).parent.mkdir(parents=True, exist_ok=True)
    Path(ns.out).write_text(json.dumps({"task": "conditioning-oracle", "num": ns.num, "seed": ns.seed,
                                        "kernel": f"se(0.1) + {NUGGET} I", "query_points": 32, "rows": rows},
                                       indent=2))


if __name__ == "__main__":
    main()
