"""Safe training checkpoints: atomic writes, loads that never unpickle code, clear mismatch errors.

:class:`SafeCheckpointIO` is the Lightning checkpoint plugin every :class:`~funcgen.train.module.GenerativeModule`
run uses (installed in ``GenerativeModule.setup`` when the trainer still has Lightning's default
plugin): ``.ckpt`` files are written to a temporary file in the same folder and renamed into place
(``os.replace`` is atomic on POSIX and Windows), so a crash or a kill never leaves a truncated
checkpoint; they are read with ``torch.load(weights_only=True)``, and any failure becomes a
``ValueError`` that names the file. :func:`check_state_shapes` compares a checkpoint's tensors with a
model's and names every mismatch. :func:`rng_state` / :func:`set_rng_state` capture the torch, CUDA,
numpy and Python random states as plain tensors, lists and ints (loadable with ``weights_only``).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from torch import Tensor

from ..io import atomic_write

__all__ = ["SafeCheckpointIO", "check_state_shapes", "rng_state", "set_rng_state"]


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning ``CheckpointIO``: atomic ``torch.save`` (temp file + fsync + rename), ``weights_only`` loads."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike,
                        storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("SafeCheckpointIO does not take storage_options")

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())

        atomic_write(path, write)

    def load_checkpoint(self, path: str | os.PathLike, map_location: Any | None = None,
                        weights_only: bool | None = None) -> dict[str, Any]:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint at {path} (pass an existing .ckpt to --ckpt_path, "
                                    "e.g. DEFAULT_ROOT_DIR/checkpoints/last.ckpt)")
        try:
            ckpt = torch.load(path, map_location=map_location or (lambda s, _: s), weights_only=True)
        except Exception as e:  # torch raises many types for truncated, corrupt or foreign pickles
            raise ValueError(f"{path}: cannot read this checkpoint safely ({type(e).__name__}: {str(e)[:300]}); "
                             "it is truncated, corrupt or holds pickled objects. Resume from another "
                             "checkpoint (checkpoints are written atomically, so the previous one is intact)") from e
        if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
            raise ValueError(f"{path}: not a Lightning training checkpoint (no 'state_dict' entry)")
        return ckpt


def check_state_shapes(saved: Mapping[str, Tensor], model: Mapping[str, Tensor], source: str) -> None:
    """Raise a ``ValueError`` naming ``source`` and the mismatching entries when the key sets or shapes differ."""
    missing = sorted(set(model) - set(saved))
    unexpected = sorted(set(saved) - set(model))
    wrong = [f"{k}: checkpoint {tuple(saved[k].shape)} vs model {tuple(model[k].shape)}"
             for k in model if k in saved and tuple(saved[k].shape) != tuple(model[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            parts.append(f"{len(wrong)} shape mismatches ({'; '.join(wrong[:4])})")
        if missing:
            parts.append(f"missing {missing[:4]}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:4]}")
        raise ValueError(f"{source}: checkpoint weights do not fit this model: {', '.join(parts)}. "
                         "Build the model with the checkpoint's config (its hyper_parameters / the run's config.yaml)")


def rng_state() -> dict[str, Any]:
    """Every global random state (torch CPU, CUDA, numpy, Python) as weights_only-loadable values."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the states captured by :func:`rng_state`."""
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
