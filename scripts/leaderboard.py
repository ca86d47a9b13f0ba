"""Read benchmark records (docs/results/*.json) into a leaderboard: budgets, configurations, best per method.

Used by ``scripts/make_benchmarks_md.py`` and ``scripts/make_figures.py``; the protocol is docs/protocol.md.

- A record's **budget** is its training time in minutes, unless the run was cut short by a step cap
  (``--max-steps``: the budget is then that number of steps), re-evaluated a saved model
  (``train_steps == -1``: the training budget is not recorded), or trained nothing (cost-only tasks).
  Only records at the task's standard budget (``funcgen.bench.run.TASKS[task].minutes``) are ranked.
- A **configuration** is a set of records that differ only in their seed (same method, budget, model and
  data settings apart from the seeds, evaluation options and sampler overrides); its headline value is the
  mean over its records, +- their standard deviation where there are several.
- Each task's **headline** metrics and the reference each is compared with are in :data:`HEADLINES`;
  a task without an entry is judged by the first metric of its records.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the funcgen package of this checkout


@dataclass(frozen=True)
class Headline:
    """One headline metric of a task: ``metric`` and ``reference`` are key templates in which ``{v}``
    stands for the record's variant (e.g. the Earth dataset); ``compare`` says how a value relates to
    its reference: ``ratio`` (value / reference) or ``diff`` (value - reference, for log-likelihoods)."""

    metric: str
    reference: str | None = None
    compare: str = "ratio"
    lower_is_better: bool = True
    label: str = ""

    def key(self, variant: str) -> str:
        return self.metric.format(v=variant)

    def ref_key(self, variant: str) -> str | None:
        return None if self.reference is None else self.reference.format(v=variant)

    def title(self) -> str:
        return self.label or self.metric.replace("{v}", "").rstrip("@=,")


HEADLINES: dict[str, list[Headline]] = {
    "grf1d": [Headline("cov_err@N=64", "floor@N=64"), Headline("cov_err@N=256", "floor@N=256")],
    "grf2d": [Headline("cov_err@N=1024", "floor@N=1024"), Headline("cov_err@N=4096", "floor@N=4096")],
    "mnist": [Headline("fd_lenet@res=28", "floor_fd_lenet@res=28"),
              Headline("fd_lenet@res=56", "floor_fd_lenet@res=56")],
    "robustness": [Headline("cov_err@N=64", "floor@N=64"), Headline("cov_err@N=64,alpha=0.2", "floor@N=64")],
    "sphere_grf": [Headline("cov_err@N=642", "floor_cov_err@N=642"),
                   Headline("cov_err@N=2562", "floor_cov_err@N=2562")],
    "mesh_grf": [Headline("cov_err@N=642", "floor_cov_err@N=642"),
                 Headline("cov_err@N=2562", "floor_cov_err@N=2562")],
    "mnist_sphere": [Headline("recognisable@N=2562", "real_on_mesh_recognisable@N=2562", lower_is_better=False)],
    "earth": [Headline("nll@dataset={v}", "rfm_published_nll@dataset={v}", "diff", label="test NLL (nats)")],
    "so3": [Headline("nll@task={v}", "entropy@task={v}", "diff", label="test NLL (nats); - entropy = KL")],
    "torus": [Headline("nll@task={v}", "entropy@task={v}", "diff", label="test NLL (nats); - entropy = KL")],
    "sample-scaling": [Headline("sample_seconds@N=1048576"), Headline("peak_rss_mb@N=1048576")],
    "train-throughput": [Headline("speedup@rate=0.125", lower_is_better=False),
                         Headline("memory_ratio@rate=0.125", lower_is_better=False)],
}

#: baselines outside funcgen (scripts/anchors/): listed beside the methods, never ranked among them
ANCHORS = {"pixel_ddpm": "pixel-space DDPM, diffusers"}
#: what a task's reference is, in words (the column header of the leaderboard)
REFERENCE_NAMES = {"mnist_sphere": "real digits on the mesh", "earth": "published (RFM)", "so3": "entropy",
                   "torus": "entropy"}

#: setting names in metric keys that name a variant of a task with one table each (Earth datasets, ...)
VARIANT_SETTINGS = ("dataset", "task")

#: config files renamed when configs became base + method/dataset + ablation overrides: old path ->
#: the files that compose the same model and data today (records keep the path they were run with)
RENAMED: dict[str, list[str]] = {
    "configs/fdp/grf1d_inr.yaml": ["configs/fdp/grf1d.yaml", "configs/ablations/fdp/grf1d_inr.yaml"],
    "configs/fdp/grf1d_matern.yaml": ["configs/fdp/grf1d.yaml", "configs/ablations/fdp/grf1d_matern.yaml"],
    "configs/fdp/grf1d_period2.yaml": ["configs/fdp/grf1d.yaml", "configs/ablations/fdp/grf1d_period2.yaml"],
    "configs/fdp/grf1d_period2_band16.yaml":
        ["configs/fdp/grf1d.yaml", "configs/ablations/fdp/grf1d_period2_band16.yaml"],
    "configs/fdp/grf1d_period2_band16_b32.yaml":
        ["configs/fdp/grf1d.yaml", "configs/ablations/fdp/grf1d_period2_band16_b32.yaml"],
    "configs/fdp/grf1d_period2_lat64.yaml":
        ["configs/fdp/grf1d.yaml", "configs/ablations/fdp/grf1d_period2_lat64.yaml"],
    "configs/fdp/grf1d_shifted.yaml": ["configs/fdp/grf1d.yaml", "configs/ablations/fdp/grf1d_shifted.yaml"],
    "configs/fdp/grf1d_uniform.yaml": ["configs/fdp/grf1d.yaml", "configs/ablations/fdp/grf1d_uniform.yaml"],
    "configs/fdp/mnist_sno.yaml": ["configs/fdp/mnist.yaml", "configs/ablations/fdp/mnist_sno.yaml"],
    "configs/fdp/mnist_sno_vloss.yaml": ["configs/fdp/mnist.yaml", "configs/ablations/fdp/mnist_sno_vloss.yaml"],
    "configs/pfgmpp/grf1d_D64.yaml": ["configs/pfgmpp/grf1d.yaml", "configs/ablations/pfgmpp/grf1d_period1.yaml",
                                       "configs/ablations/pfgmpp/grf1d_D64.yaml"],
    "configs/pfgmpp/grf1d_D8.yaml": ["configs/pfgmpp/grf1d.yaml", "configs/ablations/pfgmpp/grf1d_period1.yaml",
                                       "configs/ablations/pfgmpp/grf1d_D8.yaml"],
    "configs/pfgmpp/grf1d_Dinf.yaml": ["configs/pfgmpp/grf1d.yaml", "configs/ablations/pfgmpp/grf1d_period1.yaml",
                                       "configs/ablations/pfgmpp/grf1d_Dinf.yaml"],
    "configs/pfgmpp/mnist_D64.yaml": ["configs/pfgmpp/mnist.yaml", "configs/ablations/pfgmpp/mnist_perceiver.yaml",
                                      "configs/ablations/pfgmpp/mnist_D64.yaml"],
    "configs/pfgmpp/mnist_D8.yaml": ["configs/pfgmpp/mnist.yaml", "configs/ablations/pfgmpp/mnist_perceiver.yaml",
                                      "configs/ablations/pfgmpp/mnist_D8.yaml"],
    "configs/pfgmpp/mnist_Dinf.yaml": ["configs/pfgmpp/mnist.yaml", "configs/ablations/pfgmpp/mnist_perceiver.yaml",
                                      "configs/ablations/pfgmpp/mnist_Dinf.yaml"],
    "configs/riemannian/earth_earthquake_plain.yaml":
        ["configs/riemannian/earth_earthquake.yaml", "configs/ablations/riemannian/earth_earthquake_plain.yaml"],
    "configs/riemannian/earth_fire_plain.yaml":
        ["configs/riemannian/earth_fire.yaml", "configs/ablations/riemannian/earth_fire_plain.yaml"],
    "configs/riemannian/earth_volcano_plain.yaml":
        ["configs/riemannian/earth_volcano.yaml", "configs/ablations/riemannian/earth_volcano_plain.yaml"],
    "configs/fdp/mnist_unet.yaml": ["configs/fdp/mnist.yaml"],
    # the Min-SNR ablation became the default of configs/fdp/mnist.yaml
    "configs/ablations/fdp/mnist_minsnr.yaml": [],
    # rate 1 became the default of configs/inftydiff/mnist.yaml
    "configs/ablations/inftydiff/mnist_rate1.yaml": [],
    # the Min-SNR ablation became the default of configs/inftydiff/mnist.yaml
    "configs/ablations/inftydiff/mnist_minsnr.yaml": [],
    # the half-pixel mollifier became the default of configs/inftydiff/mnist.yaml
    "configs/ablations/inftydiff/mnist_width05.yaml": [],
    # FDP's training weighting became the default of configs/pfgmpp/mnist.yaml
    "configs/ablations/pfgmpp/mnist_minsnr.yaml": [],
    # FDP's SE(0.02) field became the default of configs/pfgmpp/mnist.yaml
    "configs/ablations/pfgmpp/mnist_se002.yaml": [],
    # FDP's noise level and v prediction became the default of configs/inftydiff/mnist.yaml
    "configs/ablations/inftydiff/mnist_fdp_level.yaml": [],
    # T x0 prediction at the unit noise level became the default of configs/inftydiff/mnist.yaml
    "configs/ablations/inftydiff/mnist_x0.yaml": [],
}
def _net_is(class_path: str) -> Callable[[dict[str, Any]], bool]:
    """The record's model has this backbone; a record without a stored model (cost-only tasks) ran before
    the change, so it counts as the old content."""
    return lambda model: not model or ((model.get("net") or {}).get("class_path", "")) == class_path


def _noise_period_is(period: float) -> Callable[[dict[str, Any]], bool]:
    def test(model: dict[str, Any]) -> bool:
        noise = (((model.get("method") or {}).get("init_args") or {}).get("noise") or {}).get("init_args") or {}
        return float(noise.get("period", 1.0)) == period
    return test


def _noise_spectrum_is(spectrum: str) -> Callable[[dict[str, Any]], bool]:
    """The record's method draws a ``SpectralNoise`` with this spectrum."""
    def test(model: dict[str, Any]) -> bool:
        noise = (((model.get("method") or {}).get("init_args") or {}).get("noise") or {}).get("init_args") or {}
        return noise.get("spectrum") == spectrum
    return test


def _method_steps_are(steps: int) -> Callable[[dict[str, Any]], bool]:
    return lambda model: ((model.get("method") or {}).get("init_args") or {}).get("steps") == steps


def _method_arg_is(arg: str, value: Any) -> Callable[[dict[str, Any]], bool]:
    """The record's method was built with ``arg == value`` (None: without the argument)."""
    return lambda model: ((model.get("method") or {}).get("init_args") or {}).get(arg) == value


def _net_lacks(arg: str, class_path: str) -> Callable[[dict[str, Any]], bool]:
    """The record's model has this backbone, built without the constructor argument ``arg``."""
    return lambda model: (((model.get("net") or {}).get("class_path", "")) == class_path
                          and ((model.get("net") or {}).get("init_args") or {}).get(arg) is None)


_PERCEIVER = "funcgen.nets.perceiver.PerceiverNet"
_GRID_AE = "funcgen.nets.autoencoder.GridAutoencoder"
#: configs that kept their file name while their content changed: a record whose stored model passes a test
#: (the old content; the first that passes) is rebuilt today by the config plus the ablations that restore it
CHANGED: dict[str, list[tuple[Callable[[dict[str, Any]], bool], list[str]]]] = {
    "configs/fdp/mnist.yaml": [
        (_net_is(_PERCEIVER), ["configs/fdp/mnist.yaml", "configs/ablations/fdp/mnist_perceiver.yaml",
                               "configs/ablations/fdp/mnist_unweighted.yaml"]),
        (_method_arg_is("snr_gamma", None), ["configs/fdp/mnist.yaml", "configs/ablations/fdp/mnist_unweighted.yaml"])],
    "configs/pfgmpp/grf2d.yaml": [
        (_net_is(_PERCEIVER), ["configs/pfgmpp/grf2d.yaml", "configs/ablations/pfgmpp/grf2d_perceiver.yaml",
                               "configs/ablations/pfgmpp/grf2d_steps18.yaml"]),
        (_method_steps_are(18), ["configs/pfgmpp/grf2d.yaml", "configs/ablations/pfgmpp/grf2d_steps18.yaml"])],
    "configs/inftydiff/grf2d.yaml": [
        (_net_is(_PERCEIVER), ["configs/inftydiff/grf2d.yaml", "configs/ablations/inftydiff/grf2d_perceiver.yaml",
                               "configs/ablations/inftydiff/grf2d_eps.yaml"]),
        (_method_arg_is("prediction", None),
         ["configs/inftydiff/grf2d.yaml", "configs/ablations/inftydiff/grf2d_eps.yaml"])],
    "configs/pfgmpp/mnist.yaml": [
        (_net_is(_PERCEIVER), ["configs/pfgmpp/mnist.yaml", "configs/ablations/pfgmpp/mnist_perceiver.yaml"]),
        (_method_arg_is("snr_gamma", None),
         ["configs/pfgmpp/mnist.yaml", "configs/ablations/pfgmpp/mnist_edm_weighting.yaml",
          "configs/ablations/pfgmpp/mnist_fdp_spectrum.yaml"]),
        (_noise_spectrum_is("fdp"), ["configs/pfgmpp/mnist.yaml", "configs/ablations/pfgmpp/mnist_fdp_spectrum.yaml"])],
    "configs/inftydiff/mnist.yaml": [
        (_net_is(_PERCEIVER), ["configs/inftydiff/mnist.yaml", "configs/ablations/inftydiff/mnist_paper_level.yaml",
                               "configs/ablations/inftydiff/mnist_perceiver.yaml",
                               "configs/ablations/inftydiff/mnist_rate4.yaml"]),
        (_method_arg_is("subsample", 0.25),
         ["configs/inftydiff/mnist.yaml", "configs/ablations/inftydiff/mnist_paper_level.yaml",
          "configs/ablations/inftydiff/mnist_unweighted.yaml", "configs/ablations/inftydiff/mnist_rate4.yaml",
          "configs/ablations/inftydiff/mnist_width1px.yaml"]),
        (_method_arg_is("snr_gamma", None),
         ["configs/inftydiff/mnist.yaml", "configs/ablations/inftydiff/mnist_paper_level.yaml",
          "configs/ablations/inftydiff/mnist_unweighted.yaml", "configs/ablations/inftydiff/mnist_width1px.yaml"]),
        (_method_arg_is("width", 1.0 / 28.0),
         ["configs/inftydiff/mnist.yaml", "configs/ablations/inftydiff/mnist_paper_level.yaml",
          "configs/ablations/inftydiff/mnist_width1px.yaml"]),
        (_method_arg_is("noise_cell", None),
         ["configs/inftydiff/mnist.yaml", "configs/ablations/inftydiff/mnist_paper_level.yaml"]),
        (_method_arg_is("prediction", "v"),
         ["configs/inftydiff/mnist.yaml", "configs/ablations/inftydiff/mnist_v.yaml"])],
    "configs/ign/grf1d.yaml": [(_net_lacks("norm_sets", _GRID_AE),
                                ["configs/ign/grf1d.yaml", "configs/ablations/ign/grf1d_one_stat_set.yaml"])],
    "configs/ign/mnist.yaml": [(_net_lacks("norm_sets", _GRID_AE),
                                ["configs/ign/mnist.yaml", "configs/ablations/ign/mnist_one_stat_set.yaml"])],
    "configs/pfgmpp/grf1d.yaml": [(_noise_period_is(1.0),
                                   ["configs/pfgmpp/grf1d.yaml", "configs/ablations/pfgmpp/grf1d_period1.yaml"])],
}


# ---------------------------------------------------------------------------------------------- records
def parse_key(key: str) -> tuple[str, dict[str, str]]:
    """``"cov_err@N=64,nfe=11"`` -> ``("cov_err", {"N": "64", "nfe": "11"})``."""
    name, _, rest = key.partition("@")
    settings = dict(part.split("=", 1) for part in rest.split(",") if "=" in part)
    return name, settings


def load_records(results: str | Path, log: Any = None) -> list[dict[str, Any]]:
    """The JSON records of ``results/*.json`` (``_file`` added); quick smoke records and files that are
    not records (no ``task`` / ``metrics``) are left out (``log`` is told which)."""
    records = []
    for f in sorted(Path(results).glob("*.json")):
        try:
            rec = json.loads(f.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{f}: not valid JSON ({err}); fix or remove the file") from None
        if not isinstance(rec, dict) or "metrics" not in rec or "task" not in rec:
            if log:
                log(f"skipping {f}: not a benchmark record (no task / metrics)")
            continue
        if rec.get("quick"):  # smoke runs (funcgen bench --quick): their numbers mean nothing
            if log:
                log(f"skipping quick record {f}")
            continue
        rec.setdefault("method", "?")
        rec["_file"] = f.as_posix()
        records.append(rec)
    return records


def name(rec: dict[str, Any]) -> str:
    return Path(rec["_file"]).name


def config_files(rec: dict[str, Any]) -> list[str]:
    """The config files that rebuild a record's run today."""
    cfg = rec.get("config")
    if not cfg:
        return []
    files = [cfg] if isinstance(cfg, str) else list(cfg)
    model = rec.get("model") or {}
    out = []
    for f in files:
        old = [files for test, files in CHANGED.get(f, []) if test(model)]
        out += old[0] if old else RENAMED.get(f, [f])
    return out


def config_label(rec: dict[str, Any]) -> str:
    return " + ".join(config_files(rec)) or "-"


def variant(rec: dict[str, Any]) -> str:
    """The value of a variant setting of the record's metric keys (``volcano`` of ``nll@dataset=volcano``)."""
    for key in rec.get("metrics", {}):
        settings = parse_key(key)[1]
        for s in VARIANT_SETTINGS:
            if s in settings:
                return settings[s]
    return ""


def task_minutes(task: str) -> float | None:
    """The task's standard training budget in minutes (0 for cost-only tasks, None for unknown tasks)."""
    from funcgen.bench.run import TASKS

    spec = TASKS.get(task)
    if spec is None:
        return None
    return 0.0 if not spec.train else float(spec.minutes)


@dataclass(frozen=True)
class Budget:
    """What a record's training was limited by: ``label`` for people, ``standard`` if it is the task's budget."""

    label: str
    standard: bool
    order: float  # sorts budgets: minutes, then step caps, then unknown


def budget(rec: dict[str, Any]) -> Budget:
    std = task_minutes(rec["task"])
    steps, minutes = rec.get("train_steps"), rec.get("minutes")
    if steps == -1:
        return Budget("not recorded (a saved model re-evaluated)", False, 1e9)
    if std == 0.0 or (minutes is None and steps is None):
        return Budget("untrained (cost only)", std in (0.0, None), 0.0)
    cap, secs = rec.get("max_steps"), rec.get("train_seconds")
    if cap and steps is not None and steps >= cap and (secs is None or minutes is None or secs < 0.9 * 60 * minutes):
        return Budget(f"step cap of {cap} steps", False, 1e6 + cap)
    if minutes is None:
        return Budget("not recorded", False, 1e9)
    return Budget(f"{minutes:g} min", std is not None and math.isclose(float(minutes), std), float(minutes))


def _strip_seeds(cfg: Any) -> Any:
    if isinstance(cfg, dict):
        return {k: _strip_seeds(v) for k, v in cfg.items() if k not in ("seed", "split_seed")}
    if isinstance(cfg, list):
        return [_strip_seeds(v) for v in cfg]
    return cfg


def config_identity(rec: dict[str, Any]) -> str:
    """What must agree for records to be seeds of one configuration (everything but the seeds)."""
    return json.dumps({"task": rec["task"], "method": rec["method"], "variant": variant(rec),
                       "budget": budget(rec).label,
                       "model": _strip_seeds(rec["model"]) if "model" in rec else config_label(rec),
                       "eval": rec.get("eval_options") or {}, "method_args": rec.get("method_args") or {},
                       "command": rec.get("command")}, sort_keys=True, default=str)


# ---------------------------------------------------------------------------------------------- groups
def headlines(task: str, records: Sequence[dict[str, Any]]) -> list[Headline]:
    if task in HEADLINES:
        return HEADLINES[task]
    first = next((k for r in records for k, v in r.get("metrics", {}).items() if isinstance(v, (int, float))), None)
    return [Headline(first)] if first else []


def reference_of(rec: dict[str, Any], key: str) -> float | None:
    """The floor / reference of metric ``key`` stored in a record (for metrics without a headline entry)."""
    refs = rec.get("reference") or {}
    base = key.split(",")[0]
    cands = (key.replace("cov_err", "floor").replace("mean_err", "floor_mean").replace("var_err", "floor_var"),
             f"floor_{key}", f"floor_{base}", f"real_{base.split('@')[0]}")
    return next((float(refs[c]) for c in cands if isinstance(refs.get(c), (int, float))), None)


@dataclass
class Stat:
    values: list[float]

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    @property
    def std(self) -> float | None:
        n = len(self.values)
        return None if n < 2 else math.sqrt(sum((v - self.mean) ** 2 for v in self.values) / (n - 1))

    def text(self) -> str:
        s = f"{self.mean:.3g}"
        return s if self.std is None else f"{s} +- {self.std:.2g}"


def fmt(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return "" if v is None else str(v)
    if v == 0 or not math.isfinite(v):
        return f"{v:g}"
    return f"{v:.4g}" if abs(v) >= 1e-3 else f"{v:.3e}"


@dataclass
class Group:
    """Records of one configuration (seeds of the same settings at the same budget)."""

    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def first(self) -> dict[str, Any]:
        return self.records[0]

    @property
    def task(self) -> str:
        return self.first["task"]

    @property
    def method(self) -> str:
        return self.first["method"]

    @property
    def variant(self) -> str:
        return variant(self.first)

    @property
    def budget(self) -> Budget:
        return budget(self.first)

    @property
    def seeds(self) -> list[Any]:
        return [r.get("seed", "?") for r in self.records]

    def stat(self, key: str) -> Stat | None:
        vals = [float(r["metrics"][key]) for r in self.records if isinstance(r["metrics"].get(key), (int, float))]
        return Stat(vals) if vals else None

    def reference(self, h: Headline) -> Stat | None:
        key = h.ref_key(self.variant)
        if key is None:
            vals = [reference_of(r, h.key(self.variant)) for r in self.records]
        else:
            vals = [(r.get("reference") or {}).get(key) for r in self.records]
        vals = [float(v) for v in vals if isinstance(v, (int, float))]
        return Stat(vals) if vals else None

    def score(self, h: Headline) -> float:
        """Sort key: the headline mean, best first (missing values last)."""
        s = self.stat(h.key(self.variant))
        if s is None:
            return math.inf
        return s.mean if h.lower_is_better else -s.mean


def group_records(records: Sequence[dict[str, Any]]) -> list[Group]:
    """Configurations in the order of their first record (file name order)."""
    groups: dict[str, Group] = {}
    for rec in records:
        groups.setdefault(config_identity(rec), Group()).records.append(rec)
    for g in groups.values():
        g.records.sort(key=lambda r: (str(r.get("seed", "")), name(r)))
    return list(groups.values())


def best_per_method(groups: Sequence[Group], h: Headline, standard: bool | None = True) -> dict[str, Group]:
    """The best configuration of each method by ``h`` among ``groups`` at (``standard=True``) or off
    (``False``) the standard budget, or at any budget (None); methods without a value are left out."""
    best: dict[str, Group] = {}
    for g in groups:
        if standard is not None and g.budget.standard != standard:
            continue
        if g.stat(h.key(g.variant)) is None:
            continue
        if g.method not in best or g.score(h) < best[g.method].score(h):
            best[g.method] = g
    return dict(sorted(best.items(), key=lambda kv: kv[1].score(h)))


def compare(value: float, ref: float | None, h: Headline) -> str:
    if ref is None:
        return ""
    if h.compare == "diff":
        return f"{value - ref:+.3g}"
    return f"{value / ref:.2f}x" if ref > 0 else ""
