"""The contract shared by every funcgen datamodule.

A datamodule serves functions observed at points: each dataset item is a tuple
``(coords [N, d] float32, values [N, c] float32)`` and the default collate gives
``(coords [B, N, d], values [B, N, c])``. Values are already in *model space* (see
:meth:`FunctionDataModule.normalize`); the LightningModule builds the PointSet.
"""

from __future__ import annotations

from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, RandomSampler, default_collate

from ..pointset import grid_coords, pad_points

__all__ = ["FunctionDataModule", "PointDataset", "derive_seed", "EpochShuffleSampler", "pad_collate"]

# independent random streams derived from one user seed
STREAM_TRAIN, STREAM_VAL, STREAM_SHUFFLE = 0, 1, 2


def derive_seed(seed: int, stream: int) -> int:
    """A 63-bit seed for random stream ``stream`` of user seed ``seed`` (streams never overlap)."""
    state = np.random.SeedSequence([int(seed), int(stream)]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def make_generator(seed: int, stream: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with :func:`derive_seed`."""
    return torch.Generator().manual_seed(derive_seed(seed, stream))


class EpochShuffleSampler(RandomSampler):
    """A shuffle that is a pure function of ``(seed, epoch)``, resumable in the middle of an epoch.

    Epoch ``e`` visits ``randperm(n)`` drawn from a generator seeded with ``seed + e`` (Lightning
    calls :meth:`set_epoch` before every epoch), so a resumed run sees the same order as an
    uninterrupted one; :meth:`skip` drops the first items of the next pass (the batches a
    checkpoint had already consumed). Under DDP Lightning swaps it for a ``DistributedSampler``,
    which is seeded per epoch the same way (but restarts an interrupted epoch from its start).
    """

    def __init__(self, data_source: Dataset, seed: int) -> None:
        super().__init__(data_source)
        self.seed, self.epoch, self._skip = int(seed), 0, 0

    def set_epoch(self, epoch: int) -> None:
        if int(epoch) != self.epoch:
            self.epoch, self._skip = int(epoch), 0

    def skip(self, items: int) -> None:
        """Leave out the first ``items`` indices of the next pass over the current epoch."""
        self._skip = max(0, int(items))

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.data_source), generator=gen)[self._skip:].tolist()
        self._skip = 0
        yield from order


def pad_collate(items: list[tuple[Tensor, ...]]) -> list[Tensor]:
    """Batch dataset items ``(coords [N_i, d], values [N_i, c])``: stacked as ``[coords, values]`` when every
    ``N_i`` is equal (torch's default collate), else padded to the longest and masked:
    ``[coords [B, N, d], values [B, N, c], mask [B, N]]`` (:func:`funcgen.pointset.pad_points`).

    When every item holds the same coordinates tensor (a :class:`PointDataset` with shared ``[N, d]`` coords),
    the batch's coords are a read-only broadcast view ``[B, N, d]`` of it (stride 0 along ``B``), not ``B``
    copies: backbones can then use the one ``[N, d]`` set (:func:`funcgen.pointset.shares_points` answers
    for such a view without reading it)."""
    if len({int(it[0].shape[0]) for it in items}) == 1:
        first = items[0][0]
        if len(items) > 1 and all(it[0] is first for it in items):
            rest = default_collate([tuple(it[1:]) for it in items])
            return [first.unsqueeze(0).expand(len(items), *first.shape), *rest]
        return default_collate(items)
    return list(pad_points([it[0] for it in items], [it[1] for it in items]))


class PointDataset(Dataset):
    """Functions stored as values on (shared or per-function) coordinates.

    Args:
        coords: ``[N, d]`` shared by every function, or ``[M, N, d]`` one set per function.
        values: ``[M, N, c]``.
        mask: optional ``[M, N]`` bool, True at the real points of ragged data: item ``i`` then holds only
            its real points (``N_i`` of them; :func:`pad_collate` pads a batch again).
    """

    def __init__(self, coords: Tensor, values: Tensor, mask: Tensor | None = None) -> None:
        if values.ndim != 3:
            raise ValueError(f"values must be [M, N, c]; got {tuple(values.shape)}")
        if coords.ndim == 2:
            ok = coords.shape[0] == values.shape[1]
        elif coords.ndim == 3:
            ok = coords.shape[:2] == values.shape[:2]
        else:
            ok = False
        if not ok:
            raise ValueError(f"coords {tuple(coords.shape)} do not match values {tuple(values.shape)}")
        if mask is not None and (mask.shape != values.shape[:2] or mask.dtype != torch.bool):
            raise ValueError(f"mask must be bool [M, N] = {list(values.shape[:2])}; got {mask.dtype} "
                             f"{list(mask.shape)}")
        self.coords = coords.float().contiguous()
        self.values = values.float().contiguous()
        self.mask = None if mask is None or bool(mask.all()) else mask

    def __len__(self) -> int:
        return self.values.shape[0]

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        c = self.coords if self.coords.ndim == 2 else self.coords[i]
        if self.mask is None:
            return c, self.values[i]
        return c[self.mask[i]], self.values[i][self.mask[i]]


CoordsOption = Literal["grid", "jitter"]


def check_coords_option(coords: str) -> str:
    """Validate a datamodule's ``coords`` option (``grid`` or ``jitter``) and return it."""
    if coords not in ("grid", "jitter"):
        raise ValueError(f"coords must be 'grid' or 'jitter'; got {coords!r}")
    return coords


def jitter_in_cells(centres: Tensor, shape: tuple[int, ...], batch: int | None = None) -> Tensor:
    """Move every cell centre ``[N, d]`` of a grid of ``shape`` uniformly within its own cell.

    Returns ``[N, d]`` (or ``[batch, N, d]``), a fresh draw from torch's global generator.
    """
    cell = torch.tensor([1.0 / n for n in shape], dtype=centres.dtype)
    size = centres.shape if batch is None else (batch, *centres.shape)
    return centres + (torch.rand(size, dtype=centres.dtype) - 0.5) * cell


class JitteredImageDataset(Dataset):
    """Images read as continuous functions: every item is observed at freshly jittered points.

    Point ``k`` of an item is the centre of pixel ``k`` moved uniformly within its cell, and its value
    is the bilinear interpolation of the image there (border values outside the centres). Training
    on such points teaches a coordinate network the function between the pixel centres, so it
    carries over to finer grids instead of only ever seeing the training grid.

    Args:
        images: ``[M, c, H, W]`` values in model space.
    """

    def __init__(self, images: Tensor) -> None:
        if images.ndim != 4:
            raise ValueError(f"images must be [M, c, H, W]; got {tuple(images.shape)}")
        self.images = images.float().contiguous()
        h, w = images.shape[-2:]
        self.shape = (h, w)
        self.centres = grid_coords(self.shape)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        coords = jitter_in_cells(self.centres, self.shape)
        # grid_sample wants (x = column, y = row) in [-1, 1], pixel edges at -1 and 1
        grid = (coords.flip(-1) * 2.0 - 1.0).view(1, 1, -1, 2)
        img = self.images[i].unsqueeze(0)
        values = torch.nn.functional.grid_sample(img, grid, mode="bilinear", padding_mode="border",
                                                 align_corners=False)
        return coords, values.view(img.shape[1], -1).T.contiguous()


def _number_or_list(x: float | Tensor) -> float | list[float]:
    """A normalisation constant for JSON: a float, or a list (one per channel)."""
    return [float(v) for v in x.reshape(-1)] if isinstance(x, Tensor) else float(x)


class FunctionDataModule(L.LightningDataModule):
    """Base class of funcgen datamodules.

    Subclasses set the class or instance attributes below and fill ``self.train_set`` and
    ``self.val_set``: generated data implement :meth:`_make_split` (the default :meth:`setup` draws
    ``num_train`` / ``num_val`` functions from disjoint seed streams), data read from files override
    :meth:`setup`. They may override :meth:`reference` and :meth:`_extra_config`.
    Model-space values are ``(data - shift) / scale``.

    Args:
        batch_size: functions per batch.
        seed: seed of every random choice of the module (data generation and shuffling).
        num_workers: DataLoader worker processes.

    Attributes:
        dim: dimension ``d`` of the domain.
        channels: number ``c`` of value channels.
        train_shape: grid shape at the training resolution, e.g. ``(64,)`` or ``(28, 28)``.
        kind: ``"signal"`` (plotted as curves), ``"image"`` (plotted as images) or ``"mesh"``.
        domain: where query coordinates live: ``"unit_cube"`` (``[0, 1]^d``, checked by the sampler) or
            ``"eigen"`` (Laplace-Beltrami eigen-coordinates of a mesh: unbounded, not checked).
        shift, scale: normalisation constants (model = (data - shift) / scale): floats, or ``[c]`` tensors
            (one per channel).
    """

    name: str = "function"
    dim: int
    channels: int
    train_shape: tuple[int, ...]
    kind: Literal["signal", "image", "mesh"]
    domain: Literal["unit_cube", "eigen"] = "unit_cube"
    shift: float | Tensor = 0.0
    scale: float | Tensor = 1.0

    def __init__(self, batch_size: int = 64, seed: int = 0, num_workers: int = 0) -> None:
        super().__init__()
        if type(self) is FunctionDataModule:
            raise TypeError("FunctionDataModule is the abstract base of funcgen datamodules: pick a concrete one, "
                            "e.g. --data funcgen.data.FileDataModule --data.init_args.path FILE (your own .npz, "
                            "image folder or CSV) or funcgen.data.GRFDataModule")
        if int(batch_size) <= 0:
            raise ValueError(f"batch_size must be a positive integer; got {batch_size}")
        if int(seed) < 0:
            raise ValueError(f"seed must be a non-negative integer; got {seed}")
        if int(num_workers) < 0:
            raise ValueError(f"num_workers must be >= 0; got {num_workers}")
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.num_workers = int(num_workers)
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    # --- data ---------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Draw the fixed training and validation sets (once each, from disjoint seed streams)."""
        if self.train_set is None:
            self.train_set = self._make_split(self.num_train, make_generator(self.seed, STREAM_TRAIN), train=True)
        if self.val_set is None:
            self.val_set = self._make_split(self.num_val, make_generator(self.seed, STREAM_VAL), train=False)

    def _make_split(self, count: int, generator: torch.Generator, train: bool) -> Dataset:
        """``count`` fresh functions drawn with ``generator`` (``train``: the training split)."""
        raise NotImplementedError(f"{type(self).__name__} must implement _make_split or override setup")

    # --- values -------------------------------------------------------------------------
    def normalize(self, x: Tensor) -> Tensor:
        """Data values -> model space: ``(x - shift) / scale``."""
        return (x - self.shift) / self.scale

    def denormalize(self, values: Tensor) -> Tensor:
        """Model space -> data values: ``values * scale + shift``."""
        return values * self.scale + self.shift

    def reference(self, coords: Tensor, generator: torch.Generator | None = None) -> Tensor | None:
        """Exact fresh samples ``[B, N, c]`` (model space) at ``coords`` ``[B, N, d]``, or None.

        None means the family has no law defined at arbitrary resolution (e.g. MNIST).
        """
        return None

    # --- metadata -----------------------------------------------------------------------
    def _extra_config(self) -> dict[str, Any]:
        return {}

    def data_config(self) -> dict[str, Any]:
        """JSON-compatible metadata describing the data (for export next to a model)."""
        cfg: dict[str, Any] = {
            "name": self.name,
            "class_path": f"{type(self).__module__}.{type(self).__qualname__}",
            "dim": int(self.dim),
            "channels": int(self.channels),
            "train_shape": [int(s) for s in self.train_shape],
            "kind": self.kind,
            "domain": self.domain,
            "normalization": {"shift": _number_or_list(self.shift), "scale": _number_or_list(self.scale),
                              "formula": "model = (data - shift) / scale"},
            "seed": self.seed,
        }
        cfg.update(self._extra_config())
        return cfg

    # --- loaders ------------------------------------------------------------------------
    def _ensure_setup(self) -> None:
        if self.train_set is None or self.val_set is None:
            self.setup("fit")

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        gen = torch.Generator().manual_seed(derive_seed(self.seed, STREAM_SHUFFLE)) if shuffle else None
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, generator=gen,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          collate_fn=pad_collate)

    def train_dataloader(self) -> DataLoader:
        """Training functions in an order fixed by ``(seed, epoch)`` (:class:`EpochShuffleSampler`).

        When a trainer resumes from a checkpoint taken inside an epoch, the batches that epoch had
        already consumed are skipped, so the run continues exactly where it stopped.
        """
        self._ensure_setup()
        sampler = EpochShuffleSampler(self.train_set, derive_seed(self.seed, STREAM_SHUFFLE))
        trainer = getattr(self, "trainer", None)
        if trainer is not None:  # restored progress: epoch e, `ready` batches of it consumed
            sampler.set_epoch(trainer.fit_loop.epoch_progress.current.processed)
            ready = trainer.fit_loop.epoch_loop.batch_progress.current.ready
            if 0 < ready * self.batch_size < len(self.train_set):
                sampler.skip(ready * self.batch_size)
        # the loader's own generator only seeds worker processes: kept off the global RNG
        return DataLoader(self.train_set, batch_size=self.batch_size, sampler=sampler,
                          generator=make_generator(self.seed, STREAM_SHUFFLE), num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0, collate_fn=pad_collate)

    def val_dataloader(self) -> DataLoader:
        """Held-out functions in a fixed order."""
        self._ensure_setup()
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """Same as :meth:`val_dataloader` (the held-out split)."""
        return self.val_dataloader()
