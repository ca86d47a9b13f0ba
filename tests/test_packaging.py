"""Packaging: the configs ship inside the package, documented ``configs/...`` paths work from any folder, and
``fit --help`` lists funcgen backbones only."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from funcgen.config import config_root, resolve_config
from funcgen.train.fit import shipped_config_args

REPO = Path(__file__).resolve().parents[1]


def test_configs_paths_resolve_from_any_folder(tmp_path, monkeypatch):
    assert config_root() == REPO / "configs"
    monkeypatch.chdir(tmp_path)
    assert resolve_config("configs/fdp/grf1d.yaml") == REPO / "configs" / "fdp" / "grf1d.yaml"
    assert shipped_config_args(["fit", "--config", "configs/base/trainer.yaml", "--config=configs/fdp/grf1d.yaml"]) == [
        "fit", "--config", str(REPO / "configs/base/trainer.yaml"), f"--config={REPO / 'configs/fdp/grf1d.yaml'}"]
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "mine.yaml").write_text("{}")
    assert resolve_config("configs/mine.yaml") == Path("configs/mine.yaml")  # a local file wins
    assert resolve_config("configs/nothere.yaml") == Path("configs/nothere.yaml")  # left for the caller's error


def test_wheel_ships_every_config(tmp_path):
    """A wheel (what a non-editable ``pip install .`` installs) holds funcgen/configs with every YAML of configs/."""
    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("funcgen", "configs"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(REPO / name, src / name)
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                          str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    if res.returncode != 0 and "No module named pip" in res.stderr:
        pytest.skip("pip is not available")
    assert res.returncode == 0, res.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("funcgen-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    want = {f"funcgen/configs/{p.relative_to(REPO / 'configs')}" for p in (REPO / "configs").rglob("*.yaml")}
    assert want and want <= names, sorted(want - names)[:5]
    meta = next(n for n in names if n.endswith("METADATA"))
    requires = [line for line in zipfile.ZipFile(wheel).read(meta).decode().splitlines() if line.startswith("Requires")]
    assert not any("torchvision" in r and "extra ==" not in r for r in requires)  # optional: never imported


def test_fit_help_lists_funcgen_backbones_only(capsys):
    from funcgen.apps.cli import main

    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    out = capsys.readouterr().out
    assert "funcgen.nets.PerceiverNet" in out and "torch.nn.Linear" not in out and "torch.nn.modules" not in out
