"""Manifold datasets (Earth CSV, heat-kernel mixtures) and training Riemannian diffusion through the shared module."""

import math

import lightning as L
import numpy as np
import pytest
import torch

import funcgen
from funcgen.data import EarthDataModule, ManifoldMixtureDataModule
from funcgen.data.manifold import (
    HeatKernelMixture,
    earth_split,
    latlon_to_sphere,
    load_earth_csv,
)
from funcgen.geometry import SO3, Sphere, Torus
from funcgen.methods import RiemannianDiffusion
from funcgen.nets import ManifoldMLP
from funcgen.train.module import GenerativeModule


def test_latlon_embedding_known_points():
    x = latlon_to_sphere(torch.tensor([[0.0, 0.0], [90.0, 123.0], [0.0, 90.0], [-30.0, 180.0]], dtype=torch.float64))
    want = torch.tensor([[1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0], [-math.sqrt(3) / 2, 0, -0.5]], dtype=torch.float64)
    assert torch.allclose(x, want, atol=1e-12)


def test_earth_csv_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothere\.csv.*latitude,longitude"):
        load_earth_csv(tmp_path / "nothere.csv")
    bad = tmp_path / "bad.csv"
    for text, message in (("10,20\n1;2\n", r"bad\.csv, line 2: malformed row"),
                          ("10,20\n95,20\n", "line 2: latitude 95.0 out of range"),
                          ("10,400\n", "longitude 400.0 out of range"),
                          ("nan,3\n", "non-finite"),
                          ("\n", "no data rows")):
        bad.write_text(text)
        with pytest.raises(ValueError, match=message):
            load_earth_csv(bad)
    ok = tmp_path / "ok.csv"
    ok.write_text("-30.2,-178.47\n30.78,130.28\n")
    assert Sphere(2).belongs(load_earth_csv(ok)).all()


def test_earth_datamodule_split_follows_the_protocol(data_root):
    dm = EarthDataModule("volcano", root=str(data_root), split_seed=3, batch_size=64)
    dm.setup("fit")
    n = 827
    tr, va, te = earth_split(n, 3)
    assert len(dm.train_set) == len(tr) == 661 and len(dm.val_set) == len(va) == 82 and dm.test_points.shape == (84, 3)
    assert len(set(tr) | set(va) | set(te)) == n
    assert np.array_equal(np.concatenate([tr, va, te]), np.random.default_rng(3).permutation(n))
    all_x = load_earth_csv(data_root / "earth" / "volcano.csv").float()
    assert torch.equal(dm.test_points, all_x[te])
    coords, values = next(iter(dm.train_dataloader()))
    assert coords.shape == (64, 1, 1) and values.shape == (64, 1, 3) and Sphere(2).belongs(values).all()


def test_earth_datamodule_without_data_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.delenv("FUNCGEN_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="FUNCGEN_DATA"):
        EarthDataModule("fire").setup()
    with pytest.raises(FileNotFoundError, match=r"earth/fire\.csv"):
        EarthDataModule("fire", root=str(tmp_path)).setup()
    with pytest.raises(FileNotFoundError, match=r"earth/moon\.csv"):  # any dataset name: the file must exist
        EarthDataModule("moon", root=str(tmp_path)).setup()


@pytest.mark.parametrize("m", [Sphere(2), SO3(), Torus(2)], ids=["S2", "SO3", "T2"])
def test_mixture_log_prob_is_normalised_and_samples_match_it(m, gen):
    centers = m.random_uniform(3, gen, dtype=torch.float64)
    mix = HeatKernelMixture(m, centers, 0.4)
    # E_uniform[p / p_uniform] = 1: importance-sampling estimate of the normalisation
    u = m.random_uniform(40000, gen, dtype=torch.float64)
    ratio = torch.exp(mix.log_prob(u) + m.log_volume())
    assert abs(ratio.mean().item() - 1.0) < 5 * ratio.std().item() / math.sqrt(u.shape[0])
    # E_p[log p] from samples vs the same expectation by importance sampling from the uniform law
    x = mix.sample(4000, gen).double()
    ent_mc = -mix.log_prob(x)
    lp = mix.log_prob(u)
    ent_is = -(ratio * lp).mean()
    se = ent_mc.std().item() / math.sqrt(4000) + (ratio * lp).std().item() / math.sqrt(u.shape[0])
    assert abs(ent_mc.mean().item() - ent_is.item()) < 5 * se


def test_riemannian_diffusion_trains_and_samples_through_the_shared_module(tmp_path):
    dm = ManifoldMixtureDataModule("sphere", num_components=2, sigma=0.3, num_train=64, num_val=16, batch_size=16)
    method = RiemannianDiffusion(Sphere(2), sigma_min=1e-2, sigma_max=3.0, steps=5)
    net = ManifoldMLP(1, 3, 3, width=16, depth=2)
    module = GenerativeModule(method, net, warmup_steps=1, val_num_samples=4, val_steps=3)
    L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
              default_root_dir=str(tmp_path), max_steps=3, limit_val_batches=1, check_val_every_n_epoch=1,
              num_sanity_val_steps=0).fit(module, datamodule=dm)
    gen = module.generator()
    ps = gen.sample(7, seed=3, steps=4)
    assert ps.values.shape == (7, 1, 3) and Sphere(2).belongs(ps.values).all()
    path = gen.save(tmp_path / "m.safetensors")
    loaded = funcgen.load(path)
    assert loaded.data["manifold"] == {"class_path": "funcgen.geometry.manifolds.Sphere", "init_args": {"n": 2}}
    assert torch.equal(loaded.sample(7, seed=3, steps=4).values, ps.values)
    ll = loaded.method.log_likelihood(loaded.net, ps.values[:, 0], steps=3)
    assert ll.shape == (7,) and torch.isfinite(ll).all()
