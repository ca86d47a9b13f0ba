"""Function-space noise, sampled AT GIVEN COORDINATES.

Every noise here is the law of a random *function* ``xi: Omega -> R^c``; ``sample(coords)`` returns
its values at the points. The law of the values at a fixed set of points never depends on how many
other points are drawn with them (except :class:`WhiteNoise` with ``physical=True``, which models
cell averages of continuum white noise and says so).

All noises implement:
    ``sample(coords [B, N, d], channels, generator) -> [B, N, channels]`` (channels independent)
    ``covariance(x [N, d], y [M, d]) -> [N, M]`` (the covariance of one channel)
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Literal

import torch
from torch import Tensor

from ..config import Configurable
from ..pointset import grid_shape, shares_points, unbroadcast
from ..rng import rand, randn
from .density import DEFAULT_JITTER, gaussian_log_prob, student_t_log_prob

__all__ = [
    "FunctionNoise",
    "WhiteNoise",
    "EigenNoise",
    "GaussianRandomField",
    "SpectralNoise",
    "mollified_white_noise",
    "kernel_matrix",
    "StudentTProcess",
    "sample_chi2_over_dof",
    "fourier_series",
    "lattice_series",
    "point_covariance",
]

KernelName = Literal["se", "matern12", "matern32", "matern52"]


def kernel_matrix(x: Tensor, y: Tensor, kernel: KernelName, lengthscale: float, variance: float = 1.0) -> Tensor:
    """Stationary isotropic kernel ``k(x_i, y_j)``.

    Args:
        x: ``[..., N, d]``; y: ``[..., M, d]``.
        kernel: ``se`` (squared exponential ``v exp(-r^2 / 2 l^2)``) or Matern 1/2, 3/2, 5/2.

    Returns:
        ``[..., N, M]``.
    """
    diff = x.unsqueeze(-2) - y.unsqueeze(-3)
    r2 = (diff * diff).sum(-1)
    if kernel == "se":
        return variance * torch.exp(-0.5 * r2 / lengthscale**2)
    r = torch.sqrt(r2.clamp_min(0.0)) / lengthscale
    if kernel == "matern12":
        return variance * torch.exp(-r)
    if kernel == "matern32":
        s = math.sqrt(3.0) * r
        return variance * (1.0 + s) * torch.exp(-s)
    if kernel == "matern52":
        s = math.sqrt(5.0) * r
        return variance * (1.0 + s + s * s / 3.0) * torch.exp(-s)
    raise ValueError(f"unknown kernel {kernel!r}; choose one of se, matern12, matern32, matern52")


def point_covariance(noise: "FunctionNoise", coords: Tensor) -> Tensor:
    """The covariance of ``noise``'s draws (:meth:`FunctionNoise.sampled_covariance`) at every function's points:
    ``[1, N, N]`` when all functions of ``coords`` ``[B, N, d]`` share their points, else ``[B, N, N]``."""
    if coords.ndim != 3:
        raise ValueError(f"coords must have shape [B, N, d]; got {tuple(coords.shape)}")
    if shares_points(coords):
        return noise.sampled_covariance(coords[0]).unsqueeze(0)
    return torch.stack([noise.sampled_covariance(c) for c in coords])


def _check_coords(coords: Tensor, channels: int) -> None:
    if coords.ndim != 3:
        raise ValueError(f"noise coords must have shape [B, N, d]; got {tuple(coords.shape)}")
    if channels <= 0:
        raise ValueError(f"channels must be positive; got {channels}")
    if not torch.isfinite(unbroadcast(coords)).all():
        raise ValueError("noise coords contain NaN or inf")


class FunctionNoise(Configurable, ABC):
    """A random function whose values can be drawn at any coordinates."""

    @abstractmethod
    def sample(self, coords: Tensor, channels: int = 1, generator: torch.Generator | None = None) -> Tensor:
        """Values ``[B, N, channels]`` of ``B`` independent draws at ``coords`` ``[B, N, d]``."""

    @abstractmethod
    def covariance(self, x: Tensor, y: Tensor) -> Tensor:
        """Covariance ``[N, M]`` between the values at ``x`` ``[N, d]`` and ``y`` ``[M, d]``."""

    def sampled_covariance(self, x: Tensor) -> Tensor:
        """Covariance ``[N, N]`` of the values :meth:`sample` draws at the points ``x`` ``[N, d]``: :meth:`covariance`,
        plus whatever diagonal the sampler itself adds (a field sampled with a jitter has that jitter in its law)."""
        return self.covariance(x, x)

    def log_prob(self, values: Tensor, coords: Tensor, jitter: float = DEFAULT_JITTER) -> Tensor:
        """Exact log density ``[B]`` (nats, float64) of draws ``values`` ``[B, N, c]`` at ``coords`` ``[B, N, d]``:
        the Gaussian ``N(0, C)`` per channel, ``C`` from :meth:`sampled_covariance` (plus ``jitter`` times its mean
        diagonal, :mod:`funcgen.processes.density`)."""
        return gaussian_log_prob(values, point_covariance(self, coords), jitter)


class WhiteNoise(FunctionNoise):
    """Independent standard normal values at every point.

    Args:
        physical: if True, values are cell averages of continuum white noise on a domain of volume
            ``domain_volume`` split into N equal cells: variance ``N / domain_volume``. This is the
            correct discretisation of white noise but its per-point law depends on N (white noise is
            not a function); with False the per-point variance is 1 at every resolution.
        domain_volume: volume of the domain (1 for the unit cube).
    """

    def __init__(self, physical: bool = False, domain_volume: float = 1.0) -> None:
        self.physical = physical
        self.domain_volume = domain_volume

    def _scale(self, n: int) -> float:
        return math.sqrt(n / self.domain_volume) if self.physical else 1.0

    def sample(self, coords: Tensor, channels: int = 1, generator: torch.Generator | None = None) -> Tensor:
        _check_coords(coords, channels)
        b, n, _ = coords.shape
        return randn((b, n, channels), generator, device=coords.device, dtype=coords.dtype) * self._scale(n)

    def covariance(self, x: Tensor, y: Tensor) -> Tensor:
        same = (x.unsqueeze(-2) == y.unsqueeze(-3)).all(-1)
        return same.to(x.dtype) * self._scale(x.shape[-2]) ** 2


class EigenNoise(FunctionNoise):
    """A random combination of the first ``modes`` coordinate features: trace-class noise on a mesh.

    For coordinates that are basis functions evaluated at the points (the Laplace-Beltrami
    eigen-coordinates ``phi`` of :mod:`funcgen.geometry.mesh`, mean square 1 over the surface):

        xi(x) = sqrt(variance / m) sum_{j < m} z_j phi_j(x),   z_j ~ N(0, 1),
        Cov(xi(x), xi(y)) = variance / m * phi_{:m}(x) . phi_{:m}(y),

    a Gaussian field of finite rank ``m`` (trace ``variance * area``), whose surface-averaged variance is
    ``variance``. Its law at a point never depends on the other points, and the noise a diffusion adds
    to each of the ``m`` eigen-coefficients is the same at every resolution, so the posterior at a given
    time, and with it the time grid a sampler needs, does not change when a mesh is refined (unlike
    white noise, whose projection on each eigenfunction shrinks like ``1/N``).

    Args:
        modes: ``m``, leading coordinates used (at most the coordinate dimension ``d``).
        variance: surface-averaged pointwise variance.
    """

    def __init__(self, modes: int, variance: float = 1.0) -> None:
        if not isinstance(modes, int) or isinstance(modes, bool) or modes < 1 or variance <= 0:
            raise ValueError(f"EigenNoise needs an int modes >= 1 and variance > 0; got {modes!r}, {variance!r}")
        self.modes, self.variance = modes, float(variance)

    def _features(self, coords: Tensor) -> Tensor:
        if coords.shape[-1] < self.modes:
            raise ValueError(f"EigenNoise(modes={self.modes}) needs coordinates with at least {self.modes} "
                             f"eigen-coordinates; got {coords.shape[-1]} (lower modes or raise num_eigs)")
        return coords[..., :self.modes] * math.sqrt(self.variance / self.modes)

    def sample(self, coords: Tensor, channels: int = 1, generator: torch.Generator | None = None) -> Tensor:
        _check_coords(coords, channels)
        z = randn((coords.shape[0], self.modes, channels), generator, device=coords.device, dtype=coords.dtype)
        return self._features(coords) @ z

    def covariance(self, x: Tensor, y: Tensor) -> Tensor:
        return self._features(x) @ self._features(y).transpose(-1, -2)


class GaussianRandomField(FunctionNoise):
    """Exact samples of a zero-mean stationary Gaussian random field ``GP(0, k)``.

    Scattered points: Cholesky of the kernel matrix in float64 (one factorisation shared across the
    batch when every function uses the same coordinates), ``O(N^3)``, fine up to a few thousand points.
    Regular grids (cell-centre grids from :func:`funcgen.pointset.grid_coords`) with the separable
    ``se`` kernel: exact Kronecker sampling ``L_1 Z L_2^T`` at ``O(sum n_k^3)``, any resolution.

    Args:
        kernel: covariance family (see :func:`kernel_matrix`).
        lengthscale: correlation length in physical units of the domain.
        variance: marginal variance ``k(x, x)``.
        jitter: relative diagonal added before the Cholesky factorisation.
        max_dense_points: above this N (and off a grid) sampling raises, pointing at SpectralNoise.
    """

    def __init__(self, kernel: KernelName = "se", lengthscale: float = 0.1, variance: float = 1.0,
                 jitter: float = 1e-6, max_dense_points: int = 6000) -> None:
        if lengthscale <= 0 or variance <= 0:
            raise ValueError(f"lengthscale and variance must be positive; got {lengthscale}, {variance}")
        if kernel not in ("se", "matern12", "matern32", "matern52"):
            raise ValueError(f"unknown kernel {kernel!r}; choose one of se, matern12, matern32, matern52")
        self.kernel = kernel
        self.lengthscale = float(lengthscale)
        self.variance = float(variance)
        self.jitter = float(jitter)
        self.max_dense_points = int(max_dense_points)

    def covariance(self, x: Tensor, y: Tensor) -> Tensor:
        return kernel_matrix(x, y, self.kernel, self.lengthscale, self.variance)

    def sampled_covariance(self, x: Tensor) -> Tensor:
        """``K(x, x) + jitter * variance * I`` ``[N, N]``: the law :meth:`sample` draws from at scattered points (and
        on 1-d grids; on grids of 2 or more axes above 64 points the Kronecker sampler's law is
        ``prod_k (K_k + jitter I)``, which differs from this by ``O(jitter)`` off the diagonal too)."""
        k = self.covariance(x, x)
        return k + self.jitter * self.variance * torch.eye(k.shape[-1], dtype=k.dtype, device=k.device)

    def _cholesky(self, x: Tensor) -> Tensor:
        return torch.linalg.cholesky(self.sampled_covariance(x.double()))

    def sample(self, coords: Tensor, channels: int = 1, generator: torch.Generator | None = None) -> Tensor:
        _check_coords(coords, channels)
        b, n, d = coords.shape
        shared = shares_points(coords)
        grid = grid_shape(coords[0]) if shared and self.kernel == "se" else None
        if grid is not None and n > 64:
            return self.sample_grid(grid, b, channels, generator, device=coords.device, dtype=coords.dtype)
        if n > self.max_dense_points:
            raise ValueError(
                f"GaussianRandomField: exact sampling at {n} scattered points needs an O(N^3) Cholesky; "
                f"the limit is max_dense_points={self.max_dense_points}. Use a regular grid with kernel='se', "
                "or SpectralNoise for very large point sets")
        chol = self._cholesky(coords[:1] if shared else coords)  # [1 or B, N, N]
        z = randn((b, n, channels), generator, device=coords.device, dtype=torch.float64)
        return (chol @ z).to(coords.dtype)

    def sample_grid(self, shape: tuple[int, ...], batch: int, channels: int = 1,
                    generator: torch.Generator | None = None, *, device: torch.device | str = "cpu",
                    dtype: torch.dtype = torch.float32) -> Tensor:
        """Exact samples ``[batch, prod(shape), channels]`` on the cell-centre grid of ``shape`` (``se`` only)."""
        if self.kernel != "se":
            raise ValueError("Kronecker grid sampling needs the separable 'se' kernel")
        device = torch.device(device)
        z = randn((batch * channels, *shape), generator, device=device, dtype=torch.float64)
        for axis, n in enumerate(shape):
            x = ((torch.arange(n, dtype=torch.float64, device=device) + 0.5) / n).unsqueeze(-1)
            k = kernel_matrix(x, x, "se", self.lengthscale, 1.0)
            chol = torch.linalg.cholesky(k + self.jitter * torch.eye(n, dtype=k.dtype, device=device))
            z = torch.movedim(torch.tensordot(chol, z, dims=([1], [axis + 1])), 0, axis + 1)
        z = z * math.sqrt(self.variance)
        return z.reshape(batch, channels, -1).transpose(1, 2).to(dtype).contiguous()


def mollified_white_noise(width: float, dim: int) -> GaussianRandomField:
    """``T xi`` for continuum white noise ``xi`` and ``T`` a Gaussian blur of std ``width`` (physical units).

    ``T xi`` is a Gaussian random field whose covariance is the Gaussian density of std
    ``sqrt(2) * width`` evaluated at ``x - y``: ``k(r) = (4 pi width^2)^(-dim/2) exp(-r^2 / (4 width^2))``
    (infty-Diff, Bond-Taylor & Willcocks 2024: the mollified noise is trace-class).
    """
    if width <= 0 or dim <= 0:
        raise ValueError(f"width and dim must be positive; got {width}, {dim}")
    return GaussianRandomField("se", lengthscale=math.sqrt(2.0) * width,
                               variance=(4.0 * math.pi * width**2) ** (-dim / 2.0))


SpectrumName = Literal["fdp", "matern", "se"]


class SpectralNoise(FunctionNoise):
    """A stationary Gaussian field given by a truncated random Fourier series on a periodic box.

    ``xi(x) = sum_k sqrt(S_k) (a_k cos(w_k . x) + b_k sin(w_k . x))``, ``a_k, b_k ~ N(0, 1)``, over the
    integer modes ``k`` with ``|k_i| <= modes`` (one of each pair ``+-k``), ``w_k = 2 pi k / period``.
    The covariance is ``sum_k S_k cos(w_k . (x - y))``. Over the full lattice this is ``(S_0 + sum_(all k) S_k
    cos(w_k . (x - y))) / 2``: by Poisson summation the kernel whose Fourier transform is ``S`` (summed over the
    box's periodic images) plus a constant, i.e. the k = 0 mode has twice the weight that a field with spectral
    density ``S`` gives it (``tests/processes/test_noise.py`` checks the closed forms for ``matern`` and ``se``).
    The field is a fixed random *function*: its values at any coordinates, dense or scattered, have a law that never
    depends on how many points are asked for; cost is ``O(N * modes^d)``, evaluated in chunks so memory stays
    bounded.

    Spectra ``S(w)`` (then normalised so the point variance equals ``variance``):
        ``fdp``: ``r(w) / b(w)`` of the official Functional Diffusion Processes SDE,
            ``b = 1/(|w|^2 + 0.3) + ((|w|^2 + 2)/33^2)^(1/4)``, ``r = 1/(|w|^2 + 2)`` (``w`` in cycles per
            unit length, the frequency index of the reference code's FFT on the unit box; ``k / period``
            for mode ``k``, so a larger ``period`` with proportionally more ``modes`` gives the same local
            covariance without tying the two ends of the unit domain together).
        ``matern``: ``(1 + |w|^2 l^2)^(-(nu + d/2))``, ``nu = smoothness``.
        ``se``: ``exp(-|w|^2 l^2 / 2)``.

    Args:
        dim: domain dimension ``d``.
        spectrum: spectral density family.
        modes: highest integer frequency per axis.
        lengthscale: lengthscale ``l`` for ``matern``/``se``.
        smoothness: Matern ``nu``.
        variance: point variance after normalisation.
        period: side of the periodic box (>= the domain size; 1 for the unit cube).
        chunk_size: points evaluated at once.
    """

    def __init__(self, dim: int, spectrum: SpectrumName = "fdp", modes: int = 16, lengthscale: float = 0.1,
                 smoothness: float = 1.5, variance: float = 1.0, period: float = 1.0,
                 chunk_size: int = 32768) -> None:
        if dim <= 0 or modes <= 0 or variance <= 0 or period <= 0:
            raise ValueError(
                f"dim, modes, variance and period must be positive; got {dim}, {modes}, {variance}, {period}")
        self.dim, self.spectrum, self.modes = int(dim), spectrum, int(modes)
        self.lengthscale, self.smoothness, self.variance = float(lengthscale), float(smoothness), float(variance)
        self.period, self.chunk_size = float(period), int(chunk_size)
        ks = torch.cartesian_prod(*[torch.arange(-modes, modes + 1, dtype=torch.float64)] * dim).reshape(-1, dim)
        # keep one of each +-k pair: the first non-zero coordinate positive (and k = 0)
        first = torch.where(ks != 0, ks, torch.zeros(()).double())
        sign = torch.zeros(ks.shape[0], dtype=torch.float64)
        for i in range(dim - 1, -1, -1):
            sign = torch.where(first[:, i] != 0, torch.sign(first[:, i]), sign)
        ks = ks[sign >= 0]
        w2 = (ks * ks).sum(-1)
        s = self._density(w2)
        self._lattice = ks.long()  # [M, d] integer wavenumbers
        self._omega = 2.0 * math.pi * ks / self.period  # [M, d]
        self._amp = torch.sqrt(s / s.sum() * self.variance)  # [M]; sum of S_k = variance
        self._is_zero = w2 == 0

    def _density(self, k2: Tensor) -> Tensor:
        if self.spectrum == "fdp":
            k2 = k2 / self.period**2  # cycles per unit length: the same field for any box, up to its wrap-around
            b = 1.0 / (k2 + 0.3) + ((k2 + 2.0) / 33.0**2) ** 0.25
            return (1.0 / (k2 + 2.0)) / b
        w2 = k2 * (2.0 * math.pi / self.period) ** 2
        if self.spectrum == "matern":
            return (1.0 + w2 * self.lengthscale**2) ** (-(self.smoothness + self.dim / 2.0))
        if self.spectrum == "se":
            return torch.exp(-0.5 * w2 * self.lengthscale**2)
        raise ValueError(f"unknown spectrum {self.spectrum!r}; choose fdp, matern or se")

    @property
    def num_features(self) -> int:
        return int(self._amp.shape[0])

    def covariance(self, x: Tensor, y: Tensor) -> Tensor:
        om, amp = self._omega.to(x.device), self._amp.to(x.device)
        phase = torch.einsum("nmd,kd->nmk", (x.double().unsqueeze(-2) - y.double().unsqueeze(-3)), om)
        return (torch.cos(phase) * amp**2).sum(-1).to(x.dtype)

    def sample(self, coords: Tensor, channels: int = 1, generator: torch.Generator | None = None) -> Tensor:
        _check_coords(coords, channels)
        if coords.shape[-1] != self.dim:
            raise ValueError(f"SpectralNoise built for dim={self.dim} got coords with d={coords.shape[-1]}")
        b, n, _ = coords.shape
        m = self.num_features
        dtype = coords.dtype
        om = self._omega.to(coords.device, dtype)
        amp = self._amp.to(coords.device, dtype)
        a = randn((b, m, channels), generator, device=coords.device, dtype=dtype) * amp[:, None]
        s = randn((b, m, channels), generator, device=coords.device, dtype=dtype) * amp[:, None]
        s = s.masked_fill(self._is_zero.to(coords.device)[:, None], 0.0)
        if self.dim >= 2:  # (2 modes + 1)^d terms a point by products of per-axis exponentials
            return lattice_series(coords, self._lattice.to(coords.device), 2.0 * math.pi / self.period, a, s,
                                  self.chunk_size)
        return fourier_series(coords, om, a, s, self.chunk_size)


def fourier_series(coords: Tensor, omega: Tensor, cos_coef: Tensor, sin_coef: Tensor,
                   chunk_size: int = 32768) -> Tensor:
    """Evaluate ``sum_k a_k cos(w_k . x) + s_k sin(w_k . x)`` at ``coords``, in chunks of points.

    Args:
        coords: ``[B, N, d]``; omega: ``[M, d]`` angular frequencies.
        cos_coef, sin_coef: ``[B, M, c]`` coefficients per function.

    Returns:
        ``[B, N, c]``; memory is bounded by ``chunk_size * M`` per function.
    """
    b, n, _ = coords.shape
    out = torch.empty(b, n, cos_coef.shape[-1], device=coords.device, dtype=coords.dtype)
    for lo in range(0, n, chunk_size):
        phase = coords[:, lo:lo + chunk_size] @ omega.T  # [B, n_chunk, M]
        out[:, lo:lo + chunk_size] = torch.cos(phase) @ cos_coef + torch.sin(phase) @ sin_coef
    return out


def lattice_series(coords: Tensor, lattice: Tensor, base: float, cos_coef: Tensor, sin_coef: Tensor,
                   chunk_size: int = 32768) -> Tensor:
    """:func:`fourier_series` for frequencies on an integer lattice, ``w_k = base * k``, at a fraction of its cost.

    ``sum_k a_k cos(w_k . x) + s_k sin(w_k . x) = Re sum_k (a_k - i s_k) prod_j exp(i base k_j x_j)``: the
    coefficients fill a table over the box ``|k_j| <= max |k|``, which is contracted with the per-axis
    exponentials one axis at a time (the last by a matrix product). ``O(N d K)`` sines and cosines and
    ``O(N K^d c)`` multiply-adds for ``K = 2 max |k| + 1``, against ``O(N M)`` of each.

    Args:
        coords: ``[B, N, d]``; lattice: ``[M, d]`` integers (distinct); base: the frequency of ``k = 1``.
        cos_coef, sin_coef: ``[B, M, c]``.

    Returns:
        ``[B, N, c]``, equal to ``fourier_series(coords, base * lattice, cos_coef, sin_coef)`` up to rounding.
    """
    b, n, d = coords.shape
    c = cos_coef.shape[-1]
    reach = int(lattice.abs().max()) if lattice.numel() else 0
    k = 2 * reach + 1
    cplx = torch.complex128 if coords.dtype == torch.float64 else torch.complex64
    strides = torch.tensor([k ** (d - 1 - j) for j in range(d)], device=coords.device)
    flat = ((lattice + reach) * strides).sum(-1)  # row-major index of each wavenumber in the box
    table = torch.zeros(b, k**d, c, dtype=cplx, device=coords.device)
    table[:, flat] = torch.complex(cos_coef.to(coords.dtype), -sin_coef.to(coords.dtype))
    # [B, K (last axis), K^(d-1) * c]: the matrix the last axis's exponentials multiply
    table = table.reshape(b, k ** (d - 1), k, c).transpose(1, 2).reshape(b, k, -1)
    freqs = base * torch.arange(-reach, reach + 1, device=coords.device, dtype=coords.dtype)
    out = torch.empty(b, n, c, device=coords.device, dtype=coords.dtype)
    for lo in range(0, n, chunk_size):
        x = coords[:, lo:lo + chunk_size]
        q = x.shape[1]
        e = torch.polar(torch.ones_like(x)[..., None].expand(-1, -1, -1, k), x[..., None] * freqs)  # [B, q, d, K]
        t = (e[:, :, -1] @ table).reshape(b, q, *([k] * (d - 1)), c)
        for j in range(d - 2, -1, -1):  # contract axis j, now the last lattice axis of t
            t = (t * e[:, :, j].reshape(b, q, *([1] * j), k, 1)).sum(-2)
        out[:, lo:lo + q] = t.real
    return out


def sample_chi2_over_dof(batch: int, dof: float, generator: torch.Generator | None = None,
                         device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Tensor:
    """Draw ``w ~ chi^2_D / D`` (``D = dof``), ``[batch]``; ``dof = inf`` gives exactly ``w = 1``.

    ``chi^2_D / D = Gamma(D/2, scale 2/D)``, drawn with Marsaglia & Tsang's (2000) squeeze method in
    float64 from ``generator`` (``torch._standard_gamma`` takes no generator, so it would break seeding);
    shapes below 1 use ``Gamma(a) = Gamma(a + 1) U^(1/a)``. Cost: ``O(batch)``, independent of ``D``.
    """
    if not dof > 0:
        raise ValueError(f"degrees of freedom D must be positive (or inf); got {dof}")
    device = torch.device(device)
    if math.isinf(dof):
        return torch.ones(batch, device=device, dtype=dtype)
    a = 0.5 * dof
    a1 = a + 1.0 if a < 1.0 else a
    d = a1 - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    out = torch.empty(batch, dtype=torch.float64, device=device)
    todo = torch.arange(batch, device=device)
    while todo.numel():  # acceptance rate >= 0.95 for every shape, so this loops a few times
        m = todo.numel()
        x = randn((m,), generator, device=device, dtype=torch.float64)
        u = rand((m,), generator, device=device, dtype=torch.float64)
        v = (1.0 + c * x) ** 3
        ok = (v > 0) & (torch.log(u) < 0.5 * x * x + d - d * v + d * torch.log(v.clamp_min(1e-300)))
        out[todo[ok]] = d * v[ok]
        todo = todo[~ok]
    if a < 1.0:
        out = out * rand((batch,), generator, device=device, dtype=torch.float64) ** (1.0 / a)
    return (out / a).to(dtype)  # Gamma(a, 1) / a = chi^2_D / D


class StudentTProcess(FunctionNoise):
    """A Student-t process: ``base / sqrt(w)`` with ONE ``w ~ chi^2_D / D`` per function.

    The values at any set of points are multivariate Student-t with ``D`` degrees of freedom and
    scale matrix ``C`` (the base field's covariance); a subset of the points has the law of a draw
    made at the subset directly, so the law never depends on ``N``. Per-point variance
    ``D / (D - 2)`` times the base variance (``D > 2``), excess kurtosis ``6 / (D - 4)`` (``D > 4``).
    ``D = inf`` is the base Gaussian field itself. This is the PFGM++ perturbation kernel
    ``p_r(x | y) ~ (|x - y|^2 + r^2)^(-(N + D) / 2)`` in chi-square form (Xu et al. 2023, eq. 4 with
    ``r = sigma sqrt(D)``), which unlike the paper's Beta/N construction never needs ``N``.

    Args:
        base: the Gaussian field ``eps`` (white noise or a Gaussian random field).
        dof: degrees of freedom ``D`` (``float("inf")`` for Gaussian).
    """

    def __init__(self, base: FunctionNoise, dof: float = 128.0) -> None:
        if not dof > 0:
            raise ValueError(f"degrees of freedom must be positive (or inf); got {dof}")
        self.base, self.dof = base, float(dof)

    def variance_factor(self) -> float:
        """``D / (D - 2)``: per-point variance relative to the base field (inf when ``D <= 2``)."""
        if math.isinf(self.dof):
            return 1.0
        return self.dof / (self.dof - 2.0) if self.dof > 2.0 else math.inf

    def sample(self, coords: Tensor, channels: int = 1, generator: torch.Generator | None = None) -> Tensor:
        eps = self.base.sample(coords, channels, generator)
        if math.isinf(self.dof):
            return eps
        w = sample_chi2_over_dof(coords.shape[0], self.dof, generator, coords.device, eps.dtype)
        return eps * w.rsqrt()[:, None, None]

    def covariance(self, x: Tensor, y: Tensor) -> Tensor:
        return self.base.covariance(x, y) * self.variance_factor()

    def log_prob(self, values: Tensor, coords: Tensor, jitter: float = DEFAULT_JITTER) -> Tensor:
        """Exact multivariate Student-t log density ``[B]`` (float64) with scale matrix the base field's covariance
        (:func:`funcgen.processes.density.student_t_log_prob`)."""
        return student_t_log_prob(values, point_covariance(self.base, coords), self.dof, jitter)
