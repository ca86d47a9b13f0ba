"""Generative methods: one small file each (objective + sampler)."""

from .base import Method, masked_mean
from .fdp import FunctionalDiffusion
from .riemannian import RiemannianDiffusion

__all__ = ["Method", "masked_mean", "FunctionalDiffusion", "RiemannianDiffusion"]
