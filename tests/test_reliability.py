"""Fault tests: fuzzed inputs (hypothesis), corrupt / mismatched checkpoints, malformed data files,
non-finite losses and gradients, unknown component names, and bounded-memory sampling.

Every bad input must give a clear ``ValueError`` / ``TypeError`` (or ``FileNotFoundError``) naming what
is wrong; never a crash deep inside torch. docs/reliability.md tabulates the behaviours checked here.
"""

from __future__ import annotations

import gzip
import pickle
import struct
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import funcgen
from funcgen.apps.cli import main, make_cli
from funcgen.data import GRFDataModule, load_mnist_idx
from funcgen.generator import FunctionGenerator
from funcgen.io import atomic_write
from funcgen.methods import PFGMPP, FunctionalDiffusion
from funcgen.nets import PerceiverNet
from funcgen.pointset import PointSet
from funcgen.processes.noise import SpectralNoise
from funcgen.train.module import GenerativeModule

REPO = Path(__file__).resolve().parents[1]
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def tiny_net(dim: int = 1, width: int = 16, **kw) -> PerceiverNet:
    return PerceiverNet(dim, 1, 1, width=width, num_latents=4, depth=1, heads=2, num_bands=3, **kw)


def tiny_module(width: int = 16, method=None, **kw) -> GenerativeModule:
    method = method or FunctionalDiffusion(SpectralNoise(1, "fdp", modes=8), steps=2)
    return GenerativeModule(method, tiny_net(1, width), warmup_steps=1, **kw)


def tiny_generator(dim: int = 1) -> FunctionGenerator:
    net = tiny_net(dim)
    with torch.no_grad():  # a non-zero head so outputs depend on the inputs
        net.head.weight.normal_(generator=torch.Generator().manual_seed(0))
    data = {"dim": dim, "channels": 1, "train_shape": [8] * dim, "kind": "signal"}
    return FunctionGenerator(FunctionalDiffusion(SpectralNoise(dim, "fdp", modes=4), steps=2), net, data)


def trainer(root, **kw) -> L.Trainer:
    opts = dict(logger=False, enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                num_sanity_val_steps=0, default_root_dir=str(root), enable_checkpointing=False)
    opts.update(kw)
    return L.Trainer(**opts)


def small_dm() -> GRFDataModule:
    return GRFDataModule(dim=1, resolution=16, num_train=16, num_val=4, batch_size=8)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """A real training checkpoint of a tiny model (2 steps)."""
    root = tmp_path_factory.mktemp("ckpt")
    t = trainer(root, max_steps=2)
    t.fit(tiny_module(), datamodule=small_dm())
    path = root / "good.ckpt"
    t.save_checkpoint(path)
    return path


# ------------------------------------------------------------------ fuzzing: PointSet
finite = st.floats(-1e6, 1e6, width=32)
special = st.sampled_from([float("nan"), float("inf"), -float("inf")])


@FUZZ
@given(b=st.integers(0, 3), n=st.integers(0, 5), d=st.integers(0, 3), c=st.integers(0, 3),
       vd=st.integers(0, 4), dtype=st.sampled_from([torch.float32, torch.float64, torch.int64, torch.bool]),
       bad=st.one_of(st.none(), special), mask=st.sampled_from([None, "ok", "shape", "dtype"]), data=st.data())
def test_fuzz_pointset(b, n, d, c, vd, dtype, bad, mask, data):
    coords = torch.rand(b, n, d).to(dtype)
    vshape = [b, n, c][:vd] + [2] * max(0, vd - 3)
    values = torch.randn(*vshape) if vshape else torch.tensor(0.0)
    if bad is not None and values.numel():
        values.view(-1)[data.draw(st.integers(0, values.numel() - 1))] = bad
    m = {None: None, "ok": torch.ones(b, n, dtype=torch.bool), "shape": torch.ones(b, n + 1, dtype=torch.bool),
         "dtype": torch.ones(b, n)}[mask]
    try:
        ps = PointSet(coords, values, m)
    except (ValueError, TypeError) as e:
        assert "PointSet" in str(e)
        return
    # accepted: then it is a well-formed, finite point set
    assert ps.coords.ndim == 3 and ps.values.ndim == 3 and ps.coords.shape[:2] == ps.values.shape[:2]
    assert ps.num_points >= 1 and ps.dim >= 1 and ps.channels >= 1
    assert ps.coords.is_floating_point() and torch.isfinite(ps.values).all() and torch.isfinite(ps.coords).all()


def test_pointset_rejects_non_tensors():
    with pytest.raises(TypeError, match="torch tensors"):
        PointSet(np.zeros((1, 2, 1)), torch.zeros(1, 2, 1))


# ------------------------------------------------------------------ fuzzing: FunctionGenerator.sample
GEN1 = tiny_generator(1)
GEN2 = tiny_generator(2)
ints = st.one_of(st.integers(-3, 6), st.just(0), st.booleans(), st.floats(-2, 5), st.text(max_size=2), st.none())


@FUZZ
@given(dim=st.sampled_from([1, 2]), num=ints, res=st.one_of(ints, st.lists(st.integers(-2, 5), max_size=3),
       st.tuples(st.integers(1, 4), st.integers(1, 4))), steps=ints, batch=ints)
def test_fuzz_sample_grid_arguments(dim, num, res, steps, batch):
    gen = GEN1 if dim == 1 else GEN2
    try:
        ps = gen.sample(num, res, steps=steps, batch_size=batch, seed=1)
    except (ValueError, TypeError) as e:
        assert any(w in str(e) for w in ("num", "resolution", "steps", "batch_size")), e
        return
    shape = [res] * dim if isinstance(res, int) else list(res) if res is not None else [8] * dim
    assert ps.values.shape == (num, int(np.prod(shape)), 1) and torch.isfinite(ps.values).all()


@FUZZ
@given(dim=st.sampled_from([1, 2]), b=st.integers(0, 3), n=st.integers(0, 7), d=st.integers(0, 3),
       lo=st.floats(-2, 1), hi=st.floats(0, 3), dtype=st.sampled_from([torch.float32, torch.float64, torch.int32]),
       bad=st.one_of(st.none(), special), check=st.booleans())
def test_fuzz_sample_coords(dim, b, n, d, lo, hi, dtype, bad, check):
    gen = GEN1 if dim == 1 else GEN2
    coords = (lo + (hi - lo) * torch.rand(b, n, d)).to(dtype)
    if bad is not None and coords.numel() and coords.is_floating_point():
        coords.view(-1)[0] = bad
    try:
        ps = gen.sample(coords=coords, steps=2, check_domain=check)
    except (ValueError, TypeError) as e:
        assert "coords" in str(e), e
        return
    assert d == dim and b >= 1 and n >= 1 and coords.is_floating_point() and torch.isfinite(coords).all()
    assert not check or (coords.min() >= 0 and coords.max() <= 1)
    assert ps.values.shape == (b, n, 1) and torch.isfinite(ps.values).all()


def test_sample_domain_error_says_what_to_do():
    with pytest.raises(ValueError, match=r"\[0, 1\]\^1.*check_domain=False"):
        GEN1.sample(coords=torch.full((1, 3, 1), 1.5))
    assert GEN1.sample(coords=torch.full((1, 3, 1), 1.5), check_domain=False, steps=2).values.shape == (1, 3, 1)


# ------------------------------------------------------------------ large point sets
def test_chunked_sampling_equals_unchunked_and_bounds_the_work(monkeypatch):
    gen = tiny_generator(1)
    coords = torch.rand(2, 3000, 1)
    full = gen.sample(coords=coords, steps=2, seed=4).values
    gen.net.query_chunk = 256
    seen: list[int] = []
    handle = gen.net.token_in.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0] * i[0].shape[1]))
    chunked = gen.sample(coords=coords, steps=2, seed=4).values
    assert torch.allclose(chunked, full, atol=1e-5, rtol=1e-4)
    assert max(seen) <= 2 * 256  # no token tensor ever covers more than one chunk of points
    # a 10^5-point draw: every network call still sees at most one chunk per function
    seen.clear()
    gen.max_points_per_call = 2**16  # and at most this many points per sampler call (functions x points)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # hundreds of small chunks: avoid thread oversubscription on shared CI cores
    try:
        ps = gen.sample(3, 100_000, steps=1, seed=0)
    finally:
        torch.set_num_threads(threads)
        handle.remove()
    assert ps.values.shape == (3, 100_000, 1) and torch.isfinite(ps.values).all()
    assert max(seen) <= 256  # one function per call (10^5 > 2^16 / 2), one chunk per token tensor


# ------------------------------------------------------------------ checkpoints
def test_truncated_and_garbage_checkpoints_name_the_file(ckpt, tmp_path):
    raw = ckpt.read_bytes()
    cases = {"trunc_half.ckpt": raw[: len(raw) // 2], "trunc_tail.ckpt": raw[:-20], "empty.ckpt": b"",
             "garbage.ckpt": bytes(range(256)) * 8,
             "flipped.ckpt": raw[:100] + bytes(b ^ 0xFF for b in raw[100:400]) + raw[400:]}
    for name, blob in cases.items():
        path = tmp_path / name
        path.write_bytes(blob)
        with pytest.raises(ValueError, match=name):
            funcgen.load(path)
        with pytest.raises(ValueError, match=name):  # resume goes through SafeCheckpointIO
            trainer(tmp_path, max_steps=3).fit(tiny_module(), datamodule=small_dm(), ckpt_path=str(path))


def test_pickled_code_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "funcgen_config": "{}", "x": Evil()}, path)
    with pytest.raises(ValueError, match="evil.ckpt"):
        funcgen.load(path)
    with pytest.raises(ValueError, match="evil.ckpt"):
        trainer(tmp_path, max_steps=3).fit(tiny_module(), datamodule=small_dm(), ckpt_path=str(path))
    path2 = tmp_path / "evil.pkl"
    path2.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ValueError, match="evil.pkl"):
        funcgen.load(path2)
    assert not marker.exists()


def test_resume_with_wrong_method_or_shapes_names_file_and_mismatch(ckpt, tmp_path):
    pfgm = PFGMPP(steps=2)
    with pytest.raises(ValueError, match=rf"{ckpt.name}.*FunctionalDiffusion.*PFGMPP"):
        trainer(tmp_path, max_steps=3).fit(tiny_module(method=pfgm), datamodule=small_dm(), ckpt_path=str(ckpt))
    with pytest.raises(ValueError, match=rf"{ckpt.name}.*shape mismatches.*checkpoint \(\d+, 16\) vs model \(\d+, 8\)"):
        trainer(tmp_path, max_steps=3).fit(tiny_module(width=8), datamodule=small_dm(), ckpt_path=str(ckpt))
    with pytest.raises(FileNotFoundError, match="nothere.ckpt"):
        trainer(tmp_path, max_steps=3).fit(tiny_module(), datamodule=small_dm(),
                                           ckpt_path=str(tmp_path / "nothere.ckpt"))


def test_cli_resume_from_corrupt_checkpoint_names_it(ckpt, tmp_path, capsys):
    bad = tmp_path / "cut.ckpt"
    bad.write_bytes(ckpt.read_bytes()[:1000])
    args = ["fit", "--config", str(REPO / "configs/fdp/grf1d.yaml"), "--trainer.logger=false",
            f"--trainer.default_root_dir={tmp_path}", "--trainer.max_steps=1", "--data.init_args.num_train=8",
            "--data.init_args.num_val=4", "--ckpt_path", str(bad)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "cut.ckpt" in err and "truncated, corrupt" in err
    with pytest.raises(ValueError, match="cut.ckpt"):  # the programmatic entry point raises
        make_cli(args[1:], run=False)


def test_cli_unknown_names_list_the_known_ones(capsys):
    cfg = str(REPO / "configs/fdp/grf1d.yaml")
    assert main(["fit", "--config", cfg, "--model.method=funcgen.methods.NoSuchMethod"]) == 2
    err = capsys.readouterr().err
    assert "NoSuchMethod" in err and "funcgen.methods.FunctionalDiffusion" in err
    assert main(["fit", "--config", cfg, "--model.net", "Siren"]) == 2
    err = capsys.readouterr().err
    assert "'Siren'" in err and "funcgen.nets.SirenNet" in err and "funcgen.nets.PerceiverNet" in err
    from funcgen.config import build
    from funcgen.methods import Method
    with pytest.raises(ValueError, match="NoSuch.*funcgen.methods.FunctionalDiffusion"):
        build({"class_path": "funcgen.methods.NoSuch", "init_args": {}}, Method)
    with pytest.raises(ValueError, match="only classes inside the funcgen package"):
        build({"class_path": "os.system", "init_args": {}}, object)


def test_exported_metadata_and_foreign_class_paths(tmp_path):
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    module = tiny_module()
    module.data_config = small_dm().data_config()
    path = module.generator().save(tmp_path / "m.safetensors")
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["funcgen_config"])
    assert meta["version"] == funcgen.__version__ and meta["format"] == 1
    assert meta["method"]["class_path"] == "funcgen.methods.fdp.FunctionalDiffusion"
    assert meta["net"]["init_args"]["width"] == 16
    assert meta["data"]["normalization"] == {"shift": 0.0, "scale": 1.0, "formula": "model = (data - shift) / scale"}
    newer = dict(meta, format=2)
    save_file(load_file(str(path)), str(tmp_path / "newer.safetensors"), metadata={"funcgen_config": json.dumps(newer)})
    with pytest.raises(ValueError, match="newer.safetensors.*format 2.*upgrade funcgen"):
        funcgen.load(tmp_path / "newer.safetensors")
    meta["net"]["class_path"] = "subprocess.Popen"
    save_file(load_file(str(path)), str(tmp_path / "foreign.safetensors"),
              metadata={"funcgen_config": json.dumps(meta)})
    with pytest.raises(ValueError, match="foreign.safetensors.*refusing to build 'subprocess.Popen'"):
        funcgen.load(tmp_path / "foreign.safetensors")
    raw = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(raw[: len(raw) - 64])
    with pytest.raises(ValueError, match="cut.safetensors"):
        funcgen.load(tmp_path / "cut.safetensors")


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "model.ckpt"
    path.write_bytes(b"old")

    def crash(tmp):
        Path(tmp).write_bytes(b"partial")
        raise KeyboardInterrupt  # the process is interrupted mid-write

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, crash)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["model.ckpt"]


def test_lightning_checkpoints_are_written_by_safe_io(tmp_path):
    from funcgen.train.checkpoint import SafeCheckpointIO

    t = trainer(tmp_path, max_steps=1)
    t.fit(tiny_module(), datamodule=small_dm())
    assert isinstance(t.strategy.checkpoint_io, SafeCheckpointIO)
    t.save_checkpoint(tmp_path / "x.ckpt")
    ck = torch.load(tmp_path / "x.ckpt", weights_only=True)
    assert {"torch", "numpy", "python"} <= set(ck["funcgen_rng"])


# ------------------------------------------------------------------ non-finite guards
class _Poison:
    """Wraps a method's loss: at call ``at`` the loss (``kind='loss'``) or only its gradient is NaN."""

    def __init__(self, method, at: int, kind: str) -> None:
        self.method, self.at, self.kind, self.calls = method, at, kind, 0

    def __call__(self, net, batch, generator=None):
        loss, extra = self.method.__class__.loss(self.method, net, batch, generator)
        self.calls += 1
        if self.calls - 1 == self.at:
            p = next(net.parameters())
            if self.kind == "loss":
                loss = loss * float("nan")
            else:  # finite value, NaN gradient: d sqrt(x)/dx at 0 is inf, times 0
                loss = loss + 0.0 * torch.sqrt(p.sum() * 0.0)
        return loss, extra


@pytest.mark.parametrize("kind", ["loss", "gradient"])
def test_nonfinite_raise_names_step_and_fix(kind, tmp_path):
    module = tiny_module()
    module.method.loss = _Poison(module.method, at=1, kind=kind)
    msg = rf"non-finite {kind}.* at step 1: lower the learning rate.*nonfinite=skip"
    with pytest.raises(FloatingPointError, match=msg):
        trainer(tmp_path, max_steps=3).fit(module, datamodule=small_dm())


@pytest.mark.parametrize("kind", ["loss", "gradient"])
def test_nonfinite_skip_drops_only_that_update(kind, tmp_path):
    module = tiny_module(nonfinite="skip")
    module.method.loss = _Poison(module.method, at=2, kind=kind)
    snapshots = []

    class Snap(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            snapshots.append([p.detach().clone() for p in pl_module.net.parameters()])

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer(tmp_path, max_steps=4, callbacks=[Snap()]).fit(module, datamodule=small_dm())
    assert any(f"non-finite {kind}" in str(w.message) and "skipping" in str(w.message) for w in caught)
    assert module._skipped == 1 and len(snapshots) >= 4
    unchanged = [all(torch.equal(a, b) for a, b in zip(snapshots[i], snapshots[i + 1])) for i in range(3)]
    assert unchanged == [False, True, False]  # batch 2's update was dropped, the others applied
    assert all(torch.isfinite(p).all() for p in module.net.parameters())
    assert all(torch.isfinite(p).all() for p in module.ema_net.parameters())


def test_module_rejects_unknown_nonfinite_option():
    with pytest.raises(ValueError, match="nonfinite"):
        tiny_module(nonfinite="ignore")


# ------------------------------------------------------------------ malformed data files
def _idx_bytes(n: int = 2) -> tuple[bytes, bytes]:
    img = struct.pack(">IIII", 2051, n, 28, 28) + np.arange(n * 784, dtype=np.uint8).tobytes()
    lab = struct.pack(">II", 2049, n) + bytes(range(n))
    return img, lab


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(0, 2 * 784 + 15), flip=st.one_of(st.none(), st.integers(0, 15)), gz=st.booleans())
def test_fuzz_mnist_idx_files(cut, flip, gz, tmp_path_factory):
    folder = tmp_path_factory.mktemp("idx")
    img, lab = _idx_bytes()
    img = bytearray(img[: len(img) - cut])
    if flip is not None and flip < len(img):
        img[flip] ^= 0x5A
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(bytes(img)) if gz else bytes(img))
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(lab))
    try:
        images, labels = load_mnist_idx(folder)
    except ValueError as e:
        assert "t10k-images-idx3-ubyte.gz" in str(e)
        return
    assert gz and cut == 0 and (flip is None or flip >= 16)  # only intact headers and sizes load
    assert images.shape == (2, 28, 28) and labels.tolist() == [0, 1]
