"""`funcgen bench all --quick`: the task x method table, and a quick run of a subset of its pairs.

The full quick pass (14 pairs) takes about 2.5 minutes on the shared 2-core CPU, so the tests check the
whole pairing table (every pair has its config, every task's quick sizes fit its evaluation) and run
two pairs end to end: grf1d x fdp (`run_all`) and sphere_grf x mdf (`funcgen bench TASK --quick`); the CLI's
`bench all` path is run on a pair that fails at once (a missing config).
"""

import inspect
import json
import math

import pytest
import torch
import yaml

from funcgen import bench
from funcgen.apps.cli import main
from funcgen.bench.run import METHODS, QUICK_MAX_STEPS, TASKS, default_config
from funcgen.bench.suite import pairs, run_all

#: configs/METHOD/ folder -> the method class its configs must train
METHOD_CLASSES = {"fdp": "FunctionalDiffusion", "pfgmpp": "PFGMPP", "ign": "IdempotentGenerative",
                  "inftydiff": "InftyDiff", "mdf": "ManifoldDiffusionField", "riemannian": "RiemannianDiffusion",
                  "ffm": "FunctionalFlowMatching"}


def test_every_task_has_methods_and_every_pair_its_config():
    assert set(METHODS) == set(TASKS), "add a METHODS line for each new TASKS entry (funcgen/bench.py)"
    assert pairs() == [(t, m) for t, ms in METHODS.items() for m in ms]
    assert ("earth", "riemannian") in pairs() and ("mnist", "inftydiff") in pairs()
    for task, method in pairs():
        cfg = default_config(task, method)
        assert cfg.is_file(), f"{task} x {method}: missing {cfg}"
        class_path = yaml.safe_load(cfg.read_text())["model"]["method"]["class_path"]
        assert class_path.rsplit(".", 1)[-1] == METHOD_CLASSES[method], f"{cfg} trains {class_path}"


def test_quick_sizes_are_keywords_of_each_evaluation():
    for name, task in TASKS.items():
        assert task.quick, f"task {name} has no quick evaluation sizes"
        inspect.signature(task.evaluate).bind(None, None, 0, **task.quick)  # raises TypeError on a wrong keyword


def test_pairs_filter_and_reject_unknown_tasks():
    assert pairs(["grf1d"], None) == [("grf1d", m) for m in METHODS["grf1d"]]
    assert pairs(None, "mdf") == [("sphere_grf", "mdf"), ("mesh_grf", "mdf"), ("mnist_sphere", "mdf")]
    with pytest.raises(ValueError, match="unknown task"):
        pairs(["nope"])
    with pytest.raises(ValueError, match="no benchmark pair"):
        pairs(["earth"], "fdp")


def _check(rec: dict, task: str, method: str, keys: set[str]) -> None:
    assert rec["task"] == task and rec["method"] == method
    assert rec["quick"] is True
    assert rec["train_steps"] == QUICK_MAX_STEPS
    assert keys <= set(rec["metrics"]), sorted(rec["metrics"])
    assert all(isinstance(v, float) and math.isfinite(v) for v in rec["metrics"].values())
    assert rec["reference"] and all(math.isfinite(v) for v in rec["reference"].values())


def test_quick_pass_writes_one_record_per_pair(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # lightning's scratch files stay in the temp dir
    out = tmp_path / "quick"
    records = run_all(out, tasks=["grf1d"], method="fdp", log=lambda *a: None)
    assert [(r["task"], r["method"]) for r in records] == [("grf1d", "fdp")]
    saved = json.loads((out / "grf1d_fdp.json").read_text())
    assert saved["status"] == "ok"
    _check(saved, "grf1d", "fdp", {f"{k}@N={n}" for k in ("cov_err", "mean_err", "var_err", "mmd2") for n in (64, 256)})
    assert {"floor@N=64", "floor@N=256"} <= set(saved["reference"])

    # a mesh task through the CLI: `bench TASK --quick --out FILE`
    assert main(["bench", "sphere_grf", "--method", "mdf", "--quick", "--out", str(out / "sphere.json")]) == 0
    rec = json.loads((out / "sphere.json").read_text())
    _check(rec, "sphere_grf", "mdf", {f"{k}@N={n}" for k in ("cov_err", "cov", "mmd") for n in (642, 2562)})


def test_method_args_change_the_evaluated_sampler_and_are_recorded(tmp_path, monkeypatch):
    """`bench ... --method-arg eta=1`: the evaluated generator samples with eta = 1 (its recorded config
    says so), the record lists the change, and docs/benchmarks.md's command line repeats it."""
    import importlib.util
    from pathlib import Path

    monkeypatch.chdir(tmp_path)
    eta = round(float(torch.rand(())) * 0.9 + 0.1, 3)
    out = tmp_path / "grf.json"
    assert main(["bench", "grf1d", "--method", "fdp", "--quick", "--out", str(out), "--method-arg", "solver=ddim",
                 "--method-arg", f"eta={eta}"]) == 0
    rec = json.loads(out.read_text())
    assert rec["method_args"] == {"solver": "ddim", "eta": eta}
    assert rec["model"]["method"]["init_args"]["eta"] == eta
    script = Path(__file__).resolve().parents[2] / "scripts" / "make_benchmarks_md.py"
    spec = importlib.util.spec_from_file_location("mbm", script)
    mbm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mbm)
    assert mbm.eval_flags(rec).endswith(f" --method-arg solver=ddim --method-arg eta={eta}")
    # the default grf1d config integrates with dpm2m: eta > 0 alone is refused by the method's own check,
    # before any training
    import lightning

    def no_fit(*a, **k):
        raise AssertionError("trained before checking --method-arg")

    monkeypatch.setattr(lightning.pytorch.Trainer, "fit", no_fit)
    assert main(["bench", "grf1d", "--method", "fdp", "--quick", "--out", str(out), "--method-arg", "eta=1"]) == 2


def test_a_failing_pair_is_recorded_and_fails_the_pass(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(bench.METHODS, "grf1d", ("nosuchmethod",))
    assert main(["bench", "all", "--quick", "--method", "nosuchmethod", "--out", str(tmp_path)]) == 1
    rec = json.loads((tmp_path / "grf1d_nosuchmethod.json").read_text())
    assert rec["status"] == "failed" and rec["quick"] is True
    assert "FileNotFoundError" in rec["error"] and "configs/nosuchmethod/grf1d.yaml" in rec["error"]
    assert "0/1 pairs ran" in capsys.readouterr().out


def test_single_task_needs_a_method(capsys):
    assert main(["bench", "grf1d"]) == 2
    assert "needs --method" in capsys.readouterr().err


def test_an_unknown_method_is_named_with_the_ones_that_apply(capsys):
    assert main(["bench", "grf1d", "--method", "foo"]) == 2
    err = capsys.readouterr().err
    assert "'foo'" in err and ", ".join(bench.METHODS["grf1d"]) in err


def test_bench_help_lists_tasks_and_their_methods(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    out = capsys.readouterr().out
    for task, methods in bench.METHODS.items():
        assert any(line.split()[:1] == [task] and ", ".join(methods) in line for line in out.splitlines()), task


def test_earth_bench_seed_is_the_split_seed(tmp_path, monkeypatch, data_root):
    """The protocol's Earth seeds 0..4 are five 80/10/10 splits: `bench earth --seed S` trains and evaluates
    on split S (and seeds the run with S), not on split 0 with another initialisation."""
    monkeypatch.chdir(tmp_path)
    seed = int(torch.randint(1, 5, ()))
    rec = bench.run_bench("earth", "riemannian", seed=seed, quick=True, out=str(tmp_path / "earth.json"))
    assert rec["seed"] == seed
    assert rec["model"]["data"]["split_seed"] == seed
    assert rec["model"]["data"]["seed"] == seed  # the shuffling seed too
    assert math.isfinite(rec["metrics"]["nll@dataset=volcano"])


def test_a_saved_export_carries_its_training_into_a_ckpt_evaluation(tmp_path, monkeypatch):
    """`bench --save F` stores how F was trained; `bench --ckpt F` records that (configs, steps, budget), not
    the evaluation's command line, and refuses an export trained for another method."""
    from funcgen.generator import training_record

    monkeypatch.chdir(tmp_path)
    model = tmp_path / "m.safetensors"
    trained = bench.run_bench("grf1d", "fdp", seed=1, quick=True, save=str(model), max_steps=3)
    info = training_record(model)
    assert info is not None and info["train_steps"] == trained["train_steps"] == 3
    assert info["config"] == trained["config"] == "configs/fdp/grf1d.yaml"
    # evaluated with another config on the command line and another seed
    rec = bench.run_bench("grf1d", "fdp", config=["configs/fdp/grf1d.yaml", "configs/ablations/fdp/grf1d_matern.yaml"],
                          seed=2, quick=True, ckpt=str(model))
    assert rec["config"] == "configs/fdp/grf1d.yaml" and rec["train_steps"] == 3
    assert (rec["seed"], rec["eval_seed"], rec["ckpt"]) == (1, 2, "m.safetensors")
    assert rec["minutes"] == trained["minutes"] and "eval_commit" in rec
    with pytest.raises(ValueError, match="trained for task 'grf1d' with method 'fdp'"):
        bench.run_bench("grf1d", "pfgmpp", seed=1, quick=True, ckpt=str(model))
