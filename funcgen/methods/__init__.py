"""Generative methods: one small file each (objective + sampler)."""

from .base import Method, masked_mean
from .fdp import FunctionalDiffusion
from .pfgmpp import PFGMPP
from .inftydiff import InftyDiff

__all__ = ["Method", "masked_mean", "FunctionalDiffusion", "PFGMPP", "InftyDiff"]
