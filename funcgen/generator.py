"""The one sampling entry point, and loading / exporting trained models without training code.

``funcgen.load(path)`` accepts an exported ``.safetensors`` file (weights + JSON config in its
metadata) or a Lightning ``.ckpt`` (read with ``torch.load(weights_only=True)``); neither path ever
unpickles code. The result is a :class:`FunctionGenerator` that samples at any resolution or on
any query coordinates.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from . import __version__
from .config import build
from .methods.base import Method
from .pointset import PointSet, query_coords

__all__ = ["FunctionGenerator", "load", "CONFIG_KEY", "atomic_write"]

CONFIG_KEY = "funcgen_config"
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


class FunctionGenerator:
    """A trained generative model of functions.

    Args:
        method: the method object (sampler).
        net: the backbone with the weights to sample with (EMA weights after training).
        data: the data metadata (``dim``, ``channels``, ``train_shape``, ``kind``, normalisation).
    """

    def __init__(self, method: Method, net: nn.Module, data: dict[str, Any]) -> None:
        for key in ("dim", "channels", "train_shape"):
            if key not in data:
                raise ValueError(f"data metadata lacks {key!r}: {data}")
        self.method, self.net, self.data = method, net.eval(), dict(data)

    @property
    def dim(self) -> int:
        return int(self.data["dim"])

    @property
    def channels(self) -> int:
        return int(self.data["channels"])

    def denormalize(self, values: Tensor) -> Tensor:
        """Model-space values -> data units (``values * scale + shift``)."""
        norm = self.data.get("normalization", {})
        return values * float(norm.get("scale", 1.0)) + float(norm.get("shift", 0.0))

    def coords_for(self, resolution: int | Sequence[int] | None, num: int) -> Tensor:
        """Grid coordinates ``[num, N, d]``; ``resolution=None`` means the training grid."""
        res = tuple(self.data["train_shape"]) if resolution is None else resolution
        return query_coords(res, self.dim, num, device=next(self.net.parameters()).device)

    @torch.no_grad()
    def sample(self, num: int = 1, resolution: int | Sequence[int] | None = None, *,
               coords: Tensor | None = None, seed: int | None = 0, steps: int | None = None,
               batch_size: int = 64, denormalize: bool = True, progress: bool = False,
               decode: bool = True) -> PointSet:
        """Draw ``num`` functions on a grid of ``resolution`` cells per axis, or at ``coords``.

        Args:
            num: number of functions (ignored when ``coords`` is given: its batch size counts).
            resolution: cells per axis (int or per-axis tuple); None = training resolution.
            coords: explicit query coordinates ``[B, N, d]`` (any points, any N).
            seed: seed of the sampler's generator (same seed -> same samples); None = fresh.
            steps: sampler steps (None = the method's default).
            batch_size: functions drawn at once.
            denormalize: return values in data units.
            decode: apply the method's :meth:`~funcgen.methods.Method.decode` (e.g. infty-Diff's Wiener
                deconvolution on grids); False returns the sampler's raw output.

        Returns:
            PointSet with ``coords`` ``[B, N, d]`` and ``values`` ``[B, N, c]``.
        """
        if coords is None:
            if num <= 0:
                raise ValueError(f"num must be positive; got {num}")
            coords = self.coords_for(resolution, num)
        else:
            if coords.ndim != 3 or coords.shape[-1] != self.dim:
                raise ValueError(f"coords must be [B, N, {self.dim}] for this {self.dim}-d model; got {tuple(coords.shape)}")
            if not torch.isfinite(coords).all():
                raise ValueError("coords contain NaN or inf")
        device = next(self.net.parameters()).device
        coords = coords.to(device)
        gen = torch.Generator(device=device)
        gen.manual_seed(int(seed) if seed is not None else int(torch.seed()))
        outs = []
        for lo in range(0, coords.shape[0], batch_size):
            c = coords[lo:lo + batch_size]
            out = self.method.sample(self.net, c, self.channels, generator=gen, steps=steps, progress=progress)
            outs.append(self.method.decode(out, c) if decode else out)
        values = torch.cat(outs)
        if denormalize:
            values = self.denormalize(values)
        return PointSet(coords, values)

    # ------------------------------------------------------------------ persistence
    def config(self) -> dict[str, Any]:
        return {"format": FORMAT_VERSION, "version": __version__, "method": self.method.config,
                "net": self.net.config, "data": self.data}

    def save(self, path: str | Path) -> Path:
        """Export weights + config to a ``.safetensors`` file, atomically."""
        from safetensors.torch import save_file

        state = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        meta = {CONFIG_KEY: json.dumps(self.config())}
        return atomic_write(path, lambda tmp: save_file(state, tmp, metadata=meta))

    @classmethod
    def from_config(cls, config: dict[str, Any], state: dict[str, Tensor], source: str) -> "FunctionGenerator":
        """Rebuild from a config dict and a backbone state dict (``source`` names the file in errors)."""
        try:
            method = build(config["method"], Method)
            net = build(config["net"], nn.Module)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{source}: invalid funcgen config ({e})") from e
        missing, unexpected = set(net.state_dict()) - set(state), set(state) - set(net.state_dict())
        if missing or unexpected:
            raise ValueError(f"{source}: weights do not match the {config['net']['class_path']} it describes "
                             f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})")
        try:
            net.load_state_dict(state)
        except RuntimeError as e:
            raise ValueError(f"{source}: weight shapes do not match the config: {e}") from e
        return cls(method, net, config["data"])


def _load_safetensors(path: Path) -> FunctionGenerator:
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable safetensors file ({e}); re-export it with `funcgen export`") from e
    if CONFIG_KEY not in meta:
        raise ValueError(f"{path}: safetensors file without funcgen metadata; export models with `funcgen export`")
    return FunctionGenerator.from_config(json.loads(meta[CONFIG_KEY]), state, str(path))


def _load_lightning(path: Path) -> FunctionGenerator:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt or foreign pickles
        raise ValueError(f"{path}: cannot read checkpoint safely ({type(e).__name__}: {str(e)[:200]})") from e
    if not isinstance(ckpt, dict) or CONFIG_KEY not in ckpt or "state_dict" not in ckpt:
        raise ValueError(f"{path}: not a funcgen training checkpoint (no {CONFIG_KEY!r} entry)")
    prefix = "ema_net."
    state = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    return FunctionGenerator.from_config(json.loads(ckpt[CONFIG_KEY]), state, str(path))


def load(path: str | Path) -> FunctionGenerator:
    """Load an exported ``.safetensors`` model or a training ``.ckpt`` without unpickling code."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path} (expected a .safetensors export or a .ckpt checkpoint)")
    with open(path, "rb") as f:
        head = f.read(8)
    if path.suffix == ".ckpt" or head[:2] == b"PK":  # torch zip archive
        return _load_lightning(path)
    return _load_safetensors(path)
