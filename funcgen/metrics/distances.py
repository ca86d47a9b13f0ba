"""Distances between two SETS of functions observed at common coordinates.

Every function takes ``x`` ``[n, N]`` or ``[n, N, c]`` and ``y`` ``[m, N]`` or ``[m, N, c]``: ``n`` and
``m`` functions observed at the same ``N`` points (``c`` channels). The distance between two
functions is the discretised ``L^2`` norm on a unit-volume domain, mean-reduced over points and
summed over channels,

    d(f, g)^2 = (1/N) sum_{p=1}^{N} sum_{k=1}^{c} (f_k(x_p) - g_k(x_p))^2,

so it converges to ``int |f - g|^2`` as the points refine and does not grow with ``N``.
All work is done in float64.

References:
    Gretton et al., "A Kernel Two-Sample Test", JMLR 2012 (MMD, eq. 3 biased / eq. 5 unbiased).
    Szekely & Rizzo, "Energy statistics", 2013 (energy distance).
    Achlioptas et al., "Learning Representations and Generative Models for 3D Point Clouds",
    ICML 2018 (coverage COV and minimum matching distance MMD).
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import Tensor

__all__ = ["pairwise_sq_distances", "median_bandwidth", "mmd2", "energy_distance",
           "coverage", "min_matching_distance", "coverage_mmd"]

Bandwidth = float | Sequence[float] | Literal["median"]


def _as_matrix(x: Tensor, name: str) -> Tensor:
    """``[n, N]`` or ``[n, N, c]`` -> float64 ``[n, N * c]`` scaled by ``1/sqrt(N)``."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape [n, N] or [n, N, c]; got {type(x).__name__}")
    if x.ndim not in (2, 3) or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} must have shape [n, N] or [n, N, c] (n functions at N points, c channels) "
                         f"with n, N >= 1; got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} holds {int((~torch.isfinite(x)).sum())} NaN/inf values; "
                         "distances between function sets need finite values")
    n_points = x.shape[1]
    return x.detach().double().reshape(x.shape[0], -1) / n_points**0.5


def _pair(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    if x.shape[1:] != y.shape[1:]:
        raise ValueError(f"the two sets must be observed at the same points with the same channels: "
                         f"x {tuple(x.shape)} vs y {tuple(y.shape)} (shapes [n, N(, c)] must agree after n)")
    return _as_matrix(x, "x"), _as_matrix(y, "y").to(x.device)


def _sq(a: Tensor, b: Tensor) -> Tensor:
    """Squared Euclidean distances between the rows of two float64 matrices, clamped at 0."""
    d = (a * a).sum(1, keepdim=True) + (b * b).sum(1).unsqueeze(0) - 2.0 * a @ b.T
    return d.clamp_min_(0.0)


def pairwise_sq_distances(x: Tensor, y: Tensor) -> Tensor:
    """Squared mean-reduced ``L^2`` distances ``d(x_i, y_j)^2``, float64 ``[n, m]``."""
    a, b = _pair(x, y)
    return _sq(a, b)


def _offdiag_mean(k: Tensor) -> Tensor:
    n = k.shape[0]
    if n < 2:
        raise ValueError("the unbiased estimator needs at least 2 functions in each set; "
                         f"got {n} (use unbiased=False)")
    return (k.sum() - k.diagonal().sum()) / (n * (n - 1))


def _median_rows(a: Tensor) -> float:
    """Median of the distances between distinct rows of ``a`` (float64 ``[n, D]``)."""
    n = a.shape[0]
    if n < 2:
        raise ValueError("the median heuristic needs at least 2 functions")
    upper = torch.ones(n, n, dtype=torch.bool, device=a.device).triu_(1)
    h = float(_sq(a, a)[upper].median().sqrt())
    if h <= 0.0:
        raise ValueError("median pairwise distance is 0 (more than half the functions coincide); "
                         "pass an explicit bandwidth")
    return h


def median_bandwidth(x: Tensor, y: Tensor | None = None) -> float:
    """Median heuristic: the median of the pairwise distances ``d(f, g)`` over distinct pairs of the
    pooled set ``x`` (+ ``y``). Raises if that median is 0 (most functions identical)."""
    return _median_rows(_as_matrix(x, "x") if y is None else torch.cat(_pair(x, y)))


def _bandwidths(bandwidth: Bandwidth, scales: Sequence[float], a: Tensor, b: Tensor) -> list[float]:
    if isinstance(bandwidth, str):
        if bandwidth != "median":
            raise ValueError(f"bandwidth must be a positive float, a list of them, or 'median'; got {bandwidth!r}")
        base = [_median_rows(torch.cat([a, b]))]
    elif isinstance(bandwidth, (int, float)):
        base = [float(bandwidth)]
    else:
        base = [float(h) for h in bandwidth]
    hs = [h * float(s) for h in base for s in scales]
    if not hs or any(not h > 0 for h in hs):
        raise ValueError(
            f"bandwidths must be positive (got {hs}); check bandwidth={bandwidth!r} and scales={list(scales)}")
    return hs


def mmd2(x: Tensor, y: Tensor, bandwidth: Bandwidth = "median", scales: Sequence[float] = (1.0,),
         unbiased: bool = True) -> float:
    """Squared maximum mean discrepancy with a (sum of) Gaussian RBF kernel(s).

    ``k(f, g) = sum_h exp(-d(f, g)^2 / (2 h^2))`` over the bandwidths ``h`` = each base bandwidth times
    each of ``scales``. Unbiased (Gretton et al. 2012, eq. 5; mean 0 when ``x`` and ``y`` come from
    the same law, can be negative):

        MMD_u^2 = 1/(n(n-1)) sum_{i!=j} k(x_i,x_j) + 1/(m(m-1)) sum_{i!=j} k(y_i,y_j) - 2/(nm) sum_{i,j} k(x_i,y_j)

    biased (eq. 3, ``>= 0``, exactly 0 for identical sets): all three sums over every pair, divided
    by ``n^2``, ``m^2``, ``nm``.

    Args:
        x: ``[n, N]`` or ``[n, N, c]`` functions.
        y: ``[m, N]`` or ``[m, N, c]`` functions at the same points.
        bandwidth: ``h`` in the same units as ``d`` (a float or a list of floats), or ``"median"``
            (the median pairwise distance of the pooled set, :func:`median_bandwidth`).
        scales: multipliers of the base bandwidth(s); e.g. ``(0.5, 1, 2)`` sums three kernels.
        unbiased: the U-statistic (True) or the V-statistic (False).
    """
    a, b = _pair(x, y)
    hs = _bandwidths(bandwidth, scales, a, b)
    dxx, dyy, dxy = _sq(a, a), _sq(b, b), _sq(a, b)
    kxx, kyy, kxy = (sum(torch.exp(-d / (2.0 * h * h)) for h in hs) for d in (dxx, dyy, dxy))
    if unbiased:
        return float(_offdiag_mean(kxx) + _offdiag_mean(kyy) - 2.0 * kxy.mean())
    return float(kxx.mean() + kyy.mean() - 2.0 * kxy.mean())


def energy_distance(x: Tensor, y: Tensor, unbiased: bool = True) -> float:
    """Energy distance ``2 E d(X, Y) - E d(X, X') - E d(Y, Y')`` with the mean-reduced ``L^2`` distance
    ``d`` (Szekely & Rizzo 2013, eq. 2: the square of a metric between laws, ``>= 0`` and 0 only for
    equal laws; in the units of ``d``).

    ``unbiased=True`` averages the within-set terms over distinct pairs (U-statistics: the estimator
    is unbiased and has mean 0 for equal laws); ``False`` averages over all pairs (V-statistic,
    exactly 0 for identical sets).
    """
    a, b = _pair(x, y)
    dxx, dyy, dxy = (_sq(u, v).sqrt() for u, v in ((a, a), (b, b), (a, b)))
    if unbiased:
        return float(2.0 * dxy.mean() - _offdiag_mean(dxx) - _offdiag_mean(dyy))
    return float(2.0 * dxy.mean() - dxx.mean() - dyy.mean())


def _nearest(generated: Tensor, reference: Tensor) -> Tensor:
    """Distances ``[n_gen, n_ref]`` between generated and reference functions."""
    a, b = _pair(generated, reference)
    return _sq(a, b).sqrt()


def coverage(generated: Tensor, reference: Tensor) -> float:
    """COV (Achlioptas et al. 2018): the fraction of reference functions that are the nearest
    reference neighbour of at least one generated function. 1 = every mode matched; a collapsed
    generator (all samples equal) scores ``1 / n_ref``."""
    d = _nearest(generated, reference)
    return float(d.argmin(dim=1).unique().numel() / d.shape[1])


def min_matching_distance(generated: Tensor, reference: Tensor) -> float:
    """MMD as in Achlioptas et al. 2018 (minimum matching distance, not the kernel MMD): the mean over
    reference functions of the distance ``d`` to their nearest generated function. 0 when every
    reference function is reproduced exactly."""
    return float(_nearest(generated, reference).min(dim=0).values.mean())


def coverage_mmd(generated: Tensor, reference: Tensor) -> dict[str, float]:
    """``{"cov": coverage, "mmd_match": min_matching_distance}`` from one distance matrix."""
    d = _nearest(generated, reference)
    return {"cov": float(d.argmin(dim=1).unique().numel() / d.shape[1]),
            "mmd_match": float(d.min(dim=0).values.mean())}
