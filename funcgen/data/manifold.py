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
from typing import Any, Literal, Sequence

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


def latlon_to_sphere(lat_lon_deg: Tensor) -> Tensor:
    """``[M, 2]`` (latitude, longitude) in degrees -> unit vectors ``[M, 3]``:
    (cos lat cos lon, cos lat sin lon, sin lat)."""
    lat, lon = torch.deg2rad(lat_lon_deg[:, 0]), torch.deg2rad(lat_lon_deg[:, 1])
    return torch.stack([lat.cos() * lon.cos(), lat.cos() * lon.sin(), lat.sin()], -1)


def _csv_column(spec: int | str, names: list[str] | None, path: Path) -> int:
    """Index of column ``spec`` (a 0-based index, or a name from the header ``names``)."""
    if isinstance(spec, int) and not isinstance(spec, bool):
        if spec < 0:
            raise ValueError(f"{path}: column index {spec} must be >= 0")
        return spec
    if isinstance(spec, str) and spec.strip().lstrip("-").isdigit():
        return _csv_column(int(spec), names, path)
    if names is None:
        raise ValueError(f"{path}: column {spec!r} is a name but the file has no header (header=false); give a "
                         "0-based column index instead")
    if spec not in names:
        raise ValueError(f"{path}: no column {spec!r} in the header; columns: {', '.join(names)}")
    return names.index(spec)


def load_earth_csv(path: str | os.PathLike, *, header: bool | None = False,
                   columns: Sequence[int | str] = (0, 1), degrees: bool = True) -> Tensor:
    """Read points on the sphere from a CSV file (one point per row) -> unit vectors ``[M, 3]`` (float64).

    Args:
        path: the file. The Earth benchmark files (the defaults) hold ``latitude,longitude`` in degrees, no header.
        header: the first line names the columns (True), holds data (False) or None: a header when it does not
            parse as numbers.
        columns: the latitude and longitude columns: 0-based indices or header names.
        degrees: the angles are in degrees (else radians).

    Raises:
        FileNotFoundError: no file at ``path`` (the message names it and the expected format).
        ValueError: a malformed row, a non-finite value or a coordinate out of range (with its line number),
            or a column that does not exist.
    """
    import csv

    path = Path(path)
    fmt = EARTH_FORMAT if (header is False and tuple(columns) == (0, 1) and degrees) else (
        f"one point per row with latitude and longitude in columns {list(columns)} "
        f"({'degrees' if degrees else 'radians'}{', after a header line' if header else ''})")
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path} (expected {fmt}; "
                                "set FUNCGEN_DATA or data.init_args.root to the folder holding earth/)")
    if len(tuple(columns)) != 2:
        raise ValueError(f"{path}: columns must name two columns (latitude, longitude); got {list(columns)}")
    lines = [(i, r) for i, r in enumerate(csv.reader(path.read_text().splitlines()), start=1) if any(x.strip()
                                                                                                   for x in r)]
    names = None
    if lines and header is not False:
        first = lines[0][1]
        try:
            [float(x) for x in first]
            is_header = bool(header)
        except ValueError:
            is_header = True
        if is_header:
            names = [x.strip() for x in first]
            lines = lines[1:]
    i_lat, i_lon = (_csv_column(c, names, path) for c in columns)
    lat_max, lon_lo, lon_hi = (90.0, -180.0, 360.0) if degrees else (math.pi / 2, -math.pi, 2 * math.pi)
    rows = []
    for i, parts in lines:
        line = ",".join(parts)
        try:
            if len(parts) <= max(i_lat, i_lon) or (tuple(columns) == (0, 1) and names is None and len(parts) != 2):
                raise ValueError
            lat, lon = float(parts[i_lat]), float(parts[i_lon])
        except ValueError:
            raise ValueError(f"{path}, line {i}: malformed row {line!r}; expected {fmt}") from None
        if not (math.isfinite(lat) and math.isfinite(lon)):
            raise ValueError(f"{path}, line {i}: non-finite coordinate in {line!r}")
        if not -lat_max <= lat <= lat_max:
            raise ValueError(f"{path}, line {i}: latitude {lat} out of range [{-lat_max:g}, {lat_max:g}] "
                             f"(columns {list(columns)} are latitude, longitude{'' if degrees else ' in radians'})")
        if not lon_lo <= lon <= lon_hi:
            raise ValueError(f"{path}, line {i}: longitude {lon} out of range [{lon_lo:g}, {lon_hi:g}]")
        rows.append((lat, lon))
    if not rows:
        raise ValueError(f"{path} holds no data rows; expected {fmt}")
    deg = torch.tensor(rows, dtype=torch.float64)
    return latlon_to_sphere(deg if degrees else torch.rad2deg(deg))


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
    """Points on S^2 from a latitude/longitude CSV, with the 80/10/10 benchmark split: the Earth event sets
    (volcano, earthquake, fire, flood) or any file of the same kind.

    Args:
        dataset: file stem under ``ROOT/earth/`` (``volcano.csv``, ... or any name of your own).
        root: data folder holding ``earth/``; None = the ``FUNCGEN_DATA`` environment variable.
        split_seed: seed of the permutation (the benchmark uses 0..4).
        batch_size: points per batch.
        seed: shuffling seed.
        num_workers: DataLoader worker processes.
        path: read this CSV file instead of ``ROOT/earth/DATASET.csv``.
        header: the first line names the columns (True), holds data (False; the Earth files), or None: a
            header when it does not parse as numbers.
        columns: the latitude and longitude columns (0-based indices or header names).
        degrees: angles in degrees (False: radians).
    """

    name = "earth"
    channels = 3

    def __init__(self, dataset: str = "volcano", root: str | None = None, split_seed: int = 0,
                 batch_size: int = 512, seed: int = 0, num_workers: int = 0, path: str | None = None,
                 header: bool | None = False, columns: tuple[int | str, int | str] = (0, 1),
                 degrees: bool = True) -> None:
        super().__init__(batch_size=batch_size, seed=seed, num_workers=num_workers)
        if not isinstance(dataset, str) or not dataset or "/" in dataset:
            raise ValueError(f"dataset must be a file stem such as 'volcano' (ROOT/earth/DATASET.csv); got "
                             f"{dataset!r}; pass path=... for a file elsewhere")
        self.dataset, self.root, self.split_seed = dataset, root, int(split_seed)
        self.file, self.header, self.columns, self.degrees = path, header, tuple(columns), bool(degrees)
        self.manifold = Sphere(2)
        self.test_points: Tensor | None = None

    def path(self) -> Path:
        if self.file is not None:
            return Path(self.file).expanduser()
        root = self.root or os.environ.get("FUNCGEN_DATA")
        if not root:
            raise FileNotFoundError(f"no data folder for Earth data: pass root=... (data.init_args.root) or set "
                                    f"FUNCGEN_DATA to the folder holding earth/{self.dataset}.csv ({EARTH_FORMAT})")
        return Path(root).expanduser() / "earth" / f"{self.dataset}.csv"

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        x = load_earth_csv(self.path(), header=self.header, columns=self.columns, degrees=self.degrees).float()
        tr, va, te = earth_split(x.shape[0], self.split_seed)
        self.train_set, self.val_set = _points_dataset(x[tr]), _points_dataset(x[va])
        self.test_points = x[te]

    def test_dataloader(self) -> DataLoader:
        """The 10% test split (the benchmark's NLL points)."""
        self._ensure_setup()
        return self._loader(_points_dataset(self.test_points), shuffle=False)

    def _extra_config(self) -> dict[str, Any]:
        extra = {**super()._extra_config(), "dataset": self.dataset, "split_seed": self.split_seed}
        if self.file is not None:
            extra["source"] = Path(self.file).name
        return extra


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
