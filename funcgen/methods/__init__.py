"""Generative methods: one small file each (objective + sampler)."""

from .base import Method, masked_mean
from .capabilities import SupportsLikelihood, SupportsProjection, SupportsRefinement, SupportsResampling
from .fdp import FunctionalDiffusion
from .ffm import FunctionalFlowMatching
from .ign import IdempotentGenerative
from .inftydiff import InftyDiff
from .mdf import ManifoldDiffusionField
from .pfgmpp import PFGMPP
from .riemannian import RiemannianDiffusion

__all__ = ["Method", "masked_mean", "SupportsLikelihood", "SupportsProjection", "SupportsRefinement",
           "SupportsResampling", "FunctionalDiffusion", "FunctionalFlowMatching", "IdempotentGenerative", "InftyDiff",
           "ManifoldDiffusionField", "PFGMPP", "RiemannianDiffusion"]
