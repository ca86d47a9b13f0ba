"""Checks of trained models against exact answers: GP regression, likelihood, MNIST inpainting / super-resolution.

    python scripts/conditional_bench.py grf1d-regression --ckpt MODEL.safetensors --method fdp
    python scripts/conditional_bench.py grf1d-likelihood --ckpt MODEL.safetensors --method fdp
    python scripts/conditional_bench.py mnist-inpaint    --ckpt MNIST.safetensors --method fdp
    python scripts/conditional_bench.py mnist-superres   --ckpt MNIST.safetensors --method fdp

Each writes one JSON record in the format of ``funcgen bench`` (task, method, seed, model config, metrics,
reference, seconds, torch, commit, machine) to ``--out`` (default ``docs/results/TASK_METHOD.json``).
Protocols (../shared/BENCHMARKS.md, "Conditional and likelihood tasks"):

grf1d-regression: SE kernel, lengthscale 0.1, unit variance. For M = 4, 8, 16: one exact GP draw at 128 query
    grid points ``(i + 0.5) / 128`` and M uniform random locations, observed noise-free at the M locations;
    ``--num`` (500) conditional samples at the 128 points. ``mean_err`` = ||sample mean - m|| / sqrt(tr S) and
    ``cov_err`` = ||sample cov - S||_F / ||S||_F against the exact posterior N(m, S); the floor is the median
    over 9 sets of the same errors for ``--num`` exact posterior draws; ``ratio`` = error / floor (bar: <= 2).
    ``--draws`` GP draws per M (default 3, errors averaged). ``model_gp_mean_err`` / ``model_gp_cov_err``: the
    same errors for exact GP regression with the model's own covariance (``FunctionGenerator.model_covariance``
    from ``--model-cov`` samples at the 128 + M points): what a perfect conditional sampler of a Gaussian
    approximation of the model would score, so the gap to ``mean_err`` is the sampler's.
grf1d-likelihood: ``--num`` (500) exact draws at the 16-point grid (the headline) and at 64 points;
    ``kl`` = model NLL - exact NLL (nats per function; the exact law is the data module's, N(0, K + 1e-6 I)),
    with its standard error, and ``ode_err_oracle`` / ``ode_bias_oracle``: the same likelihood computed with the
    exact Gaussian denoiser in place of the network, minus the closed form, mean absolute / mean signed over 50
    draws (the ODE's discretisation error at these settings, plus Hutchinson noise in the absolute one).
mnist-inpaint / mnist-superres: ``--num`` (500) held-out digits (images 8000..); the left half observed, or the
    7x7 area average observed as the averages of the 7x7 cells (``observe="cells"``); one completion each at
    28x28; LeNet accuracy against
    the true labels (bars 0.8 / 0.9) and FD_LeNet of the completions against the held-out images.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import time
from pathlib import Path

import torch

from funcgen.bench.oracle import GaussianOracle, gp_posterior, gp_regression_problem, moment_errors
from funcgen.generator import FunctionGenerator, load
from funcgen.pointset import PointSet, grid_coords, grid_to_pointset, pointset_to_grid
from funcgen.processes.density import gaussian_log_prob
from funcgen.processes.noise import kernel_matrix

REPO = Path(__file__).resolve().parents[1]
DATA_JITTER = 1e-6  # the GRF data module's relative jitter: the law of its draws is N(0, K + 1e-6 I)


def kernel(x: torch.Tensor) -> torch.Tensor:
    return kernel_matrix(x.double(), x.double(), "se", 0.1) + DATA_JITTER * torch.eye(len(x), dtype=torch.float64)


def _posterior_draws(mean: torch.Tensor, cov: torch.Tensor, num: int, g: torch.Generator) -> torch.Tensor:
    lam, u = torch.linalg.eigh(cov)
    z = torch.randn(num, len(mean), generator=g, dtype=torch.float64)
    return mean + (z * lam.clamp_min(0).sqrt()) @ u.T


def regression_problem(query: torch.Tensor, seed: int, m: int,
                       d: int) -> tuple[torch.Generator, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The protocol's ``d``-th GP-regression problem with ``m`` observations for ``seed``:
    ``(generator, obs, y, mean, cov)`` (:func:`funcgen.bench.oracle.gp_regression_problem`), the generator left where
    the problem's draws end (:func:`posterior_floor` continues it)."""
    g = torch.Generator().manual_seed(1000 * seed + 100 * m + d)
    return (g, *gp_regression_problem(query, m, kernel, g))


def posterior_floor(mean: torch.Tensor, cov: torch.Tensor, num: int, g: torch.Generator) -> tuple[float, float]:
    """The floor of (mean error, covariance error): their medians over 9 sets of ``num`` exact draws of
    ``N(mean [Q], cov [Q, Q])``."""
    fl = [moment_errors(_posterior_draws(mean, cov, num, g), mean, cov) for _ in range(9)]
    return tuple(float(torch.tensor(v).median()) for v in zip(*fl))


def grf1d_regression(gen: FunctionGenerator, seed: int, num: int = 500, ms: tuple[int, ...] = (4, 8, 16),
                     draws: int = 3, guidance: str = "auto", steps: int | None = None,
                     model_cov: int = 0, moment_samples: int = 1024, resample: int = 1) -> tuple[dict, dict, float]:
    metrics, reference, seconds = {}, {}, 0.0
    query = grid_coords((128,)).double()
    for m in ms:
        errs, floors, gp_errs = [], [], []
        for d in range(draws):
            g, obs, y, mean, cov = regression_problem(query, seed, m, d)
            t0 = time.time()
            ps = gen.sample(num, coords=query.float(), observed=PointSet(obs[None].float(), y[None].float()),
                            seed=seed + d, guidance=guidance, steps=steps, batch_size=num,
                            moment_samples=moment_samples, resample=resample)
            seconds += time.time() - t0
            errs.append(moment_errors(ps.values[..., 0].double(), mean[:, 0], cov))
            if model_cov:  # the model's own covariance in exact GP regression: model error without the sampler
                pts = torch.cat([query, obs]).float()
                kh = gen.model_covariance(pts, model_cov, seed=seed + d, steps=steps, batch_size=num)
                mh, ch = gp_posterior(kh, torch.arange(len(query), len(pts)), torch.arange(len(query)), y)
                gp_errs.append((float((mh[:, 0] - mean[:, 0]).norm() / cov.trace().sqrt()),
                                float(torch.linalg.matrix_norm(ch - cov) / torch.linalg.matrix_norm(cov))))
            floors.append(posterior_floor(mean[:, 0], cov, num, g))
            # the samples pass through the observations: largest |sample - y| at the observed points
        for j, name in enumerate(("mean_err", "cov_err")):
            e = sum(x[j] for x in errs) / draws
            f = sum(x[j] for x in floors) / draws
            if gp_errs:
                metrics[f"model_gp_{name}@M={m}"] = sum(x[j] for x in gp_errs) / draws
            metrics[f"{name}@M={m}"] = e
            reference[f"floor_{name}@M={m}"] = f
            metrics[f"{name}_ratio@M={m}"] = e / f
        print(json.dumps({k: v for k, v in metrics.items() if k.endswith(f"M={m}")}), flush=True)
    return metrics, reference, seconds


def grf1d_likelihood(gen: FunctionGenerator, seed: int, num: int = 500, points: tuple[int, ...] = (16, 64),
                     steps: int = 100, divergence: str = "auto") -> tuple[dict, dict, float]:
    metrics, reference, seconds = {}, {}, 0.0
    for n in points:
        g = torch.Generator().manual_seed(seed + n)
        x = grid_coords((n,)).double()
        k = kernel(x)
        vals = (torch.linalg.cholesky(k) @ torch.randn(n, num, generator=g, dtype=torch.float64)).T[..., None]
        coords = x[None].expand(num, -1, -1)
        exact = gaussian_log_prob(vals, k, jitter=0.0)
        t0 = time.time()
        ll = gen.log_prob(PointSet(coords.float(), vals.float()), steps=steps, divergence=divergence, seed=seed,
                          batch_size=num)
        seconds += time.time() - t0
        diff = exact - ll  # model NLL - exact NLL, per function
        metrics[f"kl@N={n}"] = float(diff.mean())
        metrics[f"kl_std_err@N={n}"] = float(diff.std() / num**0.5)
        metrics[f"nll@N={n}"] = float(-ll.mean())
        reference[f"exact_nll@N={n}"] = float(-exact.mean())
        # the ODE's own error at these settings: the exact Gaussian denoiser in place of the network
        method = gen.method
        path = method.gaussian_path()
        a0, s0 = path.scales(path.t_data)
        marg = a0 * a0 * k + s0 * s0 * path.noise.covariance(x, x).double()
        sub = slice(0, min(num, 50))
        with GaussianOracle(method, kernel):
            ll_o = gen.log_prob(PointSet(coords[sub].float(), vals[sub].float()), steps=steps, divergence=divergence,
                                seed=seed, batch_size=num)
        scale = float(gen.data.get("normalization", {}).get("scale", 1.0))
        closed = gaussian_log_prob(vals[sub] / scale, marg, jitter=0.0) - n * torch.log(torch.tensor(scale))
        reference[f"ode_err_oracle@N={n}"] = float((ll_o - closed).abs().mean())
        reference[f"ode_bias_oracle@N={n}"] = float((ll_o - closed).mean())  # signed: what the mean KL inherits
        print(json.dumps({k: v for k, v in {**metrics, **reference}.items() if k.endswith(f"N={n}")}), flush=True)
    return metrics, reference, seconds


def left_half() -> torch.Tensor:
    """``[784]`` bool: the pixels of a 28x28 grid point set (:func:`funcgen.pointset.grid_to_pointset` order) in
    columns 0..13, the part mnist-inpaint observes."""
    mask = torch.zeros(28, 28, dtype=torch.bool)
    mask[:, :14] = True
    return grid_to_pointset(mask[None, None].float()).values[0, :, 0] > 0.5


def mnist_observed(truth: torch.Tensor, task: str) -> PointSet:
    """What ``task`` observes of the digits ``truth`` ``[B, 28, 28]`` (intensities): mnist-inpaint the pixels of
    the left half, mnist-superres the 7x7 area averages at the 7x7 cell centres (read with ``observe="cells"``)."""
    if task == "mnist-inpaint":
        full, keep = grid_to_pointset(truth[:, None]), left_half()
        return PointSet(full.coords[:, keep], full.values[:, keep])
    return grid_to_pointset(torch.nn.functional.avg_pool2d(truth[:, None], 4))  # [B, 49, .]


def mnist_split() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The protocol's training digits ``[8000, 28, 28]``, held-out digits ``[2000, 28, 28]`` (intensities) and the
    held-out labels ``[2000]``."""
    from funcgen.data.mnist import NUM_TRAIN_PROTOCOL, load_mnist_idx, resolve_data_root

    images, labels = load_mnist_idx(resolve_data_root(None))
    digits, held_out_labels = torch.from_numpy(images).float() / 255.0, torch.from_numpy(labels[NUM_TRAIN_PROTOCOL:])
    return digits[:NUM_TRAIN_PROTOCOL], digits[NUM_TRAIN_PROTOCOL:], held_out_labels.long()


def heldout_index(seed: int, num: int, count: int) -> torch.Tensor:
    """Indices ``[num]`` of the held-out digits (of ``count``) that the MNIST tasks complete for ``seed``."""
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:num]


def mnist_completion(gen: FunctionGenerator, seed: int, task: str, num: int = 500, guidance: str = "auto",
                     steps: int | None = None, batch_size: int = 64,
                     moment_samples: int = 1024, resample: int = 1) -> tuple[dict, dict, float]:
    from funcgen.metrics import feature_frechet_distance, get_lenet, lenet_features
    from funcgen.metrics.lenet import lenet_accuracy

    _, test, lab = mnist_split()
    idx = heldout_index(seed, num, len(test))
    truth, truth_lab = test[idx], lab[idx]
    observed = mnist_observed(truth, task)
    t0 = time.time()
    # one call: the digits share their observed points, so the guidance's covariance estimate is drawn once and
    # the sampler runs batch_size digits at a time
    # super-resolution: each 7x7 pixel is the average of its 4x4 cell, and is conditioned on as one
    # (observe="cells"); inpainting observes point values
    ps = gen.sample(1, 28, observed=observed, seed=seed, guidance=guidance, steps=steps, batch_size=batch_size,
                    progress=True, moment_samples=moment_samples, resample=resample,
                    observe="points" if task == "mnist-inpaint" else "cells")
    seconds = time.time() - t0
    completions = pointset_to_grid(ps.values, (28, 28))[:, 0].clamp(0, 1)
    net = get_lenet()
    ref_feats = lenet_features(test, net)
    return ({f"lenet_accuracy@task={task}": lenet_accuracy(net, completions, truth_lab),
             f"fd_lenet@task={task}": feature_frechet_distance(lenet_features(completions, net), ref_feats)},
            {"lenet_accuracy_of_truth": lenet_accuracy(net, truth, truth_lab),
             "fd_lenet_of_truth": feature_frechet_distance(lenet_features(truth, net), ref_feats)}, seconds)


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", choices=["grf1d-regression", "grf1d-likelihood", "mnist-inpaint", "mnist-superres"])
    p.add_argument("--ckpt", required=True)
    p.add_argument("--method", required=True, help="name recorded in the JSON (fdp, ffm, pfgmpp, ...)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num", type=int, default=500)
    p.add_argument("--steps", type=int, default=None, help="sampler steps (likelihood: ODE steps, default 100)")
    p.add_argument("--guidance", default="auto", choices=["auto", "moment", "error", "tweedie", "replace"])
    p.add_argument("--moment-samples", type=int, default=1024,
                   help="regression and mnist tasks: unconditional draws behind the moment / error guidance's "
                        "covariance")
    p.add_argument("--model-cov", type=int, default=2048,
                   help="grf1d-regression: also report exact GP regression with the model's covariance estimated "
                        "from this many unconditional samples (model_gp_*: the model's error without the "
                        "conditional sampler's; 0: skip)")
    p.add_argument("--resample", type=int, default=1, help="regression and mnist tasks: repeats of each sampler step "
                   "(RePaint)")
    p.add_argument("--method-arg", action="append", default=[], metavar="NAME=VALUE",
                   help="override a method constructor argument for sampling, e.g. eta=1.0 (repeatable)")
    p.add_argument("--draws", type=int, default=3, help="grf1d-regression: GP draws per M")
    p.add_argument("--ms", type=int, nargs="+", default=[4, 8, 16], help="grf1d-regression: observation counts M")
    p.add_argument("--divergence", default="auto", choices=["auto", "exact", "hutchinson"])
    p.add_argument("--points", type=int, nargs="+", default=[16, 64], help="grf1d-likelihood: grid sizes")
    p.add_argument("--out", default=None)
    ns = p.parse_args()
    torch.set_num_threads(1)
    gen = load(ns.ckpt)
    overrides = {k: json.loads(v) for k, v in (a.split("=", 1) for a in ns.method_arg)}
    if overrides:
        gen = gen.with_method_args(**overrides)
    opts: dict = {"num": ns.num}
    if ns.task == "grf1d-regression":
        opts.update(draws=ns.draws, guidance=ns.guidance, steps=ns.steps, model_cov=ns.model_cov, ms=tuple(ns.ms),
                    moment_samples=ns.moment_samples, resample=ns.resample)
        metrics, reference, seconds = grf1d_regression(gen, ns.seed, **opts)
    elif ns.task == "grf1d-likelihood":
        opts.update(steps=ns.steps or 100, divergence=ns.divergence, points=tuple(ns.points))
        metrics, reference, seconds = grf1d_likelihood(gen, ns.seed, **opts)
    else:
        opts.update(guidance=ns.guidance, steps=ns.steps, moment_samples=ns.moment_samples, resample=ns.resample)
        metrics, reference, seconds = mnist_completion(gen, ns.seed, ns.task, **opts)
    record = {"task": ns.task, "method": ns.method, "seed": ns.seed, "ckpt": ns.ckpt, "model": gen.config(),
              "metrics": metrics, "reference": reference, "eval_options": {**opts, "method_args": overrides},
              "sample_seconds": round(seconds, 1),
              "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
              "torch": torch.__version__, "commit": _commit(),
              "machine": f"{platform.machine()} {torch.get_num_threads()} threads"}
    out = Path(ns.out or REPO / "docs" / "results" / f"{ns.task}_{ns.method}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2))
    print(json.dumps({"metrics": metrics, "reference": reference}, indent=2))


if __name__ == "__main__":
    main()
