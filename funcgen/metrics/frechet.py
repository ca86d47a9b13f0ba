"""Frechet distance between Gaussians fit to feature vectors (the statistic behind FID).

For ``N(mu_1, C_1)`` and ``N(mu_2, C_2)`` the squared 2-Wasserstein (Frechet) distance is
(Dowson & Landau 1982; Heusel et al. 2017, eq. 6):

    d^2 = |mu_1 - mu_2|^2 + tr C_1 + tr C_2 - 2 tr (C_1^{1/2} C_2 C_1^{1/2})^{1/2}.

The matrix square roots are taken by symmetric eigendecomposition in float64, with eigenvalues
clamped at 0 (sample covariances of fewer items than features are singular). Unlike the
``scipy.linalg.sqrtm(C_1 C_2)`` form, the symmetric form never produces complex round-off.
The sample estimate is biased upwards by ``O(p / n)``; compare numbers computed with the same
``n`` only.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["fit_gaussian", "frechet_distance", "feature_frechet_distance"]


def fit_gaussian(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean ``[p]`` and unbiased covariance ``[p, p]`` (float64) of features ``[n, p]``, ``n >= 2``."""
    if not isinstance(features, Tensor) or features.ndim != 2 or features.shape[0] < 2 or features.shape[1] < 1:
        shape = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
        raise ValueError(f"features must be [n, p] with n >= 2 items; got {shape}")
    if not torch.isfinite(features).all():
        raise ValueError(f"features hold {int((~torch.isfinite(features)).sum())} NaN/inf values")
    f = features.detach().double()
    return f.mean(0), torch.cov(f.T).reshape(f.shape[1], f.shape[1])


def _sqrt_psd(c: Tensor) -> Tensor:
    lam, vec = torch.linalg.eigh((c + c.T) / 2)
    return (vec * lam.clamp_min(0).sqrt()) @ vec.T


def frechet_distance(mu1: Tensor, cov1: Tensor, mu2: Tensor, cov2: Tensor) -> float:
    """Squared Frechet distance between ``N(mu1, cov1)`` and ``N(mu2, cov2)`` (means ``[p]``, covariances
    ``[p, p]``)."""
    p = mu1.shape[-1]
    for name, t, shape in (("mu1", mu1, (p,)), ("mu2", mu2, (p,)), ("cov1", cov1, (p, p)), ("cov2", cov2, (p, p))):
        if tuple(t.shape) != shape:
            raise ValueError(f"{name} must have shape {shape} (means [p], covariances [p, p]); got {tuple(t.shape)}")
        if not torch.isfinite(t).all():
            raise ValueError(f"{name} holds NaN/inf values")
    mu1, mu2, cov1, cov2 = (t.detach().double() for t in (mu1, mu2, cov1, cov2))
    s1 = _sqrt_psd(cov1)
    cross = torch.linalg.eigvalsh(s1 @ cov2 @ s1).clamp_min(0).sqrt().sum()
    d2 = ((mu1 - mu2) ** 2).sum() + cov1.trace() + cov2.trace() - 2.0 * cross
    return float(d2.clamp_min(0.0))


def feature_frechet_distance(features1: Tensor, features2: Tensor) -> float:
    """Frechet distance between Gaussians fit to two feature sets ``[n1, p]`` and ``[n2, p]``."""
    if features1.ndim == 2 and features2.ndim == 2 and features1.shape[1] != features2.shape[1]:
        raise ValueError(f"feature sets have different widths: {tuple(features1.shape)} vs {tuple(features2.shape)}")
    return frechet_distance(*fit_gaussian(features1), *fit_gaussian(features2))
