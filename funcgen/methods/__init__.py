"""Generative methods: one small file each (objective + sampler)."""

from .base import Method, masked_mean
from .fdp import FunctionalDiffusion
from .mdf import ManifoldDiffusionField

__all__ = ["Method", "masked_mean", "FunctionalDiffusion", "ManifoldDiffusionField"]
