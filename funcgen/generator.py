"""The one sampling entry point, and loading / exporting trained models without training code.

``funcgen.load(path)`` accepts an exported ``.safetensors`` file (weights + JSON config in its
metadata) or a Lightning ``.ckpt`` (read with ``torch.load(weights_only=True)``); neither path ever
unpickles code. The result is a :class:`FunctionGenerator` that samples at any resolution or on
any query coordinates.
"""

from __future__ import annotations

import json
import numbers
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from .config import build
from .io import CONFIG_KEY, FORMAT_VERSION, VERSION, atomic_write, read_safetensors
from .methods.base import Method
from .methods.capabilities import SupportsLikelihood, SupportsProjection
from .pointset import PointSet, query_coords

__all__ = ["FunctionGenerator", "load", "CONFIG_KEY"]



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

    def _norm(self, key: str, default: float, like: Tensor) -> Tensor:
        """A normalisation constant (a number, or one per channel) as a tensor like ``like``."""
        return torch.as_tensor(self.data.get("normalization", {}).get(key, default), dtype=like.dtype,
                               device=like.device)

    def normalize(self, values: Tensor) -> Tensor:
        """Data units -> model-space values (``(values - shift) / scale``), the inverse of :meth:`denormalize`."""
        return (values - self._norm("shift", 0.0, values)) / self._norm("scale", 1.0, values)

    def denormalize(self, values: Tensor) -> Tensor:
        """Model-space values -> data units (``values * scale + shift``)."""
        return values * self._norm("scale", 1.0, values) + self._norm("shift", 0.0, values)

    def box(self) -> tuple[list[float], list[float]] | None:
        """The data's coordinate box ``(low [d], high [d])`` in data units, or None: the models' unit cube
        (exports that record no box, and data made on ``[0, 1]^d``)."""
        box = self.data.get("box")
        return None if box is None else (list(box["low"]), list(box["high"]))

    def to_model_coords(self, coords: Tensor) -> Tensor:
        """Query coordinates ``[..., d]`` in data units -> the unit cube the model works in:
        ``(coords - low) / (high - low)`` (unchanged without a recorded box)."""
        box = self.box()
        if box is None:
            return coords
        low, high = (torch.tensor(v, dtype=coords.dtype, device=coords.device) for v in box)
        return (coords - low) / (high - low)

    def to_data_coords(self, coords: Tensor) -> Tensor:
        """The inverse of :meth:`to_model_coords`: unit-cube coordinates ``[..., d]`` -> data units."""
        box = self.box()
        if box is None:
            return coords
        low, high = (torch.tensor(v, dtype=coords.dtype, device=coords.device) for v in box)
        return low + coords * (high - low)

    def coords_for(self, resolution: int | Sequence[int] | None, num: int) -> Tensor:
        """Grid coordinates ``[num, N, d]``; ``resolution=None`` means the training grid."""
        if self.data.get("kind") == "mesh":
            raise ValueError("this model lives on a mesh: pass coords=... (eigen-coordinates [B, N, "
                             f"{self.dim}], e.g. datamodule.validation_coords(factor, num)) instead of a grid "
                             "resolution")
        res = tuple(self.data["train_shape"]) if resolution is None else resolution
        res = int(res) if isinstance(res, numbers.Integral) else tuple(int(r) for r in res)
        return query_coords(res, self.dim, num, device=next(self.net.parameters()).device)

    def _check_sample_args(self, num: Any, resolution: Any, coords: Any, seed: Any, steps: Any,
                           batch_size: Any, check_domain: bool) -> None:
        def is_int(x: Any) -> bool:
            return isinstance(x, numbers.Integral) and not isinstance(x, bool)

        if not is_int(batch_size) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
        if steps is not None and (not is_int(steps) or steps <= 0):
            raise ValueError(f"steps must be a positive integer or None (the method's default); got {steps!r}")
        if seed is not None and not is_int(seed):
            raise TypeError(f"seed must be an integer or None; got {type(seed).__name__}")
        if coords is None:
            if not is_int(num) or num <= 0:
                raise ValueError(f"num must be a positive integer; got {num!r}")
            if resolution is None:
                return
            axes = [resolution] if is_int(resolution) else resolution
            if isinstance(axes, (str, bytes)) or not isinstance(axes, Sequence) or not all(map(is_int, axes)):
                raise TypeError(f"resolution must be an int or a sequence of {self.dim} ints; got {resolution!r}")
            if (not is_int(resolution) and len(axes) != self.dim) or min(axes, default=0) <= 0:
                raise ValueError(f"resolution must be a positive int or {self.dim} positive ints (cells per "
                                 f"axis of this {self.dim}-d model); got {resolution!r}")
            return
        if not isinstance(coords, Tensor) or not coords.is_floating_point():
            raise TypeError(f"coords must be a floating-point torch.Tensor [B, N, {self.dim}]; got "
                            f"{getattr(coords, 'dtype', type(coords).__name__)}")
        if coords.ndim != 3 or coords.shape[-1] != self.dim or coords.shape[0] == 0 or coords.shape[1] == 0:
            raise ValueError(f"coords must be [B, N, {self.dim}] with B, N >= 1 for this {self.dim}-d model; "
                             f"got {tuple(coords.shape)}")
        if not torch.isfinite(coords).all():
            raise ValueError("coords contain NaN or inf")
        # the data say where queries live (mesh data: unbounded eigen-coordinates); older exports: unit cube
        if check_domain and self.data.get("domain", "unit_cube") == "unit_cube":
            unit = self.to_model_coords(coords)
            if unit.min() < 0 or unit.max() > 1:
                box = self.box()
                where = (f"[0, 1]^{self.dim}" if box is None else
                         "the box " + " x ".join(f"[{lo:.4g}, {hi:.4g}]" for lo, hi in zip(*box)) + " (data units)")
                raise ValueError(f"coords must lie in the training domain {where}; found values in "
                                 f"[{float(coords.min()):.4g}, {float(coords.max()):.4g}]. Rescale them, or pass "
                                 "check_domain=False to extrapolate outside the data's domain")

    #: at most this many points (functions x points) per sampler call, unless one function has more
    max_points_per_call: int = 2**21

    @torch.no_grad()
    def sample(self, num: int = 1, resolution: int | Sequence[int] | None = None, *,
               coords: Tensor | None = None, seed: int | None = 0, steps: int | None = None,
               batch_size: int = 64, denormalize: bool = True, progress: bool = False,
               check_domain: bool = True, decode: bool = True) -> PointSet:
        """Draw ``num`` functions on a grid of ``resolution`` cells per axis, or at ``coords``.

        Memory stays bounded for very large point sets: each sampler call gets at most
        ``max(N, 2**21)`` points in all (fewer functions at once when ``N`` is large), and the
        noises and backbones evaluate point sets in chunks (e.g. ``PerceiverNet.query_chunk``).

        Args:
            num: number of functions (ignored when ``coords`` is given: its batch size counts).
            resolution: cells per axis (int or per-axis tuple); None = training resolution.
            coords: explicit query coordinates ``[B, N, d]`` (any points, any N) in the data's units: in its
                recorded box (:meth:`box`, e.g. data read by :class:`funcgen.data.FileDataModule`), else ``[0, 1]^d``.
            seed: seed of the sampler's generator (same seed -> same samples); None = fresh.
            steps: sampler steps (None = the method's default).
            batch_size: at most this many functions drawn at once.
            denormalize: return values in data units.
            check_domain: raise on coordinates outside the data's box (False: extrapolate).
            decode: apply the method's :meth:`~funcgen.methods.Method.decode` (e.g. infty-Diff's Wiener
                deconvolution on grids); False returns the sampler's raw output.

        Returns:
            PointSet with ``coords`` ``[B, N, d]`` (data units, as given) and ``values`` ``[B, N, c]``.

        Raises:
            ValueError / TypeError: a non-positive or non-integer ``num``, ``resolution``, ``steps``
                or ``batch_size``; ``coords`` of the wrong shape or dtype, non-finite or off the domain.
        """
        self._check_sample_args(num, resolution, coords, seed, steps, batch_size, check_domain)
        param = next(self.net.parameters())
        device = param.device
        if coords is None:
            coords = self.coords_for(resolution, num)
            data_coords = self.to_data_coords(coords)
        else:
            data_coords = coords
            coords = self.to_model_coords(coords)
        coords = coords.to(device=device, dtype=param.dtype)  # float64 queries of a float32 net
        gen = _seeded(seed, device)
        outs = []
        batch_size = max(1, min(batch_size, self.max_points_per_call // coords.shape[1]))
        for lo in range(0, coords.shape[0], batch_size):
            c = coords[lo:lo + batch_size]
            out = self.method.sample(self.net, c, self.channels, generator=gen, steps=steps, progress=progress)
            outs.append(self.method.decode(out, c) if decode else out)
        values = torch.cat(outs)
        if denormalize:
            values = self.denormalize(values)
        return PointSet(data_coords.to(device=device, dtype=values.dtype), values)

    def log_likelihood(self, points: Tensor, *, steps: int | None = None, seed: int | None = 0,
                       progress: bool = False) -> Tensor:
        """Log-density (nats) of ``points`` under the model, for methods that offer one
        (:class:`funcgen.methods.SupportsLikelihood`, e.g. Riemannian diffusion: points ``[M, D]`` on its
        manifold, density w.r.t. the Riemannian volume) -> ``[M]``. ``seed`` seeds stochastic divergence
        estimates.

        Raises:
            TypeError: the method offers no likelihood.
        """
        if not isinstance(self.method, SupportsLikelihood):
            raise TypeError(f"{type(self.method).__name__} offers no likelihood (methods that do implement "
                            "funcgen.methods.SupportsLikelihood)")
        device = next(self.net.parameters()).device
        gen = _seeded(seed, device)
        return self.method.log_likelihood(self.net, points.to(device), steps=steps, generator=gen, progress=progress)

    @torch.no_grad()
    def project(self, ps: PointSet, k: int = 1) -> PointSet:
        """Map given functions (noisy, masked, corrupted; in data units) towards the data with a method that
        offers a projection (:class:`funcgen.methods.SupportsProjection`, e.g. IGN's ``f`` applied ``k`` times).

        Raises:
            TypeError: the method offers no projection.
        """
        if not isinstance(self.method, SupportsProjection):
            raise TypeError(f"{type(self.method).__name__} offers no projection (methods that do implement "
                            "funcgen.methods.SupportsProjection)")
        param = next(self.net.parameters())
        coords = self.to_model_coords(ps.coords.to(device=param.device, dtype=param.dtype))
        values = self.normalize(ps.values.to(device=param.device, dtype=param.dtype))
        out = self.denormalize(self.method.project(self.net, coords, values, k=k))
        return PointSet(ps.coords.to(device=param.device, dtype=param.dtype), out)

    def with_method_args(self, **overrides: Any) -> "FunctionGenerator":
        """A generator with the same weights whose method is rebuilt with some constructor arguments
        changed, e.g. ``gen.with_method_args(eta=1.0, steps=100)`` for ancestral sampling with a
        functional diffusion model. The method's own checks apply (``solver="dpm2m"`` with ``eta=1``
        is refused); an argument the method does not take raises ``ValueError`` naming the ones it does.
        """
        return type(self)(method_with_args(self.method, **overrides), self.net, self.data)

    # ------------------------------------------------------------------ persistence
    def config(self) -> dict[str, Any]:
        return {"format": FORMAT_VERSION, "version": VERSION, "method": self.method.config,
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
        fmt = config.get("format") if isinstance(config, dict) else None
        if not isinstance(fmt, int) or fmt > FORMAT_VERSION:
            written_by = config.get("version") if isinstance(config, dict) else "?"
            raise ValueError(f"{source}: funcgen file format {fmt!r} (library {written_by}) is not readable by "
                             f"funcgen {VERSION} (format {FORMAT_VERSION}); upgrade funcgen")
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


def _seeded(seed: int | None, device: torch.device) -> torch.Generator:
    """A generator on ``device`` seeded with ``seed`` (None: a fresh random seed)."""
    return torch.Generator(device=device).manual_seed(int(seed) if seed is not None else int(torch.seed()))


def method_with_args(method: Method, **overrides: Any) -> Method:
    """A new ``method`` built from its recorded config with some constructor arguments replaced
    (its constructor's checks apply); ``ValueError`` for an argument it does not take."""
    config = method.config
    known = config.get("init_args", {})
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise ValueError(f"{config['class_path']} takes no argument {', '.join(map(repr, unknown))}; "
                         f"its arguments: {', '.join(sorted(known))}")
    return build({**config, "init_args": {**known, **overrides}}, Method)


def _load_safetensors(path: Path) -> FunctionGenerator:
    state, meta = read_safetensors(path, "re-export it with `funcgen export`")
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
