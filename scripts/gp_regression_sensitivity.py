"""How accurate a model's prior must be for the grf1d GP-regression check: exact GP regression with a perturbed
prior covariance in place of the data's, scored like ``scripts/conditional_bench.py grf1d-regression``.

    OMP_NUM_THREADS=1 python scripts/gp_regression_sensitivity.py [--num 500] [--draws 3] [--seed 0]

The problems are the bench's (same seeds: M uniform observation points, one exact draw of the SE(0.1) GP, 128 query
points). The prior ``K`` at the 128 + M points is replaced by

- ``leak``: ``K + e C`` with ``C`` a noise covariance (Matern-3/2 or SE kernels, white): a model that keeps the
  share ``e`` of its driving noise's variance in every direction (what scripts/eigen_variance.py measures);
- ``relative``: ``K``'s eigenvalues each multiplied by ``exp(r z)``, ``z ~ N(0, 1)``: a relative error ``r`` in
  every eigen-direction, small ones included.

Printed per M: ``bias`` = |m' - m| / sqrt(tr S / num), the posterior-mean error of the perturbed regression in units
of the sampling error of ``num`` exact posterior draws (an exact sampler of the perturbed posterior scores a mean
error ratio of about ``sqrt(1 + bias^2)``), and ``cov`` = |S' - S|_F / |S|_F over the bench's covariance floor
(the median error of ``num`` exact posterior draws, 9 sets).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from funcgen.bench.oracle import gp_posterior
from funcgen.pointset import grid_coords
from funcgen.processes.noise import kernel_matrix

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conditional_bench import kernel, posterior_floor, regression_problem  # noqa: E402  (the bench's problems)

NOISES = {
    "matern32(0.1)": lambda p: kernel_matrix(p, p, "matern32", 0.1),
    "se(0.05)": lambda p: kernel_matrix(p, p, "se", 0.05),
    "white": lambda p: torch.eye(len(p), dtype=torch.float64),
}


def relative(k: torch.Tensor, r: float, g: torch.Generator) -> torch.Tensor:
    """``k`` ``[P, P]`` with each eigenvalue multiplied by ``exp(r z)``, ``z`` standard normal."""
    lam, u = torch.linalg.eigh(k)
    lam = lam.clamp_min(0) * torch.exp(r * torch.randn(len(lam), generator=g, dtype=torch.float64))
    return (u * lam) @ u.T


def score(perturb, ms: tuple[int, ...], num: int, draws: int, seed: int) -> list[tuple[float, float]]:
    """Per M: (mean bias over the floor, covariance error over the floor), averaged over ``draws`` problems."""
    query = grid_coords((128,)).double()
    out = []
    for m in ms:
        bias, cov_ratio = 0.0, 0.0
        for d in range(draws):
            g, obs, y, mean, cov = regression_problem(query, seed, m, d)
            pts = torch.cat([query, obs])
            kp = perturb(kernel(pts), pts, torch.Generator().manual_seed(7 + d))
            mh, ch = gp_posterior(kp, torch.arange(len(query), len(pts)), torch.arange(len(query)), y)
            bias += float((mh[:, 0] - mean[:, 0]).norm() / (cov.trace() / num).sqrt())
            floor = posterior_floor(mean[:, 0], cov, num, g)[1]
            cov_ratio += float(torch.linalg.matrix_norm(ch - cov) / torch.linalg.matrix_norm(cov) / floor)
        out.append((bias / draws, cov_ratio / draws))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num", type=int, default=500)
    p.add_argument("--draws", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ms", type=int, nargs="+", default=[4, 8, 16])
    a = p.parse_args()
    ms = tuple(a.ms)
    print("perturbation | " + " | ".join(f"M={m} bias, cov" for m in ms))
    for name, c in NOISES.items():
        for e in (1e-2, 1e-3, 1e-4, 1e-5):
            row = score(lambda k, pts, g, c=c, e=e: k + e * c(pts), ms, a.num, a.draws, a.seed)
            print(f"leak {name} e={e:g} | " + " | ".join(f"{b:.2f}, {v:.2f}" for b, v in row), flush=True)
    for r in (0.01, 0.03, 0.1, 0.3):
        row = score(lambda k, pts, g, r=r: relative(k, r, g), ms, a.num, a.draws, a.seed)
        print(f"relative r={r:g} | " + " | ".join(f"{b:.2f}, {v:.2f}" for b, v in row), flush=True)


if __name__ == "__main__":
    main()
