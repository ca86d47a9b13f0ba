"""Bring your own data: functions (or points on the sphere) read from files, no datamodule to write.

``--data funcgen.data.FileDataModule --data.init_args.path PATH`` reads, by the kind of ``PATH``:

* ``.npz``: arrays ``coords`` ``[N, d]`` (shared by every function) or ``[B, N, d]``, ``values`` ``[B, N, c]``
  (or ``[B, N]``: one channel) and optionally ``mask`` ``[B, N]`` (True/1 at the real points of ragged
  functions: function ``b`` has ``mask[b].sum()`` points, the rest is padding whatever it holds).
  Coordinates are in the data's own units: the module maps the box ``[low, high]`` (``box``, or the
  coordinates' range) to the unit cube the models work in and records it, so the exported generator takes
  and returns coordinates in those units.
* a folder of images (``.png``, ``.jpg``, ``.jpeg``): each image is one function on the pixel-centre grid of
  ``[0, 1]^2`` (:func:`funcgen.pointset.grid_coords`), grey (1 channel) or RGB (3), optionally resized.
* ``.csv``: points on the sphere S^2 (latitude, longitude per row) for Riemannian diffusion, read by
  :func:`funcgen.data.manifold.load_earth_csv` (``header``, ``columns``, ``degrees``), as
  :class:`funcgen.data.EarthDataModule` serves them.

Functions are split into training and validation sets by ``seed``; values are normalised with the mean and
standard deviation of the training functions' real points (``model = (data - shift) / scale``), which the
export stores. ``.h5`` files are not read (h5py is not a dependency): save the arrays with ``numpy.savez``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
from torch import Tensor

from ..geometry import Sphere
from ..pointset import grid_coords, grid_shape
from .base import FunctionDataModule, PointDataset
from .manifold import _points_dataset, load_earth_csv

__all__ = ["FileDataModule", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
NPZ_FORMAT = ("an .npz with 'coords' [N, d] or [B, N, d], 'values' [B, N, c] and optionally 'mask' [B, N] "
              "(True at the real points)")


class FileDataModule(FunctionDataModule):
    """Functions from an ``.npz`` file or an image folder, or sphere points from a CSV (module docstring).

    Args:
        path: the ``.npz`` file, the image folder or the ``.csv`` file.
        val_fraction: share of the functions (points, for a CSV) held out for validation, in ``(0, 1)``.
        normalize: ``global`` (one mean and std over all channels), ``channel`` (per channel) or ``none``.
        box: the coordinate box ``[[low_1, ..., low_d], [high_1, ..., high_d]]`` in data units that maps to
            ``[0, 1]^d`` (None: the range of the coordinates; images always live on ``[0, 1]^2``).
        grid: cells per axis of the grid that validation samples and ``gen.sample()`` without coordinates use
            for scattered data (None: the data's own grid when they lie on one, else about ``N^(1/d)`` per axis).
        resize: ``[H, W]`` every image is resized to (bilinear); None: all images must have one size.
        color: ``grey``, ``rgb`` or ``auto`` (RGB when any image has colour).
        header, columns, degrees: CSV options of :func:`funcgen.data.manifold.load_earth_csv`.
        batch_size: functions per batch.
        seed: seed of the split and the shuffling.
        num_workers: DataLoader worker processes.
    """

    name = "file"

    def __init__(self, path: str, val_fraction: float = 0.1, normalize: Literal["global", "channel", "none"] = "global",
                 box: list[list[float]] | None = None, grid: list[int] | None = None, resize: list[int] | None = None,
                 color: Literal["grey", "rgb", "auto"] = "auto", header: bool | None = None,
                 columns: tuple[int | str, int | str] = (0, 1), degrees: bool = True, batch_size: int = 64,
                 seed: int = 0, num_workers: int = 0) -> None:
        super().__init__(batch_size=batch_size, seed=seed, num_workers=num_workers)
        if not 0.0 < float(val_fraction) < 1.0:
            raise ValueError(f"val_fraction must lie in (0, 1); got {val_fraction}")
        if normalize not in ("global", "channel", "none"):
            raise ValueError(f"normalize must be 'global', 'channel' or 'none'; got {normalize!r}")
        if color not in ("grey", "rgb", "auto"):
            raise ValueError(f"color must be 'grey', 'rgb' or 'auto'; got {color!r}")
        if resize is not None and (len(resize) != 2 or min(int(r) for r in resize) < 1):
            raise ValueError(f"resize must be [H, W] with positive sizes; got {resize}")
        self.path = Path(str(path)).expanduser()
        self.val_fraction, self.normalize_mode, self.color = float(val_fraction), normalize, color
        self.box = None if box is None else _check_box(box, self.path)
        self.grid = None if grid is None else tuple(int(g) for g in grid)
        self.resize = None if resize is None else (int(resize[0]), int(resize[1]))
        self.header, self.columns, self.degrees = header, tuple(columns), bool(degrees)
        self.manifold: Sphere | None = None
        self.shift: float | Tensor = 0.0
        self.scale: float | Tensor = 1.0
        self._loaded = False

    # ----------------------------------------------------------------- reading
    def setup(self, stage: str | None = None) -> None:
        if self._loaded:
            return
        if not self.path.exists():
            raise FileNotFoundError(f"no data at {self.path}: expected {NPZ_FORMAT}, a folder of images "
                                    f"({', '.join(IMAGE_SUFFIXES)}) or a CSV of latitude/longitude points")
        if self.path.is_dir():
            coords, values, mask = self._read_images()
        elif self.path.suffix.lower() == ".npz":
            coords, values, mask = self._read_npz()
        elif self.path.suffix.lower() == ".csv":
            self._read_sphere_csv()
            self._loaded = True
            return
        elif self.path.suffix.lower() in (".h5", ".hdf5"):
            raise ValueError(f"{self.path}: HDF5 files are not read (h5py is not a funcgen dependency); save the "
                             "arrays with numpy.savez(path, coords=..., values=..., mask=...) and pass the .npz")
        else:
            raise ValueError(f"{self.path}: unknown data file type {self.path.suffix!r}; expected {NPZ_FORMAT}, "
                             "a folder of images or a .csv of sphere points")
        train, val = self._split(values.shape[0])
        self._fit_normalization(values[train], None if mask is None else mask[train])
        values = self.normalize(values)
        if mask is not None:
            values = values.masked_fill(~mask[..., None], 0.0)
        pick = (lambda idx: coords) if coords.ndim == 2 else (lambda idx: coords[idx])
        self.train_set = PointDataset(pick(train), values[train], None if mask is None else mask[train])
        self.val_set = PointDataset(pick(val), values[val], None if mask is None else mask[val])
        self._loaded = True

    def _split(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Indices of the training and validation functions: a permutation by ``seed``, the first
        ``round(val_fraction * count)`` (at least 1) held out."""
        if count < 2:
            raise ValueError(f"{self.path}: needs at least 2 functions (one to train on, one to validate); got "
                             f"{count}")
        perm = np.random.default_rng(self.seed).permutation(count)
        n_val = min(count - 1, max(1, round(self.val_fraction * count)))
        return np.sort(perm[n_val:]), np.sort(perm[:n_val])

    def _read_npz(self) -> tuple[Tensor, Tensor, Tensor | None]:
        try:
            with np.load(self.path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
        except (OSError, ValueError) as e:
            raise ValueError(f"{self.path}: cannot read as .npz ({e}); expected {NPZ_FORMAT}") from e
        for key in ("coords", "values"):
            if key not in arrays:
                raise ValueError(f"{self.path}: no array {key!r} (found {sorted(arrays)}); expected {NPZ_FORMAT}")
        values = _float_array(arrays["values"], self.path, "values")
        if values.ndim == 2:
            values = values[..., None]
        if values.ndim != 3 or 0 in values.shape:
            raise ValueError(f"{self.path}: 'values' must have shape [B, N, c] (or [B, N]) with B, N, c >= 1; got "
                             f"{list(arrays['values'].shape)}")
        b, n, _ = values.shape
        coords = _float_array(arrays["coords"], self.path, "coords")
        if not (coords.ndim == 2 and coords.shape[0] == n or coords.ndim == 3 and coords.shape[:2] == (b, n)):
            raise ValueError(f"{self.path}: 'coords' must have shape [N, d] = [{n}, d] (shared) or [B, N, d] = "
                             f"[{b}, {n}, d] to match 'values' {list(values.shape)}; got {list(coords.shape)}")
        if coords.shape[-1] < 1:
            raise ValueError(f"{self.path}: 'coords' has no coordinate axis (d = 0)")
        mask = None
        if "mask" in arrays:
            m = arrays["mask"]
            if m.shape != (b, n) or not (m.dtype == np.bool_ or np.issubdtype(m.dtype, np.integer)):
                raise ValueError(f"{self.path}: 'mask' must be bool (or 0/1) of shape [B, N] = [{b}, {n}]; got "
                                 f"{m.dtype} {list(m.shape)}")
            mask = torch.from_numpy(m.astype(bool))
            empty = torch.nonzero(~mask.any(1)).flatten().tolist()
            if empty:
                raise ValueError(f"{self.path}: 'mask' rows {empty[:10]} have no real point; drop those functions")
        real = torch.ones(b, n, dtype=torch.bool) if mask is None else mask
        _check_finite(values, real, self.path, "values")
        _check_finite(coords if coords.ndim == 3 else coords.expand(b, -1, -1), real, self.path, "coords")
        coords = coords.masked_fill(~real[..., None], 0.0) if coords.ndim == 3 else coords
        values = values.masked_fill(~real[..., None], 0.0)
        self.dim, self.channels = int(coords.shape[-1]), int(values.shape[-1])
        coords = self._to_unit_box(coords, real)
        self.kind = "image" if self.dim == 2 else "signal"
        self.train_shape = self.grid or self._default_grid(coords, real)
        return coords, values, mask

    def _to_unit_box(self, coords: Tensor, real: Tensor) -> Tensor:
        """Record the coordinate box (``box``, or the range of the real points) and map it to ``[0, 1]^d``."""
        pts = coords.reshape(-1, coords.shape[-1]) if coords.ndim == 2 else coords[real]
        if self.box is None:
            low, high = pts.min(0).values, pts.max(0).values
            flat = (high - low) <= 0
            if bool(flat.any()):
                raise ValueError(f"{self.path}: 'coords' axis {torch.nonzero(flat).flatten().tolist()} holds one value "
                                 "only; drop that axis or pass data.init_args.box")
            self.box = (low.tolist(), high.tolist())
        low, high = (torch.tensor(v, dtype=coords.dtype) for v in self.box)
        if low.numel() != coords.shape[-1]:
            raise ValueError(f"{self.path}: box has {low.numel()} axes but 'coords' have d = {coords.shape[-1]}")
        outside = ((pts < low) | (pts > high)).any(-1)
        if bool(outside.any()):
            raise ValueError(f"{self.path}: {int(outside.sum())} coordinates lie outside the box {self.box}; widen "
                             "data.init_args.box or leave it out (the coordinates' range)")
        unit = (coords - low) / (high - low)
        return unit.clamp(0.0, 1.0)

    def _default_grid(self, coords: Tensor, real: Tensor) -> tuple[int, ...]:
        """The data's own cell-centre grid when all functions share one, else ``~N^(1/d)`` cells per axis."""
        if coords.ndim == 2:
            shape = grid_shape(coords)
            if shape is not None:
                return shape
        n = float(real.sum(1).float().mean())
        return (max(2, round(n ** (1.0 / self.dim))),) * self.dim

    def _read_images(self) -> tuple[Tensor, Tensor, None]:
        from PIL import Image

        files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if len(files) < 2:
            raise ValueError(f"{self.path}: found {len(files)} image(s) ({', '.join(IMAGE_SUFFIXES)}); need at least 2")
        images = []
        for p in files:
            try:
                with Image.open(p) as im:
                    im.load()
                    img = im
            except OSError as e:
                raise ValueError(f"{p}: cannot read the image ({e})") from e
            if self.resize is not None:
                img = img.resize((self.resize[1], self.resize[0]), Image.Resampling.BILINEAR)
            images.append((p, img))
        sizes = {img.size for _, img in images}
        if len(sizes) > 1:
            (p0, a), (p1, b) = images[0], next((p, im) for p, im in images if im.size != images[0][1].size)
            raise ValueError(f"images differ in size: {p0.name} is {a.size[1]}x{a.size[0]}, {p1.name} is "
                             f"{b.size[1]}x{b.size[0]} (H x W); pass data.init_args.resize=[H, W]")
        rgb = self.color == "rgb" or (self.color == "auto" and any(im.mode not in ("L", "1", "I", "I;16", "F")
                                                                   and not _is_grey(im) for _, im in images))
        mode = "RGB" if rgb else "L"
        arr = np.stack([np.asarray(im.convert(mode), dtype=np.float32) / 255.0 for _, im in images])
        arr = arr[..., None] if arr.ndim == 3 else arr  # [B, H, W, c]
        h, w, c = arr.shape[1:]
        self.dim, self.channels, self.kind, self.train_shape = 2, int(c), "image", (int(h), int(w))
        self.box = None
        return grid_coords((h, w)), torch.from_numpy(arr).reshape(arr.shape[0], h * w, c), None

    def _read_sphere_csv(self) -> None:
        x = load_earth_csv(self.path, header=self.header, columns=self.columns, degrees=self.degrees).float()
        train, val = self._split(x.shape[0])
        self.manifold = Sphere(2)
        self.dim, self.channels, self.kind, self.train_shape = 1, 3, "signal", (1,)
        self.normalize_mode, self.box = "none", None
        self.train_set, self.val_set = _points_dataset(x[train]), _points_dataset(x[val])

    def _fit_normalization(self, values: Tensor, mask: Tensor | None) -> None:
        """Mean and standard deviation of the training values at real points (per channel or over all)."""
        if self.normalize_mode == "none":
            self.shift, self.scale = 0.0, 1.0
            return
        real = values.reshape(-1, values.shape[-1]) if mask is None else values[mask]  # [P, c]
        if self.normalize_mode == "channel":
            shift, scale = real.mean(0), real.std(0)
            self.shift, self.scale = shift, torch.where(scale > 0, scale, torch.ones_like(scale))
        else:
            std = float(real.std())
            self.shift, self.scale = float(real.mean()), std if std > 0 else 1.0

    # ----------------------------------------------------------------- metadata
    def data_config(self) -> dict[str, Any]:
        self.setup("fit")
        return super().data_config()

    def _extra_config(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"source": self.path.name}
        if self.manifold is not None:
            extra.update({"manifold": self.manifold.config, "points": "values[:, 0] are flat ambient manifold points"})
        if self.box is not None:
            extra["box"] = {"low": [float(v) for v in self.box[0]], "high": [float(v) for v in self.box[1]],
                            "formula": "model coords = (data coords - low) / (high - low)"}
        return extra


def _check_box(box: Sequence[Sequence[float]], path: Path) -> tuple[list[float], list[float]]:
    if len(box) != 2 or len(box[0]) != len(box[1]) or len(box[0]) == 0:
        raise ValueError(f"box must be [[low_1, ..., low_d], [high_1, ..., high_d]]; got {box}")
    low, high = [float(v) for v in box[0]], [float(v) for v in box[1]]
    if not all(math.isfinite(a) and math.isfinite(b) and a < b for a, b in zip(low, high)):
        raise ValueError(f"box needs finite low < high on every axis; got {box}")
    return low, high


def _float_array(a: np.ndarray, path: Path, key: str) -> Tensor:
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"{path}: {key!r} must hold numbers; got dtype {a.dtype}")
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def _check_finite(x: Tensor, real: Tensor, path: Path, key: str) -> None:
    """Raise naming the dataset rows (functions) whose real points hold NaN or inf in ``x`` ``[B, N, k]``."""
    bad = (~torch.isfinite(x)).any(-1) & real
    if bool(bad.any()):
        rows = torch.nonzero(bad.any(1)).flatten().tolist()
        first = int(torch.nonzero(bad[rows[0]]).flatten()[0])
        raise ValueError(f"{path}: {key!r} holds NaN or inf in {len(rows)} dataset row(s) {rows[:10]}"
                         f"{' ...' if len(rows) > 10 else ''} (row {rows[0]}, point {first} first); drop those rows "
                         "or mark the points as padding with 'mask' (False there)")


def _is_grey(img: Any) -> bool:
    """Whether an RGB(A) image has equal channels everywhere."""
    a = np.asarray(img.convert("RGB"))
    return bool((a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all())
