"""Tests of the data layer: GRF, procedural images, MNIST."""

from __future__ import annotations

import gzip
import json
import os
import secrets
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from funcgen.data import (
    FunctionDataModule,
    GRFDataModule,
    MNISTDataModule,
    ProceduralImageDataModule,
    evaluate_blobs,
    evaluate_shapes,
    load_mnist_idx,
    resolve_data_root,
)
from funcgen.pointset import grid_coords
from funcgen.processes.noise import kernel_matrix


def fresh_seed() -> int:
    return secrets.randbelow(2**31)


# ---------------------------------------------------------------- GRF
@pytest.mark.parametrize("dim,res", [(1, 32), (2, 8)])
def test_grf_batch_shapes(dim: int, res: int) -> None:
    dm = GRFDataModule(dim=dim, resolution=res, num_train=40, num_val=10, batch_size=16)
    coords, values = next(iter(dm.train_dataloader()))
    n = res**dim
    assert coords.shape == (16, n, dim) and values.shape == (16, n, 1)
    assert coords.dtype == torch.float32 and values.dtype == torch.float32
    assert torch.equal(coords[0], grid_coords((res,) * dim))
    assert dm.train_shape == (res,) * dim and dm.kind == ("signal" if dim == 1 else "image")
    val = list(dm.val_dataloader())
    assert sum(v.shape[0] for _, v in val) == 10
    cfg = json.loads(json.dumps(dm.data_config()))
    assert cfg["dim"] == dim and cfg["train_shape"] == [res] * dim and cfg["channels"] == 1


def test_grf_determinism() -> None:
    kw = dict(dim=1, resolution=16, num_train=64, num_val=16, batch_size=8)
    a, b, c = GRFDataModule(seed=3, **kw), GRFDataModule(seed=3, **kw), GRFDataModule(seed=4, **kw)
    for dm in (a, b, c):
        dm.setup("fit")
    assert torch.equal(a.train_set.values, b.train_set.values)
    assert torch.equal(a.val_set.values, b.val_set.values)
    assert not torch.allclose(a.train_set.values, c.train_set.values)
    assert not torch.allclose(a.train_set.values[:16], a.val_set.values)  # disjoint streams
    batches_a = [v for _, v in a.train_dataloader()]
    batches_b = [v for _, v in b.train_dataloader()]
    assert all(torch.equal(x, y) for x, y in zip(batches_a, batches_b))
    assert not torch.equal(batches_a[0], a.train_set.values[:8])  # shuffled
    # uniform mode: same seed -> same coords and values
    u1 = GRFDataModule(coords="uniform", seed=5, **kw)
    u2 = GRFDataModule(coords="uniform", seed=5, **kw)
    u1.setup(), u2.setup()
    assert torch.equal(u1.train_set.coords, u2.train_set.coords)
    assert torch.equal(u1.train_set.values, u2.train_set.values)


@pytest.mark.parametrize("kernel,dim,res,ls", [("se", 1, 16, 0.1), ("se", 2, 8, 0.3), ("matern32", 2, 6, 0.3)])
def test_grf_empirical_covariance(kernel: str, dim: int, res: int, ls: float) -> None:
    seed = fresh_seed()
    dm = GRFDataModule(dim=dim, resolution=res, kernel=kernel, lengthscale=ls, variance=1.7,
                       num_train=4000, num_val=8, seed=seed)
    dm.setup()
    v = dm.train_set.values[..., 0].double()  # [4000, N]
    emp = torch.cov(v.T)
    x = grid_coords((res,) * dim).double()
    k = kernel_matrix(x, x, kernel, ls, 1.7)
    err = float((emp - k).norm() / k.norm())
    assert err < 0.1, f"relative Frobenius error {err:.3f} (seed {seed})"
    assert abs(float(v.mean())) < 0.1, f"mean {float(v.mean()):.3f} (seed {seed})"


def test_grf_uniform_coords() -> None:
    seed = fresh_seed()
    dm = GRFDataModule(dim=2, resolution=5, kernel="matern52", lengthscale=0.3, num_train=600,
                       num_val=8, coords="uniform", seed=seed)
    coords, values = next(iter(dm.train_dataloader()))
    assert coords.shape == (64, 25, 2) and values.shape == (64, 25, 1)
    c = dm.train_set.coords
    assert c.shape == (600, 25, 2) and bool((c >= 0).all() and (c <= 1).all())
    assert not torch.allclose(c[0], c[1]) and not torch.allclose(coords[0], coords[1])
    # exactness: whitening each function by the Cholesky factor of its own kernel matrix gives N(0, I)
    x = c.double()
    chol = torch.linalg.cholesky(kernel_matrix(x, x, "matern52", 0.3) + 1e-6 * torch.eye(25, dtype=x.dtype))
    z = torch.linalg.solve_triangular(chol, dm.train_set.values.double(), upper=False)
    assert abs(float(z.mean())) < 0.05, f"whitened mean {float(z.mean()):.3f} (seed {seed})"
    assert abs(float(z.var()) - 1.0) < 0.06, f"whitened variance {float(z.var()):.3f} (seed {seed})"


def test_grf_shifted_coords() -> None:
    """``shifted``: every function is an evenly spaced grid under its own translation, values exact there."""
    seed = fresh_seed()
    res = 12
    dm = GRFDataModule(dim=1, resolution=res, kernel="se", lengthscale=0.2, num_train=3000, num_val=8,
                       coords="shifted", seed=seed)
    dm.setup("fit")
    c = dm.train_set.coords.double()  # [M, N, 1]
    assert c.shape == (3000, res, 1) and bool((c >= 0).all() and (c < 1).all())
    gaps = c[:, 1:, 0] - c[:, :-1, 0]
    assert torch.allclose(gaps, torch.full_like(gaps, 1 / res), atol=1e-6)
    offsets = c[:, 0, 0] * res  # U[0, 1): mean 1/2, variance 1/12
    assert abs(float(offsets.mean()) - 0.5) < 0.03 and abs(float(offsets.var()) - 1 / 12) < 0.01, (seed,)
    # exactness: whitening each function by the Cholesky factor of its own (translated) kernel matrix -> N(0, I)
    chol = torch.linalg.cholesky(kernel_matrix(c, c, "se", 0.2) + 1e-6 * torch.eye(res, dtype=c.dtype))
    z = torch.linalg.solve_triangular(chol, dm.train_set.values.double(), upper=False)
    assert abs(float(z.mean())) < 0.03, f"whitened mean {float(z.mean()):.3f} (seed {seed})"
    assert abs(float(z.var()) - 1.0) < 0.05, f"whitened variance {float(z.var()):.3f} (seed {seed})"
    with pytest.raises(ValueError, match="shifted"):
        GRFDataModule(coords="sideways")


def test_grf_reference() -> None:
    dm = GRFDataModule(dim=1, resolution=16, num_train=8, num_val=8)
    g = torch.Generator().manual_seed(fresh_seed())
    scattered = torch.rand(3, 50, 1, generator=g)
    out = dm.reference(scattered, g)
    assert out.shape == (3, 50, 1) and torch.isfinite(out).all()
    grid = grid_coords((128,)).expand(5, -1, -1)
    a, b = dm.reference(grid, g), dm.reference(grid, g)
    assert a.shape == (5, 128, 1) and not torch.allclose(a, b)
    with pytest.raises(ValueError, match=r"\[B, N, 1\]"):
        dm.reference(torch.rand(2, 10, 2))


def test_grf_rejects_bad_args() -> None:
    with pytest.raises(ValueError, match="dim"):
        GRFDataModule(dim=3)
    with pytest.raises(ValueError, match="coords"):
        GRFDataModule(coords="random")  # type: ignore[arg-type]


# ---------------------------------------------------------------- procedural
@pytest.mark.parametrize("family,fn", [("blobs", evaluate_blobs), ("shapes", evaluate_shapes)])
def test_procedural_values_do_not_depend_on_other_points(family: str, fn) -> None:
    dm = ProceduralImageDataModule(family=family, resolution=32, num_train=16, num_val=4, seed=fresh_seed())
    dm.setup()
    params = dm.train_set.params[:6]
    grid = grid_coords((32, 32))
    on_grid = fn(params, grid.expand(6, -1, -1))
    # dataset items are exactly the functions evaluated on the grid
    assert torch.equal(dm.train_set[2][1], on_grid[2])
    assert torch.equal(torch.stack([v for _, v in dm.train_set.__getitems__([0, 1])]), on_grid[:2])
    # embed the same grid points among random extra points, in a random order per function
    extra = torch.rand(6, 700, 2)
    both = torch.cat([grid.expand(6, -1, -1), extra], dim=1)
    perm = torch.stack([torch.randperm(both.shape[1]) for _ in range(6)])
    mixed = torch.gather(both, 1, perm.unsqueeze(-1).expand(-1, -1, 2))
    vals = fn(params, mixed)
    inv = perm.argsort(dim=1)
    back = torch.gather(vals, 1, inv.unsqueeze(-1))[:, : grid.shape[0]]
    # identical up to float32 rounding (vectorised vs scalar exp may differ by 1 ulp)
    assert torch.allclose(back, on_grid, rtol=0, atol=1e-6), float((back - on_grid).abs().max())


@pytest.mark.parametrize("family", ["blobs", "shapes"])
def test_procedural_range_and_reference(family: str) -> None:
    dm = ProceduralImageDataModule(family=family, resolution=16, num_train=200, num_val=20, batch_size=50)
    coords, values = next(iter(dm.train_dataloader()))
    assert coords.shape == (50, 256, 2) and values.shape == (50, 256, 1)
    assert torch.isfinite(values).all() and values.min() >= -1 and values.max() <= 1
    assert values.max() > 0.2, "every function has a bump / shape rising above the background"
    g = torch.Generator().manual_seed(fresh_seed())
    corners = torch.tensor([[0.0, 0.0], [1.0, 1.0]]).expand(7, -1, -1)
    q = torch.cat([torch.rand(7, 300, 2, generator=g), corners], 1)
    ref = dm.reference(q, g)
    assert ref.shape == (7, 302, 1) and torch.isfinite(ref).all()
    assert ref.min() >= -1 and ref.max() <= 1
    assert not torch.allclose(ref, dm.reference(q, g)), "reference draws fresh functions"
    same = [dm.reference(q, torch.Generator().manual_seed(11)) for _ in range(2)]
    assert torch.equal(same[0], same[1])


def test_procedural_closed_forms() -> None:
    # one blob of amplitude 1.5, width 0.1 at (0.4, 0.6); the other two slots inactive
    blob = torch.tensor([[1, 0.4, 0.6, 0.1, 1.5] + [0, 0.5, 0.5, 0.1, 2.0] * 2])
    pts = torch.tensor([[[0.4, 0.6], [0.5, 0.6], [0.95, 0.05]]])
    expected = -1 + 2 * torch.tanh(1.5 * torch.exp(torch.tensor([0.0, -0.5, -0.605 / 0.02])))
    assert torch.allclose(evaluate_blobs(blob, pts)[0, :, 0], expected, atol=1e-6)
    # axis-aligned rectangle (half sizes 0.2 x 0.1) and an ellipse (0.1 x 0.05), edge width 0.01
    rect = torch.tensor([[1, 1, 0.5, 0.5, 0.2, 0.1, 0.0] + [0, 0, 0.5, 0.5, 0.1, 0.1, 0.0]])
    pts = torch.tensor([[[0.5, 0.5], [0.7, 0.5], [0.71, 0.5], [0.5, 0.61], [0.05, 0.05]]])
    s = torch.tensor([-0.1, 0.0, 0.01, 0.01, 0.0])
    s[-1] = (0.25**2 + 0.35**2) ** 0.5  # distance from (0.05, 0.05) to the corner (0.3, 0.4)
    assert torch.allclose(evaluate_shapes(rect, pts)[0, :, 0], 2 * torch.sigmoid(-s / 0.01) - 1, atol=1e-5)
    # rotating the rectangle by pi/2 swaps its axes: (0.5, 0.7) on the edge, (0.7, 0.5) 0.1 outside
    rot = rect.clone()
    rot[0, 6] = torch.pi / 2
    swapped = torch.tensor([[[0.5, 0.7], [0.7, 0.5]]])
    assert torch.allclose(evaluate_shapes(rot, swapped)[0, :, 0], torch.tensor([0.0, -1.0]), atol=1e-3)
    ell = torch.tensor([[1, 0, 0.5, 0.5, 0.1, 0.05, 0.0] * 2])
    pts = torch.tensor([[[0.5, 0.5], [0.6, 0.5], [0.5, 0.55], [0.61, 0.5], [0.9, 0.9]]])
    v = evaluate_shapes(ell, pts)[0, :, 0]
    assert abs(float(v[0]) - float(torch.tanh(torch.tensor(0.05 / 0.02)))) < 1e-5  # centre: 0.05 inside
    assert abs(float(v[1])) < 1e-5 and abs(float(v[2])) < 1e-5  # on the boundary
    assert torch.allclose(v[3], 2 * torch.sigmoid(torch.tensor(-1.0)) - 1, atol=1e-3)  # 0.01 outside
    assert v[4] < -0.999


def test_procedural_determinism() -> None:
    a = ProceduralImageDataModule(family="shapes", num_train=32, num_val=8, seed=1)
    b = ProceduralImageDataModule(family="shapes", num_train=32, num_val=8, seed=1)
    c = ProceduralImageDataModule(family="shapes", num_train=32, num_val=8, seed=2)
    for dm in (a, b, c):
        dm.setup()
    assert torch.equal(a.train_set.params, b.train_set.params)
    assert not torch.equal(a.train_set.params, c.train_set.params)
    assert not torch.equal(a.train_set.params[:8], a.val_set.params)


# ---------------------------------------------------------------- MNIST
DATA = os.environ.get("FUNCGEN_DATA")
needs_mnist = pytest.mark.skipif(
    not DATA or not (Path(DATA) / "mnist" / "t10k-images-idx3-ubyte.gz").is_file(),
    reason="MNIST not available: set FUNCGEN_DATA to the folder holding mnist/ (e.g. /work/shared/data)")


@needs_mnist
def test_mnist_load_and_split() -> None:
    images, labels = load_mnist_idx(DATA)
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and set(np.unique(labels).tolist()) == set(range(10))
    dm = MNISTDataModule(batch_size=32)  # root from FUNCGEN_DATA
    dm.setup("fit")
    assert len(dm.train_set) == 8000 and len(dm.val_set) == 2000
    coords, values = next(iter(dm.train_dataloader()))
    assert coords.shape == (32, 784, 2) and values.shape == (32, 784, 1)
    assert values.min() >= -1 and values.max() <= 1 and values.min() == -1
    # held-out item 0 is image 8000, row-major on the grid, normalised to [-1, 1]
    expected = torch.from_numpy(images[8000]).float().div(255).reshape(784, 1) * 2 - 1
    assert torch.allclose(dm.val_set[0][1], expected)
    assert torch.allclose(dm.denormalize(dm.val_set[0][1]), expected * 0.5 + 0.5)
    assert dm.reference(coords) is None
    small = MNISTDataModule(root=DATA, num_train=100)
    small.setup()
    assert len(small.train_set) == 100 and len(small.val_set) == 2000
    assert torch.equal(small.train_set.values, dm.train_set.values[:100])
    assert json.loads(json.dumps(dm.data_config()))["normalization"]["scale"] == 0.5


@needs_mnist
def test_mnist_truncated_gzip(tmp_path: Path) -> None:
    raw = (Path(DATA) / "mnist" / "t10k-images-idx3-ubyte.gz").read_bytes()
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(raw[: len(raw) // 2])
    labels = (Path(DATA) / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes()
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(labels)
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz"):
        load_mnist_idx(tmp_path)


def _write_idx(folder: Path, n: int = 3, magic: int = 2051, rows: int = 28, cut: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    img = struct.pack(">IIII", magic, n, rows, 28) + np.arange(n * rows * 28, dtype=np.uint8).tobytes()
    lab = struct.pack(">II", 2049, n) + bytes(range(n))
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(img[: len(img) - cut]))
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(lab))


def test_mnist_reader_on_synthetic_files(tmp_path: Path) -> None:
    _write_idx(tmp_path / "mnist")
    images, labels = load_mnist_idx(tmp_path)  # found under root/mnist/
    assert images.shape == (3, 28, 28) and labels.tolist() == [0, 1, 2]
    assert images.reshape(-1).tolist() == (np.arange(3 * 784) % 256).tolist()
    _write_idx(tmp_path / "flat")
    assert load_mnist_idx(tmp_path / "flat")[0].shape == (3, 28, 28)  # found directly under root/


def test_mnist_missing_and_corrupt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        load_mnist_idx(missing)
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte.gz"):
        load_mnist_idx(tmp_path)  # exists but holds no files
    bad = tmp_path / "bad"
    _write_idx(bad)
    (bad / "t10k-images-idx3-ubyte.gz").write_bytes(os.urandom(4096))
    with pytest.raises(ValueError, match=str(bad / "t10k-images-idx3-ubyte.gz")):
        load_mnist_idx(bad)
    for kwargs, msg in [({"magic": 1234}, "magic number 1234"), ({"cut": 100}, "truncated"), ({"rows": 27}, "28x28")]:
        _write_idx(bad, **kwargs)
        with pytest.raises(ValueError, match=msg):
            load_mnist_idx(bad)
    monkeypatch.delenv("FUNCGEN_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="FUNCGEN_DATA"):
        resolve_data_root(None)
    with pytest.raises(FileNotFoundError, match="FUNCGEN_DATA"):
        MNISTDataModule().setup()
    assert resolve_data_root(str(tmp_path)) == tmp_path
    monkeypatch.setenv("FUNCGEN_DATA", str(bad))
    assert resolve_data_root(None) == bad


# ---------------------------------------------------------------- config / CLI
def test_datamodules_build_from_cli_style_config() -> None:
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(FunctionDataModule, "data")
    for cfg in [{"class_path": "funcgen.data.GRFDataModule", "init_args": {"dim": 2, "kernel": "matern12"}},
                {"class_path": "funcgen.data.ProceduralImageDataModule", "init_args": {"family": "shapes"}},
                {"class_path": "funcgen.data.MNISTDataModule", "init_args": {"num_train": 100}}]:
        ns = parser.instantiate_classes(parser.parse_object({"data": cfg}))
        assert isinstance(ns.data, FunctionDataModule)
        assert ns.data.data_config()["dim"] == 2
    with pytest.raises(Exception):
        parser.parse_object({"data": {"class_path": "funcgen.data.GRFDataModule", "init_args": {"kernel": "rbf"}}})


def test_jittered_images_interpolate_within_cells(gen):
    from funcgen.data.base import JitteredImageDataset
    from funcgen.pointset import grid_coords

    h, w = 5, 7
    # a bilinear function of the coordinates is reproduced exactly by bilinear interpolation
    centres = grid_coords((h, w))
    a, b, c = torch.randn(3, generator=gen).tolist()
    img = (a + b * centres[:, 0] + c * centres[:, 1]).view(1, 1, h, w)
    ds = JitteredImageDataset(img)
    coords, values = ds[0]
    assert coords.shape == (h * w, 2) and values.shape == (h * w, 1)
    # every point stays inside its own pixel, and not on the centre
    assert ((coords - centres).abs() <= torch.tensor([0.5 / h, 0.5 / w]) + 1e-7).all()
    assert not torch.allclose(coords, centres)
    inside = ((coords > centres.min(0).values) & (coords < centres.max(0).values)).all(-1)
    expect = a + b * coords[:, 0] + c * coords[:, 1]
    assert torch.allclose(values[inside, 0], expect[inside], atol=1e-5)


def test_mnist_jitter_mode(data_root):
    from funcgen.data import MNISTDataModule

    dm = MNISTDataModule(root=str(data_root), batch_size=4, num_train=16, coords="jitter")
    dm.setup("fit")
    c1, v1 = next(iter(dm.train_dataloader()))
    c2, _ = next(iter(dm.val_dataloader()))
    assert c1.shape == (4, 784, 2) and v1.shape == (4, 784, 1)
    assert not torch.equal(c1[0], c1[1])  # fresh points per item
    assert v1.min() >= -1 and v1.max() <= 1
    assert torch.equal(c2[0], c2[1])  # validation on the grid
    # the jittered reading is of the same image, not a transposed one
    jit = torch.stack([dm.train_set[0][1][:, 0] for _ in range(20)]).mean(0)
    from funcgen.data import load_mnist_idx

    raw = torch.from_numpy(load_mnist_idx(data_root)[0][0]).float()  # image 0 as stored, [28, 28]
    same = torch.corrcoef(torch.stack([jit, raw.reshape(-1)]))[0, 1]
    transposed = torch.corrcoef(torch.stack([jit, raw.T.reshape(-1)]))[0, 1]
    assert same > 0.9 and same > transposed + 0.1
    with pytest.raises(ValueError, match="coords"):
        MNISTDataModule(coords="random")


def test_procedural_jitter_gives_exact_values_off_grid():
    from funcgen.data import ProceduralImageDataModule
    from funcgen.data.procedural import evaluate

    dm = ProceduralImageDataModule("shapes", resolution=8, num_train=6, num_val=2, batch_size=3, coords="jitter")
    dm.setup("fit")
    items = dm.train_set.__getitems__([0, 1, 2])
    c0, v0 = items[0]
    again, _ = dm.train_set[0]
    assert not torch.equal(c0, again)  # fresh points every fetch
    assert torch.allclose(v0, evaluate("shapes", dm.train_set.params[:1], c0.unsqueeze(0))[0])
    cells = torch.tensor([1 / 8, 1 / 8])
    assert ((c0 - dm.train_set.coords).abs() <= cells / 2 + 1e-7).all()
