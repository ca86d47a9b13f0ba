"""``funcgen bench TASK --method M``: train within the task's CPU budget, evaluate, write JSON.

Protocol and JSON format: docs/protocol.md. Tasks are registered in :data:`TASKS` (an
explicit table, no name look-ups in globals). Each task names its default config
``configs/METHOD/TASK.yaml``, its training budget, and an evaluation function.
"""

from __future__ import annotations

import json
import platform
import resource
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from ..config import config_root, resolve_config
from ..metrics import (
    energy_distance,
    median_bandwidth,
    mmd2,
    moment_report,
    spectrum_error,
)
from ..pointset import pointset_to_grid

__all__ = ["run_bench", "TASKS", "Task", "METHODS", "QUICK_MAX_STEPS"]

REPO = Path(__file__).resolve().parents[2]
#: the trainer / logger / checkpoint settings every config composes with
CONFIGS = config_root()  # the repository's configs/, or funcgen/configs in an installed package
BASE_CONFIG = CONFIGS / "base" / "trainer.yaml"


@dataclass(frozen=True)
class Task:
    """A benchmark task: default budget (minutes) and the evaluation of a trained generator."""

    minutes: float
    #: ``evaluate(gen, datamodule, seed, **sizes) -> (metrics, reference, sample_seconds)``
    evaluate: Callable[..., tuple[dict[str, float], dict[str, float], float]]
    #: name of the default config ``configs/METHOD/CONFIG.yaml`` (default: the task's name)
    config: str | None = None
    #: False: evaluate the untrained model built from the config (cost-only tasks such as sample-scaling)
    train: bool = True
    #: keyword overrides of ``evaluate`` for ``--quick`` smoke runs (tiny sample counts, few sampler steps)
    quick: dict[str, Any] = field(default_factory=dict)
    #: further settings the run's seed decides, ``{dotted key: seed -> value}`` (e.g. the Earth sets'
    #: split seed: the protocol's seeds 0..4 are five different 80/10/10 splits)
    seed_settings: dict[str, Callable[[int], Any]] = field(default_factory=dict)


def _eval_grf(gen, datamodule, seed: int, resolutions: tuple[int, ...], num: int = 2000,
              steps: int | None = None, floor_repeats: int = 9) -> tuple[dict[str, float], dict[str, float], float]:
    """Covariance / mean / variance errors of ``num`` samples at each resolution, and the exact floor."""
    metrics: dict[str, float] = {}
    reference: dict[str, float] = {}
    sample_seconds = 0.0
    for n in resolutions:
        t0 = time.time()
        ps = gen.sample(num, n, seed=seed + 1, steps=steps, batch_size=500, denormalize=False, progress=True)
        sample_seconds += time.time() - t0
        c = ps.coords[0]
        cov = datamodule.covariance(c, c)
        metrics.update(moment_report(ps.values[..., 0], cov, f"@N={n ** gen.dim}"))
        # the floor: the same statistics for exact samples, median over independent sets (one set is noisy)
        exact = [datamodule.reference(ps.coords, torch.Generator().manual_seed(seed + 2 + r))[..., 0]
                 for r in range(floor_repeats)]
        reps = [moment_report(e, cov, f"@N={n ** gen.dim}") for e in exact]
        floor = {k: float(torch.tensor([rep[k] for rep in reps]).median()) for k in reps[0]}
        reference.update({k.replace("cov_err", "floor").replace("mean_err", "floor_mean")
                          .replace("var_err", "floor_var"): v for k, v in floor.items()})
        dist, dist_floor = _distance_report(ps.values[..., 0], exact, (n,) * gen.dim, f"@N={n ** gen.dim}")
        metrics.update(dist)
        reference.update(dist_floor)
    return metrics, reference, sample_seconds


def _distance_report(samples: Tensor, exact: list[Tensor], shape: tuple[int, ...], suffix: str,
                     floor_pairs: int = 3) -> tuple[dict[str, float], dict[str, float]]:
    """Set distances of ``samples`` ``[S, N]`` (on the grid ``shape``) to the exact set ``exact[0]``.

    Unbiased MMD^2 (RBF kernel, bandwidth = median heuristic of ``exact[0]``, shared by metric and
    floor), energy distance and radial power-spectrum error; the floors are the medians of the same
    statistics for ``exact[1 .. floor_pairs]`` against ``exact[0]``.
    """
    h = median_bandwidth(exact[0])
    ref_grid = pointset_to_grid(exact[0].unsqueeze(-1), shape)[:, 0]

    def report(x: Tensor) -> dict[str, float]:
        return {"mmd2": mmd2(x, exact[0], bandwidth=h), "energy": energy_distance(x, exact[0]),
                "spec_err": spectrum_error(pointset_to_grid(x.unsqueeze(-1), shape)[:, 0], ref_grid)}

    metrics = {f"{k}{suffix}": v for k, v in report(samples).items()}
    floors = [report(e) for e in exact[1:1 + floor_pairs]]
    reference = {f"floor_{k}{suffix}": float(torch.tensor([f[k] for f in floors], dtype=torch.float64).median())
                 for k in floors[0]}
    reference[f"mmd_bandwidth{suffix}"] = h
    return metrics, reference


def _eval_mnist(gen, datamodule, seed: int, resolutions: tuple[int, ...] = (28, 56, 112), num: int = 2000,
                steps: int | None = None, lenet: Any = None, floor_repeats: int = 5,
                batch_size: int = 250, refine: tuple[int, ...] | None = None
                ) -> tuple[dict[str, float], dict[str, float], float]:
    """FD_LeNet of ``num`` samples at each resolution (downsampled to 28x28 by area averaging) against
    the 2000 test images 8000..9999, and the fraction of samples the classifier calls one digit with
    probability >= 0.99 (``recognisable@...``; reference ``real_recognisable``: the test images').

    ``refine``: sampler step counts also evaluated at the first resolution (keys
    ``fd_lenet@res=28,steps=K``); for IGN, ``steps = K`` is ``f`` applied ``K`` times. Default: IGN's
    refinement ``(1, 2, 3)`` for an IGN model, none otherwise.

    Reference (the floor): FD_LeNet of ``num`` real training images (a seeded random subset of
    0..7999, the generator's training distribution; median over ``floor_repeats`` subsets) against
    the same test images. Note that MNIST's test file holds two writer populations (images 0..4999
    and 5000..9999), so the test images are closer to training images 5000..7999 than to 0..4999.

    Above 28 px the data are the continuous function the MNIST data module trains on (bilinear between
    pixel centres), and its cell averages at 28 px are a blurred digit, not the image: read at ``r`` px and
    area-averaged back, the real training images themselves score ``reading_fd_lenet@res=r`` against
    the 28-px test images (what a perfect model scores on ``fd_lenet@res=r``). So each ``r != 28`` also
    gets ``fd_lenet_matched@res=r``: the samples against the test images read the same way (at ``r``
    px, then area-averaged), with its floor ``floor_fd_lenet_matched@res=r`` (training images read the
    same way against that reference), so that a model of the data scores the same at every resolution.
    ``lenet`` defaults to the cached classifier (:func:`funcgen.metrics.get_lenet`).
    """
    from ..data.mnist import NUM_TRAIN_PROTOCOL, load_mnist_idx, resolve_data_root
    from ..metrics import (
        feature_frechet_distance,
        get_lenet,
        lenet_confident_fraction,
        lenet_features,
    )

    root = getattr(datamodule, "root", None)
    net = get_lenet(root) if lenet is None else lenet
    images = torch.from_numpy(load_mnist_idx(resolve_data_root(root))[0]).float() / 255.0
    test = lenet_features(images[NUM_TRAIN_PROTOCOL:], net)
    matched = {r: lenet_features(continuous_reading(images[NUM_TRAIN_PROTOCOL:], r), net)
               for r in resolutions if r != 28}
    metrics: dict[str, float] = {}
    sample_seconds = 0.0
    refine = _refinements(gen) if refine is None else refine
    runs = [(r, steps, f"fd_lenet@res={r}") for r in resolutions]
    runs += [(resolutions[0], k, f"fd_lenet@res={resolutions[0]},steps={k}") for k in refine]
    for r, k, key in runs:
        t0 = time.time()
        ps = gen.sample(num, r, seed=seed + 1, steps=k, batch_size=batch_size, denormalize=True, progress=True)
        sample_seconds += time.time() - t0
        # intensities live in [0, 1]: clip overshoot as an image writer would (FD pipelines quantise to uint8)
        samples = pointset_to_grid(ps.values, (r, r))[:, 0].clamp(0.0, 1.0)
        feats = lenet_features(samples, net)
        metrics[key] = feature_frechet_distance(feats, test)
        if r in matched and k == steps:
            metrics[key.replace("fd_lenet", "fd_lenet_matched")] = feature_frechet_distance(feats, matched[r])
        metrics[key.replace("fd_lenet", "recognisable")] = lenet_confident_fraction(samples, net)
    floors: dict[int, list[float]] = {r: [] for r in (28, *matched)}
    readings: dict[int, list[float]] = {r: [] for r in matched}
    for rep in range(floor_repeats):
        idx = floor_subset(seed, rep, num)
        floors[28].append(feature_frechet_distance(lenet_features(images[idx], net), test))
        for r, ref in matched.items():
            read = lenet_features(continuous_reading(images[idx], r), net)
            floors[r].append(feature_frechet_distance(read, ref))
            readings[r].append(feature_frechet_distance(read, test))

    def median(v: list[float]) -> float:
        return float(torch.tensor(v, dtype=torch.float64).median())

    # real images are 28x28: the floor is the same at every resolution, repeated so every metric has one
    reference = {f"floor_fd_lenet@res={r}": median(floors[28]) for r in resolutions}
    for r in matched:
        reference[f"floor_fd_lenet_matched@res={r}"] = median(floors[r])
        reference[f"reading_fd_lenet@res={r}"] = median(readings[r])
    reference["real_recognisable"] = lenet_confident_fraction(images[NUM_TRAIN_PROTOCOL:], net)
    if "test_accuracy" in net.info:
        reference["lenet_test_accuracy"] = float(net.info["test_accuracy"])
    return metrics, reference, sample_seconds


def floor_subset(seed: int, rep: int, num: int) -> Tensor:
    """Indices ``[num]`` of the ``rep``-th seeded subset of the MNIST training images that the floor of a run with
    ``seed`` scores (:func:`_eval_mnist`)."""
    from ..data.mnist import NUM_TRAIN_PROTOCOL

    return torch.randperm(NUM_TRAIN_PROTOCOL, generator=torch.Generator().manual_seed(seed + 2 + rep))[:num]


def continuous_reading(images: Tensor, r: int) -> Tensor:
    """``images`` ``[n, 28, 28]`` read as the MNIST data module's continuous functions (bilinear between pixel
    centres, border values outside them, as :class:`funcgen.data.base.JitteredImageDataset`) on the
    ``r x r`` cell-centre grid: ``[n, r, r]``."""
    import torch.nn.functional as F

    return F.interpolate(images[:, None], size=(r, r), mode="bilinear", align_corners=False)[:, 0]


def _eval_robustness(gen, datamodule, seed: int, num: int = 500, n: int = 64, quality_num: int = 500,
                     alphas: tuple[float, ...] = (0.1, 0.2), bits: tuple[int, ...] = (5, 6, 7, 8, 9),
                     steps: tuple[int, ...] = (4, 6, 9, 13, 18)) -> tuple[dict[str, float], dict[str, float], float]:
    """The PFGM++ robustness study on grf1d: quality (64 and 256 points), then the covariance error at
    ``n`` points under per-step noise injection (``alpha``), post-training weight quantization (``bits``)
    and fewer sampler steps (keys name the NFE). CPU-sized: 500 functions per setting (about 14
    evaluations of up to 35 network calls each); the floors are computed for the same number."""
    from .robustness import quantized

    metrics, reference, seconds = _eval_grf(gen, datamodule, seed, (64, 256), num=quality_num)
    tag = f"@N={n}"

    def one(g, key: str, **kw) -> None:
        nonlocal seconds
        m, r, s = _eval_grf(g, datamodule, seed, (n,), num=num, **kw)
        seconds += s
        metrics[f"cov_err{tag},{key}"] = m[f"cov_err{tag}"]
        reference.setdefault(f"floor{tag},num={num}", r[f"floor{tag}"])

    for a in alphas:
        one(gen.with_method_args(inject_alpha=a), f"alpha={a}")
    for b in bits:
        one(quantized(gen, b), f"bits={b}")
    for k in steps:
        one(gen, f"nfe={gen.method.nfe(k)}", steps=k)
    return metrics, reference, seconds


def _eval_mesh_grf(gen, datamodule, seed: int, num: int = 256, steps: int | None = None
                   ) -> tuple[dict[str, float], dict[str, float], float]:
    """GRFs on meshes (MDF): moment errors, COV/MMD against exact samples and, on the sphere, the
    angular power spectrum error, at the mesh vertices and at those of its 4x subdivision
    (``steps``: sampler steps, None = the method's)."""
    from ..metrics.mdf_sets import cov_mmd

    metrics: dict[str, float] = {}
    reference: dict[str, float] = {}
    sample_seconds = 0.0
    for factor in (1, 4):
        coords = datamodule.validation_coords(factor, num)
        t0 = time.time()
        ps = gen.sample(coords=coords, seed=seed + 1, steps=steps, batch_size=64, denormalize=False, progress=True)
        sample_seconds += time.time() - t0
        key = f"@N={ps.num_points}"
        cov = datamodule.covariance(coords[0], coords[0])
        ref, ref2 = (datamodule.reference(coords, torch.Generator().manual_seed(seed + r)) for r in (2, 3))
        metrics.update(moment_report(ps.values[..., 0], cov, key))
        metrics.update(cov_mmd(ps.values, ref, suffix=key))
        floor = {**moment_report(ref2[..., 0], cov, key), **cov_mmd(ref2, ref, suffix=key)}
        reference.update({f"floor_{k}": v for k, v in floor.items()})
        if factor == 1 and hasattr(datamodule, "estimate_power_spectrum"):
            c_l = datamodule.angular_power_spectrum()
            for name, vals in (("aps_err", ps.values), ("floor_aps_err", ref2)):
                err = float((datamodule.estimate_power_spectrum(vals) / c_l - 1).abs().mean())
                (metrics if name == "aps_err" else reference)[f"{name}{key}"] = err
    return metrics, reference, sample_seconds


def _eval_mnist_sphere(gen, datamodule, seed: int, num: int = 128, steps: int | None = None,
                       batch_size: int = 32) -> tuple[dict[str, float], dict[str, float], float]:
    """MNIST on a sphere (MDF): ``num`` samples at the mesh vertices, read back onto the digit's 28x28 chart
    (:func:`funcgen.data.mesh.chart_images`, the inverse of the texturing), and the fraction the bench LeNet
    calls one digit with probability >= 0.99 (``recognisable``). References: the same fraction for held-out
    digits painted on the mesh and read back the same way (the pipeline's ceiling: the mesh blurs the
    digit), and for the raw images."""
    from ..data.mesh import chart_images
    from ..data.mnist import NUM_TRAIN_PROTOCOL, load_mnist_idx, resolve_data_root
    from ..metrics import get_lenet, lenet_confident_fraction

    root = getattr(datamodule, "root", None)
    net = get_lenet(root)
    datamodule.setup("fit")
    key = f"@N={datamodule.mesh.num_vertices}"
    t0 = time.time()
    ps = gen.sample(coords=datamodule.validation_coords(1, num), seed=seed + 1, steps=steps, batch_size=batch_size,
                    denormalize=True, progress=True)
    seconds = time.time() - t0
    samples = chart_images(ps.values.cpu(), datamodule.mesh).clamp(0.0, 1.0)
    real = chart_images(datamodule.denormalize(datamodule.val_set.values[:num]), datamodule.mesh).clamp(0.0, 1.0)
    raw = torch.from_numpy(load_mnist_idx(resolve_data_root(root))[0][NUM_TRAIN_PROTOCOL:]).float() / 255.0
    metrics = {f"recognisable{key}": lenet_confident_fraction(samples, net)}
    reference = {f"real_on_mesh_recognisable{key}": lenet_confident_fraction(real, net),
                 "real_recognisable": lenet_confident_fraction(raw, net)}
    return metrics, reference, seconds


def _eval_earth(gen, datamodule, seed: int, steps: int = 100) -> tuple[dict[str, float], dict[str, float], float]:
    """Test NLL (nats per point, w.r.t. the area of the unit sphere) of the Earth split's 10% test points."""
    published = {"volcano": -7.93, "earthquake": -0.28, "fire": -1.86, "flood": float("nan")}  # RFM, data/README.md
    datamodule.setup("test")
    pts = datamodule.test_points.to(next(gen.net.parameters()).device)
    t0 = time.time()
    ll = gen.log_likelihood(pts, steps=steps, seed=seed, progress=True)
    name = datamodule.dataset
    metrics = {f"nll@dataset={name}": float(-ll.mean()),
               f"nll_std_err@dataset={name}": float(ll.std() / len(ll) ** 0.5)}
    reference = {f"uniform_nll@dataset={name}": float(datamodule.manifold.log_volume()),
                 f"rfm_published_nll@dataset={name}": published.get(name, float("nan"))}
    return metrics, reference, time.time() - t0


def _refinements(gen) -> tuple[int, ...]:
    """Extra step counts worth evaluating: IGN's refinement ``f(f(z))``, ``f(f(f(z)))``."""
    from ..methods import SupportsRefinement

    method = getattr(gen, "method", None)  # stand-in generators in tests have none
    return tuple(method.refinement_steps) if isinstance(method, SupportsRefinement) else ()


def _eval_mixture(gen, datamodule, seed: int, steps: int = 100, num_test: int = 1000,
                  num_entropy: int = 20000) -> tuple[dict[str, float], dict[str, float], float]:
    """Test NLL (nats, w.r.t. the Riemannian volume) of ``num_test`` fresh exact draws of a known-density
    mixture (``datamodule.mixture``), and KL(true || model) = NLL - H with the entropy
    ``H = -E log p_true`` estimated by Monte Carlo on ``num_entropy`` further exact draws. Standard
    errors: ``nll_std_err``, ``entropy_std_err``, ``kl_std_err`` (the two combined, independent draws);
    ``kl_paired`` = mean of ``log p_true - log p_model`` on the test points (lower variance)."""
    mix, name = datamodule.mixture, datamodule.manifold_name
    test = mix.sample(num_test, torch.Generator().manual_seed(seed + 7919))
    ent = -mix.log_prob(mix.sample(num_entropy, torch.Generator().manual_seed(seed + 104729)).double())
    t0 = time.time()
    ll = gen.log_likelihood(test, steps=steps, seed=seed, progress=True).double().cpu()
    seconds = time.time() - t0
    se = lambda v: float(v.std() / len(v) ** 0.5)  # noqa: E731
    nll, h = float(-ll.mean()), float(ent.mean())
    paired = mix.log_prob(test.double()) - ll
    key = f"@task={name}"
    metrics = {f"nll{key}": nll, f"nll_std_err{key}": se(ll), f"kl{key}": nll - h,
               f"kl_std_err{key}": (se(ll) ** 2 + se(ent) ** 2) ** 0.5, f"kl_paired{key}": float(paired.mean()),
               f"kl_paired_std_err{key}": se(paired)}
    reference = {f"entropy{key}": h, f"entropy_std_err{key}": se(ent),
                 f"uniform_nll{key}": float(datamodule.manifold.log_volume())}
    return metrics, reference, seconds


def _sample_scaling(gen, datamodule, seed: int, **sizes: Any) -> tuple[dict[str, float], dict[str, float], float]:
    """Cost of one sample per size (:func:`funcgen.bench.sample_scaling.eval_sample_scaling`); the data are unused."""
    from .sample_scaling import eval_sample_scaling

    return eval_sample_scaling(gen, seed, **sizes)


TASKS: dict[str, Task] = {
    "grf1d": Task(minutes=25.0, evaluate=partial(_eval_grf, resolutions=(64, 256)),
                  quick=dict(num=32, steps=4, floor_repeats=2)),
    "grf2d": Task(minutes=30.0, evaluate=partial(_eval_grf, resolutions=(32, 64), num=1000),
                  quick=dict(num=16, steps=4, floor_repeats=2)),
    "mnist": Task(minutes=60.0, evaluate=_eval_mnist, quick=dict(num=32, steps=4, floor_repeats=1)),
    "robustness": Task(minutes=25.0, evaluate=_eval_robustness, config="grf1d",
                       quick=dict(num=16, quality_num=16, alphas=(0.1,), bits=(6,), steps=(4,))),
    "sphere_grf": Task(minutes=30.0, evaluate=_eval_mesh_grf, quick=dict(num=8, steps=4)),
    "mesh_grf": Task(minutes=30.0, evaluate=_eval_mesh_grf, quick=dict(num=8, steps=4)),
    "mnist_sphere": Task(minutes=30.0, evaluate=_eval_mnist_sphere, quick=dict(num=4, steps=2)),
    "earth": Task(minutes=30.0, evaluate=_eval_earth, config="earth_volcano", quick=dict(steps=4),
                  seed_settings={"data.init_args.split_seed": int}),
    # cost, not quality: an UNTRAINED model from the config, one sample per size, few sampler steps
    "sample-scaling": Task(minutes=0.0, evaluate=_sample_scaling,
                           config="grf2d_sno", train=False, quick=dict(resolutions=(16, 32), steps=1)),
    "so3": Task(minutes=20.0, evaluate=_eval_mixture, config="so3_mixture",
                quick=dict(steps=4, num_test=32, num_entropy=256)),
    "torus": Task(minutes=20.0, evaluate=_eval_mixture, config="torus_mixture",
                  quick=dict(steps=4, num_test=32, num_entropy=256)),
}

#: which methods apply to each task (each has configs/METHOD/CONFIG.yaml, CONFIG = the task's ``config``
#: or its name): the pairs ``funcgen bench all`` runs and docs/benchmarks.md's coverage table lists.
#: Adding a task = its TASKS entry + one line here (tests/bench/test_bench_all.py checks both tables agree).
METHODS: dict[str, tuple[str, ...]] = {
    "grf1d": ("fdp", "pfgmpp", "ign", "ffm"),
    "grf2d": ("fdp", "pfgmpp", "inftydiff"),
    "mnist": ("fdp", "pfgmpp", "ign", "inftydiff", "ffm"),
    "robustness": ("pfgmpp",),
    "sphere_grf": ("mdf",),
    "mesh_grf": ("mdf",),
    "mnist_sphere": ("mdf",),
    "earth": ("riemannian",),
    "sample-scaling": ("inftydiff",),
    "so3": ("riemannian",),
    "torus": ("riemannian",),
}

#: training steps of a ``--quick`` smoke run
QUICK_MAX_STEPS = 3


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def default_config(task: str, method: str) -> Path:
    """``configs/METHOD/CONFIG.yaml`` of a task (``CONFIG``: the task's ``config`` or its name)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known tasks: {', '.join(sorted(TASKS))}")
    if method not in METHODS[task]:
        raise ValueError(f"no default config of method {method!r} for task {task!r}; methods with one: "
                         f"{', '.join(METHODS[task])} (or pass --config FILE)")
    return CONFIGS / method / f"{TASKS[task].config or task}.yaml"


def _quick_settings(files: Sequence[Path], root_dir: str) -> dict[str, Any]:
    """Settings of a ``--quick`` run: no logger, a throw-away root dir, small fixed datasets."""
    import yaml

    settings: dict[str, Any] = {"trainer.logger": False, "trainer.default_root_dir": root_dir,
                                "trainer.enable_progress_bar": False}
    data_args: dict[str, Any] = {}
    for cfg in files:
        data_args.update((yaml.safe_load(cfg.read_text()) or {}).get("data", {}).get("init_args", {}) or {})
    for key, cap in (("num_train", 256), ("num_val", 32)):  # only where the config sets them
        if isinstance(data_args.get(key), int) and data_args[key] > cap:
            settings[f"data.init_args.{key}"] = cap
    return settings


def configs_for(files: Sequence[Path]) -> list[Path]:
    """The config files a bench run applies: the shared trainer base, then ``files`` in order."""
    return [BASE_CONFIG] + [f for f in files if f.resolve() != BASE_CONFIG.resolve()]


def _names(files: Sequence[Path]) -> str | list[str]:
    """The record's ``config``: the file (relative to the repository where it lies there), or the list of them."""
    home = CONFIGS.resolve().parent  # configs/... whether shipped in the package or in the repository
    names = [str(f.resolve().relative_to(home)) if f.resolve().is_relative_to(home) else str(f) for f in files]
    return names[0] if len(names) == 1 else names


def run_bench(task: str, method: str, config: str | Path | Sequence[str | Path] | None = None, seed: int = 0,
              out: str | None = None,
              ckpt: str | None = None, minutes: float | None = None, max_steps: int | None = None,
              save: str | None = None, eval_options: dict[str, Any] | None = None,
              quick: bool = False, method_args: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train (or load ``ckpt``) and evaluate; returns the JSON record (also written to ``out``).

    ``eval_options``: keyword arguments of the task's evaluation (e.g. ``num``: generated functions
    per evaluation, ``steps``: sampler steps), recorded in the JSON; empty means the protocol's defaults.

    ``save``: also export the trained generator there (safetensors), to re-evaluate it with ``ckpt``.
    ``method_args``: sampling settings of the method changed for the evaluation only
    (:meth:`funcgen.FunctionGenerator.with_method_args`, e.g. ``{"eta": 1.0}``); the export keeps the
    trained ones, the record lists them under ``method_args``.
    ``quick``: a smoke run: :data:`QUICK_MAX_STEPS` training steps (unless ``max_steps``), the task's
    tiny evaluation sizes (:attr:`Task.quick`), no logger; the record says ``"quick": true`` and its
    numbers mean nothing beyond "the pipeline runs" (docs/benchmarks.md leaves such records out).
    """
    files = [default_config(task, method)] if not config else [resolve_config(c) for c in (
        [config] if isinstance(config, (str, Path)) else config)]
    spec = TASKS[task]
    for cfg in files:
        if not cfg.is_file():
            raise FileNotFoundError(f"no config for method {method!r} on task {task!r} at {cfg}; pass --config FILE")
    from ..generator import load, method_with_args, training_record
    from ..train.fit import prepare

    commit = _commit()  # the code that trains, not whatever is checked out when it ends
    budget = spec.minutes if minutes is None else minutes
    # the seed seeds everything: initialisation, the data module's generation and shuffling, and the
    # task's own seeded choices (the Earth split)
    settings = {key: value(seed) for key, value in spec.seed_settings.items()}
    if quick:
        max_steps = QUICK_MAX_STEPS if max_steps is None else max_steps
        tmp = tempfile.TemporaryDirectory(prefix="funcgen-quick-")
        settings.update(_quick_settings(files, tmp.name))
    run = prepare(configs_for(files), settings=settings, seed=seed, minutes=budget, max_steps=max_steps)
    if method_args:  # refuse a bad setting now, not after the training budget is spent
        method_with_args(run.module.method, **method_args)
    trained: dict[str, Any] | None = None  # how a --ckpt export was trained, where it says
    if ckpt is not None:
        run.datamodule.setup("fit")
        gen, steps, trained = load(ckpt), -1, training_record(ckpt)
        if trained is not None and (trained.get("task"), trained.get("method")) != (task, method):
            raise ValueError(f"{ckpt} was trained for task {trained.get('task')!r} with method "
                             f"{trained.get('method')!r}, not {task!r} / {method!r}")
    elif spec.train:
        gen, steps = run.fit().generator(), run.steps
    else:
        gen, steps = run.generator(), 0
    # how this run trained: stored in a --save export, the head of the record
    provenance = {"task": task, "method": method, "seed": seed, "minutes": budget, "config": _names(files),
                  "train_steps": steps, "max_steps": max_steps, "train_seconds": round(run.seconds, 1),
                  "train_cpu_seconds": round(run.cpu_seconds, 1), "commit": commit}
    if save and ckpt is None and spec.train:
        gen.save(save, training=provenance)
    if method_args:
        gen = gen.with_method_args(**method_args)
    eval_options = {**(spec.quick if quick else {}), **(eval_options or {})}
    metrics, reference, sample_seconds = spec.evaluate(gen, run.datamodule, seed, **eval_options)
    record = {
        **provenance, "model": gen.config(), "metrics": metrics, "reference": reference,
        "eval_options": eval_options, **({"method_args": dict(method_args)} if method_args else {}),
        "budget_clock": "cpu", "sample_seconds": round(sample_seconds, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "torch": torch.__version__, "machine": f"{platform.machine()} {torch.get_num_threads()} threads",
    }
    if ckpt is not None:
        record["ckpt"] = Path(ckpt).name
        if trained is not None:  # the training run's provenance, not this evaluation's command line
            record.update({k: trained[k] for k in provenance if k in trained})
            record["eval_commit"] = commit
            if record["seed"] != seed:
                record["eval_seed"] = seed
    if quick:
        record["quick"] = True
        tmp.cleanup()
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(record, indent=2))
    return record
