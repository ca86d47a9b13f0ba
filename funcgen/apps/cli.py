"""The ``funcgen`` command.

    funcgen fit --config configs/base/trainer.yaml --config configs/fdp/grf1d.yaml [--trainer.max_steps=...]
    funcgen validate | test --config ... --ckpt_path ...                     (LightningCLI)
    funcgen sample --ckpt PATH [--resolution R | --coords Q.npy] --num K --out DIR [--observed OBS.npz]
    funcgen logprob --ckpt PATH --data X.npz | POINTS.csv [--out FILE.json]
    funcgen export --ckpt PATH --out FILE.safetensors
    funcgen project --ckpt PATH --data X.npz --out DIR [--k K]                (IGN: repair given functions)
    funcgen demo [--out DIR] [--minutes M]
    funcgen bench TASK --method M [--config FILE] [--seed S] [--out FILE.json]
    funcgen bench all --quick [--out DIR]                                    (smoke pass, every pair)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from ..train.fit import check_cli_args, make_cli

__all__ = ["main", "make_cli"]

LIGHTNING_COMMANDS = ("fit", "validate", "test")


def parse_assignments(items: Sequence[str], flag: str) -> dict[str, Any]:
    """``["eta=1", "solver=ddim"] -> {"eta": 1, "solver": "ddim"}`` (values read as YAML scalars)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"{flag} takes NAME=VALUE; got {item!r}")
        parsed = yaml.safe_load(value)
        if isinstance(parsed, (dict, list)):
            raise ValueError(f"{flag} {item!r}: VALUE must be a number, a string, true/false or null")
        out[name.strip()] = parsed
    return out


def _add_method_arg(parser: argparse.ArgumentParser, scope: str) -> None:
    """The repeatable ``--method-arg NAME=VALUE`` option (read by :func:`parse_assignments`)."""
    parser.add_argument("--method-arg", action="append", default=[], metavar="NAME=VALUE",
                        help=f"change one of the method's sampling settings for {scope}, e.g. --method-arg eta=1 "
                             "(ancestral functional diffusion); repeatable; VALUE is read as YAML")


OBSERVED_HELP = """observed functions (conditional sampling), an .npz with arrays
  coords [B, M, d] (or [M, d] for one function): observed points in the model's domain [0, 1]^d,
  values [B, M, c] (or [M, c]): observed values in data units,
  mask   [B, M] bool (optional): True where a point is observed;
--num samples are drawn PER observed function (output rows ordered observed-major)"""


def _npz_array(path: str, key: str, ndims: tuple[int, ...], expected: str, dtype: Any = "float32") -> Any:
    """Array ``key`` of the ``.npz`` at ``path`` with one of ``ndims`` dimensions, or a clear error."""
    import numpy as np

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected an .npz with {expected})")
    with np.load(p, allow_pickle=False) as f:
        if key not in f.files:
            raise ValueError(f"{path}: no array {key!r} (found {sorted(f.files)}); expected {expected}")
        arr = f[key]
    if arr.ndim not in ndims:
        raise ValueError(f"{path}: array {key!r} has shape {arr.shape}; expected {expected}")
    return arr.astype(dtype)


def _load_pointset(path: str, mask: bool = True) -> Any:
    """A PointSet from an .npz with ``coords`` [B, M, d] / [M, d], ``values`` [B, M, c] / [M, c], optional ``mask``."""
    import numpy as np
    import torch

    from ..pointset import PointSet

    coords = _npz_array(path, "coords", (2, 3), "coords [B, M, d] or [M, d]")
    values = _npz_array(path, "values", (2, 3), "values [B, M, c] or [M, c]")
    coords = coords[None] if coords.ndim == 2 else coords
    values = values[None] if values.ndim == 2 else values
    if coords.shape[:2] != values.shape[:2]:
        raise ValueError(f"{path}: coords {coords.shape} and values {values.shape} disagree on B, M")
    m = None
    with np.load(path, allow_pickle=False) as f:
        if mask and "mask" in f.files:
            m = torch.from_numpy(f["mask"].astype(bool)).reshape(coords.shape[:2])
    try:
        return PointSet(torch.from_numpy(coords), torch.from_numpy(values), m)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: {e}") from e


def _cmd_sample(ns: argparse.Namespace) -> int:
    from ..generator import load
    from ..viz.plotting import save_png, write_summary_html
    from .pictures import sample_picture

    gen = load(ns.ckpt)
    if ns.method_arg:
        gen = gen.with_method_args(**parse_assignments(ns.method_arg, "--method-arg"))
    res = None if ns.resolution is None else ns.resolution
    mesh = None
    query = None
    if ns.coords is not None:
        import numpy as np
        import torch

        if res is not None:
            raise ValueError("give --resolution or --coords, not both")
        if not Path(ns.coords).is_file():
            raise FileNotFoundError(f"{ns.coords}: no such file (expected a .npy of query points [N, d] or [B, N, d])")
        q = np.load(ns.coords, allow_pickle=False).astype("float32")
        if q.ndim not in (2, 3) or q.shape[-1] != gen.dim:
            raise ValueError(f"{ns.coords}: query points of shape {q.shape}; expected [N, {gen.dim}] or "
                             f"[B, N, {gen.dim}] for this {gen.dim}-d model")
        query = torch.from_numpy(q)
    observed = None if ns.observed is None else _load_pointset(ns.observed)
    if observed is None and ns.resample != 1:
        raise ValueError("--resample repeats the steps of conditional sampling: give --observed, or drop --resample")
    if observed is not None:
        ps = gen.sample(ns.num, res, coords=query, observed=observed, obs_std=ns.obs_std, seed=ns.seed,
                        steps=ns.steps, progress=True, denormalize=False, observe=ns.observe,
                        resample=ns.resample)
    elif query is not None:
        q = query if query.ndim == 3 else query[None].expand(ns.num, -1, -1)
        ps = gen.sample(coords=q, seed=ns.seed, steps=ns.steps, progress=True, denormalize=False)
    else:
        mesh = gen.mesh_domain  # mesh models: the training mesh, subdivided --refine times
        ps = gen.sample(ns.num, res, seed=ns.seed, steps=ns.steps, progress=True, denormalize=False,
                        **({"refine": ns.refine} if ns.refine else {}))
    out = Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    import numpy as np

    values = gen.denormalize(ps.values)
    np.savez(out / "samples.npz", coords=ps.coords.cpu().numpy(), values=values.cpu().numpy())
    shape = tuple(gen.data["train_shape"]) if res is None else (res,) * gen.dim
    if query is not None:
        print(f"wrote {out / 'samples.npz'} (coords {tuple(ps.coords.shape)}, values {tuple(ps.values.shape)})")
        return 0
    if mesh is not None:
        from ..data.mesh import render_mesh_functions

        level = mesh.level(ns.refine)[0]
        shape = (level.num_vertices,)
        rgb = render_mesh_functions(level, values, f"{ps.batch_size} samples at {level.num_vertices} vertices")
    else:
        where = "" if gen.data.get("manifold") is not None else f" at {'x'.join(map(str, shape))}"
        rgb = sample_picture(gen, ps, values, shape, title=f"{ps.batch_size} samples{where}")
    png = save_png(rgb, out / "samples.png")
    html = write_summary_html(out / "summary.html", png, {
        "checkpoint": ns.ckpt, "method": gen.method.config.get("class_path", type(gen.method).__name__),
        "backbone": gen.net.config.get("class_path", type(gen.net).__name__),
        "resolution": f"{'x'.join(map(str, shape))}{' (training resolution)' if res is None else ''}",
        "number": ps.batch_size, "points per function": ps.num_points, "seed": ns.seed,
        "steps": "method default" if ns.steps is None else ns.steps,
        "method settings changed": ", ".join(ns.method_arg) or "none",
        "value range (data units)": f"[{float(values.min()):.4g}, {float(values.max()):.4g}]",
        "files": "samples.npz (coords, values), samples.png"}, title=f"funcgen samples: {Path(ns.ckpt).name}")
    print(f"wrote {out / 'samples.npz'} (coords {tuple(ps.coords.shape)}, values {tuple(ps.values.shape)}), "
          f"{png} and {html}")
    return 0


def _cmd_project(ns: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from ..generator import load
    from ..methods.capabilities import SupportsProjection
    from ..pointset import PointSet

    gen = load(ns.ckpt)
    if not isinstance(gen.method, SupportsProjection):
        raise ValueError(f"{ns.ckpt} holds a {type(gen.method).__name__} model, which offers no projection "
                         "(IGN models do)")
    path = Path(ns.data)
    if not path.is_file():
        raise FileNotFoundError(f"no data file at {path} (an .npz with coords [B, N, d], values [B, N, c] and "
                                "optionally mask [B, N], True = observed)")
    with np.load(path) as f:
        missing = {"coords", "values"} - set(f.files)
        if missing:
            raise ValueError(f"{path} lacks {sorted(missing)}: it needs coords [B, N, d], values [B, N, c] (data "
                             "units) and optionally mask [B, N] (True = observed)")
        coords = torch.as_tensor(f["coords"], dtype=torch.float32)
        values = torch.as_tensor(f["values"], dtype=torch.float32)
        mask = torch.as_tensor(f["mask"]).bool() if "mask" in f.files else None
    if coords.ndim == 2:  # one function
        coords, values = coords[None], values[None]
        mask = None if mask is None else mask[None]
    if values.ndim == 2:
        values = values[..., None]
    if mask is None and not bool(torch.isfinite(values).all()):
        raise ValueError(f"{path}: values contain NaN or inf; add a mask [B, N] (True = observed) marking the "
                         "missing points")
    param = next(gen.net.parameters())
    c = coords.to(param)
    v = gen.normalize(values.to(param).nan_to_num(0.0))
    m = None if mask is None else mask.to(param.device)
    out_v = gen.method.project(gen.net, c, v, k=ns.k, mask=m, generator=torch.Generator().manual_seed(ns.seed))
    ps = PointSet(c, gen.denormalize(out_v))
    out = Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "projected.npz", coords=ps.coords.cpu().numpy(), values=ps.values.cpu().numpy())
    print(f"wrote {out / 'projected.npz'} ({ps.batch_size} functions, f applied {ns.k} time(s)"
          f"{', observed values kept' if mask is not None else ''})")
    return 0


def _cmd_logprob(ns: argparse.Namespace) -> int:
    from ..generator import load

    gen = load(ns.ckpt)
    if ns.data.endswith(".csv"):
        from ..data.manifold import load_earth_csv

        ll = gen.log_prob(load_earth_csv(ns.data).float(), steps=ns.steps, seed=ns.seed)
    else:
        ll = gen.log_prob(_load_pointset(ns.data, mask=False), steps=ns.steps, divergence=ns.divergence,
                          probes=ns.probes, seed=ns.seed)
    summary = {"data": ns.data, "num": int(ll.numel()), "mean_log_prob": float(ll.mean()),
               "std_err": float(ll.std() / max(ll.numel(), 1) ** 0.5) if ll.numel() > 1 else 0.0,
               "log_prob": [float(v) for v in ll]}
    if ns.out:
        Path(ns.out).write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "log_prob"}, indent=2))
    return 0


def _cmd_export(ns: argparse.Namespace) -> int:
    from ..generator import load

    path = load(ns.ckpt).save(ns.out)
    print(f"exported {ns.ckpt} -> {path}")
    return 0


def _cmd_demo(ns: argparse.Namespace) -> int:
    from .demo import run_demo

    summary = run_demo(out_dir=ns.out, minutes=ns.minutes, logger=ns.logger, max_steps=ns.max_steps,
                       num_samples=ns.num_samples,
                       noise_lengthscale=None if ns.noise_lengthscale <= 0 else ns.noise_lengthscale,
                       threads=None if ns.threads == 0 else ns.threads)
    print(json.dumps(summary, indent=2))
    return 0


def _cmd_bench(ns: argparse.Namespace) -> int:
    from ..bench.run import run_bench

    if ns.task == "all":
        from ..bench.suite import run_all

        if ns.config or ns.ckpt or ns.save or ns.method_arg:
            raise ValueError("bench all trains every pair from its default config: drop "
                             "--config/--ckpt/--save/--method-arg")
        records = run_all(ns.out or ("runs/bench_quick" if ns.quick else "runs/bench_all"), quick=ns.quick,
                          seed=ns.seed, method=ns.method, max_steps=ns.max_steps, minutes=ns.minutes)
        return 0 if all(r["status"] == "ok" for r in records) else 1
    if ns.method is None:
        raise ValueError(f"bench {ns.task} needs --method (or run every pair: funcgen bench all --quick)")
    result = run_bench(ns.task, ns.method, config=ns.config, seed=ns.seed, out=ns.out, ckpt=ns.ckpt,
                       minutes=ns.minutes, max_steps=ns.max_steps, save=ns.save, quick=ns.quick,
                       method_args=parse_assignments(ns.method_arg, "--method-arg"),
                       eval_options={k: v for k, v in (("num", ns.eval_num), ("steps", ns.eval_steps),
                                                       ("resolutions", tuple(ns.eval_res) if ns.eval_res else None))
                                     if v is not None})
    print(json.dumps({k: result[k] for k in ("task", "method", "metrics", "reference")}, indent=2))
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="funcgen", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for name in LIGHTNING_COMMANDS:
        sub.add_parser(name, help=f"LightningCLI {name} (see `funcgen {name} --help`)", add_help=False)

    s = sub.add_parser("sample", help="draw functions from a trained model at any resolution",
                       formatter_class=argparse.RawTextHelpFormatter)
    s.add_argument("--ckpt", required=True, help="a .ckpt from training or a .safetensors export")
    s.add_argument("--resolution", type=int, default=None, help="cells per axis (default: training resolution)")
    s.add_argument("--coords", default=None, help="query points: a .npy of [N, d] (--num functions) or [B, N, d]")
    s.add_argument("--observed", default=None, help=OBSERVED_HELP)
    s.add_argument("--obs-std", type=float, default=0.0, help="observation noise std in data units (default 0)")
    s.add_argument("--observe", choices=["points", "cells"], default="points",
                   help="points: observed values are the function at the observed points; cells: the observed "
                        "points are a coarse grid's cell centres and each value is the function's average over "
                        "its cell (super-resolution of an area-averaged image)")
    s.add_argument("--resample", type=int, default=1,
                   help="with --observed: repeat each sampler step this many times, the state carried back between "
                        "repeats (RePaint resampling; functional diffusion, infty-Diff, MDF); default 1")
    s.add_argument("--num", type=int, default=16, help="number of functions")
    s.add_argument("--out", default="samples", help="output folder (samples.npz, samples.png, summary.html)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--steps", type=int, default=None, help="sampler steps (default: the method's)")
    s.add_argument("--refine", type=int, default=0,
                   help="mesh models: subdivide the training mesh this many times (each ~4x the vertices)")
    _add_method_arg(s, "this run")

    pr = sub.add_parser("project", help="repair given functions with a model that offers a projection (IGN's f)")
    pr.add_argument("--ckpt", required=True, help="a .ckpt from training or a .safetensors export")
    pr.add_argument("--data", required=True,
                    help=".npz with coords [B, N, d], values [B, N, c] (data units) and optionally mask [B, N] "
                         "(True = observed; the other values may be anything, NaN included)")
    pr.add_argument("--out", default="projected", help="output folder (projected.npz)")
    pr.add_argument("--k", type=int, default=1, help="applications of f")
    pr.add_argument("--seed", type=int, default=0, help="seed of the source noise that starts missing points")

    lp = sub.add_parser("logprob", help="log density (nats) of functions or manifold points under a model",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog="--data: an .npz with coords [B, N, d] (or [N, d]) and values [B, N, c] (or [N, c]) "
                               "in data units:\n  one log density per function (Lebesgue, data units); or, for "
                               "a sphere model,\n  a .csv of 'latitude,longitude' in degrees per line: one per "
                               "point (per steradian)")
    lp.add_argument("--ckpt", required=True)
    lp.add_argument("--data", required=True)
    lp.add_argument("--steps", type=int, default=100, help="ODE steps")
    lp.add_argument("--divergence", choices=["auto", "exact", "hutchinson"], default="auto")
    lp.add_argument("--probes", type=int, default=4, help="Hutchinson probes per evaluation")
    lp.add_argument("--seed", type=int, default=0)
    lp.add_argument("--out", default=None, help="JSON file with every log density")

    e = sub.add_parser("export", help="write weights + config to a safetensors file")
    e.add_argument("--ckpt", required=True)
    e.add_argument("--out", required=True)

    from .demo import NOISE_LENGTHSCALE

    d = sub.add_parser("demo", help="train a small model on procedural 2D data and sample at 1x and 4x")
    d.add_argument("--out", default="demo_out")
    d.add_argument("--minutes", type=float, default=5.0, help="training budget in CPU minutes of this process")
    d.add_argument("--num-samples", type=int, default=64,
                   help="samples per resolution for the pictures and the statistics (>= 64 for a stable floor)")
    d.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (tests)")
    d.add_argument("--noise-lengthscale", type=float, default=NOISE_LENGTHSCALE,
                   help="lengthscale of the squared-exponential noise (0: the FDP paper's nearly white spectrum)")
    d.add_argument("--threads", type=int, default=1,
                   help="torch threads while training (0: torch's default); the budget counts every thread's CPU time")
    d.add_argument("--logger", choices=["wandb", "csv"], default="wandb")

    from ..bench.run import METHODS

    pairs = "\n".join(f"  {task:15s} {', '.join(methods)}" for task, methods in METHODS.items())
    b = sub.add_parser("bench", help="run a benchmark task (protocol: docs/protocol.md)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog=f"tasks and the methods with a default config for them:\n{pairs}")
    b.add_argument("task", help="a task, or `all` for every task x applicable method (funcgen.bench.run.METHODS)")
    b.add_argument("--method", default=None, help="required for one task; with `all`: only this method's pairs")
    b.add_argument("--quick", action="store_true",
                   help="smoke run: a few training steps, tiny evaluation sizes; records marked quick")
    b.add_argument("--config", action="append", default=None,
                   help="config YAML (default configs/METHOD/TASK.yaml); repeat to compose, e.g. an ablation "
                        "after its base; configs/base/trainer.yaml is applied first in any case")
    b.add_argument("--seed", type=int, default=0,
                   help="seed of the run: seed_everything and the data module's seed (data generation, "
                        "shuffling); on earth also the split seed (the protocol's 0..4)")
    b.add_argument("--out", default=None, help="JSON result file (`all`: output folder, default runs/bench_quick)")
    b.add_argument("--ckpt", default=None, help="evaluate this checkpoint instead of training")
    b.add_argument("--minutes", type=float, default=None,
                   help="training budget in CPU minutes of this process (default: the task's)")
    b.add_argument("--max-steps", type=int, default=None)
    b.add_argument("--save", default=None, help="also export the trained generator to this .safetensors file")
    b.add_argument("--eval-num", type=int, default=None,
                   help="generated functions per evaluation (default: the protocol's, e.g. 2000; floors use the same)")
    b.add_argument("--eval-steps", type=int, default=None,
                   help="sampler steps in the evaluation (default: the method's)")
    _add_method_arg(b, "the evaluation")
    b.add_argument("--eval-res", type=int, nargs="+", default=None,
                   help="resolutions evaluated on grid tasks (default: the protocol's, e.g. 28 56 for mnist)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in LIGHTNING_COMMANDS:
        try:
            check_cli_args(argv[1:])
        except (ValueError, FileNotFoundError) as e:
            print(f"funcgen {argv[0]}: error: {e}", file=sys.stderr)
            return 2
        make_cli(argv)
        return 0
    ns = _parser().parse_args(argv)
    handlers = {"sample": _cmd_sample, "logprob": _cmd_logprob, "project": _cmd_project, "export": _cmd_export,
                "demo": _cmd_demo, "bench": _cmd_bench}
    try:
        return handlers[ns.command](ns)
    except (FileNotFoundError, ValueError) as e:
        print(f"funcgen {ns.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
