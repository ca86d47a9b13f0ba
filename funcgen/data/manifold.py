"""Point clouds on manifolds for Riemannian diffusion: Earth event datasets on S^2 and synthetic mixtures.

Every item is ``(coords [1, 1], values [1, D])``: one manifold point stored as flat ambient
coordinates in ``values`` (``D = 3`` on S^2, 9 on SO(3), ``n`` angles on the torus) with a dummy
coordinate, so the shared :class:`funcgen.train.module.GenerativeModule` trains
:class:`funcgen.methods.RiemannianDiffusion` unchanged (see that module's docstring).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from ..geometry import (
    SO3,
    SU3,
    Manifold,
    Sphere,
    Torus,
    heat_kernel_log_prob,
    sample_heat_kernel,
)
from .base import FunctionDataModule, PointDataset, make_generator

__all__ = ["load_earth_csv", "latlon_to_sphere", "earth_split", "EarthDataModule", "ManifoldMixtureDataModule",
           "HeatKernelMixture", "EARTH_FORMAT"]

EARTH_FORMAT = ("one event per line as 'latitude,longitude' in degrees, no header "
                "(latitude in [-90, 90], longitude in [-180, 360])")
EarthName = Literal["volcano", "earthquake", "fire", "flood"]


def latlon_to_sphere(lat_lon_deg: Tensor) -> Tensor:
    """``[M, 2]`` (latitude, longitude) in degrees -> unit vectors ``[M, 3]``:
    (cos lat cos lon, cos lat sin lon, sin lat)."""
    lat, lon = torch.deg2rad(lat_lon_deg[:, 0]), torch.deg2rad(lat_lon_deg[:, 1])
    return torch.stack([lat.cos() * lon.cos(), lat.cos() * lon.sin(), lat.sin()], -1)


def load_earth_csv(path: str | os.PathLike) -> Tensor:
    """Read an Earth event file -> unit vectors ``[M, 3]`` (float64).

    Raises:
        FileNotFoundError: no file at ``path`` (the message names it and the expected format).
        ValueError: a malformed row, a non-finite value or a coordinate out of range (with its line number).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Earth data file not found: {path} (expected {EARTH_FORMAT}; "
                                "set FUNCGEN_DATA or data.init_args.root to the folder holding earth/)")
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(",")
        try:
            if len(parts) != 2:
                raise ValueError
            lat, lon = float(parts[0]), float(parts[1])
        except ValueError:
            raise ValueError(f"{path}, line {i}: malformed row {line!r}; expected {EARTH_FORMAT}") from None
        if not (math.isfinite(lat) and math.isfinite(lon)):
            raise ValueError(f"{path}, line {i}: non-finite coordinate in {line!r}")
        if not -90.0 <= lat <= 90.0:
            raise ValueError(
                f"{path}, line {i}: latitude {lat} out of range [-90, 90] (columns are latitude,longitude)")
        if not -180.0 <= lon <= 360.0:
            raise ValueError(f"{path}, line {i}: longitude {lon} out of range [-180, 360]")
        rows.append((lat, lon))
    if not rows:
        raise ValueError(f"{path} holds no data rows; expected {EARTH_FORMAT}")
    return latlon_to_sphere(torch.tensor(rows, dtype=torch.float64))


def earth_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The benchmark split (data/README.md): ``numpy.random.default_rng(seed).permutation(n)``, then the
    first ``int(0.8 n)`` indices train, the next ``int(0.1 n)`` validation, the rest test."""
    perm = np.random.default_rng(seed).permutation(n)
    n_train, n_val = int(0.8 * n), int(0.1 * n)
    return perm[:n_train], perm[n_train:n_train + n_val], perm[n_train + n_val:]


def _points_dataset(x: Tensor) -> PointDataset:
    return PointDataset(torch.zeros(x.shape[0], 1, 1), x[:, None, :])


class _ManifoldDataModule(FunctionDataModule):
    """Shared metadata of manifold point datamodules (dummy 1-d coordinate, ``N = 1``)."""

    dim = 1
    train_shape = (1,)
    kind = "signal"
    manifold: Manifold

    def _extra_config(self) -> dict[str, Any]:
        return {"manifold": self.manifold.config, "points": "values[:, 0] are flat ambient manifold points"}


class _LawDataModule(_ManifoldDataModule):
    """Points drawn from a known law ``self.law`` (anything with ``sample(n, generator) -> [n, D]``):
    seeded training and validation sets, and exact fresh draws for the evaluation."""

    law: Any
    num_train: int
    num_val: int

    def _make_split(self, count: int, generator: torch.Generator, train: bool) -> PointDataset:
        return _points_dataset(self.law.sample(count, generator))

    def reference(self, coords: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Exact fresh draws ``[B, N, D]`` (one independent point per entry of ``coords`` ``[B, N, 1]``)."""
        b, n = coords.shape[:2]
        return self.law.sample(b * n, generator).reshape(b, n, -1).to(coords.device)


class EarthDataModule(_ManifoldDataModule):
    """Earth event locations on S^2 (volcano, earthquake, fire, flood) with the 80/10/10 benchmark split.

    Args:
        dataset: file stem under ``ROOT/earth/`` (``volcano.csv`` ...).
        root: data folder holding ``earth/``; None = the ``FUNCGEN_DATA`` environment variable.
        split_seed: seed of the permutation (the benchmark uses 0..4).
        batch_size: points per batch.
        seed: shuffling seed.
        num_workers: DataLoader worker processes.
    """

    name = "earth"
    channels = 3

    def __init__(self, dataset: EarthName = "volcano", root: str | None = None, split_seed: int = 0,
                 batch_size: int = 512, seed: int = 0, num_workers: int = 0) -> None:
        super().__init__(batch_size=batch_size, seed=seed, num_workers=num_workers)
        if dataset not in ("volcano", "earthquake", "fire", "flood"):
            raise ValueError(f"unknown Earth dataset {dataset!r}; choose volcano, earthquake, fire or flood")
        self.dataset, self.root, self.split_seed = dataset, root, int(split_seed)
        self.manifold = Sphere(2)
        self.test_points: Tensor | None = None

    def path(self) -> Path:
        root = self.root or os.environ.get("FUNCGEN_DATA")
        if not root:
            raise FileNotFoundError(f"no data folder for Earth data: pass root=... (data.init_args.root) or set "
                                    f"FUNCGEN_DATA to the folder holding earth/{self.dataset}.csv ({EARTH_FORMAT})")
        return Path(root).expanduser() / "earth" / f"{self.dataset}.csv"

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        x = load_earth_csv(self.path()).float()
        tr, va, te = earth_split(x.shape[0], self.split_seed)
        self.train_set, self.val_set = _points_dataset(x[tr]), _points_dataset(x[va])
        self.test_points = x[te]

    def test_dataloader(self) -> DataLoader:
        """The 10% test split (the benchmark's NLL points)."""
        self._ensure_setup()
        return self._loader(_points_dataset(self.test_points), shuffle=False)

    def _extra_config(self) -> dict[str, Any]:
        return {**super()._extra_config(), "dataset": self.dataset, "split_seed": self.split_seed}


class HeatKernelMixture:
    """Equal-weight mixture of heat kernels ``p_sigma(. | c_k)`` on a manifold: exact samples and log density.

    Args:
        manifold: the manifold.
        centers: ``[K, D]`` component centres.
        sigma: common component width (heat-kernel sigma).
    """

    def __init__(self, manifold: Manifold, centers: Tensor, sigma: float) -> None:
        self.manifold, self.centers, self.sigma = manifold, manifold.check(centers, "mixture centres"), float(sigma)

    def sample(self, num: int, generator: torch.Generator | None = None) -> Tensor:
        """``[num, D]`` exact draws (float32)."""
        k = torch.randint(self.centers.shape[0], (num,), generator=generator)
        return sample_heat_kernel(self.manifold, self.centers[k].double(), self.sigma, generator).float()

    def log_prob(self, x: Tensor) -> Tensor:
        """log density ``[M]`` of points ``[M, D]`` w.r.t. the Riemannian volume."""
        c = self.centers.to(torch.float64)
        lp = heat_kernel_log_prob(self.manifold, x.to(torch.float64)[:, None, :].expand(-1, c.shape[0], -1),
                                  c[None].expand(x.shape[0], -1, -1), self.sigma)
        return (torch.logsumexp(lp, -1) - math.log(c.shape[0])).to(x.dtype)


class ManifoldMixtureDataModule(_LawDataModule):
    """Synthetic data with a known density: a mixture of heat kernels on S^2, SO(3), T^2 or SU(3).

    Args:
        manifold: ``sphere`` (S^n, ``n = sphere_dim``), ``so3``, ``torus`` (T^2) or ``su3``.
        num_components: number of mixture components (centres drawn uniformly from ``seed``).
        sigma: component width (heat-kernel sigma).
        num_train: training points.
        num_val: validation points.
        batch_size: points per batch.
        seed: seed of the centres, the samples and the shuffling.
        num_workers: DataLoader worker processes.
        sphere_dim: ``n`` of the sphere ``S^n`` (``manifold: sphere`` only; e.g. 127 for the paper's
            high-dimensional hypersphere experiments).
    """

    name = "manifold_mixture"

    def __init__(self, manifold: Literal["sphere", "so3", "torus", "su3"] = "sphere", num_components: int = 4,
                 sigma: float = 0.3, num_train: int = 20000, num_val: int = 2000, batch_size: int = 512,
                 seed: int = 0, num_workers: int = 0, sphere_dim: int = 2) -> None:
        super().__init__(batch_size=batch_size, seed=seed, num_workers=num_workers)
        makers = {"sphere": lambda: Sphere(int(sphere_dim)), "so3": SO3, "torus": lambda: Torus(2), "su3": SU3}
        if manifold not in makers:
            raise ValueError(f"unknown manifold {manifold!r}; choose sphere, so3, torus or su3")
        if num_components < 1 or sigma <= 0 or num_train < 1 or num_val < 1:
            raise ValueError("need num_components >= 1, sigma > 0, num_train >= 1 and num_val >= 1; got "
                             f"{num_components}, {sigma}, {num_train}, {num_val}")
        self.manifold = makers[manifold]()
        self.manifold_name, self.num_components, self.sigma = manifold, int(num_components), float(sigma)
        self.num_train, self.num_val = int(num_train), int(num_val)
        self.channels = self.manifold.ambient_dim
        centers = self.manifold.random_uniform(self.num_components, make_generator(self.seed, 3), dtype=torch.float64)
        self.mixture = HeatKernelMixture(self.manifold, centers, self.sigma)

    @property
    def law(self) -> HeatKernelMixture:
        return self.mixture

    def _extra_config(self) -> dict[str, Any]:
        return {**super()._extra_config(), "num_components": self.num_components, "sigma": self.sigma,
                "centers": self.mixture.centers.tolist()}
