"""Which part of a trained denoiser breaks Tweedie guidance: its output or its Jacobian?

    python scripts/conditioning_jacobian.py --ckpt grf1d_fdp.safetensors --ms 4 8 --num 200

On grf1d regression problems (``funcgen.bench.oracle.gp_regression_problem``, SE(0.1) data, 128 query points,
M observed points, the seeds of ``scripts/conditional_bench.py`` draw 0), Tweedie guidance (eq. 1 of
:mod:`funcgen.samplers.guidance`) is run with four denoisers that mix the trained network and the exact Bayes
denoiser of the data (:func:`funcgen.bench.oracle.gaussian_denoiser`): the value of one and the Jacobian of the
other (``value + J - J.detach()`` tricks), and Gaussian-moment guidance (eq. 2) with the model's own covariance.
Prints the sample mean and covariance errors as ratios to those of ``--num`` exact posterior draws (median of 9).
"""

from __future__ import annotations

import argparse

import torch

from funcgen.bench.oracle import gaussian_denoiser, gp_regression_problem, moment_errors
from funcgen.generator import load
from funcgen.pointset import PointSet, grid_coords
from funcgen.processes.noise import kernel_matrix


def kernel(x: torch.Tensor) -> torch.Tensor:
    return kernel_matrix(x.double(), x.double(), "se", 0.1) + 1e-6 * torch.eye(len(x), dtype=torch.float64)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", required=True, help="a diffusion-type model trained on grf1d")
    p.add_argument("--ms", type=int, nargs="+", default=[4, 8])
    p.add_argument("--num", type=int, default=200)
    p.add_argument("--steps", type=int, default=None)
    a = p.parse_args()
    torch.set_num_threads(1)
    gen = load(a.ckpt)
    method = gen.method
    network_denoiser = type(method).denoiser
    path = method.gaussian_path()
    query = grid_coords((128,)).double()
    for m in a.ms:
        g = torch.Generator().manual_seed(100 * m)
        obs, y, mean, cov = gp_regression_problem(query, m, kernel, g)
        pts = torch.cat([query, obs])
        exact = gaussian_denoiser(path, kernel(pts) / float(gen.data["normalization"]["scale"]) ** 2,
                                  path.noise.covariance(pts, pts))

        def mixed(value: str, jacobian: str):
            def denoiser(net, coords, generator=None):
                dn = network_denoiser(method, net, coords, generator)

                def d(x, t):
                    v = dn(x, t) if value == "net" else exact(x, t)
                    j = v if jacobian == value else (dn(x, t) if jacobian == "net" else exact(x, t))
                    return v if j is v else v.detach() + j - j.detach()
                return d
            return denoiser

        lam, u = torch.linalg.eigh(cov)
        floors = [moment_errors(mean[:, 0] + (torch.randn(a.num, 128, generator=g, dtype=torch.float64)
                                              * lam.clamp_min(0).sqrt()) @ u.T, mean[:, 0], cov) for _ in range(9)]
        fm, fc = (float(torch.tensor(v).median()) for v in zip(*floors))
        runs = [("exact value, exact Jacobian", ("exact", "exact"), "tweedie"),
                ("network value, network Jacobian", ("net", "net"), "tweedie"),
                ("exact value, network Jacobian", ("exact", "net"), "tweedie"),
                ("network value, exact Jacobian", ("net", "exact"), "tweedie"),
                ("network, moment guidance", None, "moment")]
        for label, mix, guidance in runs:
            if mix is not None:
                method.denoiser = mixed(*mix)
            ps = gen.sample(a.num, coords=query.float(), observed=PointSet(obs[None].float(), y[None].float()),
                            seed=0, batch_size=a.num, steps=a.steps, guidance=guidance)
            if mix is not None:
                del method.denoiser
            e = moment_errors(ps.values[..., 0].double(), mean[:, 0], cov)
            print(f"M={m} {label:34s} mean {e[0] / fm:6.2f}x  cov {e[1] / fc:7.2f}x the floor", flush=True)


if __name__ == "__main__":
    main()
