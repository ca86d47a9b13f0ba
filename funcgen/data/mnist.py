"""MNIST (the official 10,000-image test split) as functions on the 28x28 cell-centre grid.

Benchmark protocol: images 0..7999 train, 8000..9999 held out (fixed, never shuffled across the
split). The files are read from a user-given folder, never downloaded or copied.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from funcgen.pointset import grid_coords, pointset_to_grid

from .base import (
    CoordsOption,
    FunctionDataModule,
    JitteredImageDataset,
    PointDataset,
    check_coords_option,
)

__all__ = ["MNISTDataModule", "load_mnist_idx", "resolve_data_root", "IMAGES_FILE", "LABELS_FILE"]

IMAGES_FILE = "t10k-images-idx3-ubyte.gz"
LABELS_FILE = "t10k-labels-idx1-ubyte.gz"
_IMAGES_MAGIC, _LABELS_MAGIC = 2051, 2049
NUM_TRAIN_PROTOCOL = 8000


def resolve_data_root(root: str | os.PathLike | None) -> Path:
    """The data folder: ``root`` if given, else the environment variable ``FUNCGEN_DATA``.

    Raises:
        FileNotFoundError: neither is set.
    """
    if root is None or str(root) == "":
        env = os.environ.get("FUNCGEN_DATA")
        if not env:
            raise FileNotFoundError(
                "no data folder given: pass root=... (data.init_args.root in YAML) or set the environment "
                "variable FUNCGEN_DATA to the folder that holds mnist/ (with t10k-images-idx3-ubyte.gz and "
                "t10k-labels-idx1-ubyte.gz)")
        root = env
    return Path(root).expanduser()


def _find(root: Path, name: str) -> Path:
    for folder in (root / "mnist", root):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(
        f"MNIST file {name} not found: looked for {root / 'mnist' / name} and {root / name} "
        f"(expected the gzip-compressed IDX files {IMAGES_FILE} and {LABELS_FILE}, as published)")


def _read_gzip(path: Path, expected: str) -> bytes:
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
        raise ValueError(f"{path} is not a readable gzip file ({type(e).__name__}: {e}); "
                         f"expected {expected}") from e


def _read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    expected = (f"a gzip-compressed IDX file with magic number {magic}, a {4 + 4 * ndim}-byte big-endian "
                f"header and uint8 data")
    raw = _read_gzip(path, expected)
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path} holds {len(raw)} bytes, shorter than the {header}-byte IDX header; "
                         f"expected {expected}")
    fields = struct.unpack(f">{1 + ndim}I", raw[:header])
    if fields[0] != magic:
        raise ValueError(f"{path} has magic number {fields[0]}, not {magic}; expected {expected}")
    dims = fields[1:]
    size = int(np.prod(dims))
    if len(raw) - header != size:
        raise ValueError(f"{path}: header announces dimensions {tuple(dims)} ({size} bytes of data) but "
                         f"the file holds {len(raw) - header} bytes after the header (truncated or corrupt)")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def load_mnist_idx(root: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read the MNIST test split from ``root/mnist/`` or ``root/``.

    Args:
        root: folder holding ``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz``
            (directly or in a ``mnist/`` subfolder).

    Returns:
        images ``uint8 [N, 28, 28]`` and labels ``uint8 [N]``.

    Raises:
        FileNotFoundError: a file is missing (the message names the paths searched).
        ValueError: a file is not gzip, has the wrong magic number, header or size.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"MNIST data folder {root} does not exist (expected a folder holding mnist/ "
                                f"with {IMAGES_FILE} and {LABELS_FILE})")
    images_path, labels_path = _find(root, IMAGES_FILE), _find(root, LABELS_FILE)
    images = _read_idx(images_path, _IMAGES_MAGIC, 3)
    labels = _read_idx(labels_path, _LABELS_MAGIC, 1)
    if images.shape[1:] != (28, 28):
        raise ValueError(f"{images_path}: images are {images.shape[1]}x{images.shape[2]}, expected 28x28")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images_path} holds {images.shape[0]} images but {labels_path} "
                         f"holds {labels.shape[0]} labels")
    if labels.size and labels.max() > 9:
        raise ValueError(f"{labels_path}: labels must lie in 0..9; found {int(labels.max())}")
    return images, labels


class MNISTDataModule(FunctionDataModule):
    """MNIST digits as functions on ``[0, 1]^2`` observed on the 28x28 cell-centre grid (784 points).

    Pixel ``(row, col)`` sits at ``((row + 0.5) / 28, (col + 0.5) / 28)``. Pixel intensities in
    ``[0, 1]`` are served in model space ``[-1, 1]`` (``shift = scale = 0.5``).

    Args:
        root: folder holding ``mnist/`` (or the two ``.gz`` files); None reads the environment
            variable ``FUNCGEN_DATA``. Resolved at :meth:`setup`.
        batch_size: functions per batch.
        num_train: use the first ``num_train`` of the 8000 protocol training images (1..8000).
        seed: seed of the training shuffle.
        num_workers: DataLoader worker processes.
        coords: ``grid``: training functions observed at the pixel centres; ``jitter``: at a fresh
            random point inside every pixel, valued by bilinear interpolation (a continuous reading
            of the image, so coordinate networks learn it between the centres). Validation always
            uses the grid.
    """

    name = "mnist"
    shift = 0.5
    scale = 0.5

    def __init__(self, root: str | None = None, batch_size: int = 64, num_train: int = 8000,
                 seed: int = 0, num_workers: int = 0, coords: CoordsOption = "grid") -> None:
        super().__init__(batch_size=batch_size, seed=seed, num_workers=num_workers)
        self.coords = check_coords_option(coords)
        if not 1 <= num_train <= NUM_TRAIN_PROTOCOL:
            raise ValueError(f"num_train must lie in 1..{NUM_TRAIN_PROTOCOL}; got {num_train}")
        self.save_hyperparameters()
        self.root = root
        self.num_train = int(num_train)
        self.dim, self.channels, self.kind = 2, 1, "image"
        self.train_shape = (28, 28)
        self.train_labels: torch.Tensor | None = None
        self.val_labels: torch.Tensor | None = None

    def setup(self, stage: str | None = None) -> None:
        """Load the images once and split them by the benchmark protocol."""
        if self.train_set is not None and self.val_set is not None:
            return
        images, labels = load_mnist_idx(resolve_data_root(self.root))
        if images.shape[0] != 10000:
            raise ValueError(f"the MNIST protocol needs the 10000-image test split; found {images.shape[0]}")
        x = torch.from_numpy(images).float().div_(255.0).reshape(-1, 28 * 28, 1)
        x = self.normalize(x)
        grid = grid_coords(self.train_shape)
        y = torch.from_numpy(labels).long()
        if self.coords == "jitter":
            self.train_set = JitteredImageDataset(pointset_to_grid(x[: self.num_train], self.train_shape))
        else:
            self.train_set = PointDataset(grid, x[: self.num_train])
        self.val_set = PointDataset(grid, x[NUM_TRAIN_PROTOCOL:])
        self.train_labels, self.val_labels = y[: self.num_train], y[NUM_TRAIN_PROTOCOL:]

    def _extra_config(self) -> dict[str, Any]:
        return {"data_range": [0.0, 1.0], "num_train": self.num_train,
                "split": {"train": [0, self.num_train], "test": [NUM_TRAIN_PROTOCOL, 10000]}}
