"""`funcgen sample --observed` / `--coords` and `funcgen logprob`: files in, files out, clear errors."""

from __future__ import annotations

import json

import numpy as np
import torch

from funcgen.apps.cli import main
from funcgen.generator import FunctionGenerator
from funcgen.methods import FunctionalDiffusion
from funcgen.nets import PerceiverNet
from funcgen.processes.noise import SpectralNoise


def export(tmp_path):
    net = PerceiverNet(1, 1, 1, width=16, num_latents=4, depth=1, heads=2, num_bands=3)
    gen = FunctionGenerator(FunctionalDiffusion(SpectralNoise(1, "fdp", modes=8), steps=3), net,
                            {"dim": 1, "channels": 1, "train_shape": [16], "kind": "signal"})
    return gen.save(tmp_path / "m.safetensors")


def test_sample_observed_and_coords_and_logprob(tmp_path, capsys):
    ckpt = export(tmp_path)
    np.savez(tmp_path / "obs.npz", coords=np.array([[0.2], [0.7]], dtype=np.float32),
             values=np.array([[1.0], [-0.5]], dtype=np.float32))
    np.save(tmp_path / "q.npy", np.linspace(0.01, 0.99, 10, dtype=np.float32)[:, None])
    assert main(["sample", "--ckpt", str(ckpt), "--observed", str(tmp_path / "obs.npz"), "--coords",
                 str(tmp_path / "q.npy"), "--num", "3", "--out", str(tmp_path / "out"), "--steps", "2"]) == 0
    with np.load(tmp_path / "out" / "samples.npz") as f:
        assert f["values"].shape == (3, 10, 1) and f["coords"].shape == (3, 10, 1)
    assert main(["sample", "--ckpt", str(ckpt), "--observed", str(tmp_path / "obs.npz"), "--coords",
                 str(tmp_path / "q.npy"), "--num", "2", "--out", str(tmp_path / "out2"), "--steps", "2",
                 "--resample", "2"]) == 0
    assert main(["sample", "--ckpt", str(ckpt), "--num", "2", "--out", str(tmp_path / "out3"), "--resample", "2"]) == 2
    assert "--observed" in capsys.readouterr().err
    np.savez(tmp_path / "x.npz", coords=np.random.rand(2, 4, 1).astype(np.float32),
             values=np.random.randn(2, 4, 1).astype(np.float32))
    assert main(["logprob", "--ckpt", str(ckpt), "--data", str(tmp_path / "x.npz"), "--steps", "3",
                 "--out", str(tmp_path / "lp.json")]) == 0
    lp = json.loads((tmp_path / "lp.json").read_text())
    assert lp["num"] == 2 and all(np.isfinite(lp["log_prob"]))


def test_bad_files_name_the_file_key_and_shape(tmp_path, capsys):
    ckpt = export(tmp_path)
    np.savez(tmp_path / "bad.npz", coords=np.zeros((2, 1), dtype=np.float32))
    assert main(["sample", "--ckpt", str(ckpt), "--observed", str(tmp_path / "bad.npz")]) == 2
    err = capsys.readouterr().err
    assert "bad.npz" in err and "'values'" in err and "[B, M, c]" in err
    np.savez(tmp_path / "far.npz", coords=np.array([[1.5]], dtype=np.float32), values=np.ones((1, 1), np.float32))
    assert main(["sample", "--ckpt", str(ckpt), "--observed", str(tmp_path / "far.npz")]) == 2
    assert "outside the model's domain" in capsys.readouterr().err
    np.save(tmp_path / "q.npy", np.zeros((4, 2), dtype=np.float32))
    assert main(["sample", "--ckpt", str(ckpt), "--coords", str(tmp_path / "q.npy")]) == 2
    assert "q.npy" in capsys.readouterr().err


def test_generator_rejects_bad_observations():
    import pytest

    from funcgen.pointset import PointSet

    net = PerceiverNet(1, 1, 1, width=16, num_latents=4, depth=1, heads=2, num_bands=3)
    gen = FunctionGenerator(FunctionalDiffusion(SpectralNoise(1, "fdp", modes=8), steps=2), net,
                            {"dim": 1, "channels": 1, "train_shape": [16]})
    q = torch.rand(8, 1)
    with pytest.raises(ValueError, match="channel"):
        gen.sample(2, coords=q, observed=PointSet(torch.rand(1, 3, 1), torch.randn(1, 3, 2)))
    with pytest.raises(ValueError, match=r"\[B, M, 1\]"):
        gen.sample(2, coords=q, observed=PointSet(torch.rand(1, 3, 2), torch.randn(1, 3, 1)))
    with pytest.raises(ValueError, match="outside the model's domain"):
        gen.sample(2, coords=q, observed=PointSet(torch.rand(1, 3, 1) + 1.0, torch.randn(1, 3, 1)))
    with pytest.raises(ValueError, match="NaN"):
        PointSet(torch.rand(1, 3, 1), torch.tensor([[[1.0], [float("nan")], [0.0]]]))
    with pytest.raises(ValueError, match="coincide"):
        gen.sample(2, coords=q, observed=PointSet(torch.tensor([[[0.5], [0.5]]]), torch.randn(1, 2, 1)))
    with pytest.raises(ValueError, match="obs_std"):
        gen.sample(2, coords=q, observed=PointSet(torch.rand(1, 3, 1), torch.randn(1, 3, 1)), obs_std=-1.0)
    with pytest.raises(ValueError, match="guidance"):
        gen.sample(2, coords=q, observed=PointSet(torch.rand(1, 3, 1), torch.randn(1, 3, 1)), guidance="dps")


def test_sample_observed_cell_averages(tmp_path):
    """`--observe cells`: 4 coarse values as averages of their cells; the 16-point samples reproduce them."""
    ckpt = export(tmp_path)
    coarse = np.array([[0.5], [-0.2], [0.1], [0.8]], dtype=np.float32)
    np.savez(tmp_path / "obs.npz", coords=((np.arange(4, dtype=np.float32) + 0.5) / 4)[:, None], values=coarse)
    assert main(["sample", "--ckpt", str(ckpt), "--observed", str(tmp_path / "obs.npz"), "--resolution", "16",
                 "--observe", "cells", "--num", "2", "--out", str(tmp_path / "out"), "--steps", "2"]) == 0
    with np.load(tmp_path / "out" / "samples.npz") as f:
        v = f["values"][..., 0]
    assert v.shape == (2, 16)
    assert np.allclose(v.reshape(2, 4, 4).mean(-1), coarse[:, 0], atol=1e-4)
