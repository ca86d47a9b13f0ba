"""Procedural 2D images defined analytically, so they can be evaluated exactly at any coordinates.

Each function is a handful of parameters (a row of a ``[M, P]`` tensor); its values at any
coordinates come from a closed-form formula, so ground truth exists at every resolution and a value
at a point never depends on which other points are evaluated with it.

Families (both map ``[0, 1]^2 -> [-1, 1]``, background ``-1``):
    ``blobs``: ``-1 + 2 tanh(sum_k a_k exp(-|x - c_k|^2 / (2 w_k^2)))`` for 1 to 3 Gaussian bumps with
        centres ``c_k`` in ``[0.2, 0.8]^2``, widths ``w_k`` in ``[0.06, 0.15]``, amplitudes ``a_k`` in
        ``[0.75, 2.5]``. Parameters per bump: ``(active, cx, cy, w, a)``, ``P = 15``.
    ``shapes``: 1 or 2 ellipses / rectangles (random half-sizes in ``[0.08, 0.22]``, rotation, centre in
        ``[0.25, 0.75]^2``); with ``s`` the signed distance to their union (negative inside), the value is
        ``2 sigmoid(-s / 0.01) - 1``: +1 inside, -1 outside, a soft edge of physical width 0.01.
        Parameters per shape: ``(active, is_rectangle, cx, cy, hx, hy, angle)``, ``P = 14``.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import Tensor
from torch.utils.data import Dataset

from funcgen.pointset import grid_coords

from .base import CoordsOption, FunctionDataModule, check_coords_option, jitter_in_cells

__all__ = [
    "ProceduralImageDataModule",
    "ProceduralDataset",
    "sample_blob_params",
    "sample_shape_params",
    "evaluate_blobs",
    "evaluate_shapes",
    "sample_params",
    "evaluate",
]

Family = Literal["blobs", "shapes"]
MAX_BLOBS, BLOB_FIELDS = 3, 5
MAX_SHAPES, SHAPE_FIELDS = 2, 7
EDGE_WIDTH = 0.01


def _uniform(batch: int, k: int, lo: float, hi: float, generator: torch.Generator | None) -> Tensor:
    return lo + (hi - lo) * torch.rand(batch, k, generator=generator)


def _active(batch: int, k: int, generator: torch.Generator | None) -> Tensor:
    count = torch.randint(1, k + 1, (batch, 1), generator=generator)
    return (torch.arange(k).unsqueeze(0) < count).float()


def sample_blob_params(batch: int, generator: torch.Generator | None = None) -> Tensor:
    """Random parameters ``[batch, 15]`` of the ``blobs`` family (CPU, float32)."""
    k = MAX_BLOBS
    fields = [_active(batch, k, generator), _uniform(batch, k, 0.2, 0.8, generator),
              _uniform(batch, k, 0.2, 0.8, generator), _uniform(batch, k, 0.06, 0.15, generator),
              _uniform(batch, k, 0.75, 2.5, generator)]
    return torch.stack(fields, dim=-1).reshape(batch, k * BLOB_FIELDS)


def sample_shape_params(batch: int, generator: torch.Generator | None = None) -> Tensor:
    """Random parameters ``[batch, 14]`` of the ``shapes`` family (CPU, float32)."""
    k = MAX_SHAPES
    fields = [_active(batch, k, generator), (torch.rand(batch, k, generator=generator) < 0.5).float(),
              _uniform(batch, k, 0.25, 0.75, generator), _uniform(batch, k, 0.25, 0.75, generator),
              _uniform(batch, k, 0.08, 0.22, generator), _uniform(batch, k, 0.08, 0.22, generator),
              _uniform(batch, k, 0.0, math.pi, generator)]
    return torch.stack(fields, dim=-1).reshape(batch, k * SHAPE_FIELDS)


def _split(params: Tensor, coords: Tensor, k: int, fields: int) -> list[Tensor]:
    if params.ndim != 2 or params.shape[1] != k * fields:
        raise ValueError(f"expected params [B, {k * fields}]; got {tuple(params.shape)}")
    if coords.ndim != 3 or coords.shape[-1] != 2 or coords.shape[0] != params.shape[0]:
        raise ValueError(f"expected coords [{params.shape[0]}, N, 2]; got {tuple(coords.shape)}")
    p = params.to(coords.device, coords.dtype).reshape(params.shape[0], k, fields, 1)
    return list(p.unbind(dim=2))  # each [B, k, 1], broadcasting against [B, 1, N]


def evaluate_blobs(params: Tensor, coords: Tensor) -> Tensor:
    """Values ``[B, N, 1]`` of ``blobs`` functions ``params`` ``[B, 15]`` at ``coords`` ``[B, N, 2]``."""
    active, cx, cy, w, a = _split(params, coords, MAX_BLOBS, BLOB_FIELDS)
    x, y = coords[..., 0].unsqueeze(1), coords[..., 1].unsqueeze(1)  # [B, 1, N]
    r2 = (x - cx) ** 2 + (y - cy) ** 2
    s = (active * a * torch.exp(-r2 / (2.0 * w * w))).sum(dim=1)  # [B, N]
    return (2.0 * torch.tanh(s) - 1.0).unsqueeze(-1)


def evaluate_shapes(params: Tensor, coords: Tensor) -> Tensor:
    """Values ``[B, N, 1]`` of ``shapes`` functions ``params`` ``[B, 14]`` at ``coords`` ``[B, N, 2]``."""
    active, is_rect, cx, cy, hx, hy, angle = _split(params, coords, MAX_SHAPES, SHAPE_FIELDS)
    dx = coords[..., 0].unsqueeze(1) - cx
    dy = coords[..., 1].unsqueeze(1) - cy
    cos, sin = torch.cos(angle), torch.sin(angle)
    u, v = cos * dx + sin * dy, cos * dy - sin * dx  # shape frame
    # rectangle: exact signed distance
    qx, qy = u.abs() - hx, v.abs() - hy
    rect = torch.sqrt(qx.clamp_min(0) ** 2 + qy.clamp_min(0) ** 2) + torch.maximum(qx, qy).clamp_max(0)
    # ellipse: first-order signed distance k0 (k0 - 1) / k1 (exact on the boundary, |grad| = 1 there)
    k0 = torch.sqrt((u / hx) ** 2 + (v / hy) ** 2)
    k1 = torch.sqrt((u / (hx * hx)) ** 2 + (v / (hy * hy)) ** 2)
    centre = k1 < 1e-6
    ell = torch.where(centre, -torch.minimum(hx, hy).expand_as(k0), k0 * (k0 - 1.0) / torch.where(centre, 1.0, k1))
    sd = torch.where(is_rect > 0.5, rect, ell)
    sd = torch.where(active > 0.5, sd, torch.full_like(sd, 1e3)).amin(dim=1)  # union: [B, N]
    return torch.tanh(-sd / (2.0 * EDGE_WIDTH)).unsqueeze(-1)  # = 2 sigmoid(-sd / EDGE_WIDTH) - 1


def sample_params(family: Family, batch: int, generator: torch.Generator | None = None) -> Tensor:
    """Random parameters ``[batch, P]`` of ``family``."""
    if family == "blobs":
        return sample_blob_params(batch, generator)
    if family == "shapes":
        return sample_shape_params(batch, generator)
    raise ValueError(f"unknown procedural family {family!r}; choose 'blobs' or 'shapes'")


def evaluate(family: Family, params: Tensor, coords: Tensor) -> Tensor:
    """Values ``[B, N, 1]`` of ``family`` functions ``params`` ``[B, P]`` at ``coords`` ``[B, N, 2]``."""
    if family == "blobs":
        return evaluate_blobs(params, coords)
    if family == "shapes":
        return evaluate_shapes(params, coords)
    raise ValueError(f"unknown procedural family {family!r}; choose 'blobs' or 'shapes'")


class ProceduralDataset(Dataset):
    """Functions stored as parameters ``[M, P]``, evaluated lazily on the grid ``coords`` ``[N, 2]``.

    With ``jitter_shape`` (the grid's shape) every fetch moves each point uniformly within its cell,
    so a coordinate network sees the exact function everywhere, not only at the centres.
    """

    def __init__(self, family: Family, params: Tensor, coords: Tensor,
                 jitter_shape: tuple[int, int] | None = None) -> None:
        self.family, self.params, self.coords = family, params, coords.float()
        self.jitter_shape = jitter_shape

    def __len__(self) -> int:
        return self.params.shape[0]

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.__getitems__([i])[0]

    def __getitems__(self, indices: list[int]) -> list[tuple[Tensor, Tensor]]:
        """Batched fetch used by the DataLoader: one vectorised evaluation per batch."""
        p = self.params[torch.as_tensor(indices, dtype=torch.long)]
        if self.jitter_shape is None:
            coords = self.coords.unsqueeze(0).expand(len(indices), -1, -1)
        else:
            coords = jitter_in_cells(self.coords, self.jitter_shape, len(indices))
        values = evaluate(self.family, p, coords)
        return list(zip(coords, values))


class ProceduralImageDataModule(FunctionDataModule):
    """Analytic 2D image-like functions on ``[0, 1]^2`` with exact values at every resolution.

    Training items are the functions evaluated on the ``resolution x resolution`` cell-centre grid;
    :meth:`reference` evaluates fresh functions exactly at any coordinates.

    Args:
        family: ``blobs`` (sums of 1-3 Gaussian bumps) or ``shapes`` (1-2 soft-edged ellipses or
            rectangles); see the module docstring.
        resolution: grid cells per axis of the training data.
        num_train: number of training functions.
        num_val: number of validation functions.
        batch_size: functions per batch.
        seed: seed of the function parameters and of shuffling.
        num_workers: DataLoader worker processes.
        coords: training points at the cell centres (``grid``) or moved uniformly within their
            cells at every fetch (``jitter``, exact values there); validation uses the grid.
    """

    name = "procedural"

    def __init__(self, family: Family = "blobs", resolution: int = 32, num_train: int = 10000,
                 num_val: int = 512, batch_size: int = 64, seed: int = 0, num_workers: int = 0,
                 coords: CoordsOption = "grid") -> None:
        super().__init__(batch_size=batch_size, seed=seed, num_workers=num_workers)
        self.coords = check_coords_option(coords)
        if family not in ("blobs", "shapes"):
            raise ValueError(f"unknown procedural family {family!r}; choose 'blobs' or 'shapes'")
        if resolution <= 0 or num_train <= 0 or num_val <= 0:
            raise ValueError(f"resolution, num_train and num_val must be positive; got "
                             f"{resolution}, {num_train}, {num_val}")
        self.save_hyperparameters()
        self.family: Family = family
        self.resolution = int(resolution)
        self.num_train, self.num_val = int(num_train), int(num_val)
        self.dim, self.channels, self.kind = 2, 1, "image"
        self.train_shape = (self.resolution, self.resolution)

    def _make_split(self, count: int, generator: torch.Generator, train: bool) -> ProceduralDataset:
        """Fixed parameters of ``count`` functions; training coordinates may be jittered."""
        jitter = self.train_shape if train and self.coords == "jitter" else None
        return ProceduralDataset(self.family, sample_params(self.family, count, generator),
                                 grid_coords(self.train_shape), jitter)

    def evaluate(self, params: Tensor, coords: Tensor) -> Tensor:
        """Model-space values ``[B, N, 1]`` of functions ``params`` ``[B, P]`` at ``coords`` ``[B, N, 2]``."""
        return self.normalize(evaluate(self.family, params, coords))

    def reference(self, coords: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Fresh functions evaluated exactly at ``coords`` ``[B, N, 2]`` -> ``[B, N, 1]``.

        ``generator`` (CPU) draws the parameters; the evaluation runs on ``coords.device``.
        """
        if coords.ndim != 3 or coords.shape[-1] != 2:
            raise ValueError(f"reference coords must be [B, N, 2]; got {tuple(coords.shape)}")
        return self.evaluate(sample_params(self.family, coords.shape[0], generator), coords)

    def _extra_config(self) -> dict[str, Any]:
        return {"family": self.family, "resolution": self.resolution, "edge_width": EDGE_WIDTH,
                "num_train": self.num_train, "num_val": self.num_val, "value_range": [-1.0, 1.0]}
