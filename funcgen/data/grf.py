"""Gaussian random field data: exact samples of ``GP(0, k)`` on a grid or at random points."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from funcgen.pointset import grid_coords
from funcgen.processes.noise import GaussianRandomField, KernelName

from .base import FunctionDataModule, PointDataset

__all__ = ["GRFDataModule"]

_CHUNK_BYTES = 2**28  # memory budget of one generation chunk (float64 work arrays)


class GRFDataModule(FunctionDataModule):
    """Exact Gaussian random field samples on ``[0, 1]^dim``.

    Every function is an exact draw of ``GP(0, k)`` (:class:`funcgen.processes.noise.GaussianRandomField`):
    Kronecker sampling on the grid for ``kernel="se"``, a dense Cholesky otherwise. The fixed
    train and validation sets are generated at :meth:`setup` from disjoint seed streams.

    Args:
        dim: dimension of the domain, 1 (signals) or 2 (images).
        resolution: cells per axis; each function is observed at ``resolution**dim`` points.
        kernel: covariance family: ``se``, ``matern12``, ``matern32`` or ``matern52``.
        lengthscale: correlation length in units of the unit domain.
        variance: marginal variance ``k(x, x)``.
        num_train: number of training functions.
        num_val: number of validation functions.
        batch_size: functions per batch.
        coords: ``grid``: the cell-centre grid ``(i + 0.5) / resolution`` shared by all functions;
            ``uniform``: ``resolution**dim`` i.i.d. uniform points drawn fresh for every function
            (exact sampling then costs one ``O(N^3)`` Cholesky per function: keep ``N`` small);
            ``shifted``: the grid ``(i + u) / resolution`` moved by its own offset ``u ~ U[0, 1)^dim`` for
            every function (``u = 1/2`` is the cell-centre grid). Still ``resolution**dim`` evenly spaced
            points, but over the training set they cover the whole domain, so a network never sees its
            coordinate features only at the grid's nodes and queries between them at a finer resolution
            are in distribution. Exact and as cheap as ``grid``: the kernels are stationary, so the values
            on a translated grid have the law of the values on the grid.
        seed: seed of data generation and shuffling.
        num_workers: DataLoader worker processes.
    """

    name = "grf"

    def __init__(self, dim: int = 1, resolution: int = 64, kernel: KernelName = "se",
                 lengthscale: float = 0.1, variance: float = 1.0, num_train: int = 10000,
                 num_val: int = 512, batch_size: int = 64, coords: Literal["grid", "uniform", "shifted"] = "grid",
                 seed: int = 0, num_workers: int = 0) -> None:
        super().__init__(batch_size=batch_size, seed=seed, num_workers=num_workers)
        if dim not in (1, 2):
            raise ValueError(f"GRFDataModule supports dim=1 (signals) or dim=2 (images); got {dim}")
        if resolution <= 0 or num_train <= 0 or num_val <= 0:
            raise ValueError(f"resolution, num_train and num_val must be positive; got "
                             f"{resolution}, {num_train}, {num_val}")
        if coords not in ("grid", "uniform", "shifted"):
            raise ValueError(f"coords must be 'grid', 'uniform' or 'shifted'; got {coords!r}")
        self.save_hyperparameters()
        self.noise = GaussianRandomField(kernel, lengthscale=lengthscale, variance=variance)
        self.dim = int(dim)
        self.channels = 1
        self.resolution = int(resolution)
        self.train_shape = (self.resolution,) * self.dim
        self.kind = "signal" if self.dim == 1 else "image"
        self.coords_mode = coords
        self.num_train, self.num_val = int(num_train), int(num_val)
        n = self.num_points
        if coords == "uniform" and n > self.noise.max_dense_points:
            raise ValueError(f"coords='uniform' needs a dense Cholesky of {n} points per function; "
                             f"the limit is {self.noise.max_dense_points}: lower the resolution")

    @property
    def num_points(self) -> int:
        """Points per function, ``resolution**dim``."""
        return self.resolution**self.dim

    def _chunk(self, per_function_matrix: bool) -> int:
        n = self.num_points
        per = n * n * 8 * (self.dim + 2) if per_function_matrix else n * 8 * 4
        return max(1, min(4096, _CHUNK_BYTES // per))

    def _make_split(self, count: int, generator: torch.Generator, train: bool) -> PointDataset:
        if self.coords_mode in ("grid", "shifted"):
            grid = grid_coords(self.train_shape)
            chunk = self._chunk(per_function_matrix=False)
            parts = []
            for lo in range(0, count, chunk):
                b = min(chunk, count - lo)
                if self.noise.kernel == "se":
                    parts.append(self.noise.sample_grid(self.train_shape, b, 1, generator))
                else:  # one shared Cholesky of the grid's kernel matrix
                    parts.append(self.noise.sample(grid.unsqueeze(0).expand(b, -1, -1), 1, generator))
            values = torch.cat(parts)
            if self.coords_mode == "grid":
                return PointDataset(grid, values)
            offset = (torch.rand(count, 1, self.dim, generator=generator, dtype=grid.dtype) - 0.5) / self.resolution
            return PointDataset(grid + offset, values)
        coords = torch.rand(count, self.num_points, self.dim, generator=generator)
        chunk = self._chunk(per_function_matrix=True)
        values = torch.cat([self.noise.sample(coords[lo:lo + chunk], 1, generator)
                            for lo in range(0, count, chunk)])
        return PointDataset(coords, values)

    def reference(self, coords: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Exact fresh draws ``[B, N, 1]`` of the same field at ``coords`` ``[B, N, dim]``."""
        if coords.ndim != 3 or coords.shape[-1] != self.dim:
            raise ValueError(f"reference coords must be [B, N, {self.dim}]; got {tuple(coords.shape)}")
        return self.normalize(self.noise.sample(coords, self.channels, generator))

    def covariance(self, x: Tensor, y: Tensor) -> Tensor:
        """Kernel matrix ``[N, M]`` of the field between ``x`` ``[N, d]`` and ``y`` ``[M, d]``."""
        return self.noise.covariance(x, y)

    def _extra_config(self) -> dict[str, Any]:
        return {"kernel": self.noise.kernel, "lengthscale": self.noise.lengthscale,
                "variance": self.noise.variance, "resolution": self.resolution,
                "coords": self.coords_mode, "num_train": self.num_train, "num_val": self.num_val}
