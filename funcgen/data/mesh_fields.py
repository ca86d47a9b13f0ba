"""A user's own functions on a user's own mesh: an OBJ/OFF/PLY file and an ``.npz`` of per-vertex values.

    funcgen fit --config configs/base/trainer.yaml --config configs/mdf/mesh_grf.yaml \
        --data funcgen.data.mesh_fields.MeshFieldsDataModule --data.init_args.mesh_path bunny.obj \
        --data.init_args.values_path fields.npz --model.net.init_args.dim 32

Every item is ``(phi [V, k], values [V, c])``: the mesh's Laplace-Beltrami eigen-coordinates at its vertices
(:func:`funcgen.geometry.mesh.eigenbasis`) and one function's values there. Values are served standardised
(``model = (data - shift) / scale`` with the training split's mean and standard deviation); the exported
model carries the mesh, so it samples on it (``funcgen.load(F).sample(num)``) or on its subdivisions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..geometry.mesh import read_mesh
from .base import STREAM_VAL, PointDataset, make_generator
from .mesh import MeshFunctionDataModule

__all__ = ["MeshFieldsDataModule", "load_vertex_values"]


def load_vertex_values(path: str | Path, num_vertices: int, key: str = "values") -> np.ndarray:
    """Per-vertex functions ``[B, V, c]`` (float64) from the ``.npz`` file ``path`` (array ``key``).

    A ``[B, V]`` array is read as one channel.

    Raises:
        FileNotFoundError: no such file. ValueError: not an ``.npz``, no array ``key``, a shape that is not
            ``[B, V, c]`` with ``V = num_vertices``, or NaN / inf values.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no values file at {path} (expected an .npz holding {key!r} [B, V, c])")
    try:
        with np.load(path, allow_pickle=False) as f:
            if key not in f.files:
                raise ValueError(f"{path}: no array {key!r} (found {', '.join(f.files) or 'none'}); save the "
                                 f"per-vertex values with np.savez(path, {key}=array_of_shape_[B, V, c])")
            values = np.asarray(f[key], dtype=np.float64)
    except (OSError, ValueError) as e:
        if isinstance(e, ValueError) and str(path) in str(e):
            raise
        raise ValueError(f"{path}: cannot read as .npz ({e}); save with np.savez(path, {key}=...)") from e
    if values.ndim == 2:
        values = values[..., None]
    if values.ndim != 3 or values.shape[1] != num_vertices or values.shape[0] < 1:
        raise ValueError(f"{path}: {key!r} must be [B, V={num_vertices}, c] (one value per mesh vertex, in the "
                         f"mesh file's vertex order); got {values.shape}")
    bad = ~np.isfinite(values)
    if bad.any():
        b, v, c = np.argwhere(bad)[0]
        raise ValueError(f"{path}: {key!r} holds {int(bad.sum())} NaN/inf values (first: function {b}, vertex {v}, "
                         f"channel {c}); fill or drop them")
    return values


class MeshFieldsDataModule(MeshFunctionDataModule):
    """Functions given at the vertices of a mesh read from a file.

    Args:
        mesh_path: ASCII ``.obj`` / ``.off`` / ``.ply`` mesh (:func:`funcgen.geometry.mesh.read_mesh`).
        values_path: ``.npz`` with an array ``values_key`` of shape ``[B, V, c]`` (or ``[B, V]``), vertex
            order as in the mesh file.
        values_key: name of the array in the ``.npz``.
        num_eigs: ``k``, eigen-coordinates (the net's ``dim``).
        num_val: functions held out for validation (a seeded random choice), ``0 < num_val < B``.
        standardize: serve ``(values - mean) / std`` of the training split (False: raw values).
        batch_size, seed, num_workers: see :class:`funcgen.data.base.FunctionDataModule`.
    """

    name = "mesh_fields"

    def __init__(self, mesh_path: str, values_path: str, values_key: str = "values", num_eigs: int = 32,
                 num_val: int = 16, standardize: bool = True, batch_size: int = 16, seed: int = 0,
                 num_workers: int = 0) -> None:
        super().__init__(batch_size=batch_size, seed=seed, num_workers=num_workers)
        self.save_hyperparameters()
        mesh = read_mesh(mesh_path)
        values = load_vertex_values(values_path, mesh.num_vertices, values_key)
        if not 0 < int(num_val) < values.shape[0]:
            raise ValueError(f"num_val must be in 1..{values.shape[0] - 1} ({values_path} holds {values.shape[0]} "
                             f"functions; some must remain for training); got {num_val}")
        if not 1 <= int(num_eigs) < mesh.num_vertices:
            raise ValueError(f"num_eigs must be in 1..{mesh.num_vertices - 1} for a mesh of {mesh.num_vertices} "
                             f"vertices; got {num_eigs}")
        self._init_mesh(mesh, int(num_eigs))
        self.mesh_path, self.values_path, self.values_key = str(mesh_path), str(values_path), values_key
        order = torch.randperm(values.shape[0], generator=make_generator(self.seed, STREAM_VAL))
        self._val_idx, self._train_idx = order[:int(num_val)], order[int(num_val):]
        self._values = torch.from_numpy(values)
        train = self._values[self._train_idx]
        if standardize:
            self.shift, self.scale = float(train.mean()), float(train.std()) or 1.0
        self.channels = int(values.shape[2])
        self.train_shape = (mesh.num_vertices,)
        self.num_train, self.num_val = len(self._train_idx), int(num_val)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set = self._split(self._train_idx)
        if self.val_set is None:
            self.val_set = self._split(self._val_idx)

    def _split(self, idx: torch.Tensor) -> Dataset:
        return PointDataset(self.phi, self.normalize(self._values[idx]).float())

    def _extra_config(self) -> dict[str, Any]:
        return {"mesh": "file", "path": self.mesh_path, "values_path": self.values_path,
                "mesh_sha256": self.mesh.key, "num_vertices": self.mesh.num_vertices, "num_eigs": self.basis.k,
                "num_train": self.num_train, "num_val": self.num_val}
