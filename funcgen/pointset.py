"""Coordinate-value point sets: the one data type every funcgen model consumes and produces.

A function ``f: Omega -> R^c`` observed at ``N`` points is stored as ``coords`` ``[B, N, d]``
and ``values`` ``[B, N, c]``. Sampling at a new resolution means building a new ``coords``
tensor (:func:`grid_coords`), nothing else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

__all__ = [
    "shares_points", "unbroadcast", "grid_shape", "shared_grid_shape", "cell_average_matrix",
    "PointSet",
    "grid_coords",
    "grid_to_pointset",
    "pointset_to_grid",
    "random_subset",
    "collate_pointsets",
    "pad_points",
    "query_coords",
]


@dataclass(frozen=True)
class PointSet:
    """A batch of functions observed at points.

    Attributes:
        coords: ``[B, N, d]`` float coordinates of the points.
        values: ``[B, N, c]`` float values of the functions at those points.
        mask: optional ``[B, N]`` bool, True where a point is present (for ragged batches).
    """

    coords: Tensor
    values: Tensor
    mask: Tensor | None = None

    def __post_init__(self) -> None:
        c, v, m = self.coords, self.values, self.mask
        if not isinstance(c, Tensor) or not isinstance(v, Tensor):
            raise TypeError(
                f"PointSet needs torch tensors, got coords={type(c).__name__}, values={type(v).__name__}"
            )
        if c.ndim != 3:
            raise ValueError(f"PointSet.coords must have shape [B, N, d]; got {tuple(c.shape)}")
        if v.ndim != 3:
            raise ValueError(
                f"PointSet.values must have shape [B, N, c]; got {tuple(v.shape)} "
                "(add a channel axis with values.unsqueeze(-1) for scalar functions)"
            )
        if c.shape[:2] != v.shape[:2]:
            raise ValueError(
                "PointSet.coords and values disagree on batch size or number of points: "
                f"coords {tuple(c.shape)} vs values {tuple(v.shape)}"
            )
        if c.shape[1] == 0:
            raise ValueError("PointSet must hold at least one point (N = 0)")
        if c.shape[2] == 0 or v.shape[2] == 0:
            raise ValueError(f"PointSet needs d >= 1 and c >= 1; got coords {tuple(c.shape)}, values {tuple(v.shape)}")
        if not c.is_floating_point() or not v.is_floating_point():
            raise TypeError(f"PointSet needs floating tensors; got coords {c.dtype}, values {v.dtype}")
        if c.device != v.device:
            raise ValueError(f"PointSet.coords on {c.device} but values on {v.device}")
        if m is not None:
            if m.shape != c.shape[:2] or m.dtype != torch.bool:
                raise ValueError(f"PointSet.mask must be bool of shape {tuple(c.shape[:2])}; "
                                 f"got {m.dtype} {tuple(m.shape)}")
        _check_finite("coords", c)
        _check_finite("values", v)

    @property
    def batch_size(self) -> int:
        return self.coords.shape[0]

    @property
    def num_points(self) -> int:
        return self.coords.shape[1]

    @property
    def dim(self) -> int:
        """Dimension ``d`` of the domain."""
        return self.coords.shape[2]

    @property
    def channels(self) -> int:
        """Number ``c`` of output channels."""
        return self.values.shape[2]

    def to(self, device: torch.device | str) -> "PointSet":
        m = None if self.mask is None else self.mask.to(device)
        return PointSet(self.coords.to(device), self.values.to(device), m)

    def with_values(self, values: Tensor) -> "PointSet":
        """Same coordinates (and mask), new values ``[B, N, c']``."""
        return PointSet(self.coords, values, self.mask)

    def gather(self, index: Tensor) -> "PointSet":
        """Points ``index`` ``[B, M]`` (long) of every function."""
        c = torch.gather(self.coords, 1, index.unsqueeze(-1).expand(-1, -1, self.dim))
        v = torch.gather(self.values, 1, index.unsqueeze(-1).expand(-1, -1, self.channels))
        m = None if self.mask is None else torch.gather(self.mask, 1, index)
        return PointSet(c, v, m)


def unbroadcast(t: Tensor) -> Tensor:
    """``t`` with every broadcast axis (stride 0, e.g. from ``expand``) cut to length 1: the same entries, each
    stored once, so a check over them reads each once (a batch of ``B`` functions on one shared point set is a
    stride-0 view; checking all ``B`` copies of the points costs ``B`` times as much for the same answer)."""
    index = tuple(slice(0, 1) if st == 0 and n > 1 else slice(None) for st, n in zip(t.stride(), t.shape))
    return t[index]


def _check_finite(name: str, t: Tensor) -> None:
    t = unbroadcast(t)
    if not torch.isfinite(t).all():
        bad = (~torch.isfinite(t)).nonzero()
        first = tuple(bad[0].tolist())
        raise ValueError(
            f"PointSet.{name} holds {bad.shape[0]} non-finite entries (NaN or inf), first at index {first}; "
            "clean or mask the data before building the PointSet"
        )


def grid_coords(shape: Sequence[int], *, device: torch.device | str | None = None,
                dtype: torch.dtype = torch.float32) -> Tensor:
    """Cell-centre coordinates of a regular grid on the unit cube ``[0, 1]^d``.

    The centre of cell ``i`` along an axis of ``n`` cells is ``(i + 0.5) / n``, so the grids of
    every resolution cover the same physical domain and a 2x grid refines a 1x grid.

    Args:
        shape: cells per axis ``(n_1, ..., n_d)``, row-major like ``torch`` images (``(H, W)``).

    Returns:
        ``[prod(shape), d]`` coordinates; axis ``k`` of the coordinate is axis ``k`` of ``shape``.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) == 0 or any(s <= 0 for s in shape):
        raise ValueError(f"grid shape must be a non-empty tuple of positive sizes; got {shape}")
    axes = [(torch.arange(n, device=device, dtype=dtype) + 0.5) / n for n in shape]
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([m.reshape(-1) for m in mesh], dim=-1)


def query_coords(resolution: int | Sequence[int], dim: int, batch_size: int = 1, *,
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """Query coordinates ``[B, N, d]`` for a grid of ``resolution`` cells per axis on ``[0,1]^dim``."""
    if isinstance(resolution, int):
        if resolution <= 0:
            raise ValueError(f"resolution must be a positive integer; got {resolution}")
        shape = (resolution,) * dim
    else:
        shape = tuple(resolution)
        if len(shape) != dim:
            raise ValueError(f"resolution {shape} has {len(shape)} axes but the domain has dim={dim}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive; got {batch_size}")
    return grid_coords(shape, device=device, dtype=dtype).unsqueeze(0).expand(batch_size, -1, -1).contiguous()



def shares_points(coords: Tensor) -> bool:
    """Whether all ``B`` functions of ``coords`` ``[B, N, d]`` sit at the same ``N`` points (a broadcast view,
    stride 0 along ``B``, answers without reading the points)."""
    if coords.shape[0] <= 1 or coords.stride(0) == 0:
        return True
    return bool((coords == coords[:1]).all())


def grid_shape(coords: Tensor) -> tuple[int, ...] | None:
    """The shape of the cell-centre grid (:func:`grid_coords`) that ``coords`` ``[N, d]`` is, or None."""
    n, d = coords.shape
    shape = tuple(int(torch.unique(coords[:, k]).numel()) for k in range(d))
    if math.prod(shape) != n:
        return None
    ref = grid_coords(shape, device=coords.device, dtype=coords.dtype)
    return shape if torch.allclose(ref, coords, atol=1e-6) else None


def cell_average_matrix(points: Tensor, shape: Sequence[int]) -> Tensor:
    """The averaging operator ``A`` ``[M, N]`` (float64) of the cells of the grid ``shape`` on ``[0, 1]^d``
    (``M = prod(shape)``, rows in :func:`grid_coords` order) over ``points`` ``[N, d]``: ``(A x)_m`` is the mean
    of ``x`` over the points inside cell ``m`` (a point on a cell edge counts in the cell above it, the
    last edge in the last cell): the cell average of a function, by the points.

    Raises:
        ValueError: a cell holds none of the points (its average is undefined), or a point lies outside
            ``[0, 1]^d``.
    """
    n, d = points.shape
    if len(shape) != d:
        raise ValueError(f"a {len(shape)}-axis grid of cells for {d}-d points")
    if bool((points < 0).any() or (points > 1).any()):
        raise ValueError("cell averages need points inside [0, 1]^d")
    size = torch.tensor(list(shape), device=points.device)
    cell = torch.minimum((points.double() * size).floor().long(), size - 1)  # [N, d]
    flat = torch.zeros(n, dtype=torch.long, device=points.device)
    for k in range(d):  # row-major, as grid_coords
        flat = flat * int(shape[k]) + cell[:, k]
    m = math.prod(shape)
    count = torch.bincount(flat, minlength=m).double()
    if bool((count == 0).any()):
        empty = int((count == 0).nonzero()[0])
        raise ValueError(f"cell {empty} of the {tuple(shape)} grid holds none of the {n} points: its average is "
                         "undefined; sample at a finer resolution than the observed cells")
    a = torch.zeros(m, n, dtype=torch.float64, device=points.device)
    a[flat, torch.arange(n, device=points.device)] = 1.0
    return a / count[:, None]


def shared_grid_shape(coords: Tensor) -> tuple[int, ...] | None:
    """The grid shape when every function of ``coords`` ``[B, N, d]`` sits on one cell-centre grid, else None."""
    return grid_shape(coords[0]) if shares_points(coords) else None

def grid_to_pointset(x: Tensor) -> PointSet:
    """Turn a batch of gridded signals ``[B, c, *spatial]`` (e.g. images ``[B, c, H, W]``) into a PointSet."""
    if x.ndim < 3:
        raise ValueError("grid_to_pointset expects [B, c, *spatial] with at least one spatial axis; "
                         f"got {tuple(x.shape)}")
    b, c, spatial = x.shape[0], x.shape[1], x.shape[2:]
    coords = grid_coords(spatial, device=x.device, dtype=x.dtype if x.is_floating_point() else torch.float32)
    values = x.reshape(b, c, -1).transpose(1, 2)
    return PointSet(coords.unsqueeze(0).expand(b, -1, -1), values.float() if not values.is_floating_point() else values)


def pointset_to_grid(values: Tensor | PointSet, shape: Sequence[int]) -> Tensor:
    """Inverse of :func:`grid_to_pointset`: values ``[B, N, c]`` on a row-major grid -> ``[B, c, *shape]``."""
    v = values.values if isinstance(values, PointSet) else values
    shape = tuple(int(s) for s in shape)
    n = 1
    for s in shape:
        n *= s
    if v.ndim != 3 or v.shape[1] != n:
        raise ValueError(f"values of shape {tuple(v.shape)} do not fill a grid {shape} (need [B, {n}, c])")
    return v.transpose(1, 2).reshape(v.shape[0], v.shape[2], *shape)


def random_subset(ps: PointSet, rate: float, generator: torch.Generator | None = None) -> PointSet:
    """A random subset of ``round(rate * N)`` points per function, drawn without replacement.

    Each function in the batch gets its own subset. ``rate`` must lie in ``(0, 1]``. With a ``mask``, the subset
    is drawn from the real points first (uniformly); padded points only fill it up when a function has fewer
    real points than the subset's size, so no function loses all of its real points.
    """
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"subset rate must lie in (0, 1]; got {rate}")
    n = ps.num_points
    m = max(1, int(round(rate * n)))
    if m == n:
        return ps
    scores = torch.rand(ps.batch_size, n, generator=generator, device="cpu").to(ps.coords.device)
    if ps.mask is not None:  # padding goes last: a uniform subset of the real points, padding only to fill up
        scores = scores + 2.0 * (~ps.mask)
    index = scores.argsort(dim=1)[:, :m]
    return ps.gather(index)


def pad_points(coords: Sequence[Tensor], values: Sequence[Tensor],
               masks: Sequence[Tensor | None] | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Stack functions with different numbers of points into one padded batch.

    Args:
        coords: ``B`` tensors ``[N_i, d]``; values: ``B`` tensors ``[N_i, c]``; masks: optional ``B`` bool
            ``[N_i]`` (None entries: every point real).

    Returns:
        ``(coords [B, N, d], values [B, N, c], mask [B, N])`` with ``N = max N_i``. Padded points repeat the
        function's real points in turn (so they stay on its domain and no noise law sees a point from
        nowhere) and carry value 0; ``mask`` is False there. Backbones and losses ignore them.
    """
    if len(coords) == 0 or len(coords) != len(values):
        raise ValueError(f"pad_points needs as many coords as values (at least one); got {len(coords)}, {len(values)}")
    n = max(int(c.shape[0]) for c in coords)
    out_c, out_v, out_m = [], [], []
    for i, (c, v) in enumerate(zip(coords, values)):
        m = None if masks is None else masks[i]
        if c.ndim != 2 or v.ndim != 2 or c.shape[0] != v.shape[0]:
            raise ValueError(f"function {i}: need coords [N, d] and values [N, c] with the same N; got "
                             f"{tuple(c.shape)} and {tuple(v.shape)}")
        real = torch.ones(c.shape[0], dtype=torch.bool, device=c.device) if m is None else m.to(torch.bool)
        if not bool(real.any()):
            raise ValueError(f"function {i} has no real point (its mask is all False)")
        pad = n - c.shape[0]
        if pad:
            idx = torch.nonzero(real).flatten()
            fill = idx[torch.arange(pad, device=c.device) % idx.numel()]
            c = torch.cat([c, c[fill]])
            v = torch.cat([v, v.new_zeros(pad, v.shape[1])])
            real = torch.cat([real, real.new_zeros(pad)])
        out_c.append(c)
        out_v.append(v)
        out_m.append(real)
    return torch.stack(out_c), torch.stack(out_v), torch.stack(out_m)


def collate_pointsets(items: Sequence[PointSet]) -> PointSet:
    """Stack PointSets along the batch axis; sets with different ``N`` are padded (:func:`pad_points`) and
    masked."""
    if len(items) == 0:
        raise ValueError("cannot collate an empty list of PointSets")
    ns = {p.num_points for p in items}
    masks = [p.mask for p in items]
    if len(ns) != 1:
        cs, vs, ms = [], [], []
        for p in items:
            for b in range(p.batch_size):
                cs.append(p.coords[b])
                vs.append(p.values[b])
                ms.append(None if p.mask is None else p.mask[b])
        return PointSet(*pad_points(cs, vs, ms))
    mask = None if all(m is None for m in masks) else torch.cat(
        [m if m is not None else torch.ones(p.coords.shape[:2], dtype=torch.bool) for p, m in zip(items, masks)])
    return PointSet(torch.cat([p.coords for p in items]), torch.cat([p.values for p in items]), mask)
