"""Draw docs/figures/{quality_vs_resolution,quality_vs_steps,speed_vs_points}.png from docs/results/*.json.

    python scripts/make_figures.py [--results docs/results] [--out docs/figures]

(``scripts/make_benchmarks_md.py`` calls this too.) Each figure is drawn from whatever records hold
its data, read from the metric keys (``NAME@SETTING=VALUE[,SETTING=VALUE]``, ../shared/BENCHMARKS.md):
- quality vs resolution: quality metrics measured at one resolution setting only (``cov_err@N=64``,
  ``fd_lenet@res=56``), one line per record, the floor (``floor...`` reference) dashed;
- quality vs steps: quality metrics at an ``nfe=`` or ``steps=`` setting (``cov_err@N=64,nfe=11``);
- speed vs points: times and memory at ``N=`` (``peak_rss_mb@N=1048576``) or at a subsampling
  ``rate=`` (``step_seconds@rate=0.25``; the fraction of points per step).
A figure without data is skipped with a printed note. Quick (smoke) records are left out.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Sequence

QUALITY = ("cov_err", "fd_lenet", "spec_err", "mmd2", "mmd", "energy", "aps_err", "nll")
TIME = ("step_seconds", "sample_seconds", "seconds")
MEMORY = ("peak_rss_mb", "peak_mb")
RESOLUTION_KEYS = ("N", "res")
STEP_KEYS = ("nfe", "steps")


def parse_key(key: str) -> tuple[str, dict[str, str]]:
    """``"cov_err@N=64,nfe=11"`` -> ``("cov_err", {"N": "64", "nfe": "11"})``."""
    name, _, rest = key.partition("@")
    settings = dict(part.split("=", 1) for part in rest.split(",") if "=" in part)
    return name, settings


def load_records(results: str | Path) -> list[dict[str, Any]]:
    """The JSON records of ``results/*.json`` (``_file`` added), quick smoke records left out."""
    records = []
    for f in sorted(Path(results).glob("*.json")):
        rec = json.loads(f.read_text())
        if isinstance(rec, dict) and "metrics" in rec and not rec.get("quick"):
            rec["_file"] = f.as_posix()
            records.append(rec)
    return records


def label(rec: dict[str, Any]) -> str:
    stem = Path(str(rec.get("config", rec.get("_file", "")))).stem
    return f"{rec.get('task', '?')}/{rec.get('method', '?')} ({stem})"


def floor_of(rec: dict[str, Any], key: str) -> float | None:
    """The reference floor of a metric key (``floor_KEY``, or ``floor@...`` for ``cov_err``)."""
    refs = rec.get("reference", {})
    for cand in (f"floor_{key}", key.replace("cov_err", "floor", 1) if key.startswith("cov_err") else None):
        if cand and isinstance(refs.get(cand), (int, float)):
            return float(refs[cand])
    return None


def series(records: Sequence[dict[str, Any]], names: Sequence[str], axis: Sequence[str], extra_ok: bool = False
           ) -> dict[tuple[str, str], dict[str, list[tuple[float, float, float | None]]]]:
    """``{(metric name, fixed settings): {record label: [(x, value, floor), ...]}}`` for keys whose
    settings hold one of ``axis`` (the x value) and, unless ``extra_ok``, nothing else."""
    out: dict[tuple[str, str], dict[str, list[tuple[float, float, float | None]]]] = {}
    for rec in records:
        for key, val in rec.get("metrics", {}).items():
            name, settings = parse_key(key)
            xs = [a for a in axis if a in settings]
            if name not in names or len(xs) != 1 or not isinstance(val, (int, float)):
                continue
            rest = {k: v for k, v in settings.items() if k != xs[0]}
            if rest and not extra_ok:
                continue
            try:
                x = float(settings[xs[0]])
            except ValueError:
                continue
            fixed = ",".join(f"{k}={v}" for k, v in rest.items())
            group = (name, f"{xs[0]}; {fixed}" if fixed else xs[0])  # the x axis first, then the fixed settings
            out.setdefault(group, {}).setdefault(label(rec), []).append((x, float(val), floor_of(rec, key)))
    return out


def _plot(groups: dict, path: Path, xlabel: Any, logx: bool, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted(groups)
    cols = min(3, len(keys))
    rows = -(-len(keys) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.6 * rows), squeeze=False, dpi=90)
    for ax, key in zip(axes.flat, keys):
        for lab, pts in sorted(groups[key].items()):
            pts = sorted(pts)
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            (line,) = ax.plot(xs, ys, "o-", label=lab, ms=4)
            floors = [(p[0], p[2]) for p in pts if p[2] is not None]
            if floors:
                ax.plot([f[0] for f in floors], [f[1] for f in floors], "--", color=line.get_color(), lw=1, alpha=0.7)
        if all(p[1] > 0 and (p[2] is None or p[2] > 0) for pts in groups[key].values() for p in pts):
            ax.set_yscale("log")
        if logx:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel(key) if callable(xlabel) else xlabel)
        ax.set_title(f"{key[0]} ({key[1]})", fontsize=9)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(keys):]:
        ax.set_visible(False)
    fig.suptitle(title + " (dashed: floor from exact samples)" if "quality" in title else title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def make_figures(records: Sequence[dict[str, Any]], out_dir: str | Path, log: Any = print) -> list[Path]:
    """Write the three figures (those with data) under ``out_dir``; returns the written paths."""
    out = Path(out_dir)
    written = []
    plans = [
        ("quality_vs_resolution", series(records, QUALITY, RESOLUTION_KEYS),
         lambda k: "points N" if k[1].startswith("N") else "resolution (pixels per side)", True,
         "quality vs resolution"),
        ("quality_vs_steps", series(records, QUALITY, STEP_KEYS, extra_ok=True),
         "sampler NFE / steps", True, "quality vs sampler steps"),
        ("speed_vs_points", series(records, TIME + MEMORY, ("N", "rate"), extra_ok=True),
         lambda k: "query points N" if k[1].startswith("N") else "fraction of points per step (rate)", True,
         "speed and memory vs number of points"),
    ]
    for name, groups, xlabel, logx, title in plans:
        if not groups:
            log(f"note: no record has data for {name}.png (skipped)")
            continue
        written.append(_plot(groups, out / f"{name}.png", xlabel, logx, title))
        log(f"wrote {out / f'{name}.png'} ({len(groups)} panels)")
    return written


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default="docs/results")
    p.add_argument("--out", default="docs/figures")
    ns = p.parse_args(argv)
    make_figures(load_records(ns.results), ns.out)


if __name__ == "__main__":
    main()
