"""Bring your own data: funcgen.data.FileDataModule (.npz, image folders, sphere CSVs), trained through the
``funcgen fit`` entry point and sampled with ``funcgen.load`` in the data's own units."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import funcgen
from funcgen.apps.cli import main
from funcgen.data import FileDataModule, FunctionDataModule
from funcgen.data.manifold import latlon_to_sphere

LOW, HIGH = np.array([-2.0, 10.0]), np.array([3.0, 14.0])


def ragged_npz(path: Path, b: int = 24, n: int = 30, seed: int = 0) -> dict[str, np.ndarray]:
    """Scattered 2-D functions ``100 + 5 sin(x) cos(y / 2) + noise`` on the box [-2, 3] x [10, 14], 10 to 30
    real points each; the padding holds NaN (the mask says to ignore it)."""
    rng = np.random.default_rng(seed)
    coords = rng.uniform(LOW, HIGH, size=(b, n, 2))
    values = 100.0 + 5.0 * np.sin(coords[..., :1]) * np.cos(coords[..., 1:] / 2) + rng.normal(size=(b, n, 1))
    mask = np.arange(n)[None, :] < rng.integers(10, n + 1, size=b)[:, None]
    values[~mask] = np.nan
    arrays = {"coords": coords, "values": values.astype(np.float32), "mask": mask}
    np.savez(path, **arrays)
    return arrays


def write_config(path: Path, tmp: Path, data: dict, method: dict, net: dict, **model) -> Path:
    cfg = {
        "seed_everything": 0,
        "trainer": {"max_steps": 3, "logger": False, "enable_progress_bar": False, "enable_model_summary": False,
                    "default_root_dir": str(tmp), "accelerator": "cpu", "val_check_interval": 2,
                    "check_val_every_n_epoch": None, "limit_val_batches": 1, "num_sanity_val_steps": 1,
                    "callbacks": [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                                   "init_args": {"dirpath": str(tmp / "ckpt"), "save_last": True, "save_top_k": 0}}]},
        "model": {"method": method, "net": net, "warmup_steps": 1, "val_num_samples": 2, "val_steps": 2,
                  "val_upsample": 2, **model},
        "data": data,
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


FDP_2D = {"class_path": "funcgen.methods.FunctionalDiffusion",
          "init_args": {"noise": {"class_path": "funcgen.processes.noise.SpectralNoise",
                                  "init_args": {"dim": 2, "modes": 4}}, "steps": 3}}


def perceiver(c: int) -> dict:
    return {"class_path": "funcgen.nets.PerceiverNet",
            "init_args": {"dim": 2, "in_channels": c, "out_channels": c, "width": 16, "num_latents": 4, "depth": 1,
                          "heads": 2, "num_bands": 2}}


# ----------------------------------------------------------------- the acceptance tests (through `funcgen fit`)
def test_fit_from_ragged_npz_in_a_box_then_sample_in_data_units(tmp_path):
    arrays = ragged_npz(tmp_path / "fields.npz")
    data = {"class_path": "funcgen.data.FileDataModule",
            "init_args": {"path": str(tmp_path / "fields.npz"), "batch_size": 4, "val_fraction": 0.25}}
    cfg = write_config(tmp_path / "cfg.yaml", tmp_path, data, FDP_2D, perceiver(1))
    assert main(["fit", "--config", str(cfg)]) == 0
    gen = funcgen.load(tmp_path / "ckpt" / "last.ckpt")

    # the export records the box (the coordinates' range) and the training split's value statistics
    real = arrays["mask"]
    low, high = arrays["coords"][real].min(0), arrays["coords"][real].max(0)
    assert np.allclose(gen.box(), [low, high], atol=1e-5)
    train = np.sort(np.random.default_rng(0).permutation(24)[6:])
    tv = arrays["values"][train][real[train]]
    norm = gen.data["normalization"]
    assert norm["shift"] == pytest.approx(float(tv.mean()), rel=1e-5)
    assert norm["scale"] == pytest.approx(float(tv.std(ddof=1)), rel=1e-4)

    # sample at coordinates in the data's units: the same numbers as the model at the hand-mapped unit coords
    q = torch.tensor(np.random.default_rng(5).uniform(low, high, size=(2, 7, 2)), dtype=torch.float32)
    ps = gen.sample(coords=q, seed=3, steps=2)
    assert torch.equal(ps.coords, q)  # returned in the units they were given
    unit = (q - torch.tensor(low, dtype=torch.float32)) / torch.tensor(high - low, dtype=torch.float32)
    raw = gen.method.sample(gen.net, unit, 1, generator=torch.Generator().manual_seed(3), steps=2)
    assert torch.allclose(ps.values, raw * norm["scale"] + norm["shift"], atol=1e-4)
    assert 60 < float(ps.values.mean()) < 140  # data units (about 100), not the model's unit scale
    # a grid sample comes back on the data's box
    grid = gen.sample(2, 4, steps=2)
    assert grid.coords.min(1).values.min(0).values.tolist() == pytest.approx(list(low + (high - low) / 8), rel=1e-5)
    with pytest.raises(ValueError, match=r"box \[-1\.9.*data units"):
        gen.sample(coords=q + 100.0, steps=2)

    # conditioning and likelihoods take data units too: observed points in the box, samples through them
    obs = funcgen.PointSet(q[:1, :3], torch.tensor([[[95.0], [100.0], [105.0]]]))
    cond = gen.sample(coords=q[0, 3:], observed=obs, num=2, seed=0, steps=2)
    assert torch.equal(cond.coords, q[0, 3:].expand(2, -1, -1))
    at_obs = gen.sample(coords=q[0, :3], observed=obs, num=2, seed=0, steps=2)
    assert torch.allclose(at_obs.values, obs.values.expand(2, -1, -1), atol=1e-3)
    with pytest.raises(ValueError, match=r"outside.*box"):
        gen.sample(coords=q[0], observed=funcgen.PointSet(q[:1, :3] - 50.0, obs.values), num=1, steps=2)
    lp = gen.log_prob(funcgen.PointSet(q[:1, :3], obs.values), steps=4)
    assert lp.shape == (1,) and torch.isfinite(lp).all()


def test_fit_from_an_image_folder(tmp_path):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        img = (rng.uniform(size=(8, 6, 3)) * 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"im{i}.png")
    data = {"class_path": "funcgen.data.FileDataModule",
            "init_args": {"path": str(folder), "batch_size": 2, "resize": [4, 4], "val_fraction": 0.34}}
    cfg = write_config(tmp_path / "cfg.yaml", tmp_path, data, FDP_2D, perceiver(3))
    assert main(["fit", "--config", str(cfg)]) == 0
    gen = funcgen.load(tmp_path / "ckpt" / "last.ckpt")
    assert gen.data["kind"] == "image" and gen.data["train_shape"] == [4, 4] and gen.channels == 3
    assert gen.box() is None  # images live on [0, 1]^2
    ps = gen.sample(2, steps=2)
    assert ps.values.shape == (2, 16, 3)


def test_fit_from_a_sphere_csv_with_a_header(tmp_path):
    rng = np.random.default_rng(0)
    rows = [f"{i},{lat:.4f},{lon:.4f}" for i, (lat, lon) in
            enumerate(zip(rng.uniform(-60, 60, 40), rng.uniform(-180, 180, 40)))]
    csv = tmp_path / "my_events.csv"
    csv.write_text("id,lat,lon\n" + "\n".join(rows) + "\n")
    data = {"class_path": "funcgen.data.FileDataModule",
            "init_args": {"path": str(csv), "columns": ["lat", "lon"], "batch_size": 8}}
    method = {"class_path": "funcgen.methods.RiemannianDiffusion",
              "init_args": {"manifold": {"class_path": "funcgen.geometry.Sphere", "init_args": {"n": 2}}, "steps": 3}}
    net = {"class_path": "funcgen.nets.ManifoldMLP",
           "init_args": {"dim": 1, "in_channels": 3, "out_channels": 3, "width": 16, "depth": 1}}
    cfg = write_config(tmp_path / "cfg.yaml", tmp_path, data, method, net)
    assert main(["fit", "--config", str(cfg)]) == 0
    gen = funcgen.load(tmp_path / "ckpt" / "last.ckpt")
    assert gen.data["manifold"]["class_path"].endswith("Sphere") and gen.data["source"] == "my_events.csv"
    x = gen.sample(coords=torch.zeros(5, 1, 1), steps=3).values
    assert torch.allclose(x.norm(dim=-1), torch.ones(5, 1), atol=1e-4)


# ----------------------------------------------------------------- the module on its own
def test_npz_split_mask_box_and_normalisation(tmp_path):
    arrays = ragged_npz(tmp_path / "f.npz", b=10)
    dm = FileDataModule(str(tmp_path / "f.npz"), val_fraction=0.2, seed=4, batch_size=3)
    dm.setup()
    perm = np.random.default_rng(4).permutation(10)
    train, val = np.sort(perm[2:]), np.sort(perm[:2])
    assert len(dm.train_set) == 8 and len(dm.val_set) == 2
    mask = arrays["mask"]
    tv = arrays["values"][train][mask[train]]
    assert dm.shift == pytest.approx(float(tv.mean()), rel=1e-5)
    low, high = arrays["coords"][mask].min(0), arrays["coords"][mask].max(0)
    for k, i in enumerate(val):  # items hold only their real points, in unit coordinates and model values
        c, v = dm.val_set[k]
        assert c.shape == (mask[i].sum(), 2)
        assert np.allclose(c.numpy(), (arrays["coords"][i][mask[i]] - low) / (high - low), atol=1e-5)
        assert np.allclose(v.numpy(), (arrays["values"][i][mask[i]] - dm.shift) / dm.scale, atol=1e-4)
    coords, values, m = next(iter(dm.train_dataloader()))  # padded per batch, with the mask
    assert coords.shape[:2] == values.shape[:2] == m.shape and m.sum(1).min() >= 10
    assert not (values[~m] != 0).any() and (coords >= 0).all() and (coords <= 1).all()


def test_npz_shared_grid_per_channel_normalisation_and_explicit_box(tmp_path):
    x = np.linspace(0.0, 2.0, 16)[:, None]
    values = np.stack([np.concatenate([np.sin(k * x), 10 + 3 * np.cos(k * x)], -1) for k in range(1, 9)])
    np.savez(tmp_path / "s.npz", coords=x, values=values)
    dm = FileDataModule(str(tmp_path / "s.npz"), normalize="channel", box=[[-1.0], [3.0]], grid=[32])
    cfg = dm.data_config()
    assert cfg["box"]["low"] == [-1.0] and cfg["train_shape"] == [32] and cfg["kind"] == "signal"
    assert len(cfg["normalization"]["shift"]) == 2 and cfg["normalization"]["shift"][1] > 9
    c, v = dm.train_set[0]
    assert torch.allclose(c, torch.tensor((x + 1.0) / 4.0, dtype=torch.float32))
    with pytest.raises(ValueError, match=r"outside the box"):
        FileDataModule(str(tmp_path / "s.npz"), box=[[0.5], [3.0]]).setup()


@pytest.mark.parametrize("arrays, message", [
    ({"values": np.zeros((4, 5, 1))}, r"bad\.npz: no array 'coords'"),
    ({"coords": np.zeros((6, 2)), "values": np.zeros((4, 5, 1))},
     r"bad\.npz: 'coords' must have shape \[N, d\] = \[5, d\] \(shared\) or \[B, N, d\] = \[4, 5, d\]"),
    ({"coords": np.zeros((5, 1)), "values": np.zeros((4,))}, r"'values' must have shape \[B, N, c\]"),
    ({"coords": np.zeros((5, 1)), "values": np.zeros((4, 5, 1)), "mask": np.ones((4, 6), bool)},
     r"'mask' must be bool \(or 0/1\) of shape \[B, N\] = \[4, 5\]"),
])
def test_npz_errors_name_the_file_the_key_and_the_shape(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=message):
        FileDataModule(str(tmp_path / "bad.npz")).setup()


def test_nan_rows_are_reported_with_their_dataset_row(tmp_path):
    coords = np.random.default_rng(0).uniform(size=(7, 2))
    values = np.ones((5, 7, 1))
    values[3, 4] = np.nan
    values[1, 0] = np.inf
    np.savez(tmp_path / "n.npz", coords=coords, values=values)
    with pytest.raises(ValueError, match=r"n\.npz: 'values' holds NaN or inf in 2 dataset row\(s\) \[1, 3\]"):
        FileDataModule(str(tmp_path / "n.npz")).setup()
    mask = np.ones((5, 7), bool)
    mask[3, 4] = mask[1, 0] = False  # masked NaNs are padding: fine
    np.savez(tmp_path / "m.npz", coords=coords, values=values, mask=mask)
    FileDataModule(str(tmp_path / "m.npz")).setup()


def test_other_inputs_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothere\.npz.*'coords'"):
        FileDataModule(str(tmp_path / "nothere.npz")).setup()
    (tmp_path / "x.h5").write_bytes(b"")
    with pytest.raises(ValueError, match=r"x\.h5: HDF5 files are not read.*numpy\.savez"):
        FileDataModule(str(tmp_path / "x.h5")).setup()
    with pytest.raises(TypeError, match="abstract base.*FileDataModule"):
        FunctionDataModule()


def test_cli_refuses_the_abstract_datamodule(capsys):
    assert main(["fit", "--data", "funcgen.data.FunctionDataModule"]) == 2
    err = capsys.readouterr().err
    assert "abstract base" in err and "funcgen.data.FileDataModule" in err


def test_image_folder_grey_rgb_and_sizes(tmp_path):
    from PIL import Image

    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(grey).save(tmp_path / "a.png")
    Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "b.png")  # RGB file, grey content
    dm = FileDataModule(str(tmp_path), normalize="none", val_fraction=0.5)
    dm.setup()
    assert dm.channels == 1 and dm.train_shape == (3, 4)
    c, v = (dm.train_set[0])
    assert torch.allclose(v[:, 0], torch.tensor(grey.reshape(-1) / 255.0, dtype=torch.float32))
    assert torch.allclose(c[1], torch.tensor([0.5 / 3, 1.5 / 4]))  # row-major pixel centres
    assert FileDataModule(str(tmp_path), color="rgb").data_config()["channels"] == 3
    Image.fromarray(np.zeros((5, 4), np.uint8)).save(tmp_path / "c.png")
    with pytest.raises(ValueError, match=r"differ in size.*resize=\[H, W\]"):
        FileDataModule(str(tmp_path)).setup()
    assert FileDataModule(str(tmp_path), resize=[2, 2]).data_config()["train_shape"] == [2, 2]


def test_sphere_csv_options(tmp_path):
    f = tmp_path / "p.csv"
    f.write_text("name,lon_rad,lat_rad\na,0.5,0.25\nb,-1.0,1.0\nc,2.0,-0.5\n")
    dm = FileDataModule(str(f), columns=("lat_rad", "lon_rad"), degrees=False, val_fraction=0.34)
    dm.setup()
    pts = torch.cat([dm.train_set.values[:, 0], dm.val_set.values[:, 0]])
    want = latlon_to_sphere(torch.rad2deg(torch.tensor([[0.25, 0.5], [1.0, -1.0], [-0.5, 2.0]], dtype=torch.float64)))
    assert pts.shape == (3, 3) and torch.cdist(pts.double(), want).min(1).values.max() < 1e-6
    with pytest.raises(ValueError, match=r"no column 'lat' in the header; columns: name, lon_rad, lat_rad"):
        FileDataModule(str(f), columns=("lat", "lon")).setup()
    f.write_text("10,20\n100,20\n")
    with pytest.raises(ValueError, match=r"p\.csv, line 2: latitude 100\.0 out of range"):
        FileDataModule(str(f)).setup()
    assert math.isclose(float(latlon_to_sphere(torch.tensor([[90.0, 0.0]]))[0, 2]), 1.0)
