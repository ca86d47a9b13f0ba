"""End to end: configs instantiate, a fast_dev_run fit, sampling at N and 4N, export -> load, CLI."""

import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

import funcgen
from funcgen.apps.cli import main
from funcgen.data import GRFDataModule, ProceduralImageDataModule
from funcgen.methods import FunctionalDiffusion
from funcgen.nets import AdaptiveINR, PerceiverNet
from funcgen.processes.noise import SpectralNoise
from funcgen.train.fit import prepare
from funcgen.train.module import GenerativeModule

REPO = Path(__file__).resolve().parents[2]
BASE = REPO / "configs" / "base" / "trainer.yaml"
CONFIGS = sorted(p for p in (REPO / "configs").rglob("*.yaml") if p != BASE)


def composition(config: Path) -> list[Path]:
    """The files a config is used with: the trainer base, then for an ablation
    ``configs/ablations/METHOD/BASE_VARIANT.yaml`` its ``configs/METHOD/BASE.yaml``, then the config."""
    rel = config.relative_to(REPO / "configs")
    if rel.parts[0] != "ablations":
        return [BASE, config]
    stems = [p.stem for p in (REPO / "configs" / rel.parts[1]).glob("*.yaml")]
    base = max((s for s in stems if config.stem.startswith(s + "_")), key=len, default=None)
    assert base is not None, \
        f"ablation {rel} names no configs/{rel.parts[1]}/BASE.yaml (its name must start with BASE_)"
    return [BASE, REPO / "configs" / rel.parts[1] / f"{base}.yaml", config]


def tiny_module(dim: int = 1, net: str = "perceiver") -> GenerativeModule:
    method = FunctionalDiffusion(SpectralNoise(dim, "fdp", modes=8), steps=4)
    if net == "perceiver":
        backbone = PerceiverNet(dim, 1, 1, width=16, num_latents=4, depth=1, heads=2, num_bands=3)
    else:
        backbone = AdaptiveINR(dim, 1, 1, width=16, depth=2, latent_dim=8, inner_steps=2, num_bands=3)
    return GenerativeModule(method, backbone, warmup_steps=1, val_num_samples=2, val_steps=2)


def trainer(tmp_path, **kw) -> L.Trainer:
    opts = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                enable_model_summary=False, default_root_dir=str(tmp_path))
    opts.update(kw)
    return L.Trainer(**opts)


@pytest.mark.parametrize("config", CONFIGS, ids=[str(c.relative_to(REPO / "configs")) for c in CONFIGS])
def test_every_config_instantiates(config, tmp_path, monkeypatch):
    monkeypatch.setenv("FUNCGEN_DATA", str(tmp_path))  # instantiation must not need the data
    run = prepare(composition(config), settings={"trainer.default_root_dir": str(tmp_path), "trainer.logger": False})
    assert isinstance(run.module, GenerativeModule)
    net = run.module.net
    coords = torch.rand(2, 5, net.dim)
    assert net(coords, torch.randn(2, 5, net.in_channels), torch.rand(2)).shape[:2] == (2, 5)


def test_method_configs_hold_model_and_data_only():
    """The trainer settings live in configs/base/trainer.yaml; a method config may only set its own max_steps."""
    import yaml

    for config in CONFIGS:
        cfg = yaml.safe_load(config.read_text()) or {}
        assert set(cfg) <= {"model", "data", "trainer"}, (config, sorted(cfg))
        assert set(cfg.get("trainer", {})) <= {"max_steps"}, (config, cfg.get("trainer"))


@pytest.mark.parametrize("net", ["perceiver", "inr"])
def test_fast_dev_run_fit_then_sample_at_n_and_4n(net, tmp_path):
    dm = GRFDataModule(dim=1, resolution=16, num_train=32, num_val=8, batch_size=8)
    module = tiny_module(1, net)
    trainer(tmp_path, fast_dev_run=2).fit(module, datamodule=dm)
    gen = module.generator()
    for res in (16, 64):
        ps = gen.sample(3, res, seed=1)
        assert ps.coords.shape == (3, res, 1) and ps.values.shape == (3, res, 1)
        assert torch.isfinite(ps.values).all()
    # scattered query points of any count
    assert gen.sample(coords=torch.rand(2, 37, 1)).values.shape == (2, 37, 1)


def test_seeded_samples_reproduce_and_export_roundtrip(tmp_path):
    dm = ProceduralImageDataModule("blobs", resolution=8, num_train=16, num_val=4, batch_size=4)
    module = tiny_module(2)
    trainer(tmp_path, max_steps=3, limit_val_batches=0).fit(module, datamodule=dm)
    gen = module.generator()
    a = gen.sample(2, 12, seed=7).values
    assert torch.equal(a, gen.sample(2, 12, seed=7).values)
    assert not torch.equal(a, gen.sample(2, 12, seed=8).values)
    path = gen.save(tmp_path / "m.safetensors")
    loaded = funcgen.load(path)
    assert loaded.data == gen.data
    assert torch.equal(a, loaded.sample(2, 12, seed=7).values)


def test_checkpoint_loads_weights_only_and_cli_sample_export(tmp_path):
    dm = GRFDataModule(dim=1, resolution=16, num_train=32, num_val=8, batch_size=8)
    module = tiny_module(1)
    t = trainer(tmp_path, max_steps=2, limit_val_batches=0)
    t.fit(module, datamodule=dm)
    ckpt = tmp_path / "last.ckpt"
    t.save_checkpoint(ckpt)
    raw = torch.load(ckpt, weights_only=True)  # no pickled code needed
    assert "funcgen_config" in raw
    gen = funcgen.load(ckpt)
    ref = module.generator().sample(2, 32, seed=3).values
    assert torch.allclose(gen.sample(2, 32, seed=3).values, ref)

    out = tmp_path / "s"
    assert main(["sample", "--ckpt", str(ckpt), "--resolution", "64", "--num", "3", "--out", str(out),
                 "--steps", "2"]) == 0
    arr = np.load(out / "samples.npz")
    assert arr["coords"].shape == (3, 64, 1) and arr["values"].shape == (3, 64, 1)
    assert (out / "samples.png").stat().st_size > 0
    exported = tmp_path / "e.safetensors"
    assert main(["export", "--ckpt", str(ckpt), "--out", str(exported)]) == 0
    assert torch.allclose(funcgen.load(exported).sample(2, 32, seed=3).values, ref)


def test_method_args_change_the_sampler_and_bad_ones_are_refused(tmp_path, capsys):
    """``with_method_args(eta=1)`` samples exactly as a generator built with ``eta=1`` would (same weights,
    same seed), leaves the original untouched; the CLI's ``--method-arg`` does the same."""
    module = tiny_module(1)
    module.data_config = GRFDataModule(dim=1, resolution=16).data_config()
    gen = module.generator()
    seed = int(torch.randint(0, 2**31 - 1, ()))
    ancestral = gen.with_method_args(eta=1.0, steps=3)
    direct = funcgen.FunctionGenerator(FunctionalDiffusion(SpectralNoise(1, "fdp", modes=8), steps=3, eta=1.0),
                                       gen.net, gen.data)
    a = ancestral.sample(2, 24, seed=seed).values
    assert torch.equal(a, direct.sample(2, 24, seed=seed).values)
    assert not torch.allclose(a, gen.sample(2, 24, seed=seed, steps=3).values)
    assert gen.method.eta == 0.0 and ancestral.net is gen.net
    with pytest.raises(ValueError, match="takes no argument 'temperature'.*eta"):
        gen.with_method_args(temperature=0.5)
    with pytest.raises(ValueError, match="dpm2m"):
        gen.with_method_args(solver="dpm2m", eta=1.0)
    path = gen.save(tmp_path / "m.safetensors")
    out = tmp_path / "s"
    assert main(["sample", "--ckpt", str(path), "--resolution", "24", "--num", "2", "--seed", str(seed),
                 "--out", str(out), "--method-arg", "eta=1", "--method-arg", "steps=3"]) == 0
    assert np.allclose(np.load(out / "samples.npz")["values"], gen.denormalize(a).numpy(), atol=1e-6)
    assert main(["sample", "--ckpt", str(path), "--out", str(out), "--method-arg", "eta"]) == 2
    assert "NAME=VALUE" in capsys.readouterr().err


def test_load_errors_name_the_file(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="nothere"):
        funcgen.load(tmp_path / "nothere.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ValueError, match="bad.safetensors"):
        funcgen.load(bad)
    trunc = tmp_path / "t.ckpt"
    trunc.write_bytes(b"PK\x03\x04broken")
    with pytest.raises(ValueError, match="t.ckpt"):
        funcgen.load(trunc)
    assert main(["sample", "--ckpt", str(bad)]) == 2
    assert "bad.safetensors" in capsys.readouterr().err


def test_exported_weights_must_match_config(tmp_path):
    module = tiny_module(1)
    module.data_config = GRFDataModule(dim=1, resolution=16).data_config()
    g = module.generator()
    path = g.save(tmp_path / "m.safetensors")
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    state = load_file(str(path))
    state.pop(next(iter(state)))
    save_file(state, str(tmp_path / "broken.safetensors"), metadata=meta)
    with pytest.raises(ValueError, match="broken.safetensors.*missing"):
        funcgen.load(tmp_path / "broken.safetensors")


def test_non_finite_loss_stops_with_a_message(tmp_path):
    module = tiny_module(1)
    dm = GRFDataModule(dim=1, resolution=16, num_train=16, num_val=4, batch_size=4)
    with torch.no_grad():
        for p in module.net.parameters():
            p.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="step 0"):
        trainer(tmp_path, max_steps=1, limit_val_batches=0).fit(module, datamodule=dm)


def test_demo_runs_end_to_end(tmp_path):
    out = tmp_path / "demo"
    threads = torch.get_num_threads()
    assert main(["demo", "--out", str(out), "--max-steps", "3", "--minutes", "1", "--logger", "csv",
                 "--num-samples", "4"]) == 0
    for name in ("samples_32.png", "samples_128.png", "model.safetensors", "summary.json", "summary.md"):
        assert (out / name).stat().st_size > 0, name
    gen = funcgen.load(out / "model.safetensors")
    assert gen.sample(1, 20, steps=2).values.shape == (1, 400, 1)
    noise = gen.method.noise  # the demo's recipe: SE noise of the blobs' smoothness, band-limited to the grid
    assert (noise.spectrum, noise.lengthscale, noise.modes) == ("se", 0.14, 8)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["train_threads"] == 1 and torch.get_num_threads() == threads  # restored after training
    for r in (32, 128):
        assert {"spec_err", "floor_spec_err", "std_ratio"} <= set(summary[f"{r}x{r}"])
    from PIL import Image
    assert Image.open(out / "samples_32.png").size[0] >= 4 * 96  # tiles >= 96 px, 4 of them in a row


@pytest.mark.parametrize("budget", ["time", "cpu", "steps"])
def test_cosine_schedule_decays_over_the_budget_that_ends_first(budget, tmp_path, monkeypatch):
    """A run stopped by max_time or by its CPU-time budget ends at the cosine floor (10% of the peak), as
    one stopped by max_steps does, not mid-decay. The clocks are replaced by 10 s per step: a 100 s budget
    is 10 steps."""
    from lightning.pytorch.callbacks import Timer

    from funcgen.train.budget import CpuTimeBudget

    dm = GRFDataModule(dim=1, resolution=8, num_train=64, num_val=8, batch_size=4)
    module = tiny_module(1)
    if budget == "time":
        monkeypatch.setattr(Timer, "time_elapsed", lambda self, stage="train": 10.0 * module.global_step)
        tr = trainer(tmp_path, max_time={"seconds": 100}, max_steps=1000, limit_val_batches=0)
    elif budget == "cpu":
        tr = trainer(tmp_path, max_steps=1000, limit_val_batches=0)
        tr.callbacks.append(CpuTimeBudget(100 / 60, clock=lambda: 10.0 * module.global_step))
    else:
        tr = trainer(tmp_path, max_steps=10, limit_val_batches=0)
    lrs = []
    monkeypatch.setattr(GenerativeModule, "on_train_batch_start",
                        lambda self, *a: lrs.append(self.optimizers().param_groups[0]["lr"]), raising=False)
    tr.fit(module, datamodule=dm)
    assert module.global_step == 10
    peak = module.hparams.lr
    assert lrs[1] == pytest.approx(peak, rel=0.05)  # warm-up is one step
    assert all(a >= b - 1e-12 for a, b in zip(lrs[1:], lrs[2:]))  # decreasing
    assert tr.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.1 * peak, rel=1e-6)


def test_ema_update_follows_its_formula(gen):
    module = tiny_module(1)
    with torch.no_grad():
        for e, p in zip(module.ema_net.parameters(), module.net.parameters()):
            e.zero_()
            p.copy_(torch.randn(p.shape, generator=gen))
    module.on_train_batch_end(None, None, 0)  # step 0: warm-up decay min(0.999, 1/10) = 0.1
    for e, p in zip(module.ema_net.parameters(), module.net.parameters()):
        assert torch.allclose(e, 0.9 * p)
    assert all(not p.requires_grad for p in module.ema_net.parameters())


def test_module_rejects_bad_options():
    net = PerceiverNet(1, 1, 1, width=8, num_latents=2, depth=0, heads=2, num_bands=2)
    method = FunctionalDiffusion(SpectralNoise(1, modes=4))
    with pytest.raises(ValueError, match="train_subsample"):
        GenerativeModule(method, net, train_subsample=0.0)
    with pytest.raises(ValueError, match="ema_decay"):
        GenerativeModule(method, net, ema_decay=1.0)
    with pytest.raises(TypeError, match="funcgen backbone"):
        GenerativeModule(method, torch.nn.Linear(1, 1))
