"""``funcgen project``: repair given functions with an IGN export, missing points as a mask."""

from pathlib import Path

import numpy as np
import torch

import funcgen
from funcgen.apps.cli import main

EXPORT = Path(__file__).resolve().parents[1] / "fixtures" / "v0_1_layout" / "ign_grf1d.safetensors"


def test_project_command_keeps_observed_values_and_fills_missing_ones(tmp_path, capsys):
    g = torch.Generator().manual_seed(0)
    coords = torch.linspace(0.01, 0.99, 20).reshape(1, 20, 1).expand(2, -1, -1)
    values = torch.randn(2, 20, 1, generator=g)
    mask = torch.rand(2, 20, generator=g) > 0.5
    holes = torch.where(mask.unsqueeze(-1), values, torch.full_like(values, float("nan")))
    np.savez(tmp_path / "x.npz", coords=coords.numpy(), values=holes.numpy(), mask=mask.numpy())
    assert main(["project", "--ckpt", str(EXPORT), "--data", str(tmp_path / "x.npz"), "--out",
                 str(tmp_path / "out"), "--k", "2"]) == 0
    with np.load(tmp_path / "out" / "projected.npz") as f:
        out = torch.from_numpy(f["values"])
    assert out.shape == (2, 20, 1) and torch.isfinite(out).all()
    torch.testing.assert_close(out[mask], values[mask])  # observed values kept (data units)
    # without a mask: f applied to the whole functions, as FunctionGenerator.project does
    np.savez(tmp_path / "y.npz", coords=coords.numpy(), values=values.numpy())
    assert main(["project", "--ckpt", str(EXPORT), "--data", str(tmp_path / "y.npz"), "--out",
                 str(tmp_path / "out2")]) == 0
    gen = funcgen.load(EXPORT)
    want = gen.project(funcgen.PointSet(coords, values), k=1).values
    with np.load(tmp_path / "out2" / "projected.npz") as f:
        torch.testing.assert_close(torch.from_numpy(f["values"]), want, atol=1e-5, rtol=1e-5)
    # missing values without a mask, and a file without values: clear errors
    np.savez(tmp_path / "z.npz", coords=coords.numpy(), values=holes.numpy())
    assert main(["project", "--ckpt", str(EXPORT), "--data", str(tmp_path / "z.npz"), "--out", str(tmp_path)]) == 2
    assert "add a mask" in capsys.readouterr().err
    np.savez(tmp_path / "w.npz", coords=coords.numpy())
    assert main(["project", "--ckpt", str(EXPORT), "--data", str(tmp_path / "w.npz"), "--out", str(tmp_path)]) == 2
    assert "lacks ['values']" in capsys.readouterr().err
