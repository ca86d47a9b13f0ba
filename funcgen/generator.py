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
from typing import Any, Callable, Iterator, Literal, Sequence

import torch
from torch import Tensor, nn

from .config import build
from .io import (
    CONFIG_KEY,
    FORMAT_VERSION,
    TRAINING_KEY,
    VERSION,
    atomic_write,
    read_safetensors,
    read_safetensors_metadata,
)
from .methods.base import Method
from .methods.capabilities import SupportsGaussianPath, SupportsLikelihood, SupportsProjection, SupportsResampling
from .pointset import PointSet, cell_average_matrix, grid_shape, query_coords
from .samplers.base import ModelFn
from .samplers.guidance import (
    LinearObservation,
    Observation,
    covariance_guide,
    error_covariance,
    moment_guide,
    replacement_callback,
    tweedie_guide,
)
from .samplers.likelihood import DivergenceMode, path_log_likelihood

__all__ = ["FunctionGenerator", "load", "training_record", "CONFIG_KEY", "Guidance"]

#: how :meth:`FunctionGenerator.sample_conditional` conditions a diffusion-type method (docs/conditioning.md)
Guidance = Literal["auto", "moment", "error", "tweedie", "replace"]

#: names of exported tensors that describe the data's domain (a mesh), not backbone weights
DOMAIN_PREFIX = "domain."



class FunctionGenerator:
    """A trained generative model of functions.

    Args:
        method: the method object (sampler).
        net: the backbone with the weights to sample with (EMA weights after training).
        data: the data metadata (``dim``, ``channels``, ``train_shape``, ``kind``, normalisation).
        domain: tensors the data's domain needs at sampling, exported with the model (mesh models: the
            mesh and its vertices' eigen-coordinates, :class:`funcgen.geometry.mesh.MeshDomain`).
    """

    def __init__(self, method: Method, net: nn.Module, data: dict[str, Any],
                 domain: dict[str, Tensor] | None = None) -> None:
        for key in ("dim", "channels", "train_shape"):
            if key not in data:
                raise ValueError(f"data metadata lacks {key!r}: {data}")
        self.method, self.net, self.data = method, net.eval(), dict(data)
        self.domain = {k: v.detach().cpu() for k, v in (domain or {}).items()}
        self._mesh: Any = None

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

    @property
    def mesh_domain(self) -> Any:
        """A mesh model's :class:`funcgen.geometry.mesh.MeshDomain` (None for other models): from the export,
        or for exports that predate it, rebuilt from the procedural mesh the data metadata name."""
        if self._mesh is None and self.data.get("kind") == "mesh":
            from .geometry.mesh import MeshDomain

            self._mesh = MeshDomain.from_tensors(self.domain, name=str(self.data.get("mesh", "mesh")))
            if self._mesh is None:
                from .data.mesh import rebuild_domain

                self._mesh = rebuild_domain(self.data)
        return self._mesh

    def coords_for(self, resolution: int | Sequence[int] | None, num: int, refine: int = 0) -> Tensor:
        """Grid coordinates ``[num, N, d]``; ``resolution=None`` means the training grid. Mesh models: the
        eigen-coordinates of the vertices of the training mesh subdivided ``refine`` times."""
        if self.data.get("kind") == "mesh":
            domain = self.mesh_domain
            if resolution is not None or domain is None:
                raise ValueError("this model lives on a mesh: sample(num) draws on its training mesh, "
                                 "sample(num, refine=R) on that mesh subdivided R times, or pass coords=... "
                                 f"(eigen-coordinates [B, N, {self.dim}]) instead of a grid resolution"
                                 + ("" if domain is not None else "; this export carries no mesh, so only coords"))
            phi = domain.level(refine)[1]
            param = next(self.net.parameters())
            return phi.to(device=param.device, dtype=param.dtype).unsqueeze(0).expand(num, -1, -1)
        if refine:
            raise ValueError(f"refine={refine!r} subdivides a mesh; this model is not a mesh model (use resolution)")
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
               check_domain: bool = True, decode: bool = True, refine: int = 0, observed: PointSet | None = None,
               obs_std: float = 0.0, guidance: Guidance = "auto", moment_samples: int = 1024,
               observe: Literal["points", "cells"] = "points", resample: int = 1) -> PointSet:
        """Draw ``num`` functions on a grid of ``resolution`` cells per axis, or at ``coords``.

        With ``observed`` (a PointSet of ``B`` functions in data units) this is conditional sampling: ``num``
        functions PER observed function, see :meth:`sample_conditional` (``obs_std``, ``guidance``,
        ``moment_samples``, ``observe``, ``resample``).

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
            refine: mesh models: sample at the vertices of the training mesh subdivided ``refine`` times
                (each ~4x the vertices); 0: the training mesh.

        Returns:
            PointSet with ``coords`` ``[B, N, d]`` (data units, as given) and ``values`` ``[B, N, c]``.

        Raises:
            ValueError / TypeError: a non-positive or non-integer ``num``, ``resolution``, ``steps``
                or ``batch_size``; ``coords`` of the wrong shape or dtype, non-finite or off the domain.
        """
        if observed is not None:
            return self.sample_conditional(observed, num, resolution, coords=coords, seed=seed, steps=steps,
                                           obs_std=obs_std, guidance=guidance, batch_size=batch_size,
                                           denormalize=denormalize, progress=progress, check_domain=check_domain,
                                           decode=decode, moment_samples=moment_samples, observe=observe,
                                           resample=resample)
        if resample != 1:
            raise ValueError(f"resample={resample!r} repeats the steps of conditional sampling; pass observed=, or "
                             "leave resample at 1 for unconditional samples")
        self._check_sample_args(num, resolution, coords, seed, steps, batch_size, check_domain)
        param = next(self.net.parameters())
        device = param.device
        if coords is None:
            coords = self.coords_for(resolution, num, refine)
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

    # ------------------------------------------------------------------ conditioning and likelihoods
    def _check_observed(self, observed: Any, obs_std: Any, check_domain: bool) -> None:
        """Clear errors for observations that cannot condition this model."""
        if not isinstance(observed, PointSet):
            raise TypeError(f"observed must be a funcgen.PointSet(coords [B, M, {self.dim}], values [B, M, "
                            f"{self.channels}]) in data units; got {type(observed).__name__}")
        if observed.dim != self.dim:
            raise ValueError(f"observed coords must be [B, M, {self.dim}] for this {self.dim}-d model; got "
                             f"{tuple(observed.coords.shape)}")
        if observed.channels != self.channels:
            raise ValueError(f"observed values must have {self.channels} channel(s) like the model's functions; got "
                             f"{observed.channels} (values {tuple(observed.values.shape)})")
        unit = self.to_model_coords(observed.coords)
        if (check_domain and self.data.get("domain", "unit_cube") == "unit_cube"
                and (unit.min() < 0 or unit.max() > 1)):
            bad = ((unit < 0) | (unit > 1)).any(-1).nonzero()[0].tolist()
            box = self.box()
            where = (f"[0, 1]^{self.dim}" if box is None else
                     "the box " + " x ".join(f"[{lo:.4g}, {hi:.4g}]" for lo, hi in zip(*box)) + " (data units)")
            raise ValueError(f"observed point {tuple(bad)} (function, point) lies outside the model's domain "
                             f"{where}: coordinates found in [{float(observed.coords.min()):.4g}, "
                             f"{float(observed.coords.max()):.4g}]")
        if isinstance(obs_std, bool) or not isinstance(obs_std, numbers.Real) or not 0 <= obs_std < float("inf"):
            raise ValueError(f"obs_std (observation noise std, data units) must be a finite number >= 0; "
                             f"got {obs_std!r}")

    def _query_for(self, observed: PointSet, resolution: Any, coords: Tensor | None) -> Tensor:
        """Query coordinates ``[B, N, d]``, one set per observed function."""
        b = observed.batch_size
        if coords is None:
            q = self.to_data_coords(self.coords_for(resolution, 1))
        else:
            if not isinstance(coords, Tensor) or not coords.is_floating_point() or coords.ndim not in (2, 3):
                raise TypeError(f"coords must be a float tensor [N, {self.dim}] or [B, N, {self.dim}]; got "
                                f"{getattr(coords, 'shape', type(coords).__name__)}")
            q = coords.unsqueeze(0) if coords.ndim == 2 else coords
            if q.shape[0] not in (1, b):
                raise ValueError(f"coords hold {q.shape[0]} query sets for {b} observed functions: pass one set "
                                 f"[N, {self.dim}] for all, or one per observed function [{b}, N, {self.dim}]")
        return q.expand(b, -1, -1)

    @torch.no_grad()
    def sample_conditional(self, observed: PointSet, num: int = 1, resolution: int | Sequence[int] | None = None, *,
                           coords: Tensor | None = None, seed: int | None = 0, steps: int | None = None,
                           obs_std: float = 0.0, guidance: Guidance = "auto", batch_size: int = 64,
                           denormalize: bool = True, progress: bool = False, check_domain: bool = True,
                           decode: bool = True, moment_samples: int = 1024,
                           observe: Literal["points", "cells"] = "points", resample: int = 1) -> PointSet:
        """Draw ``num`` functions per observed function that agree with the observations (posterior sampling).

        ``observed`` holds ``B`` functions in data units, each at its own points ``coords [B, M, d]`` (anywhere in
        the domain: on or off the query grid; a grid with a ``mask`` for inpainting, a coarse grid for
        super-resolution); a ``mask`` ``[B, M]`` marks the observed points of each function. Query points
        that coincide with an observed point (to ``1e-7``) share the sampler's state there; the others are
        sampled jointly with the observed ones on the union of both sets.

        How: diffusion-type methods (:class:`funcgen.methods.SupportsGaussianPath`) run their own sampler with the
        denoiser replaced by a conditional one: ``guidance="moment"``
        (:func:`funcgen.samplers.guidance.moment_guide`): the posterior covariance of a Gaussian approximation of
        the model, whose covariance at the union points is estimated once from ``moment_samples`` unconditional
        samples (exact for Gaussian data as that estimate converges; no backward passes); ``"error"`` (the
        default, ``auto``; :func:`~funcgen.samplers.guidance.error_covariance`): the covariance of the
        denoiser's own errors at each level on ``moment_samples`` of the model's unconditional samples (eq. 3;
        equal to ``moment``'s for Gaussian data and the exact denoiser; one more denoiser pass over those samples
        per level); ``"tweedie"``
        (:func:`~funcgen.samplers.guidance.tweedie_guide`): the covariance from the network's Jacobian (exact for
        Gaussian data with the exact denoiser; one backward pass per observed value and step; a trained
        network's Jacobian is much less accurate than its output); ``"replace"``: replacement of the observed
        entries by forward draws after every step (cheap, approximate, noise-free observations only);
        docs/conditioning.md has the measured comparison. Methods with a projection (IGN) apply ``f`` ``steps``
        times from source noise with the observed values restored after each application. Other methods
        (Riemannian diffusion) refuse.

        Args:
            observed: the observations (data units).
            num: samples per observed function ``K``.
            resolution, coords: the query points: a grid (default: the training grid), or ``coords``
                ``[N, d]`` (shared) or ``[B, N, d]`` (one set per observed function).
            obs_std: observation noise standard deviation (data units); 0 = noise-free (the samples pass
                through the observations).
            guidance: ``auto`` (= ``error``), ``error``, ``moment``, ``tweedie`` or ``replace``.
            moment_samples: unconditional samples per observed function for the covariance estimate of ``moment``
                and ``error``.
            observe: ``points``: each observed value is the function at its point; ``cells``: the observed
                points are the cell centres of a coarse grid (:func:`funcgen.pointset.grid_coords`, e.g. a 7x7
                image) and each value is the function's AVERAGE over its cell, taken over the query points
                inside it (:func:`funcgen.pointset.cell_average_matrix`): super-resolution of a low-resolution
                image whose pixels are area averages. ``moment`` / ``error`` guidance only; no mask.
            resample: repeats of each sampler step, the state carried back to the step's start between
                repeats by the path's forward transition (RePaint resampling, :func:`funcgen.samplers.ddim`;
                ``resample`` times the cost of the conditional draws, not of the covariance estimate); for
                methods whose sampler takes it (functional diffusion, infty-Diff, MDF, flow matching with
                ``solver="ddim"``), refused before any sampling otherwise.
            other arguments: as :meth:`sample`.

        Returns:
            PointSet ``[B K, N, .]`` ordered observed-major: rows ``i K .. (i + 1) K - 1`` are the samples given
            observed function ``i``.

        Raises:
            TypeError: the method offers no conditional sampling; observed not a PointSet.
            ValueError: NaN / inf, wrong dimension or channels, points outside the domain, repeated observed
                points, a negative ``obs_std``, an unknown ``guidance``; with ``observe="cells"``: observed
                points that are not a grid's cell centres, a cell without query points, a mask, or a guidance
                other than ``moment`` / ``error``.
        """
        self._check_observed(observed, obs_std, check_domain)
        if guidance not in ("auto", "moment", "error", "tweedie", "replace"):
            raise ValueError(f"unknown guidance {guidance!r}; choose auto, moment, error, tweedie or replace")
        if not isinstance(moment_samples, int) or isinstance(moment_samples, bool) or moment_samples < 2:
            raise ValueError(f"moment_samples must be an integer >= 2; got {moment_samples!r}")
        guidance = "error" if guidance == "auto" else guidance
        if observe not in ("points", "cells"):
            raise ValueError(f"observe must be 'points' or 'cells'; got {observe!r}")
        if observe == "cells" and (guidance not in ("moment", "error")
                                   or not isinstance(self.method, SupportsGaussianPath)):
            raise ValueError("observe='cells' (cell averages) conditions diffusion-type methods with guidance "
                             f"'moment' or 'error' (auto); got guidance={guidance!r} for "
                             f"{type(self.method).__name__}")
        if observe == "cells" and observed.mask is not None:
            raise ValueError("observe='cells' takes a full coarse grid (one value per cell), not a mask")
        method = self.method
        if not isinstance(resample, int) or isinstance(resample, bool) or resample < 1:
            raise ValueError(f"resample must be an integer >= 1; got {resample!r}")
        if resample != 1 and not (isinstance(method, SupportsResampling) and method.repeats_steps):
            raise ValueError(f"resample={resample} needs a sampler that repeats steps; {type(method).__name__}'s "
                             f"{getattr(method, 'solver', 'sampler')!r} takes none (functional diffusion, infty-Diff, "
                             "MDF and flow matching with solver='ddim' do: gen.with_method_args(solver='ddim')); "
                             "use resample=1")
        if not isinstance(method, (SupportsGaussianPath, SupportsProjection)):
            raise TypeError(f"{type(method).__name__} offers no conditional sampling: it needs a diffusion-type "
                            "method (funcgen.methods.SupportsGaussianPath: functional diffusion, infty-Diff, PFGM++, "
                            "MDF, flow matching) or a projection (IGN). Riemannian diffusion models a distribution "
                            "of points on a manifold, and sampling restricted to a region is not supported; its "
                            "likelihood is (log_prob)")
        if guidance == "replace" and obs_std > 0:
            raise ValueError("guidance='replace' conditions on noise-free observations only; use guidance='tweedie' "
                             "for obs_std > 0")
        query = self._query_for(observed, resolution, coords)
        self._check_sample_args(1, None, query, seed, steps, batch_size, check_domain)
        param = next(self.net.parameters())
        device, dtype = param.device, param.dtype
        data_query = query.to(device=device, dtype=dtype)
        query = self.to_model_coords(data_query)
        gen = _seeded(seed, device)
        scales = self._norm("scale", 1.0, query).reshape(-1)
        if obs_std > 0 and scales.numel() > 1 and not bool((scales == scales[0]).all()):
            raise ValueError("obs_std > 0 with per-channel normalisation scales is not supported: the observation "
                             "noise would differ per channel in model units; pass obs_std=0 or one scale")
        variance = (float(obs_std) / float(scales[0])) ** 2
        nq = query.shape[1]
        outs = []
        cov_points: Tensor | None = None
        data_cov: Tensor | Callable[[float], Tensor] | None = None
        groups = _cell_groups if observe == "cells" else _observation_groups
        for union, index, operator, oc, ov in groups(query, observed, self.to_model_coords, self.normalize):
            # ov [G, M, c]: G observed functions sharing these points; rows of a sampler call are (function, draw)
            per_call = max(1, min(batch_size, self.max_points_per_call // union.shape[0]))
            if guidance in ("moment", "error") and isinstance(method, SupportsGaussianPath):
                if cov_points is None or not torch.equal(cov_points, union):  # one estimate per distinct union
                    estimate = self._model_covariance if guidance == "moment" else self._model_error_covariance
                    cov_points, data_cov = union, estimate(union, moment_samples, per_call, gen, steps)
            rows = ov.repeat_interleave(num, dim=0)  # observed-major: function i's draws are rows i K .. (i+1) K - 1
            for lo in range(0, rows.shape[0], per_call):
                vals = rows[lo:lo + per_call]
                b = vals.shape[0]
                coords_b = union.unsqueeze(0).expand(b, -1, -1)
                obs = (Observation(index.unsqueeze(0).expand(b, -1), vals, variance) if operator is None
                       else LinearObservation(operator, vals, variance))
                x = self._conditional_batch(coords_b, obs, oc, gen, steps, guidance, progress, data_cov, resample)
                outs.append(x[:, :nq])
        values = torch.cat(outs)
        if decode:
            values = self.method.decode(values, query.repeat_interleave(num, dim=0))
        if denormalize:
            values = self.denormalize(values)
        return PointSet(data_query.repeat_interleave(num, dim=0), values)

    @torch.no_grad()
    def model_covariance(self, coords: Tensor, num: int = 1024, *, seed: int | None = 0, steps: int | None = None,
                         batch_size: int = 64) -> Tensor:
        """The model's covariance ``[N, N]`` (float64, data units, channels pooled) at ``coords`` ``[N, d]`` (data
        units), estimated from ``num`` unconditional samples drawn by the same denoiser-driven sampler that
        ``guidance="moment"`` conditions (what that guidance uses as ``K``, eq. 2 of
        :mod:`funcgen.samplers.guidance`). Diffusion-type methods only."""
        if not isinstance(self.method, SupportsGaussianPath):
            raise TypeError(f"{type(self.method).__name__} has no Gaussian path: model_covariance needs a "
                            "diffusion-type method")
        if not isinstance(coords, Tensor) or coords.dim() != 2 or coords.shape[1] != self.dim:
            raise ValueError(f"coords must be [N, {self.dim}]; got {getattr(coords, 'shape', type(coords))}")
        if not isinstance(num, int) or num < 2:
            raise ValueError(f"num must be an integer >= 2; got {num!r}")
        self._check_sample_args(1, None, coords[None], seed, steps, batch_size, True)
        param = next(self.net.parameters())
        pts = self.to_model_coords(coords.to(device=param.device, dtype=param.dtype))
        per_call = max(1, min(batch_size, self.max_points_per_call // pts.shape[0]))
        k = self._model_covariance(pts, num, per_call, _seeded(seed, param.device), steps)
        scale = self._norm("scale", 1.0, pts).double().reshape(-1)
        return k * float(scale.pow(2).mean())

    def _model_draws(self, points: Tensor, num: int, per_call: int, gen: torch.Generator,
                     steps: int | None) -> tuple[Tensor, ModelFn]:
        """``num`` unconditional samples ``[num, N, c]`` (model units) at ``points`` ``[N, d]``, drawn ``per_call``
        at a time by the same denoiser-driven sampler that the conditional draws then use, and that sampler's
        denoiser bound to batches of ``min(per_call, num)`` functions at ``points``."""
        xs: list[Tensor] = []
        bound: list[ModelFn] = []

        def identity(denoise: ModelFn) -> ModelFn:  # the identity guide, keeping the first bound denoiser
            if not bound:
                bound.append(denoise)
            return denoise

        for lo in range(0, num, per_call):
            b = min(per_call, num - lo)
            xs.append(self.method.sample(self.net, points.unsqueeze(0).expand(b, -1, -1), self.channels,
                                         generator=gen, steps=steps, guide=identity))
        return torch.cat(xs), bound[0]

    def _model_covariance(self, points: Tensor, num: int, per_call: int, gen: torch.Generator,
                          steps: int | None) -> Tensor:
        """The model's covariance ``[N, N]`` (float64, model units, pooled over channels) at ``points`` ``[N, d]``
        from ``num`` unconditional samples, plus a relative ``1e-6`` diagonal (a sample covariance of fewer
        samples than points is singular)."""
        x = self._model_draws(points, num, per_call, gen, steps)[0].double()  # [S, N, c]
        x = (x - x.mean(0, keepdim=True)).permute(2, 0, 1).reshape(-1, x.shape[1])  # channels pooled: [S c, N]
        k = x.T @ x / max(1, x.shape[0] - self.channels)
        return k + 1e-6 * k.diagonal().mean() * torch.eye(k.shape[0], dtype=k.dtype, device=k.device)

    def _model_error_covariance(self, points: Tensor, num: int, per_call: int, gen: torch.Generator,
                                steps: int | None) -> Callable[[float], Tensor]:
        """``t -> Sigma_t`` ``[N, N]`` (:func:`~funcgen.samplers.guidance.error_covariance`, eq. 3): the
        denoiser's error covariance at level ``t`` on ``num`` of the model's own unconditional samples."""
        x, denoise = self._model_draws(points, num, per_call, gen, steps)
        path = self.method.gaussian_path()
        batch = min(per_call, num)
        pts = points.unsqueeze(0).expand(batch, -1, -1)
        return error_covariance(denoise, path, x, batch, lambda b: path.noise.sample(pts, self.channels, gen))

    def _conditional_batch(self, coords: Tensor, obs: Observation, obs_coords: Tensor, gen: torch.Generator,
                           steps: int | None, guidance: str, progress: bool,
                           data_cov: Tensor | Callable[[float], Tensor] | None = None, resample: int = 1) -> Tensor:
        """One sampler call on the union points ``coords`` ``[b, N, d]`` conditioned on ``obs`` (``data_cov``: the
        model covariance there for ``moment`` guidance, ``t -> Sigma_t`` for ``error``; ``resample``: repeats of
        each step, passed to samplers that take it)."""
        method, c = self.method, self.channels
        if isinstance(method, SupportsGaussianPath):
            path = method.gaussian_path()
            extra = {"resample": resample} if resample != 1 else {}
            if guidance == "replace":
                oc = obs_coords.unsqueeze(0).expand(coords.shape[0], -1, -1)
                cb = replacement_callback(path, obs, lambda: path.noise.sample(oc, c, gen))
                return method.sample(self.net, coords, c, generator=gen, steps=steps, progress=progress, callback=cb,
                                     **extra)
            cov = path.noise.covariance(coords[0], coords[0])
            if guidance == "error" and callable(data_cov):
                guide = covariance_guide(path, data_cov, obs)
            elif guidance == "moment" and isinstance(data_cov, Tensor):
                guide = moment_guide(path, cov, data_cov, obs)
            else:
                guide = tweedie_guide(path, cov.unsqueeze(0), obs)
            return method.sample(self.net, coords, c, generator=gen, steps=steps, progress=progress, guide=guide,
                                 **extra)
        mask = torch.zeros(coords.shape[:2], dtype=torch.bool, device=coords.device)
        mask.scatter_(1, obs.index, True)
        values = obs.scatter(torch.zeros(*coords.shape[:2], c, dtype=coords.dtype, device=coords.device), obs.values)
        k = method.resolve_steps(steps) if isinstance(method, Method) else 1
        return method.project(self.net, coords, values, k=k, mask=mask, generator=gen)

    def log_prob(self, data: PointSet | Tensor, *, steps: int = 100, divergence: DivergenceMode = "auto",
                 probes: int = 4, seed: int | None = 0, batch_size: int = 64, progress: bool = False,
                 check_domain: bool = True) -> Tensor:
        """Log density in nats, one value per function ``[B]`` (float64).

        Functions (diffusion-type methods, :class:`funcgen.methods.SupportsGaussianPath`): ``data`` is a
        PointSet of ``B`` functions in data units; the result is the log density of the values ``[B, N, c]`` at
        those coordinates under the model's marginal there (Lebesgue measure on ``R^(N c)``, data units): the
        probability-flow ODE from the method's smallest trained level to its prior
        (:func:`funcgen.samplers.likelihood.path_log_likelihood`, ``steps`` Heun steps), the prior term the exact
        log density of the method's noise at the points (covariance jitter 1e-9 of its mean variance), plus
        ``- N c log(scale)`` for the data normalisation. ``divergence``: ``exact`` (``N c`` backward passes per
        evaluation), ``hutchinson`` (``probes`` Gaussian probes) or ``auto`` (exact when ``N c <= 64``).

        Manifold points (methods with their own likelihood, e.g. Riemannian diffusion): ``data`` is a tensor of
        points ``[M, D]`` or a PointSet whose values ``[B, N, D]`` hold ``N`` independent points per entry (the sum
        of their log densities per function); density w.r.t. the Riemannian volume (see :meth:`log_likelihood`,
        the older name, and :meth:`log_prob_latlon` for latitude / longitude on the sphere).

        Raises:
            TypeError: the method has no likelihood (IGN: a one-step map without a density).
            ValueError: wrong shapes, non-finite values, points outside the domain.
        """
        method = self.method
        if isinstance(method, SupportsGaussianPath):
            if not isinstance(data, PointSet):
                raise TypeError(f"log_prob of a function model takes a PointSet(coords [B, N, {self.dim}], values "
                                f"[B, N, {self.channels}]) in data units; got {type(data).__name__}")
            self._check_observed(data, 0.0, check_domain)
            param = next(self.net.parameters())
            gen = _seeded(seed, param.device)
            coords = self.to_model_coords(data.coords.to(device=param.device, dtype=param.dtype))
            values = self.normalize(data.values.to(device=param.device, dtype=param.dtype))
            path = method.gaussian_path()
            out = []
            for lo in range(0, data.batch_size, batch_size):
                c, v = coords[lo:lo + batch_size], values[lo:lo + batch_size]
                out.append(path_log_likelihood(method.denoiser(self.net, c, gen), path, v, c, steps=steps,
                                               divergence_mode=divergence, probes=probes, generator=gen,
                                               progress=progress))
            # values are normalised per channel by scale_j: the density in data units gains -N sum_j log scale_j
            scale = self._norm("scale", 1.0, values).double().reshape(-1).expand(data.channels)
            return torch.cat(out) - data.num_points * float(scale.log().sum())
        if isinstance(method, SupportsLikelihood):
            if isinstance(data, PointSet):
                b, n, d = data.values.shape
                ll = self.log_likelihood(data.values.reshape(b * n, d), steps=steps, seed=seed, progress=progress)
                return ll.double().reshape(b, n).sum(1)
            return self.log_likelihood(data, steps=steps, seed=seed, progress=progress).double()
        raise TypeError(f"{type(method).__name__} has no likelihood: it defines no density (IGN maps noise to data "
                        "in one learned step, with no tractable change of variables). Likelihoods exist for the "
                        "diffusion-type methods (functional diffusion, infty-Diff, PFGM++, MDF, flow matching) and "
                        "Riemannian diffusion")

    def log_prob_latlon(self, lat_lon_deg: Tensor, **kwargs: Any) -> Tensor:
        """:meth:`log_prob` of points on the unit sphere given as ``[M, 2]`` (latitude, longitude) in degrees ->
        ``[M]`` (density w.r.t. the area of the unit sphere, per steradian)."""
        from .data.manifold import latlon_to_sphere

        if not isinstance(lat_lon_deg, Tensor) or lat_lon_deg.ndim != 2 or lat_lon_deg.shape[1] != 2:
            raise ValueError(f"lat_lon_deg must be a tensor [M, 2] of (latitude, longitude) in degrees; got "
                             f"{getattr(lat_lon_deg, 'shape', type(lat_lon_deg).__name__)}")
        if not torch.isfinite(lat_lon_deg).all() or lat_lon_deg[:, 0].abs().max() > 90:
            raise ValueError("latitudes must be finite and lie in [-90, 90] degrees (columns: latitude, longitude)")
        if self.channels != 3:
            raise ValueError(f"latitude / longitude points need a model of points on the sphere S^2 (3 ambient "
                             f"coordinates); this model's points have {self.channels}")
        return self.log_prob(latlon_to_sphere(lat_lon_deg.double()).float(), **kwargs)

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

    def save(self, path: str | Path, training: dict[str, Any] | None = None) -> Path:
        """Export weights + config to a ``.safetensors`` file, atomically.

        ``training``: how the model was trained (JSON-serialisable, e.g. the bench's config files, seed,
        budget, steps and commit), stored beside the config and read back by :func:`training_record`.
        """
        from safetensors.torch import save_file

        state = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        state.update({k: v.contiguous() for k, v in self.domain.items()})
        meta = {CONFIG_KEY: json.dumps(self.config())}
        if training is not None:
            meta[TRAINING_KEY] = json.dumps(training)
        return atomic_write(path, lambda tmp: save_file(state, tmp, metadata=meta))

    @classmethod
    def from_config(cls, config: dict[str, Any], state: dict[str, Tensor], source: str,
                    domain: dict[str, Tensor] | None = None) -> "FunctionGenerator":
        """Rebuild from a config dict and a backbone state dict (``source`` names the file in errors); entries
        of ``state`` named ``domain.*`` are the data's domain tensors (see :class:`FunctionGenerator`)."""
        domain = {**(domain or {}), **{k: v for k, v in state.items() if k.startswith(DOMAIN_PREFIX)}}
        state = {k: v for k, v in state.items() if not k.startswith(DOMAIN_PREFIX)}
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
        return cls(method, net, config["data"], domain=domain)


def _observation_groups(query: Tensor, observed: PointSet, to_model_coords: Callable[[Tensor], Tensor],
                        normalize: Callable[[Tensor], Tensor]
                        ) -> Iterator[tuple[Tensor, Tensor, None, Tensor, Tensor]]:
    """Consecutive observed functions that share their query and observed points (a batch of digits with one
    inpainting mask, one coarse grid), so one sampler call can hold several of them.

    Args:
        query: ``[B, N, d]`` query points (model units).
        observed: ``B`` observed functions (data units; ``mask`` ``[B, M]`` marks the observed points).

    Yields:
        ``(union [N + M', d], index [M], None, observed coords [M, d], values [G, M, c])`` per run of ``G``
        functions (model units; see :func:`_union_points`).
    """
    device, dtype = query.device, query.dtype
    prev: tuple[Tensor, Tensor, Tensor] | None = None  # (query, raw observed coords, mask) of the current group
    group: list[Tensor] = []
    union = index = oc = None
    for i in range(observed.batch_size):
        mask_i = None if observed.mask is None else observed.mask[i].to(device)
        raw = observed.coords[i].to(device=device, dtype=dtype)
        keep = slice(None) if mask_i is None else mask_i
        ov = normalize(observed.values[i].to(device=device, dtype=dtype)[keep])
        same = (prev is not None and torch.equal(prev[0], query[i]) and torch.equal(prev[1], raw)
                and ((prev[2] is None and mask_i is None)
                     or (prev[2] is not None and mask_i is not None and torch.equal(prev[2], mask_i))))
        if same:
            group.append(ov)
            continue
        if group:
            yield union, index, None, oc, torch.stack(group)
        oc = to_model_coords(raw[keep])
        union, index = _union_points(query[i], oc)
        prev, group = (query[i], raw, mask_i), [ov]
    if group:
        yield union, index, None, oc, torch.stack(group)


def _cell_groups(query: Tensor, observed: PointSet, to_model_coords: Callable[[Tensor], Tensor],
                 normalize: Callable[[Tensor], Tensor]) -> Iterator[tuple[Tensor, None, Tensor, Tensor, Tensor]]:
    """As :func:`_observation_groups` for cell averages (``observe="cells"``): each observed function's points are
    the cell centres of a grid and its values the averages of its cells' query points.

    Yields:
        ``(query [N, d], None, A [M, N], observed coords [M, d], values [G, M, c])`` per run of ``G`` functions
        sharing their query points and cells (model units; ``A`` from :func:`funcgen.pointset.cell_average_matrix`).

    Raises:
        ValueError: observed points that are not a grid's cell centres, a cell without query points.
    """
    device, dtype = query.device, query.dtype
    key: tuple[Tensor, Tensor] | None = None  # (query, observed cell centres) of the current group
    group: list[Tensor] = []
    operator = oc = None
    for i in range(observed.batch_size):
        cells = to_model_coords(observed.coords[i].to(device=device, dtype=dtype))
        ov = normalize(observed.values[i].to(device=device, dtype=dtype))
        if key is not None and torch.equal(key[0], query[i]) and torch.equal(key[1], cells):
            group.append(ov)
            continue
        shape = grid_shape(cells)
        if shape is None:
            raise ValueError(f"observe='cells': observed function {i}'s points are not the cell centres of a grid on "
                             "the domain (funcgen.pointset.grid_coords, in data units)")
        if group:
            yield key[0], None, operator, oc, torch.stack(group)
        operator, oc, key, group = cell_average_matrix(query[i], shape), cells, (query[i], cells), [ov]
    if group:
        yield key[0], None, operator, oc, torch.stack(group)


def _union_points(query: Tensor, observed: Tensor, tol: float = 1e-7) -> tuple[Tensor, Tensor]:
    """The union of ``query`` ``[N, d]`` and ``observed`` ``[M, d]`` points -> ``(union [N + M', d], index [M])``:
    query points first, then the observed points that match no query point (max-norm distance > ``tol``);
    ``index`` gives each observed point's position in the union.

    Raises:
        ValueError: two observed points coincide (their values could contradict each other).
    """
    m = observed.shape[0]
    if m > 1:
        gap = torch.cdist(observed.double(), observed.double(), p=float("inf"))
        gap.fill_diagonal_(float("inf"))
        if bool((gap <= tol).any()):
            i, j = (gap <= tol).nonzero()[0].tolist()
            raise ValueError(f"observed points {i} and {j} of a function coincide ({observed[i].tolist()}): give each "
                             "point once (average repeated measurements, or pass obs_std)")
    best = torch.full((m,), float("inf"), dtype=torch.float64, device=query.device)
    where = torch.full((m,), -1, dtype=torch.long, device=query.device)
    chunk = max(1, 2**24 // max(m, 1))
    for lo in range(0, query.shape[0], chunk):
        dist = torch.cdist(observed.double(), query[lo:lo + chunk].double(), p=float("inf"))  # [M, n]
        val, arg = dist.min(1)
        better = val < best
        best = torch.where(better, val, best)
        where = torch.where(better, arg + lo, where)
    new = best > tol
    index = where.clone()
    index[new] = query.shape[0] + torch.arange(int(new.sum()), device=query.device)
    return torch.cat([query, observed[new].to(query.dtype)]), index


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
    return FunctionGenerator.from_config(json.loads(ckpt[CONFIG_KEY]), state, str(path),
                                         domain=ckpt.get("funcgen_domain"))


def training_record(path: str | Path) -> dict[str, Any] | None:
    """How an export was trained, as :meth:`FunctionGenerator.save` stored it (None: not stored, or a
    ``.ckpt``, whose trainer state lives in the checkpoint itself)."""
    path = Path(path)
    if _is_checkpoint(path):
        return None
    raw = read_safetensors_metadata(path, "re-export it with `funcgen export`").get(TRAINING_KEY)
    if raw is None:
        return None
    info = json.loads(raw)
    if not isinstance(info, dict):
        raise ValueError(f"{path}: the {TRAINING_KEY!r} metadata is not a JSON object")
    return info


def _is_checkpoint(path: Path) -> bool:
    """Whether the model file ``path`` is a Lightning ``.ckpt`` (a torch zip archive) rather than a safetensors
    export; ``FileNotFoundError`` when there is no file."""
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path} (expected a .safetensors export or a .ckpt checkpoint)")
    with open(path, "rb") as f:
        return path.suffix == ".ckpt" or f.read(2) == b"PK"


def load(path: str | Path) -> FunctionGenerator:
    """Load an exported ``.safetensors`` model or a training ``.ckpt`` without unpickling code."""
    path = Path(path)
    return _load_lightning(path) if _is_checkpoint(path) else _load_safetensors(path)
