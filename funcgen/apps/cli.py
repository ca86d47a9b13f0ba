"""The ``funcgen`` command.

    funcgen fit --config configs/base/trainer.yaml --config configs/fdp/grf1d.yaml [--trainer.max_steps=...]
    funcgen validate | test --config ... --ckpt_path ...                     (LightningCLI)
    funcgen sample --ckpt PATH --resolution R --num K --out DIR
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


def _cmd_sample(ns: argparse.Namespace) -> int:
    from ..generator import load
    from ..viz.plotting import render, save_png, write_summary_html

    gen = load(ns.ckpt)
    if ns.method_arg:
        gen = gen.with_method_args(**parse_assignments(ns.method_arg, "--method-arg"))
    res = None if ns.resolution is None else ns.resolution
    ps = gen.sample(ns.num, res, seed=ns.seed, steps=ns.steps, progress=True, denormalize=False)
    out = Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    import numpy as np

    values = gen.denormalize(ps.values)
    np.savez(out / "samples.npz", coords=ps.coords.cpu().numpy(), values=values.cpu().numpy())
    shape = tuple(gen.data["train_shape"]) if res is None else (res,) * gen.dim
    rgb = render(ps.coords, ps.values, shape, gen.data.get("kind", "image"),
                 title=f"{ps.batch_size} samples at {'x'.join(map(str, shape))}")
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


def _cmd_export(ns: argparse.Namespace) -> int:
    from ..generator import load

    path = load(ns.ckpt).save(ns.out)
    print(f"exported {ns.ckpt} -> {path}")
    return 0


def _cmd_demo(ns: argparse.Namespace) -> int:
    from .demo import run_demo

    summary = run_demo(out_dir=ns.out, minutes=ns.minutes, logger=ns.logger, max_steps=ns.max_steps)
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

    s = sub.add_parser("sample", help="draw functions from a trained model at any resolution")
    s.add_argument("--ckpt", required=True, help="a .ckpt from training or a .safetensors export")
    s.add_argument("--resolution", type=int, default=None, help="cells per axis (default: training resolution)")
    s.add_argument("--num", type=int, default=16, help="number of functions")
    s.add_argument("--out", default="samples", help="output folder (samples.npz, samples.png, summary.html)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--steps", type=int, default=None, help="sampler steps (default: the method's)")
    _add_method_arg(s, "this run")

    pr = sub.add_parser("project", help="repair given functions with a model that offers a projection (IGN's f)")
    pr.add_argument("--ckpt", required=True, help="a .ckpt from training or a .safetensors export")
    pr.add_argument("--data", required=True,
                    help=".npz with coords [B, N, d], values [B, N, c] (data units) and optionally mask [B, N] "
                         "(True = observed; the other values may be anything, NaN included)")
    pr.add_argument("--out", default="projected", help="output folder (projected.npz)")
    pr.add_argument("--k", type=int, default=1, help="applications of f")
    pr.add_argument("--seed", type=int, default=0, help="seed of the source noise that starts missing points")

    e = sub.add_parser("export", help="write weights + config to a safetensors file")
    e.add_argument("--ckpt", required=True)
    e.add_argument("--out", required=True)

    d = sub.add_parser("demo", help="train a small model on procedural 2D data and sample at 1x and 4x")
    d.add_argument("--out", default="demo_out")
    d.add_argument("--minutes", type=float, default=4.0, help="training budget in minutes")
    d.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (tests)")
    d.add_argument("--logger", choices=["wandb", "csv"], default="wandb")

    from ..bench.run import METHODS

    pairs = "\n".join(f"  {task:15s} {', '.join(methods)}" for task, methods in METHODS.items())
    b = sub.add_parser("bench", help="run a benchmark task (../shared/BENCHMARKS.md)",
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
    handlers = {"sample": _cmd_sample, "project": _cmd_project, "export": _cmd_export, "demo": _cmd_demo,
                "bench": _cmd_bench}
    try:
        return handlers[ns.command](ns)
    except (FileNotFoundError, ValueError) as e:
        print(f"funcgen {ns.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
