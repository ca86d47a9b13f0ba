"""Manifolds for Riemannian diffusion: ``Sphere(n)``, ``SO3`` and ``Torus(n)``, float32- and float64-safe.

Every point and tangent vector is a FLAT ambient vector ``[..., D]`` so that the rest of the library
(PointSets, nets, solvers) never needs to know the manifold:

=============  ============================  ==========================  ===============================
manifold       points ``[..., D]``           tangent vectors at ``x``    metric / distance
=============  ============================  ==========================  ===============================
``Sphere(n)``  unit vectors of R^(n+1)       ``v`` with ``<v, x> = 0``    induced, great-circle angle
``SO3``        rotation matrices, row-major  ``R A`` flattened, ``A``    ``<U, V> = 1/2 tr(U^T V)``;
               flattened to 9 entries        skew                        distance = rotation angle
``Torus(n)``   angles in ``[-pi, pi)``       any ``v`` in R^n            flat, per-angle wrapped gaps
=============  ============================  ==========================  ===============================

This module is the ONLY place in funcgen that imports geomstats (lazily, on first use, after
setting ``GEOMSTATS_BACKEND=pytorch``; the import costs seconds and most of funcgen never needs
it). geomstats 2.8 is used where it is sound: the sphere's exponential and logarithm maps
(computed in float64, returned in the input's dtype and device, because geomstats upcasts
silently and mixes dtypes in its checks). Where it is not sound we use closed forms in torch:
geomstats' sphere distance is an ``arccos`` that returns 0 below ~1e-8 (we use the stable
``2 atan2(|x - y|, |x + y|)``), its SO(3) logarithm fails on float32, its
``SpecialOrthogonal.random_uniform`` is not Haar (we map uniform unit quaternions, which are Haar),
and it has no torus class (the torus is a product of circles stored as angles).
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any

import torch
from torch import Tensor

from ..config import Configurable
from ..rng import rand, randn

__all__ = ["Manifold", "Sphere", "SO3", "Torus", "skew_to_vector", "vector_to_skew", "quaternion_to_matrix",
           "wrap_angle"]


@functools.lru_cache(maxsize=None)
def _geomstats() -> Any:
    """Import geomstats with the pytorch backend (once) and return ``geomstats.geometry.hypersphere``."""
    if "geomstats" not in __import__("sys").modules:
        os.environ["GEOMSTATS_BACKEND"] = "pytorch"
    default = torch.get_default_dtype()
    try:
        import geomstats.backend as gs
        from geomstats.geometry import hypersphere
    finally:
        # geomstats' import calls torch.set_default_dtype(float64) for the whole process: undo it
        torch.set_default_dtype(default)

    if gs.__name__ != "geomstats.pytorch":
        raise RuntimeError(f"geomstats was imported with backend {gs.__name__!r} before funcgen; funcgen needs "
                           "the pytorch backend: set GEOMSTATS_BACKEND=pytorch before importing geomstats")
    return hypersphere


def _gs_call(fn: Any, *args: Tensor) -> Tensor:
    """Call a geomstats function on float64 tensors with torch's default dtype float64 for the call only.

    geomstats builds internal constants in the default dtype (float32 ones cost 1e-8 of accuracy);
    the process-wide default is restored afterwards.
    """
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return fn(*args)
    finally:
        torch.set_default_dtype(default)


class Manifold(Configurable):
    """A Riemannian manifold whose points are flat ambient vectors ``[..., D]``.

    Attributes:
        dim: intrinsic dimension.
        ambient_dim: size ``D`` of the flat representation of points and tangent vectors.
    """

    dim: int
    ambient_dim: int

    # --- geometry (subclasses) -----------------------------------------------------------
    def exp(self, x: Tensor, v: Tensor) -> Tensor:
        """Exponential map: the point reached from ``x`` along the geodesic of velocity ``v`` in time 1."""
        raise NotImplementedError

    def log(self, x: Tensor, y: Tensor) -> Tensor:
        """Logarithm map: the tangent vector at ``x`` with ``exp(x, log(x, y)) = y`` (minimising geodesic)."""
        raise NotImplementedError

    def proj(self, x: Tensor, v: Tensor) -> Tensor:
        """Orthogonal projection of an ambient vector ``v`` onto the tangent space at ``x``."""
        raise NotImplementedError

    def dist(self, x: Tensor, y: Tensor) -> Tensor:
        """Geodesic distance ``[...]``."""
        raise NotImplementedError

    def inner(self, x: Tensor, u: Tensor, v: Tensor) -> Tensor:
        """Riemannian inner product ``[...]`` of tangent vectors ``u, v`` at ``x``."""
        return (u * v).sum(-1)

    def egrad_to_rgrad(self, x: Tensor, g: Tensor) -> Tensor:
        """Riemannian gradient from the Euclidean (ambient) gradient ``g`` of a function at ``x``."""
        return self.proj(x, g)

    def random_uniform(self, num: int, generator: torch.Generator | None = None,
                       dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Tensor:
        """``[num, D]`` points from the normalised Riemannian volume (Haar measure on SO(3))."""
        raise NotImplementedError

    def random_tangent(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A standard Gaussian tangent vector at each ``x`` (identity covariance in the Riemannian metric)."""
        return self.proj(x, randn(tuple(x.shape), generator, device=x.device, dtype=torch.float64).to(x))

    def log_volume(self) -> float:
        """Log of the total Riemannian volume (the uniform density is ``exp(-log_volume)``)."""
        raise NotImplementedError

    def wrap(self, x: Tensor) -> Tensor:
        """Map nearly-on-manifold points back onto the manifold (numerical drift)."""
        return x

    # --- validation ----------------------------------------------------------------------
    def belongs(self, x: Tensor, atol: float | None = None) -> Tensor:
        """Bool ``[...]``: whether each ``x`` is a point of the manifold (within ``atol``)."""
        raise NotImplementedError

    def default_atol(self, x: Tensor) -> float:
        # float64 tolerance admits float32-rounded points (norm error ~1e-7) converted to float64
        return 1e-4 if x.dtype in (torch.float32, torch.float16, torch.bfloat16) else 1e-6

    def check(self, x: Tensor, name: str = "points", atol: float | None = None) -> Tensor:
        """Raise a ValueError naming the problem unless ``x`` ``[..., D]`` are finite points of the manifold."""
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise TypeError(f"{name} must be a floating torch tensor; got {type(x).__name__}"
                            + (f" of dtype {x.dtype}" if isinstance(x, Tensor) else ""))
        if x.ndim == 0 or x.shape[-1] != self.ambient_dim:
            raise ValueError(f"{name} on {self!r} must have shape [..., {self.ambient_dim}]; got {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError(f"{name} contain NaN or inf")
        ok = self.belongs(x, atol)
        if not ok.all():
            bad = (~ok).nonzero()[0].tolist()
            raise ValueError(f"{int((~ok).sum())} of the {name} are not on {self!r} (first at index {tuple(bad)}: "
                             f"{x[tuple(bad)].tolist()}); {self.on_manifold_hint}")
        return x

    on_manifold_hint: str = ""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.config["init_args"].items())
        return f"{type(self).__name__}({args})"


class Sphere(Manifold):
    """The unit sphere ``S^n`` in ``R^(n+1)``.

    Args:
        n: intrinsic dimension (``S^2`` is the ordinary sphere, points in R^3).
    """

    on_manifold_hint = "sphere points must have unit Euclidean norm: divide by x.norm(dim=-1, keepdim=True)"

    def __init__(self, n: int = 2) -> None:
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"Sphere needs an integer dimension n >= 1; got {n!r}")
        self.n = self.dim = n
        self.ambient_dim = n + 1

    @functools.cached_property
    def _gs(self) -> Any:
        return _geomstats().Hypersphere(self.n)

    def exp(self, x: Tensor, v: Tensor) -> Tensor:
        # geomstats (float64) is accurate here; renormalise against float32 drift
        xd, vd = torch.broadcast_tensors(x.to(torch.float64), v.to(torch.float64))
        y = _gs_call(self._gs.metric.exp, vd.reshape(-1, self.ambient_dim), xd.reshape(-1, self.ambient_dim))
        y = y.reshape(xd.shape)
        return (y / y.norm(dim=-1, keepdim=True)).to(x)

    def log(self, x: Tensor, y: Tensor) -> Tensor:
        xd, yd = torch.broadcast_tensors(x.to(torch.float64), y.to(torch.float64))
        shape = xd.shape
        v = _gs_call(self._gs.metric.log, yd.reshape(-1, self.ambient_dim), xd.reshape(-1, self.ambient_dim))
        return v.reshape(shape).to(x)

    def proj(self, x: Tensor, v: Tensor) -> Tensor:
        return v - (v * x).sum(-1, keepdim=True) * x

    def dist(self, x: Tensor, y: Tensor) -> Tensor:
        xd, yd = x.to(torch.float64), y.to(torch.float64)
        return (2.0 * torch.atan2((xd - yd).norm(dim=-1), (xd + yd).norm(dim=-1))).to(x)

    def random_uniform(self, num: int, generator: torch.Generator | None = None,
                       dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Tensor:
        z = randn((num, self.ambient_dim), generator, dtype=torch.float64)
        return (z / z.norm(dim=-1, keepdim=True)).to(dtype=dtype, device=device if device is not None else z.device)

    def log_volume(self) -> float:
        return math.log(2.0) + 0.5 * (self.n + 1) * math.log(math.pi) - math.lgamma(0.5 * (self.n + 1))

    def wrap(self, x: Tensor) -> Tensor:
        return x / x.norm(dim=-1, keepdim=True)

    def belongs(self, x: Tensor, atol: float | None = None) -> Tensor:
        atol = self.default_atol(x) if atol is None else atol
        return ((x.to(torch.float64).norm(dim=-1) - 1.0).abs() <= atol) & torch.isfinite(x).all(-1)


def vector_to_skew(w: Tensor) -> Tensor:
    """``[..., 3]`` -> skew matrices ``[..., 3, 3]`` with ``hat(w) u = w x u``."""
    z = torch.zeros_like(w[..., 0])
    return torch.stack([z, -w[..., 2], w[..., 1], w[..., 2], z, -w[..., 0], -w[..., 1], w[..., 0], z],
                       -1).reshape(*w.shape[:-1], 3, 3)


def skew_to_vector(a: Tensor) -> Tensor:
    """Skew part of ``[..., 3, 3]`` -> its axial vector ``[..., 3]``."""
    return 0.5 * torch.stack([a[..., 2, 1] - a[..., 1, 2], a[..., 0, 2] - a[..., 2, 0],
                              a[..., 1, 0] - a[..., 0, 1]], -1)


def _so3_exp_vec(w: Tensor) -> Tensor:
    """Rodrigues: rotation vector ``[..., 3]`` (float64) -> matrix ``[..., 3, 3]``."""
    th = w.norm(dim=-1)[..., None, None]
    k = vector_to_skew(w)
    small = th < 1e-6
    ts = torch.where(small, torch.ones_like(th), th)
    a = torch.where(small, 1.0 - th**2 / 6.0, torch.sin(ts) / ts)
    b = torch.where(small, 0.5 - th**2 / 24.0, (1.0 - torch.cos(ts)) / ts**2)
    eye = torch.eye(3, dtype=w.dtype, device=w.device)
    return eye + a * k + b * (k @ k)


def _so3_log_vec(r: Tensor) -> Tensor:
    """Rotation matrix ``[..., 3, 3]`` (float64) -> rotation vector ``[..., 3]`` with angle in [0, pi]."""
    tr = r.diagonal(dim1=-2, dim2=-1).sum(-1)
    v = skew_to_vector(r)  # = sin(th) * axis
    th = torch.atan2(v.norm(dim=-1), (tr - 1.0) / 2.0)
    sin = torch.sin(th)
    ok = sin > 1e-4
    scale = torch.where(ok, th / torch.where(ok, sin, torch.ones_like(sin)), 1.0 + th**2 / 6.0)
    w = v * scale[..., None]
    # near pi the skew part vanishes: axis from the symmetric part (R + I)/2 = a a^T (+ O(pi - th))
    near_pi = th > math.pi - 1e-2
    if near_pi.any():
        s = (r + r.transpose(-1, -2)) / 2.0
        b = (s - torch.cos(th)[..., None, None] * torch.eye(3, dtype=r.dtype, device=r.device))
        col = b.diagonal(dim1=-2, dim2=-1).argmax(-1)
        axis = torch.gather(b, -1, col[..., None, None].expand(*b.shape[:-1], 1)).squeeze(-1)
        axis = axis / axis.norm(dim=-1, keepdim=True).clamp_min(1e-300)
        sign = torch.sign((axis * v).sum(-1))
        sign = torch.where(sign == 0, torch.ones_like(sign), sign)
        w = torch.where(near_pi[..., None], axis * (sign * th)[..., None], w)
    return w


class SO3(Manifold):
    """The rotation group SO(3), points stored as row-major flattened matrices ``[..., 9]``.

    Bi-invariant metric ``<U, V> = 1/2 tr(U^T V)``: the distance is the rotation angle and the
    volume is ``8 pi^2``; tangent vectors at ``R`` are ``R hat(w)`` (flattened) with Riemannian norm ``|w|``.
    """

    on_manifold_hint = ("SO(3) points are row-major flattened rotation matrices (R^T R = I, det R = 1); "
                        "build them with funcgen.geometry.SO3.from_matrix")

    def __init__(self) -> None:
        self.dim, self.ambient_dim = 3, 9

    @staticmethod
    def as_matrix(x: Tensor) -> Tensor:
        """``[..., 9]`` -> ``[..., 3, 3]``."""
        return x.reshape(*x.shape[:-1], 3, 3)

    @staticmethod
    def from_matrix(m: Tensor) -> Tensor:
        """``[..., 3, 3]`` -> ``[..., 9]``."""
        return m.reshape(*m.shape[:-2], 9)

    def exp(self, x: Tensor, v: Tensor) -> Tensor:
        r = self.as_matrix(x.to(torch.float64))
        w = skew_to_vector(r.transpose(-1, -2) @ self.as_matrix(v.to(torch.float64)))
        return self.from_matrix(r @ _so3_exp_vec(w)).to(x)

    def log(self, x: Tensor, y: Tensor) -> Tensor:
        r = self.as_matrix(x.to(torch.float64))
        w = _so3_log_vec(r.transpose(-1, -2) @ self.as_matrix(y.to(torch.float64)))
        return self.from_matrix(r @ vector_to_skew(w)).to(x)

    def proj(self, x: Tensor, v: Tensor) -> Tensor:
        r, m = self.as_matrix(x), self.as_matrix(v)
        a = r.transpose(-1, -2) @ m
        return self.from_matrix(r @ (a - a.transpose(-1, -2)) / 2.0)

    def dist(self, x: Tensor, y: Tensor) -> Tensor:
        rel = self.as_matrix(x.to(torch.float64)).transpose(-1, -2) @ self.as_matrix(y.to(torch.float64))
        return _so3_log_vec(rel).norm(dim=-1).to(x)

    def inner(self, x: Tensor, u: Tensor, v: Tensor) -> Tensor:
        return 0.5 * (u * v).sum(-1)

    def egrad_to_rgrad(self, x: Tensor, g: Tensor) -> Tensor:
        # <grad f, v>_g = 1/2 <grad f, v>_F = <g, v>_F  =>  grad f = 2 proj(g)
        return 2.0 * self.proj(x, g)

    def random_tangent(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        w = randn((*x.shape[:-1], 3), generator, device=x.device, dtype=torch.float64).to(x)
        return self.from_matrix(self.as_matrix(x) @ vector_to_skew(w))

    def tangent_vector(self, x: Tensor, w: Tensor) -> Tensor:
        """Tangent vector ``R hat(w)`` ``[..., 9]`` at ``x`` from body angular velocity ``w`` ``[..., 3]``."""
        return self.from_matrix(self.as_matrix(x) @ vector_to_skew(w.to(x)))

    def random_uniform(self, num: int, generator: torch.Generator | None = None,
                       dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Tensor:
        q = randn((num, 4), generator, dtype=torch.float64)
        q = q / q.norm(dim=-1, keepdim=True)  # uniform unit quaternion -> Haar rotation
        device = device if device is not None else q.device
        return self.from_matrix(quaternion_to_matrix(q)).to(dtype=dtype, device=device)

    def log_volume(self) -> float:
        return math.log(8.0 * math.pi**2)

    def wrap(self, x: Tensor) -> Tensor:
        u, _, vh = torch.linalg.svd(self.as_matrix(x.to(torch.float64)))
        d = torch.det(u @ vh)
        u = torch.cat([u[..., :2], u[..., 2:] * d[..., None, None]], -1)
        return self.from_matrix(u @ vh).to(x)

    def belongs(self, x: Tensor, atol: float | None = None) -> Tensor:
        atol = self.default_atol(x) if atol is None else atol
        r = self.as_matrix(x.to(torch.float64))
        err = (r.transpose(-1, -2) @ r - torch.eye(3, dtype=r.dtype, device=r.device)).abs().amax((-2, -1))
        return (err <= atol) & ((torch.det(r) - 1.0).abs() <= 3 * atol)


def quaternion_to_matrix(q: Tensor) -> Tensor:
    """Unit quaternions ``[..., 4]`` (w, x, y, z) -> rotation matrices ``[..., 3, 3]``."""
    w, x, y, z = q.unbind(-1)
    return torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
                        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
                        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
                       -1).reshape(*q.shape[:-1], 3, 3)


def wrap_angle(a: Tensor) -> Tensor:
    """Angles mapped into ``[-pi, pi)``."""
    return torch.remainder(a + math.pi, 2.0 * math.pi) - math.pi


class Torus(Manifold):
    """The flat torus ``T^n`` = product of ``n`` unit circles, points stored as angles in ``[-pi, pi)``.

    Args:
        n: number of circles.
    """

    on_manifold_hint = ("torus points are angles in radians within [-pi, pi]: "
                        "wrap them with remainder(a + pi, 2 pi) - pi")

    def __init__(self, n: int = 2) -> None:
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"Torus needs an integer number of circles n >= 1; got {n!r}")
        self.n = self.dim = self.ambient_dim = n

    def exp(self, x: Tensor, v: Tensor) -> Tensor:
        return wrap_angle(x + v)

    def log(self, x: Tensor, y: Tensor) -> Tensor:
        return wrap_angle(y - x)

    def proj(self, x: Tensor, v: Tensor) -> Tensor:
        return v

    def dist(self, x: Tensor, y: Tensor) -> Tensor:
        return self.log(x.to(torch.float64), y.to(torch.float64)).norm(dim=-1).to(x)

    def random_uniform(self, num: int, generator: torch.Generator | None = None,
                       dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Tensor:
        u = rand((num, self.n), generator, device=device, dtype=torch.float64)
        return (2.0 * math.pi * u - math.pi).to(dtype=dtype, device=device if device is not None else u.device)

    def log_volume(self) -> float:
        return self.n * math.log(2.0 * math.pi)

    def wrap(self, x: Tensor) -> Tensor:
        return wrap_angle(x)

    def belongs(self, x: Tensor, atol: float | None = None) -> Tensor:
        atol = self.default_atol(x) if atol is None else atol
        return (x.abs() <= math.pi + atol).all(-1) & torch.isfinite(x).all(-1)
