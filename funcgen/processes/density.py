"""Exact log densities of function-space noise at given points: the prior term of a likelihood.

The values ``x`` ``[B, N, c]`` of a zero-mean Gaussian field at ``N`` points have the density
``log N(x; 0, C) = -1/2 (x^T C^-1 x + log det C + N log 2 pi)`` per channel (channels independent), with
``C`` ``[N, N]`` the field's covariance at the points; a Student-t process with ``D`` degrees of freedom
and scale matrix ``C`` (a Gaussian field divided by ``sqrt(w)``, ``w ~ chi^2_D / D``, ONE ``w`` per
function, so all channels share it) has

    log t_D(x; C) = log G((D + n) / 2) - log G(D / 2) - n/2 log(D pi) - c/2 log det C
                    - (D + n) / 2 log(1 + x^T C^-1 x / D),          n = N c,

(Kotz & Nadarajah 2004, eq. 1.1). Both are computed in float64 from the Cholesky factor of
``C + jitter * mean(diag C) * I``: ``jitter`` is relative to the mean point variance.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["gaussian_log_prob", "student_t_log_prob", "mahalanobis_logdet", "DEFAULT_JITTER"]

#: relative diagonal added to a covariance before its Cholesky factorisation
DEFAULT_JITTER = 1e-9


def mahalanobis_logdet(x: Tensor, cov: Tensor, jitter: float = DEFAULT_JITTER) -> tuple[Tensor, Tensor]:
    """``(x^T C^-1 x summed over channels [B], log det C [B or 1])`` (float64) for ``x`` ``[B, N, c]`` and
    ``cov`` ``[N, N]`` or ``[B, N, N]``; ``C`` gets ``jitter * mean(diag C)`` on its diagonal.

    Raises:
        ValueError: shapes disagree, or ``C`` is not positive definite even with the jitter.
    """
    if x.ndim != 3:
        raise ValueError(f"values must be [B, N, c]; got {tuple(x.shape)}")
    c = cov.double()
    if c.ndim == 2:
        c = c.unsqueeze(0)
    if c.shape[-2:] != (x.shape[1], x.shape[1]) or c.shape[0] not in (1, x.shape[0]):
        raise ValueError(f"covariance {tuple(cov.shape)} does not match values {tuple(x.shape)}")
    n = c.shape[-1]
    eye = torch.eye(n, dtype=torch.float64, device=c.device)
    scale = c.diagonal(dim1=-2, dim2=-1).mean(-1)[:, None, None]
    chol, info = torch.linalg.cholesky_ex(c + jitter * scale * eye)
    if bool((info != 0).any()):
        raise ValueError(f"the noise covariance at these {n} points is not positive definite even with a relative "
                         f"jitter of {jitter:g}: are some points repeated? (the density of repeated points does not "
                         "exist)")
    z = torch.linalg.solve_triangular(chol, x.double(), upper=False)  # [B, N, c]
    maha = (z * z).sum(dim=(1, 2))
    logdet = 2.0 * chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    return maha, logdet


def gaussian_log_prob(x: Tensor, cov: Tensor, jitter: float = DEFAULT_JITTER) -> Tensor:
    """``sum_k log N(x[..., k]; 0, C)`` ``[B]`` (float64) for ``x`` ``[B, N, c]``, ``cov`` ``[(B,) N, N]``."""
    maha, logdet = mahalanobis_logdet(x, cov, jitter)
    n, c = x.shape[1], x.shape[2]
    return -0.5 * (maha + c * logdet + n * c * math.log(2.0 * math.pi))


def student_t_log_prob(x: Tensor, cov: Tensor, dof: float, jitter: float = DEFAULT_JITTER) -> Tensor:
    """Log density ``[B]`` (float64) of a Student-t process draw ``x`` ``[B, N, c]`` with ``dof`` degrees of freedom
    and scale matrix ``cov`` (the base field's covariance, NOT the t's covariance); ``dof = inf`` is Gaussian."""
    if math.isinf(dof):
        return gaussian_log_prob(x, cov, jitter)
    maha, logdet = mahalanobis_logdet(x, cov, jitter)
    n = x.shape[1] * x.shape[2]
    return (math.lgamma(0.5 * (dof + n)) - math.lgamma(0.5 * dof) - 0.5 * n * math.log(dof * math.pi)
            - 0.5 * x.shape[2] * logdet - 0.5 * (dof + n) * torch.log1p(maha / dof))
