"""What a method offers beyond ``loss`` and ``sample``, as small protocols.

The generator, the benchmarks and the command line ask ``isinstance(method, SupportsLikelihood)`` and
never name a concrete method; a new method gains a capability by defining the protocol's member.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

__all__ = ["SupportsLikelihood", "SupportsProjection", "SupportsRefinement"]


@runtime_checkable
class SupportsLikelihood(Protocol):
    """Log-density of given points under the model (e.g. by the probability-flow ODE)."""

    def log_likelihood(self, net: nn.Module, x: Tensor, *, steps: int | None = None,
                       generator: torch.Generator | None = None, progress: bool = False) -> Tensor:
        """``log p(x)`` in nats, one value per point / function of ``x``."""
        ...


@runtime_checkable
class SupportsProjection(Protocol):
    """Maps a given (noisy, masked, corrupted) function towards the data: IGN's ``f`` applied ``k`` times."""

    def project(self, net: nn.Module, coords: Tensor, values: Tensor, k: int = 1) -> Tensor:
        """``values`` ``[B, N, c]`` at ``coords`` ``[B, N, d]`` -> projected values ``[B, N, c]``."""
        ...


@runtime_checkable
class SupportsRefinement(Protocol):
    """Sampling with more steps refines a finished sample (IGN's ``f(f(z))``); the step counts worth
    evaluating beside the default."""

    refinement_steps: tuple[int, ...]
