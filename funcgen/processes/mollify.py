"""Gaussian (heat-kernel) mollifier on the unit cube with reflective (Neumann) boundary.

``T`` is the heat semigroup ``exp(s Laplacian)`` on ``[0, 1]^d`` with Neumann boundary conditions,
run to time ``s = width^2 / 2``: in the interior it is a Gaussian blur of std ``width`` (physical
units), near the boundary the kernel is reflected (method of images). Its eigenfunctions are the
products of ``cos(pi k x)``; the eigenvalue of ``cos(pi k x)`` is ``-(pi k)^2``, so on each axis

    T cos(pi k x) = exp(-width^2 (pi k)^2 / 2) cos(pi k x).                                   (1)

On cell-centre grids (:func:`funcgen.pointset.grid_coords`) the cosines sampled at the centres are
exactly the DCT-II basis, so ``T`` is a DCT-II, the multiplier (1), and the inverse DCT, per axis
(``O(N log N)``, any resolution). The mollified white noise ``T xi`` is the Gaussian random field
with covariance ``T T* = exp(width^2 Laplacian)``: the Neumann heat kernel of std ``sqrt(2) width``
(:class:`MollifiedNoise`), sampled by the DCT on grids and by Cholesky at scattered points, so its
law never depends on the resolution (infty-Diff, Bond-Taylor & Willcocks 2024, sec. 3.1).
Away from the boundary it is :func:`funcgen.processes.noise.mollified_white_noise` (free-space kernel).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..pointset import pointset_to_grid, shared_grid_shape
from ..rng import randn
from .noise import GaussianRandomField, _check_coords

__all__ = ["dct2", "idct2", "heat_multiplier", "mollify_grid", "wiener_deconvolve_grid", "mollify",
           "wiener_deconvolve", "neumann_heat_kernel", "MollifiedNoise", "require_grid"]


def dct2(x: Tensor) -> Tensor:
    """Unnormalised DCT-II along the last axis: ``X_k = sum_n x_n cos(pi k (n + 1/2) / N)``, ``[..., N]``.

    Via the FFT of the even extension ``[x, flip(x)]``: ``X_k = Re(exp(-i pi k / 2N) Y_k) / 2``.
    """
    n = x.shape[-1]
    y = torch.fft.fft(torch.cat([x, x.flip(-1)], dim=-1), dim=-1)[..., :n]
    k = torch.arange(n, device=x.device, dtype=x.dtype)
    phase = torch.polar(torch.ones_like(k), -math.pi * k / (2 * n))
    return 0.5 * (y * phase).real


def idct2(X: Tensor) -> Tensor:
    """Inverse of :func:`dct2` along the last axis (a DCT-III), ``[..., N]``.

    ``x_n = (X_0 + 2 sum_{k>=1} X_k cos(pi k (n + 1/2) / N)) / N`` = twice the first N entries of the
    inverse real FFT (length 2N) of the half spectrum ``X_k exp(i pi k / 2N)``, ``X_N = 0``.
    """
    n = X.shape[-1]
    k = torch.arange(n, device=X.device, dtype=X.dtype)
    z = X * torch.polar(torch.ones_like(k), math.pi * k / (2 * n))
    z = torch.cat([z, torch.zeros_like(z[..., :1])], dim=-1)
    return 2.0 * torch.fft.irfft(z, n=2 * n, dim=-1)[..., :n]


def heat_multiplier(n: int, width: float, *, device: torch.device | str | None = None,
                    dtype: torch.dtype = torch.float32) -> Tensor:
    """``G_k = exp(-width^2 (pi k)^2 / 2)``, ``k = 0..n-1``: eq. (1) for an axis of ``n`` cells, ``[n]``."""
    k = torch.arange(n, device=device, dtype=torch.float64)
    return torch.exp(-0.5 * (width * math.pi * k) ** 2).to(dtype)


def _apply_multiplier(x: Tensor, ndim: int, fn) -> Tensor:
    """Apply ``idct2(fn(G) * dct2(.))`` along each of the last ``ndim`` axes of ``x``."""
    for axis in range(x.ndim - ndim, x.ndim):
        y = x.movedim(axis, -1)
        y = idct2(dct2(y) * fn(y.shape[-1]).to(y.device, y.dtype))
        x = y.movedim(-1, axis)
    return x


def _check_grid(x: Tensor, width: float) -> None:
    if x.ndim < 3:
        raise ValueError(
            f"grid mollifier expects [B, c, *spatial] with at least one spatial axis; got {tuple(x.shape)}")
    if not width > 0:
        raise ValueError(f"mollifier width must be positive (physical units of [0, 1]); got {width}")


def mollify_grid(x: Tensor, width: float) -> Tensor:
    """``T x`` for gridded signals ``x`` ``[B, c, *spatial]`` on cell-centre grids of ``[0,1]^d``.

    ``width`` is the std of the Gaussian blur in physical units (1 pixel at resolution n is ``1/n``).
    """
    _check_grid(x, width)
    return _apply_multiplier(x, x.ndim - 2, lambda n: heat_multiplier(n, width, dtype=torch.float64))


def wiener_deconvolve_grid(x: Tensor, width: float, eps: float = 0.05) -> Tensor:
    """Wiener filter ``X G / (G^2 + eps^2)`` per DCT mode (``G`` the product of eq. (1) over axes),
    ``[B, c, *spatial]``.

    Undoes the blur of the well-resolved modes for display and metrics; ``eps`` caps the gain at ``1/(2 eps)``.
    """
    _check_grid(x, width)
    if not eps > 0:
        raise ValueError(f"Wiener regulariser eps must be positive; got {eps}")
    spatial = x.shape[2:]
    g = torch.ones((), dtype=torch.float64, device=x.device)
    for i, n in enumerate(spatial):  # the multiplier is not separable: build it on the full grid
        shape = [1] * len(spatial)
        shape[i] = n
        g = g * heat_multiplier(n, width, device=x.device, dtype=torch.float64).reshape(shape)
    y = x.to(torch.float64)
    for axis in range(2, x.ndim):
        y = dct2(y.movedim(axis, -1)).movedim(-1, axis)
    y = y * g / (g * g + eps * eps)
    for axis in range(2, x.ndim):
        y = idct2(y.movedim(axis, -1)).movedim(-1, axis)
    return y.to(x.dtype)


def require_grid(coords: Tensor, who: str) -> tuple[int, ...]:
    """The cell-centre grid shape shared by every function of ``coords`` ``[B, N, d]``, or a clear error."""
    if coords.ndim != 3:
        raise ValueError(f"{who}: coords must have shape [B, N, d]; got {tuple(coords.shape)}")
    shape = shared_grid_shape(coords)
    if shape is None:
        raise ValueError(
            f"{who} needs every function on the same full cell-centre grid of [0,1]^d (the mollifier is a "
            f"DCT on the dense grid), but got {coords.shape[1]} points that are not one: use the grid data "
            "modules with coords='grid' and leave model.train_subsample at 1 (the method subsamples itself)")
    return shape


def mollify(values: Tensor, coords: Tensor, width: float) -> Tensor:
    """``T x`` for values ``[B, N, c]`` on a full cell-centre grid ``coords`` ``[B, N, d]`` -> ``[B, N, c]``."""
    shape = require_grid(coords, "mollify")
    out = mollify_grid(pointset_to_grid(values.to(torch.float64), shape), width)
    return out.reshape(values.shape[0], values.shape[2], -1).transpose(1, 2).to(values.dtype)


def wiener_deconvolve(values: Tensor, coords: Tensor, width: float, eps: float = 0.05) -> Tensor:
    """:func:`wiener_deconvolve_grid` for values ``[B, N, c]`` on a full grid ``coords`` ``[B, N, d]``."""
    shape = require_grid(coords, "wiener_deconvolve")
    out = wiener_deconvolve_grid(pointset_to_grid(values, shape), width, eps)
    return out.reshape(values.shape[0], values.shape[2], -1).transpose(1, 2)


def neumann_heat_kernel(x: Tensor, y: Tensor, std: float) -> Tensor:
    """Heat kernel of ``[0,1]^d`` with Neumann boundary, Gaussian std ``std``:
    ``[..., N, d], [..., M, d] -> [..., N, M]``.

    Method of images per axis: ``p(x, y) = sum_m g(x - y + 2m) + g(x + y + 2m)``, ``g`` the centred
    normal density of std ``std``; the product over axes. Images up to ``|m| <= ceil(6 std) + 1``.
    """
    reach = int(math.ceil(6.0 * std)) + 1
    out = None
    for k in range(x.shape[-1]):
        xi, yj = x[..., :, None, k].double(), y[..., None, :, k].double()
        acc = torch.zeros(torch.broadcast_shapes(xi.shape, yj.shape), dtype=torch.float64, device=x.device)
        for m in range(-reach, reach + 1):
            for u in (xi - yj + 2 * m, xi + yj + 2 * m):
                acc = acc + torch.exp(-0.5 * (u / std) ** 2)
        acc = acc / (math.sqrt(2 * math.pi) * std)
        out = acc if out is None else out * acc
    return out.to(x.dtype)


class MollifiedNoise(GaussianRandomField):
    """``sqrt(cell^d) T xi``: continuum white noise, scaled to unit variance per cell of side ``cell``,
    mollified by the Neumann heat kernel of std ``width``.

    A Gaussian random field on ``[0,1]^d`` with covariance
    ``cell^d neumann_heat_kernel(x, y, sqrt(2) width)`` (free-space variance
    ``cell^d (4 pi width^2)^(-d/2)``). infty-Diff (Bond-Taylor & Willcocks 2024) blurs unit-variance
    pixel noise of the training grid: that is ``cell = 1/n`` for an ``n``-pixel axis, and with the
    paper's 1-pixel mollifier (``width = cell``) the per-point variance is ``(4 pi)^(-d/2)`` (``1/(4 pi)``
    in 2-D). ``cell`` is a physical length, so the law is the same field at every resolution;
    ``cell = 1`` is white noise of unit intensity on the unit cube (cell values ``N(0, N)`` at
    resolution ``N``, :class:`funcgen.processes.noise.WhiteNoise` with ``physical=True``).

    On a shared cell-centre grid it is drawn as the DCT mollification of that white noise: its
    covariance is the eigen-expansion of the kernel truncated at the grid's ``n`` modes per axis, exact
    up to ``exp(-(pi n width)^2)``, at ``O(N log N)``; elsewhere by a dense Cholesky of the kernel.

    Args:
        width: std of the mollifier in physical units.
        dim: dimension ``d`` of the domain.
        cell: side of the cell on which the white noise has unit variance, physical units.
        jitter: relative diagonal added before the Cholesky factorisation (scattered points).
        max_dense_points: above this N off a grid, sampling raises.
    """

    def __init__(self, width: float = 1.0 / 32, dim: int = 2, cell: float = 1.0, jitter: float = 1e-6,
                 max_dense_points: int = 6000) -> None:
        if not width > 0 or dim <= 0 or not cell > 0:
            raise ValueError(f"width, dim and cell must be positive; got width={width}, dim={dim}, cell={cell}")
        self.cell_volume = float(cell) ** dim
        super().__init__("se", lengthscale=math.sqrt(2.0) * width,
                         variance=self.cell_volume * (4.0 * math.pi * width**2) ** (-dim / 2.0),
                         jitter=jitter, max_dense_points=max_dense_points)
        self.width, self.dim, self.cell = float(width), int(dim), float(cell)

    def _check_dim(self, d: int) -> None:
        if d != self.dim:
            raise ValueError(f"MollifiedNoise built for dim={self.dim} got coordinates with d={d}")

    def covariance(self, x: Tensor, y: Tensor) -> Tensor:
        self._check_dim(x.shape[-1])
        return self.cell_volume * neumann_heat_kernel(x, y, math.sqrt(2.0) * self.width)

    def sample(self, coords: Tensor, channels: int = 1, generator: torch.Generator | None = None) -> Tensor:
        _check_coords(coords, channels)
        self._check_dim(coords.shape[-1])
        shape = shared_grid_shape(coords)
        if shape is not None:
            return self.sample_grid(shape, coords.shape[0], channels, generator, device=coords.device,
                                    dtype=coords.dtype)
        return super().sample(coords, channels, generator)  # not a shared grid: dense Cholesky

    def sample_grid(self, shape: tuple[int, ...], batch: int, channels: int = 1,
                    generator: torch.Generator | None = None, *, device: torch.device | str = "cpu",
                    dtype: torch.dtype = torch.float32) -> Tensor:
        """Draws ``[batch, prod(shape), channels]`` on the cell-centre grid of ``shape``: ``T`` of white noise
        with variance ``N cell^d`` per grid cell."""
        self._check_dim(len(shape))
        n = math.prod(shape)
        std = math.sqrt(n * self.cell_volume)
        z = randn((batch, channels, *shape), generator, device=torch.device(device), dtype=torch.float64) * std
        out = mollify_grid(z, self.width)
        return out.reshape(batch, channels, n).transpose(1, 2).to(dtype).contiguous()
