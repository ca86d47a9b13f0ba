"""Noise schedules (time algebra) shared by the diffusion-type methods.

A variance-preserving schedule maps a time ``t in [0, 1]`` to ``alpha(t)`` and ``sigma(t)`` with
``alpha^2 + sigma^2 = 1``; the forward marginal is ``x_t = alpha(t) x_0 + sigma(t) xi``. It is the
solution of the SDE ``dx = -1/2 beta(t) x dt + sqrt(beta(t)) C^(1/2) dW`` with
``beta(t) = -d log(alpha(t)^2) / dt`` and ``C`` the covariance of the noise ``xi``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from ..config import Configurable

__all__ = ["VPSchedule", "CosineSchedule", "LinearSchedule", "make_schedule", "ScheduleName", "karras_sigmas"]

ScheduleName = Literal["cosine", "linear"]


class VPSchedule(Configurable):
    """Base class: subclasses define ``log_alpha2(t)`` (``[...] -> [...]``) and ``beta(t)``."""

    def log_alpha2(self, t: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def beta(self, t: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def alpha(self, t: Tensor) -> Tensor:
        return torch.exp(0.5 * self.log_alpha2(t))

    def sigma(self, t: Tensor) -> Tensor:
        return torch.sqrt(-torch.expm1(self.log_alpha2(t)))

    def log_snr(self, t: Tensor) -> Tensor:
        la2 = self.log_alpha2(t)
        return la2 - torch.log(-torch.expm1(la2))


class CosineSchedule(VPSchedule):
    """``alpha(t)^2 = cos^2((t + s)/(1 + s) pi/2) / cos^2(s/(1 + s) pi/2)`` (Nichol & Dhariwal 2021).

    Args:
        s: offset that keeps ``sigma`` away from 0 at ``t = 0``.
        t_max: largest time used (``alpha(1) = 0`` exactly without it); times are mapped to ``t * t_max``.
    """

    def __init__(self, s: float = 0.008, t_max: float = 0.9946) -> None:
        self.s, self.t_max = float(s), float(t_max)

    def _u(self, t: Tensor) -> Tensor:
        return (t * self.t_max + self.s) / (1.0 + self.s) * (math.pi / 2)

    def log_alpha2(self, t: Tensor) -> Tensor:
        c0 = math.cos(self.s / (1.0 + self.s) * math.pi / 2)
        return 2.0 * (torch.log(torch.cos(self._u(t))) - math.log(c0))

    def beta(self, t: Tensor) -> Tensor:
        return 2.0 * torch.tan(self._u(t)) * self.t_max * math.pi / (2.0 * (1.0 + self.s))


class LinearSchedule(VPSchedule):
    """``beta(t) = beta_min + t (beta_max - beta_min)``, ``log alpha^2 = -B(t)`` (Song et al. 2021 VP-SDE)."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0) -> None:
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)

    def log_alpha2(self, t: Tensor) -> Tensor:
        return -(self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t * t)

    def beta(self, t: Tensor) -> Tensor:
        return self.beta_min + t * (self.beta_max - self.beta_min)


def make_schedule(name: ScheduleName) -> VPSchedule:
    """Schedule by name: ``cosine`` or ``linear``."""
    if name == "cosine":
        return CosineSchedule()
    if name == "linear":
        return LinearSchedule()
    raise ValueError(f"unknown schedule {name!r}; choose one of: cosine, linear")


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """EDM's noise-level grid (Karras et al. 2022, eq. 5), float64 ``[steps + 1]``, ending with 0.

    ``sigma_i = (sigma_max^(1/rho) + i / (steps - 1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho``
    for ``i = 0 .. steps - 1``, then ``sigma_steps = 0``: ``steps`` intervals from ``sigma_max`` to 0.
    """
    if steps < 1 or not 0 < sigma_min < sigma_max or rho <= 0:
        raise ValueError(f"need steps >= 1, 0 < sigma_min < sigma_max, rho > 0; got steps={steps}, "
                         f"sigma_min={sigma_min}, sigma_max={sigma_max}, rho={rho}")
    if steps == 1:
        return torch.tensor([sigma_max, 0.0], dtype=torch.float64)
    i = torch.arange(steps, dtype=torch.float64) / (steps - 1)
    lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
    return torch.cat([(hi + i * (lo - hi)) ** rho, torch.zeros(1, dtype=torch.float64)])
