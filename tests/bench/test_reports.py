"""Reports for people without a dashboard: `funcgen sample`'s summary.html, the benchmark figures and
docs/benchmarks.md's leaderboard and coverage table (scripts run on synthetic records in a temp dir)."""

import base64
import json
import re
import sys
from pathlib import Path

import numpy as np
import torch

from funcgen.apps.cli import main
from funcgen.bench.run import METHODS
from funcgen.generator import FunctionGenerator
from funcgen.methods import FunctionalDiffusion
from funcgen.nets import PerceiverNet
from funcgen.processes.noise import SpectralNoise

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
import make_benchmarks_md  # noqa: E402
from leaderboard import HEADLINES, best_per_method, budget, group_records, name  # noqa: E402
from make_figures import figure_series, load_records, make_figures, parse_key  # noqa: E402


def test_sample_writes_a_self_contained_html_summary(tmp_path, gen):
    seed = int(torch.randint(0, 10_000, (), generator=gen))
    net = PerceiverNet(2, 1, 1, width=16, num_latents=4, depth=1, heads=2, num_bands=3)
    model = FunctionGenerator(FunctionalDiffusion(SpectralNoise(2, "fdp", modes=4), steps=2), net,
                              {"dim": 2, "channels": 1, "train_shape": [8, 8], "kind": "image",
                               "normalization": {"scale": 2.0, "shift": 0.5}})
    ckpt = model.save(tmp_path / "m.safetensors")
    out = tmp_path / "out"
    assert main(["sample", "--ckpt", str(ckpt), "--resolution", "12", "--num", "3", "--seed", str(seed),
                 "--steps", "2", "--out", str(out)]) == 0
    page = (out / "summary.html").read_text()
    # the embedded picture is exactly samples.png (nothing else needed to view it)
    embedded = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert embedded and base64.b64decode(embedded.group(1)) == (out / "samples.png").read_bytes()
    values = np.load(out / "samples.npz")["values"]
    assert values.shape == (3, 144, 1)
    for text in (str(ckpt), "funcgen.methods.fdp.FunctionalDiffusion", "12x12", f"<td>{seed}</td>", "<td>3</td>",
                 f"[{values.min():.4g}, {values.max():.4g}]"):
        assert text in page, text


def _record(task, method, metrics, reference=None, **kw):
    return {"task": task, "method": method, "seed": 0, "config": f"configs/{method}/{task}.yaml", "metrics": metrics,
            "reference": reference or {}, "train_steps": 10, "train_seconds": 1.0, "sample_seconds": 1.0,
            "torch": "x", "commit": "abc", **kw}


def _grf1d(method, seed, v64, minutes=25.0, **kw):
    return _record("grf1d", method, {"cov_err@N=64": v64, "cov_err@N=256": v64 + 0.01},
                   {"floor@N=64": 0.05, "floor@N=256": 0.05}, seed=seed, minutes=minutes,
                   model={"method": {"class_path": method}, "data": {"seed": seed}}, **kw)


def test_figure_series_are_read_from_metric_keys():
    assert parse_key("cov_err@N=64,nfe=11") == ("cov_err", {"N": "64", "nfe": "11"})
    rec = _record("grf1d", "fdp", {"cov_err@N=64": 0.2, "cov_err@N=256": 0.3, "cov_err@N=64,nfe=11": 0.9,
                                   "cov_err@N=64,nfe=25": 0.5, "cov_err@N=64,alpha=0.1": 5.0},
                  {"floor@N=64": 0.06, "floor@N=256": 0.05}, _file="a.json")
    g = group_records([rec])[0]
    assert figure_series(g, "cov_err", "N") == [(64.0, [0.2], 0.06), (256.0, [0.3], 0.05)]
    assert figure_series(g, "cov_err", "nfe", {"N": "64"}) == [(11.0, [0.9], None), (25.0, [0.5], None)]
    assert figure_series(g, "cov_err", "nfe") == []  # keys with another setting need it fixed


def test_seeds_of_one_configuration_are_grouped_and_budgets_kept_apart():
    recs = [_grf1d("fdp", 0, 0.08, _file="f0.json"), _grf1d("fdp", 1, 0.10, _file="f1.json"),
            _grf1d("fdp", 0, 0.01, minutes=100.0, _file="long.json"),  # another budget: never ranked
            _grf1d("ffm", 0, 0.085, _file="m.json"),
            _grf1d("ign", 0, 0.5, max_steps=10, train_seconds=5.0, _file="capped.json"),  # stopped by a step cap
            _grf1d("pfgmpp", 0, 0.3, train_steps=-1, _file="ckpt.json")]  # a saved model re-evaluated
    groups = group_records(recs)
    assert sorted(len(g.records) for g in groups) == [1, 1, 1, 1, 2]
    best = best_per_method(groups, HEADLINES["grf1d"][0], standard=True)
    assert list(best) == ["ffm", "fdp"]  # mean of the two fdp seeds (0.09) is behind ffm's 0.085
    fdp = best["fdp"]
    assert [name(r) for r in fdp.records] == ["f0.json", "f1.json"]
    s = fdp.stat("cov_err@N=64")
    assert abs(s.mean - 0.09) < 1e-12 and abs(s.std - 0.02 ** 0.5 * 0.1) < 1e-12
    assert budget(recs[2]).label == "100 min" and not budget(recs[2]).standard
    assert budget(recs[4]).label == "step cap of 10 steps" and not budget(recs[4]).standard
    assert not budget(recs[5]).standard and "not recorded" in budget(recs[5]).label


def test_make_figures_on_synthetic_records(tmp_path, capsys):
    res = tmp_path / "results"
    res.mkdir()
    metrics = {"cov_err@N=64": 0.2, "cov_err@N=256": 0.3, "cov_err@N=64,nfe=7": 2.0, "cov_err@N=64,nfe=35": 0.2}
    (res / "a.json").write_text(json.dumps(_record("grf1d", "fdp", metrics, {"floor@N=64": 0.06}, minutes=25.0)))
    (res / "b.json").write_text(json.dumps(_record("mnist", "ign", {"fd_lenet@res=28": 9.0, "fd_lenet@res=56": 12.0})))
    (res / "q.json").write_text(json.dumps(_record("mnist", "fdp", {"step_seconds@rate=0.5": 1.0}, quick=True)))
    (res / "e.json").write_text(json.dumps(_record("earth", "riemannian", {"nll@dataset=volcano": -4.0},
                                                   {"rfm_published_nll@dataset=volcano": -7.9}, minutes=30.0)))
    (res / "z.json").write_text(json.dumps(_record("earth", "riemannian", {"kl@x=1": 1.0})))
    records = load_records(res)
    assert sorted(Path(r["_file"]).name for r in records) == ["a.json", "b.json", "e.json", "z.json"]
    written = make_figures(records[:3], tmp_path / "fig")
    assert sorted(p.name for p in written) == ["bench_earth.png", "bench_grf1d.png", "bench_mnist.png"]
    for p in written:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _colours_in(png: Path) -> set[tuple[int, int, int]]:
    from PIL import Image

    rgb = np.asarray(Image.open(png).convert("RGB")).reshape(-1, 3)
    return {tuple(int(c) for c in px) for px in np.unique(rgb, axis=0)}


def test_a_method_has_its_colour_in_every_figure(tmp_path):
    from funcgen.viz.colors import METHOD_COLORS

    recs = [_grf1d("fdp", 0, 0.08, _file="f.json"), _grf1d("ffm", 0, 0.09, _file="m.json")]
    written = make_figures(recs, tmp_path, log=lambda *_: None)
    found = _colours_in(written[0])
    for method in ("fdp", "ffm"):
        hexcol = METHOD_COLORS[method].lstrip("#")
        assert tuple(int(hexcol[i:i + 2], 16) for i in (0, 2, 4)) in found, method
    assert tuple(int(METHOD_COLORS["ign"].lstrip("#")[i:i + 2], 16) for i in (0, 2, 4)) not in found


def test_benchmarks_md_opens_with_the_leaderboard(tmp_path):
    res = tmp_path / "results"
    res.mkdir()
    for i, rec in enumerate([_grf1d("fdp", 0, 0.08), _grf1d("fdp", 1, 0.10), _grf1d("ffm", 0, 0.07),
                             _grf1d("ign", 0, 0.01, minutes=5.0), _grf1d("pfgmpp", 0, 0.3, train_steps=-1)]):
        (res / f"grf1d_{i}.json").write_text(json.dumps(rec))
    (res / "quick_earth.json").write_text(json.dumps(_record("earth", "riemannian", {"nll@dataset=volcano": 1.0},
                                                             quick=True)))
    out = tmp_path / "docs" / "benchmarks.md"
    make_benchmarks_md.main(["--results", str(res), "--out", str(out), "--figures", str(tmp_path / "docs" / "figures")])
    md = out.read_text()
    board = md[md.index("## Leaderboard"):md.index("## Figures")]
    assert md.index("## Leaderboard") < md.index("## Coverage") < md.index("## All records")
    glance = re.search(r"^\| grf1d \| \*\*(\w+)\*\* \| cov_err@N=64 ([\d.]+) \|", board, re.M)
    assert glance and glance.groups() == ("ffm", "0.07")
    rows = re.findall(r"^\| (?:\*\*)?(\d)(?:\*\*)? \| (?:\*\*)?(\w+)(?:\*\*)? \| ([^|]+) \|", board, re.M)
    assert rows == [("1", "ffm", "0.07"), ("2", "fdp", "0.09 +- 0.014")]  # ign's 5-minute 0.01 is not ranked
    assert "ign: 0.01 (5 min;" in board and "pfgmpp: 0.3 (not recorded" in board
    assert "not recorded" in md[md.index("## All records"):] and "| -1 |" not in md
    cov = dict(((m.group(1), m.group(2)), m.group(3))
               for m in re.finditer(r"^\| (\S+) \| (\S+) \| ([^|]+) \|$", md[md.index("## Coverage"):], re.M))
    for task, methods in METHODS.items():
        for method in methods:
            assert (cov[(task, method)] != "not run") == (task == "grf1d"), (task, method)
    assert "quick_earth" not in md and "nll@dataset" not in md
    assert "![bench_grf1d](figures/bench_grf1d.png)" in md
    assert (tmp_path / "docs" / "figures" / "bench_grf1d.png").is_file()


def test_conditioning_records_are_listed_with_the_command_that_wrote_them():
    """A conditional_bench record lands in its own section with its metrics, its note and a command that carries
    its eval options as conditional_bench flags (lists spread out, None left out)."""
    rec = {"task": "grf1d-regression", "method": "fdp", "seed": 3, "ckpt": "/x/models/m.safetensors",
           "metrics": {"mean_err_ratio@M=4": 1.4321}, "eval_options": {"num": 500, "ms": [4, 8], "steps": None,
                                                                        "moment_samples": 256},
           "note": "a probe", "_file": "docs/results/conditioning/r.json"}
    lines = make_benchmarks_md.conditioning([rec])
    row = [ln for ln in lines if ln.startswith("| grf1d-regression")]
    assert row == ["| grf1d-regression | fdp | mean_err_ratio@M=4 1.432 | `r.json` | "
                   "`python scripts/conditional_bench.py grf1d-regression --ckpt m.safetensors --method fdp --seed 3 "
                   "--num 500 --ms 4 8 --moment-samples 256` (a probe) |"]
    assert make_benchmarks_md.conditioning([]) == []
    assert "## Conditional generation" in make_benchmarks_md.render([], conditional=[rec])


def test_an_anchor_is_listed_beside_the_methods_but_never_ranked_or_named_best(tmp_path):
    res = tmp_path / "results"
    res.mkdir()
    for i, rec in enumerate([_grf1d("fdp", 0, 0.08), _grf1d("ffm", 0, 0.09), _grf1d("pixel_ddpm", 0, 0.06)]):
        (res / f"grf1d_{i}.json").write_text(json.dumps(rec))
    out = tmp_path / "benchmarks.md"
    make_benchmarks_md.main(["--results", str(res), "--out", str(out), "--figures", ""])
    board = out.read_text().split("## Leaderboard")[1].split("## Coverage")[0]
    glance = re.search(r"^\| grf1d \| \*\*(\w+)\*\* \|.*\| ([^|]+) \|$", board, re.M)
    assert glance and glance.group(1) == "fdp" and "pixel_ddpm (anchor)" in glance.group(2)
    rows = re.findall(r"^\| (?:\*\*)?([\d-])(?:\*\*)? \| (?:\*\*)?([\w ()-:,]+?)(?:\*\*)? \| ([^|]+) \|", board, re.M)
    assert [(r[0], r[1].split()[0], r[2]) for r in rows] == [("1", "fdp", "0.08"), ("2", "ffm", "0.09"),
                                                              ("-", "pixel_ddpm", "0.06")]
