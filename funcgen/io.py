"""File IO on the ground floor: atomic writes and safetensors reads that never unpickle code."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from torch import Tensor

__all__ = ["atomic_write", "read_safetensors", "read_safetensors_metadata", "VERSION", "CONFIG_KEY",
           "TRAINING_KEY", "FORMAT_VERSION"]

#: the library version, recorded in every export and checkpoint
VERSION = "0.1.0"
#: the metadata key (safetensors) / checkpoint entry holding the JSON config
CONFIG_KEY = "funcgen_config"
#: the metadata key (safetensors) holding how an export was trained (JSON: configs, seed, budget, steps, commit)
TRAINING_KEY = "funcgen_training"
#: version of that JSON layout; files with a newer one are refused
FORMAT_VERSION = 1


def atomic_write(path: str | Path, write: Any) -> Path:
    """Call ``write(tmp_path)`` then atomically rename the file to ``path`` (no truncated files on crash)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


@contextmanager
def _readable(path: str | Path, remedy: str) -> Iterator[None]:
    """Turn safetensors' read errors into a ``ValueError`` naming ``path`` and saying ``remedy``."""
    from safetensors import SafetensorError

    try:
        yield
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable safetensors file ({e}); {remedy}") from e


def read_safetensors(path: str | Path, remedy: str) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Tensors and string metadata of a safetensors file (never unpickles anything).

    Raises ``ValueError`` naming ``path`` and saying ``remedy`` when the file is unreadable or corrupt.
    """
    from safetensors.torch import load_file

    meta = read_safetensors_metadata(path, remedy)
    with _readable(path, remedy):
        return load_file(str(path)), meta


def read_safetensors_metadata(path: str | Path, remedy: str) -> dict[str, str]:
    """The string metadata of a safetensors file, without reading its tensors (``ValueError`` as
    :func:`read_safetensors`)."""
    from safetensors import safe_open

    with _readable(path, remedy), safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})
