"""Power spectra of functions on regular grids: the periodogram, its radial average, a spectrum error.

Inputs are GRIDDED arrays: signals ``[n, L]`` (1D) or images ``[n, H, W]`` (2D) on the cell-centre
grid of the unit domain ``[0, 1]^d`` (point sets from a model become grids with
:func:`funcgen.pointset.pointset_to_grid`, e.g. ``pointset_to_grid(ps, (H, W))[:, 0]``).

Wavenumbers are in cycles per unit length (integers ``k`` with ``|k_i| <= n_i / 2``), so a
32x32 and a 64x64 view of the same field share their low wavenumbers. The periodogram of one
function ``x`` on ``M = prod(n_i)`` cells is

    P(k) = |F(k)|^2 / M,    F(k) = sum_p x_p exp(-2 pi i k . p / n)                (variance)

so white noise of variance ``s^2`` has ``E P(k) = s^2`` at every ``k`` and, by Parseval, the mean
of ``P`` over all ``k`` is the mean square of ``x``. ``normalization="density"`` multiplies by the
cell volume ``1 / M``: for a stationary field with spectral density ``S`` (the Fourier transform of
its covariance, ``C(r) = int S(k) exp(2 pi i k . r) dk``) that is periodic on the domain,
``E P(k) = sum_m S(k + m n)`` (``S`` plus its aliases), the same at every resolution. Fields that are
not periodic leak power at the wrap-around edge; comparing two sets at the same resolution stays
meaningful. The mean is kept (``k = 0``).

The radial average bins wavevectors by ``round(|k|)`` for ``|k| = 0 .. min(n_i) // 2`` (corners
beyond the smallest Nyquist wavenumber are dropped) and averages ``P`` inside each bin.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

__all__ = ["power_spectrum", "radial_power_spectrum", "spectrum_error"]

Normalization = Literal["variance", "density"]


def _check_grid(x: Tensor, name: str = "x") -> Tensor:
    if not isinstance(x, Tensor) or x.ndim not in (2, 3) or min(x.shape) < 1:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must be gridded signals [n, L] or images [n, H, W]; got {shape} "
                         "(turn point sets into grids with funcgen.pointset.pointset_to_grid)")
    if min(x.shape[1:]) < 2:
        raise ValueError(f"{name}: every grid axis needs at least 2 cells for a spectrum; got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} holds {int((~torch.isfinite(x)).sum())} NaN/inf values; spectra need finite values")
    return x.detach().double()


def power_spectrum(x: Tensor, normalization: Normalization = "variance") -> Tensor:
    """Periodogram of every function, ``[n, L]`` or ``[n, H, W]`` (FFT order, see module docstring)."""
    x = _check_grid(x)
    if normalization not in ("variance", "density"):
        raise ValueError(f"normalization must be 'variance' or 'density'; got {normalization!r}")
    spatial = tuple(x.shape[1:])
    cells = math.prod(spatial)
    f = torch.fft.fftn(x, dim=tuple(range(1, x.ndim)))
    p = (f.real**2 + f.imag**2) / cells
    return p / cells if normalization == "density" else p


def _radial_bins(spatial: tuple[int, ...], device: torch.device) -> tuple[Tensor, int]:
    """Bin index ``round(|k|)`` of every wavevector (FFT order) and the number of bins kept."""
    axes = [torch.fft.fftfreq(n, d=1.0 / n, device=device, dtype=torch.float64) for n in spatial]
    mesh = torch.meshgrid(*axes, indexing="ij")
    radius = torch.sqrt(sum(m * m for m in mesh))
    return torch.round(radius).long(), min(spatial) // 2 + 1


def radial_power_spectrum(x: Tensor, normalization: Normalization = "variance",
                          per_sample: bool = False) -> tuple[Tensor, Tensor]:
    """Radially averaged periodogram.

    Args:
        x: signals ``[n, L]`` or images ``[n, H, W]`` on the cell-centre grid of ``[0, 1]^d``.
        normalization: ``variance`` (white noise -> flat at its variance) or ``density`` (spectral
            density per unit domain, comparable across resolutions); see the module docstring.
        per_sample: return one spectrum per function instead of their mean.

    Returns:
        ``k`` float64 ``[K]`` (wavenumbers ``0 .. K - 1`` in cycles per unit length, ``K = min(n_i)//2 + 1``)
        and the power float64 ``[K]`` (or ``[n, K]`` with ``per_sample``).
    """
    p = power_spectrum(x, normalization)
    bins, num = _radial_bins(tuple(p.shape[1:]), p.device)
    flat, idx = p.reshape(p.shape[0], -1), bins.reshape(-1)
    keep = idx < num
    flat, idx = flat[:, keep], idx[keep]
    sums = torch.zeros(p.shape[0], num, dtype=p.dtype, device=p.device).index_add_(1, idx, flat)
    counts = torch.bincount(idx, minlength=num).to(p.dtype)
    spec = sums / counts
    k = torch.arange(num, dtype=torch.float64, device=p.device)
    return k, (spec if per_sample else spec.mean(0))


def spectrum_error(x: Tensor, y: Tensor, kind: Literal["l2", "log"] = "l2",
                   normalization: Normalization = "variance") -> float:
    """Error of the mean radial spectrum of ``x`` (generated) against that of ``y`` (reference).

    ``l2``: relative error ``|P_x - P_y|_2 / |P_y|_2`` over the radial bins (dominated by the
    energetic low wavenumbers). ``log``: mean over bins of ``|log(P_x / P_y)|`` (every scale
    weighs the same; sensitive to round-off where the reference spectrum is tiny).
    Both sets must be on the same grid.
    """
    if isinstance(x, Tensor) and isinstance(y, Tensor) and x.shape[1:] != y.shape[1:]:
        raise ValueError(f"both sets must be on the same grid: x {tuple(x.shape)} vs y {tuple(y.shape)}")
    _, px = radial_power_spectrum(x, normalization)
    _, py = radial_power_spectrum(y, normalization)
    if kind == "l2":
        ref = torch.linalg.norm(py)
        if ref == 0:
            raise ValueError("the reference spectrum is identically 0 (all reference functions are 0)")
        return float(torch.linalg.norm(px - py) / ref)
    if kind == "log":
        if (px <= 0).any() or (py <= 0).any():
            raise ValueError("kind='log' needs positive power in every radial bin; use kind='l2'")
        return float((px / py).log().abs().mean())
    raise ValueError(f"kind must be 'l2' or 'log'; got {kind!r}")
