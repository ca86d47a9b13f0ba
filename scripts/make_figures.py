"""Draw one figure per benchmark task, docs/figures/bench_TASK.png, from the records in docs/results/*.json.

    python scripts/make_figures.py [--results docs/results] [--out docs/figures]

(``scripts/make_benchmarks_md.py`` calls this too; no training.) Metric keys are read as
``NAME@SETTING=VALUE[,SETTING=VALUE]`` (docs/protocol.md). Each figure shows, for the task's headline
metrics (``scripts/leaderboard.py``):
- against resolution / points / subsampling rate: each method's leaderboard configuration (its best at the
  standard budget; a method without one is drawn hollow and dashed, with its budget in the legend), the mean
  over seeds with the standard deviation as error bars, the floor of exact samples dashed grey;
- where every record has one resolution only (likelihood tasks): the value of each seed (small dots) and their
  mean (large marker) per dataset, the published reference or entropy as a grey bar;
- against a sampler or perturbation setting (``steps``, ``nfe``, ``alpha``, ``bits``): one line per record
  (one run; runs are never joined into one line).
Method colours are ``funcgen.viz.colors.METHOD_COLORS`` in every figure; legends sit outside the axes.
A task without plottable data is skipped with a printed note. Quick (smoke) records are left out.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from leaderboard import (  # noqa: E402
    REFERENCE_NAMES,
    Group,
    Headline,
    best_per_method,
    config_files,
    group_records,
    headlines,
    load_records,
    parse_key,
    reference_of,
)

from funcgen.viz.colors import REFERENCE_COLOR, method_color  # noqa: E402

__all__ = ["make_figures", "load_records", "parse_key", "figure_series", "shown_groups"]

X_SETTINGS = ("N", "res", "rate")
SWEEP_SETTINGS = ("steps", "nfe", "alpha", "bits")
X_LABELS = {"N": "points N", "res": "resolution (pixels per side)", "rate": "fraction of points per step",
            "steps": "sampler steps", "nfe": "network evaluations (NFE)", "alpha": "noise injected per step (alpha)",
            "bits": "weight bits"}
MARKERS = "osD^vP*Xh<>"


def shown_groups(groups: Sequence[Group], h: Headline) -> list[tuple[Group, bool]]:
    """Per variant and method, the configuration the leaderboard names (standard budget: True) or, for a
    method without a standard-budget record, its best at another budget (False)."""
    out = []
    for v in sorted({g.variant for g in groups}):
        vg = [g for g in groups if g.variant == v]
        std = best_per_method(vg, h, standard=True)
        other = best_per_method(vg, h, standard=False)
        out += [(g, True) for g in std.values()]
        out += [(g, False) for m, g in other.items() if m not in std]
    return out


def figure_series(g: Group, name: str, axis: str, fixed: dict[str, str] | None = None
                  ) -> list[tuple[float, list[float], float | None]]:
    """``[(x, [value per record], floor)]`` of metric ``name`` against setting ``axis`` (keys with that
    setting and no other than the variant setting and the settings ``fixed`` at their values)."""
    pts: dict[float, list[float]] = {}
    floors: dict[float, float] = {}
    for r in g.records:
        for key, val in r["metrics"].items():
            n, settings = parse_key(key)
            rest = {k: v for k, v in settings.items() if k != axis and k not in ("dataset", "task")}
            if n != name or axis not in settings or rest != (fixed or {}) or not isinstance(val, (int, float)):
                continue
            try:
                x = float(settings[axis])
            except ValueError:
                continue
            pts.setdefault(x, []).append(float(val))
            ref = reference_of(r, key) if name.startswith(("cov_err", "fd_lenet", "spec_err", "mmd")) else None
            if ref is not None and x not in floors:
                floors[x] = ref
    return [(x, pts[x], floors.get(x)) for x in sorted(pts)]


def _label(g: Group, standard: bool) -> str:
    seeds = f", {len(g.records)} seeds" if len(g.records) > 1 else ""
    files = config_files(g.first)
    cfg = Path(files[-1]).stem if files else Path(g.first["_file"]).stem
    budget = "" if standard else f", {g.budget.label}, not ranked"
    return f"{g.method} ({cfg}{seeds}{budget})"


def _tick(t: float) -> str:
    return str(int(t)) if t == int(t) else f"{t:g}"


def _log_if_wide(ax: Any, values: Sequence[float]) -> None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if vals and min(vals) > 0 and max(vals) / min(vals) > 20:
        ax.set_yscale("log")


def _panel_vs_x(ax: Any, shown: list[tuple[Group, bool]], name: str, axis: str) -> bool:
    ys: list[float] = []
    floor_drawn = False
    for g, standard in shown:
        s = figure_series(g, name, axis)
        if not s:
            continue
        xs = [p[0] for p in s]
        mean = [sum(p[1]) / len(p[1]) for p in s]
        err = [0.0 if len(p[1]) < 2 else math.sqrt(sum((v - m) ** 2 for v in p[1]) / (len(p[1]) - 1))
               for p, m in zip(s, mean)]
        c = method_color(g.method)
        ax.errorbar(xs, mean, yerr=err, color=c, marker="o", ms=5, capsize=3, lw=1.6,
                    ls="-" if standard else "--", mfc=c if standard else "white", label=_label(g, standard))
        ys += mean
        floors = [(p[0], p[2]) for p in s if p[2] is not None]
        if floors and not floor_drawn:
            ax.plot([f[0] for f in floors], [f[1] for f in floors], ls=":", color=REFERENCE_COLOR, lw=1.5,
                    marker="_", label="floor (exact samples)")
            ys += [f[1] for f in floors]
            floor_drawn = True
    if not ys:
        return False
    ax.set_xscale("log")
    ticks = sorted({p[0] for g, _ in shown for p in figure_series(g, name, axis)})
    ax.set_xticks(ticks, [_tick(t) for t in ticks])
    ax.minorticks_off()
    _log_if_wide(ax, ys)
    ax.set_xlabel(X_LABELS.get(axis, axis))
    ax.set_ylabel(name)
    return True


def _panel_dots(ax: Any, shown: list[tuple[Group, bool]], h: Headline, refname: str) -> bool:
    variants = sorted({g.variant for g, _ in shown})
    methods = list(dict.fromkeys(g.method for g, _ in shown))
    width = 0.6 / max(1, len(methods))
    drawn = False
    labelled: set[str] = set()
    for g, standard in shown:
        s = g.stat(h.key(g.variant))
        if s is None:
            continue
        x0 = variants.index(g.variant) + (methods.index(g.method) - (len(methods) - 1) / 2) * width
        c = method_color(g.method)
        jitter = [x0 + (i - (len(s.values) - 1) / 2) * 0.04 for i in range(len(s.values))]
        ax.plot(jitter, s.values, "o", color=c, ms=3, alpha=0.6)
        lab = g.method + ("" if standard else f" ({g.budget.label}, not ranked)")
        ax.plot([x0], [s.mean], marker="D" if standard else "d", ms=9, color=c, mfc=c if standard else "white",
                ls="none", label=None if lab in labelled else lab)
        labelled.add(lab)
        ref = g.reference(h)
        if ref is not None:
            ax.plot([x0 - 0.2, x0 + 0.2], [ref.mean] * 2, color=REFERENCE_COLOR, lw=2.5,
                    label=None if "ref" in labelled else refname)
            labelled.add("ref")
        drawn = True
    ax.set_xticks(range(len(variants)), variants or [""])
    ax.set_xlim(-0.6, len(variants) - 0.4)
    ax.set_ylabel(h.title())
    return drawn


def sweeps(groups: Sequence[Group], name: str, axis: str) -> list[tuple[dict[str, Any], dict[str, str]]]:
    """``(record, fixed settings)`` pairs with at least two values of ``name`` along ``axis`` (the other
    settings of the keys fixed at one resolution, e.g. ``res=28`` of ``fd_lenet@res=28,steps=2``)."""
    out = []
    for g in groups:
        for r in g.records:
            fixes = []
            for key in r["metrics"]:
                n, settings = parse_key(key)
                if n == name and axis in settings:
                    rest = {k: v for k, v in settings.items() if k != axis and k not in ("dataset", "task")}
                    if set(rest) <= set(X_SETTINGS) and rest not in fixes:
                        fixes.append(rest)
            out += [(r, f) for f in fixes if len(figure_series(Group([r]), name, axis, f)) >= 2]
    return out


def _panel_sweep(ax: Any, groups: Sequence[Group], name: str, axis: str) -> bool:
    ys: list[float] = []
    ticks: set[float] = set()
    for i, (r, fixed) in enumerate(sweeps(groups, name, axis)):
        s = figure_series(Group([r]), name, axis, fixed)
        xs, vals = [p[0] for p in s], [p[1][0] for p in s]
        at = ",".join(f"{k}={v}" for k, v in fixed.items())
        ax.plot(xs, vals, color=method_color(r["method"]), marker=MARKERS[i % len(MARKERS)], ms=5, lw=1.3,
                label=f"{r['method']}: {Path(r['_file']).stem}" + (f" ({at})" if at else ""))
        ys += vals
        ticks |= set(xs)
    if not ys:
        return False
    if axis in ("steps", "nfe") and min(ticks) > 0:
        ax.set_xscale("log")
        ax.set_xticks(sorted(ticks), [_tick(t) for t in sorted(ticks)])
        ax.minorticks_off()
    _log_if_wide(ax, ys)
    ax.set_xlabel(X_LABELS.get(axis, axis))
    ax.set_ylabel(name)
    return True


def task_figure(task: str, groups: Sequence[Group], path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hs = headlines(task, [r for g in groups for r in g.records])
    if not hs:
        return None
    names = list(dict.fromkeys(parse_key(h.metric)[0] for h in hs))
    plans: list[tuple[str, Any]] = []
    for name in names:
        h = next(h for h in hs if parse_key(h.metric)[0] == name)
        shown = shown_groups(groups, h)
        axes = [a for a in X_SETTINGS if len({p[0] for g, _ in shown for p in figure_series(g, name, a)}) >= 2]
        for a in axes:
            plans.append((f"{name} vs {X_LABELS[a]}", lambda ax, s=shown, n=name, a=a: _panel_vs_x(ax, s, n, a)))
        if not axes and any(g.stat(h.key(g.variant)) for g, _ in shown):
            ref = REFERENCE_NAMES.get(task, "floor")
            plans.append((h.title(), lambda ax, s=shown, h=h, ref=ref: _panel_dots(ax, s, h, ref)))
        for a in SWEEP_SETTINGS:
            if sweeps(groups, name, a):
                plans.append((f"{name} vs {X_LABELS[a]} (one line per run)",
                              lambda ax, n=name, a=a: _panel_sweep(ax, groups, n, a)))
    if not plans:
        return None
    fig, axes = plt.subplots(len(plans), 1, figsize=(6.4, 3.3 * len(plans)), squeeze=False, dpi=90,
                             layout="constrained")
    for ax, (title, draw) in zip(axes[:, 0], plans):
        draw(ax)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3, which="both", lw=0.5)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, frameon=False)
    fig.suptitle(f"{task} (lower is better)" if hs[0].lower_is_better else task, fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def make_figures(records: Sequence[dict[str, Any]], out_dir: str | Path, log: Any = print) -> list[Path]:
    """Write ``bench_TASK.png`` for every task with plottable data under ``out_dir``; returns the paths."""
    out = Path(out_dir)
    groups = group_records(records)
    written = []
    for task in dict.fromkeys(r["task"] for r in records):
        p = task_figure(task, [g for g in groups if g.task == task], out / f"bench_{task}.png")
        if p is None:
            log(f"note: nothing to plot for task {task} (skipped)")
            continue
        written.append(p)
        log(f"wrote {p}")
    return written


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default="docs/results")
    p.add_argument("--out", default="docs/figures")
    ns = p.parse_args(argv)
    make_figures(load_records(ns.results, log=print), ns.out)


if __name__ == "__main__":
    main()
