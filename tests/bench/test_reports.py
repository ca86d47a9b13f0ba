"""Reports for people without a dashboard: `funcgen sample`'s summary.html, the benchmark figures and
docs/benchmarks.md's coverage table (scripts run on synthetic records in a temp dir)."""

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
from make_figures import load_records, make_figures, parse_key, series  # noqa: E402


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


def test_figure_data_is_read_from_metric_keys():
    assert parse_key("cov_err@N=64,nfe=11") == ("cov_err", {"N": "64", "nfe": "11"})
    recs = [_record("grf1d", "fdp", {"cov_err@N=64": 0.2, "cov_err@N=256": 0.3, "cov_err@N=64,nfe=11": 0.9,
                                     "cov_err@N=64,alpha=0.1": 5.0}, {"floor@N=64": 0.06, "floor@N=256": 0.05})]
    res = series(recs, ("cov_err",), ("N", "res"))
    assert res == {("cov_err", "N"): {"grf1d/fdp (grf1d)": [(64.0, 0.2, 0.06), (256.0, 0.3, 0.05)]}}
    steps = series(recs, ("cov_err",), ("nfe",), extra_ok=True)
    assert steps == {("cov_err", "nfe; N=64"): {"grf1d/fdp (grf1d)": [(11.0, 0.9, None)]}}


def test_make_figures_on_synthetic_records(tmp_path, capsys):
    res = tmp_path / "results"
    res.mkdir()
    metrics = {"cov_err@N=64": 0.2, "cov_err@N=256": 0.3, "cov_err@N=64,nfe=7": 2.0, "cov_err@N=64,nfe=35": 0.2}
    (res / "a.json").write_text(json.dumps(_record("grf1d", "fdp", metrics, {"floor@N=64": 0.06})))
    (res / "b.json").write_text(json.dumps(_record("mnist", "ign", {"fd_lenet@res=28": 9.0, "fd_lenet@res=56": 12.0})))
    (res / "q.json").write_text(json.dumps(_record("mnist", "fdp", {"step_seconds@rate=0.5": 1.0}, quick=True)))
    records = load_records(res)
    assert sorted(Path(r["_file"]).name for r in records) == ["a.json", "b.json"]  # quick records left out
    written = make_figures(records, tmp_path / "fig")
    assert sorted(p.name for p in written) == ["quality_vs_resolution.png", "quality_vs_steps.png"]
    for p in written:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "no record has data for speed_vs_points.png" in capsys.readouterr().out
    assert not (tmp_path / "fig" / "speed_vs_points.png").exists()


def test_benchmarks_md_has_a_coverage_table_and_leaves_quick_records_out(tmp_path):
    res = tmp_path / "results"
    res.mkdir()
    (res / "grf1d_fdp.json").write_text(
        json.dumps(_record("grf1d", "fdp", {"cov_err@N=64": 0.2, "cov_err@N=256": 0.3})))
    (res / "quick_earth.json").write_text(json.dumps(_record("earth", "riemannian", {"nll@dataset=volcano": 1.0},
                                                             quick=True)))
    out = tmp_path / "docs" / "benchmarks.md"
    make_benchmarks_md.main(["--results", str(res), "--out", str(out), "--figures", str(tmp_path / "docs" / "figures")])
    md = out.read_text()
    rows = dict(((m.group(1), m.group(2)), m.group(3))
                for m in re.finditer(r"^\| (\S+) \| (\S+) \| ([^|]+) \|$", md, re.M))
    for task, methods in METHODS.items():
        for method in methods:
            assert rows[(task, method)] == ("grf1d_fdp.json" if (task, method) == ("grf1d", "fdp") else "not run")
    assert "quick_earth" not in md and "nll@dataset" not in md
    assert md.index("## Coverage") < md.index("## grf1d")
    assert "![quality_vs_resolution](figures/quality_vs_resolution.png)" in md
    assert (tmp_path / "docs" / "figures" / "quality_vs_resolution.png").is_file()
