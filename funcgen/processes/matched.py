"""Spectrum-matched Gaussian noise: a random Fourier series whose coefficients have the data's statistics.

Idempotent Generative Networks (Shocher et al., ICLR 2024) draw their source noise for images in
the frequency domain, with the per-frequency mean and standard deviation of the data's FFT. Here
that noise is a *function* on the unit cube, so it can be evaluated at any coordinates:

    z(x) = sum_k a_k cos(2 pi k . x) + s_k sin(2 pi k . x),
    a_k ~ N(mean_a_k, std_a_k^2), s_k ~ N(mean_s_k, std_s_k^2) independent,

over one representative ``k`` of every pair ``{k, -k}`` of the DFT frequencies of the training grid
(``-(n-1)//2 <= k_i <= n//2`` per axis). On the cell-centre grid of the training ``shape`` these
``prod(shape)`` real features are orthogonal and complete, so ``(a_k, s_k)`` are the real and
imaginary parts of the data's DFT coefficients up to a fixed phase and scale: the noise reproduces
the mean and the per-coefficient variance of the data's FFT *exactly* on that grid (features that
vanish on the grid, e.g. the cosine at Nyquist, get coefficient 0).

Other resolutions: ``z`` is the band-limited trigonometric interpolant of that grid noise, a
continuous function. Evaluating it at a finer grid or scattered points gives a smooth upsampling of
the same draw, the law at any fixed points never depends on how many other points are asked for,
and it carries no frequencies above the training grid's Nyquist (they were never observed).

The statistics are estimated online (Welford) from the first ``fit_functions`` training functions
passed to :meth:`observe`, which must lie on the training grid; they are then frozen and recorded in
``self.config`` so a checkpoint or export rebuilds the identical noise.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from ..pointset import grid_coords
from ..rng import randn
from .noise import FunctionNoise, _check_coords, fourier_series

__all__ = ["SpectrumMatchedNoise"]


def half_lattice(shape: Sequence[int]) -> Tensor:
    """Integer frequencies ``[M, d]``: one ``k`` of each pair ``{k, -k mod shape}`` of DFT frequencies.

    Per axis ``k_i`` ranges over ``-(n_i-1)//2 .. n_i//2``; self-conjugate frequencies (``k = -k``
    mod ``shape``) are kept once.
    """
    n = torch.tensor([int(s) for s in shape], dtype=torch.long)
    lo = -((n - 1) // 2)
    ks = torch.cartesian_prod(*[torch.arange(int(a), int(a) + int(m)) for a, m in zip(lo, n)]).reshape(-1, len(n))
    neg = torch.remainder(-ks - lo, n) + lo
    sign = torch.zeros(ks.shape[0], dtype=torch.long)
    for i in range(len(n) - 1, -1, -1):  # sign of the first non-zero coordinate of ks - neg
        d = torch.sign(ks[:, i] - neg[:, i])
        sign = torch.where(d != 0, d, sign)
    return ks[sign <= 0]


class SpectrumMatchedNoise(FunctionNoise):
    """Gaussian random Fourier series with the data's per-frequency mean and std (IGN's image noise).

    Args:
        shape: the training grid (cells per axis) whose DFT statistics are matched, e.g. ``[28, 28]``.
        channels: value channels ``c`` (statistics are kept per channel).
        fit_functions: number of training functions whose statistics are accumulated by
            :meth:`observe`; afterwards the noise is frozen.
        mean, std: recorded statistics ``[2, M, c]`` (cosine / sine coefficients) as nested lists; set
            by :meth:`observe` (through ``self.config``), not by hand.
        count: number of functions the recorded statistics were estimated from.
        chunk_size: points evaluated at once when sampling.
    """

    def __init__(self, shape: list[int], channels: int = 1, fit_functions: int = 2048,
                 mean: list | None = None, std: list | None = None, count: int = 0,
                 chunk_size: int = 32768) -> None:
        self.shape = tuple(int(s) for s in shape)
        if len(self.shape) == 0 or any(s <= 0 for s in self.shape):
            raise ValueError(f"shape must be a non-empty list of positive grid sizes; got {shape}")
        if channels <= 0 or fit_functions <= 0 or count < 0:
            raise ValueError(
                f"need channels > 0, fit_functions > 0, count >= 0; got {channels}, {fit_functions}, {count}")
        self.channels, self.fit_functions, self.chunk_size = int(channels), int(fit_functions), int(chunk_size)
        self.dim = len(self.shape)
        self.freqs = half_lattice(self.shape).double()  # [M, d]
        self._omega = 2.0 * math.pi * self.freqs
        grid = grid_coords(self.shape, dtype=torch.float64)  # [P, d]
        phase = grid @ self._omega.T
        self._phi = torch.stack([torch.cos(phase), torch.sin(phase)])  # [2, P, M]
        norm2 = self._phi.square().sum(1)  # [2, M]
        self._observable = norm2 > 1e-6 * grid.shape[0]  # False: the feature vanishes on the grid
        self._inv_norm2 = torch.where(self._observable, 1.0 / norm2, torch.zeros_like(norm2))
        m = self.freqs.shape[0]
        self.count = int(count)
        self._mean = torch.zeros(2, m, self.channels, dtype=torch.float64)
        self._m2 = torch.zeros_like(self._mean)
        if (mean is None) != (std is None) or (mean is not None and count == 0):
            raise ValueError("mean and std are recorded together with a positive count; leave all three unset")
        if mean is not None:
            mu, sd = torch.tensor(mean, dtype=torch.float64), torch.tensor(std, dtype=torch.float64)
            if mu.shape != self._mean.shape or sd.shape != self._mean.shape:
                raise ValueError(f"mean/std must have shape {tuple(self._mean.shape)} for shape={list(self.shape)}, "
                                 f"channels={channels}; got {tuple(mu.shape)}, {tuple(sd.shape)}")
            self._mean, self._m2 = mu, sd.square() * max(self.count - 1, 0)

    # ------------------------------------------------------------------ statistics
    @property
    def frozen(self) -> bool:
        """True once ``fit_functions`` functions have been observed."""
        return self.count >= self.fit_functions

    @property
    def num_features(self) -> int:
        return int(self.freqs.shape[0])

    @property
    def coef_mean(self) -> Tensor:
        """Mean of the cosine/sine coefficients ``[2, M, c]`` (float64)."""
        return self._mean

    @property
    def coef_std(self) -> Tensor:
        """Std of the cosine/sine coefficients ``[2, M, c]`` (float64; 0 with fewer than 2 functions)."""
        if self.count < 2:
            return torch.zeros_like(self._m2)
        return (self._m2 / (self.count - 1)).clamp_min(0.0).sqrt()

    def coefficients(self, values: Tensor) -> Tensor:
        """Fourier coefficients ``[B, 2, M, c]`` of grid values ``[B, P, c]`` (row-major training grid)."""
        p = self._phi.shape[1]
        if values.ndim != 3 or values.shape[1] != p:
            raise ValueError(f"values must be [B, {p}, c] on the {list(self.shape)} grid; got {tuple(values.shape)}")
        proj = torch.einsum("fpm,bpc->bfmc", self._phi.to(values.device), values.double())
        return proj * self._inv_norm2.to(values.device)[None, :, :, None]

    def observe(self, coords: Tensor, values: Tensor) -> None:
        """Accumulate the statistics of a batch of training functions (no-op once frozen).

        Args:
            coords: ``[B, P, d]``, every row the cell-centre grid of ``shape`` (row-major).
            values: ``[B, P, c]`` the functions at those points.
        """
        if self.frozen:
            return
        grid = grid_coords(self.shape, device=coords.device, dtype=coords.dtype)
        if (coords.ndim != 3 or coords.shape[1:] != grid.shape
                or not torch.allclose(coords, grid.expand_as(coords), atol=1e-5)):
            raise ValueError(
                f"SpectrumMatchedNoise matches the DFT statistics of data on the {list(self.shape)} cell-centre grid, "
                f"but got a batch at other points (coords {tuple(coords.shape)}): train on the grid (datamodule "
                "coords: grid, model.train_subsample: 1.0) or use a GaussianRandomField / SpectralNoise instead")
        if values.shape[-1] != self.channels:
            raise ValueError(
                f"SpectrumMatchedNoise was built for {self.channels} channels; got values {tuple(values.shape)}")
        coef = self.coefficients(values).cpu()[: self.fit_functions - self.count]
        nb = coef.shape[0]
        mean_b = coef.mean(0)
        m2_b = (coef - mean_b).square().sum(0)
        total = self.count + nb
        delta = mean_b - self._mean
        self._mean = self._mean + delta * nb / total
        self._m2 = self._m2 + m2_b + delta.square() * self.count * nb / total
        self.count = total
        self.config["init_args"].update(mean=self._mean.tolist(), std=self.coef_std.tolist(), count=self.count)

    # ------------------------------------------------------------------ the random function
    def _require_fitted(self) -> None:
        if self.count == 0:
            raise RuntimeError("SpectrumMatchedNoise has no data statistics yet: call observe(coords, values) on "
                               "training functions (the IGN loss does this on its first batches) before sampling")

    def mean_function(self, coords: Tensor) -> Tensor:
        """The noise's mean function at ``coords`` ``[B, N, d]`` -> ``[B, N, c]``."""
        self._require_fitted()
        mu = self._mean.to(coords.device, coords.dtype).unsqueeze(0).expand(coords.shape[0], -1, -1, -1)
        return fourier_series(coords, self._omega.to(coords.device, coords.dtype), mu[:, 0], mu[:, 1], self.chunk_size)

    def sample(self, coords: Tensor, channels: int = 1, generator: torch.Generator | None = None) -> Tensor:
        _check_coords(coords, channels)
        self._require_fitted()
        if coords.shape[-1] != self.dim or channels != self.channels:
            raise ValueError(f"SpectrumMatchedNoise is a {self.channels}-channel noise on a {self.dim}-d domain; "
                             f"asked for {channels} channels at coords {tuple(coords.shape)}")
        b = coords.shape[0]
        dtype = coords.dtype
        eps = randn((b, *self._mean.shape), generator, device=coords.device, dtype=dtype)
        coef = self._mean.to(coords.device, dtype) + self.coef_std.to(coords.device, dtype) * eps  # [B, 2, M, c]
        return fourier_series(coords, self._omega.to(coords.device, dtype), coef[:, 0], coef[:, 1], self.chunk_size)

    def covariance(self, x: Tensor, y: Tensor, channel: int = 0) -> Tensor:
        """Covariance ``[N, M]`` of channel ``channel`` between ``x`` ``[N, d]`` and ``y`` ``[M, d]``
        (not stationary)."""
        self._require_fitted()
        var = self.coef_std[:, :, channel].square().to(x.device)  # [2, M]
        om = self._omega.to(x.device)
        px, py = x.double() @ om.T, y.double() @ om.T
        cov = (torch.cos(px) * var[0]) @ torch.cos(py).T + (torch.sin(px) * var[1]) @ torch.sin(py).T
        return cov.to(x.dtype)
