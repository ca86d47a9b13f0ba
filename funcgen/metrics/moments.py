"""Moment errors of a set of generated functions against a known Gaussian law.

All functions take samples ``[S, N]`` (S functions observed at the same N points, one channel)
and the true covariance ``[N, N]`` (and optionally the true mean ``[N]``, default 0).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["covariance_error", "mean_error", "variance_error", "moment_report"]


def _check(samples: Tensor, cov: Tensor) -> None:
    if samples.ndim != 2 or samples.shape[0] < 2:
        raise ValueError(f"samples must be [S, N] with S >= 2; got {tuple(samples.shape)}")
    if cov.shape != (samples.shape[1], samples.shape[1]):
        raise ValueError(f"covariance must be [{samples.shape[1]}, {samples.shape[1]}]; got {tuple(cov.shape)}")


def covariance_error(samples: Tensor, cov: Tensor) -> float:
    """Relative Frobenius error ``|C_hat - C|_F / |C|_F`` of the empirical (centred) covariance."""
    _check(samples, cov)
    c_hat = torch.cov(samples.double().T)
    cov = cov.double()
    return float(torch.linalg.norm(c_hat - cov) / torch.linalg.norm(cov))


def mean_error(samples: Tensor, cov: Tensor, mean: Tensor | None = None) -> float:
    """RMS over points of the empirical mean error, in units of the true marginal std."""
    _check(samples, cov)
    mu = torch.zeros(samples.shape[1], dtype=torch.float64) if mean is None else mean.double()
    std = cov.double().diagonal().sqrt()
    return float((((samples.double().mean(0) - mu) / std) ** 2).mean().sqrt())


def variance_error(samples: Tensor, cov: Tensor) -> float:
    """Mean over points of ``|var_hat / var - 1|`` (marginal variance error)."""
    _check(samples, cov)
    return float((samples.double().var(0) / cov.double().diagonal() - 1.0).abs().mean())


def moment_report(samples: Tensor, cov: Tensor, suffix: str = "") -> dict[str, float]:
    """``cov_err``, ``mean_err`` and ``var_err`` keyed with ``suffix`` (e.g. ``"@N=64"``)."""
    return {f"cov_err{suffix}": covariance_error(samples, cov),
            f"mean_err{suffix}": mean_error(samples, cov),
            f"var_err{suffix}": variance_error(samples, cov)}
