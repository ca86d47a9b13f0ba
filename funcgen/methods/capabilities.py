"""What a method offers beyond ``loss`` and ``sample``, as small protocols.

The generator, the benchmarks and the command line ask ``isinstance(method, SupportsLikelihood)`` and
never name a concrete method; a new method gains a capability by defining the protocol's member.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from ..samplers.base import Callback, ModelFn
from ..samplers.guidance import DenoiserGuide
from ..samplers.path import GaussianPath

__all__ = ["SupportsLikelihood", "SupportsProjection", "SupportsRefinement", "SupportsGaussianPath",
           "SupportsResampling"]


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

    def project(self, net: nn.Module, coords: Tensor, values: Tensor, k: int = 1, mask: Tensor | None = None,
                generator: torch.Generator | None = None) -> Tensor:
        """``values`` ``[B, N, c]`` at ``coords`` ``[B, N, d]`` -> projected values ``[B, N, c]``; with ``mask``
        ``[B, N]`` (True = observed) the unobserved values start as source noise and the observed ones are
        restored after every application (inpainting)."""
        ...


@runtime_checkable
class SupportsRefinement(Protocol):
    """Sampling with more steps refines a finished sample (IGN's ``f(f(z))``); the step counts worth
    evaluating beside the default."""

    refinement_steps: tuple[int, ...]


@runtime_checkable
class SupportsGaussianPath(Protocol):
    """A diffusion-type method: its states follow ``x_t = a(t) x_data + s(t) xi`` (:class:`GaussianPath`), it
    exposes the denoiser ``E[x_data | x_t]`` and its sampler takes a denoiser ``guide``. The generator builds
    posterior sampling (:mod:`funcgen.samplers.guidance`) and likelihoods (:mod:`funcgen.samplers.likelihood`)
    from these alone."""

    def gaussian_path(self) -> GaussianPath:
        """The method's path: scales, the noise ``xi`` and the data / prior levels."""
        ...

    def denoiser(self, net: nn.Module, coords: Tensor, generator: torch.Generator | None = None) -> ModelFn:
        """``D(x [B, N, c], t) -> E[x_data | x_t = x]`` ``[B, N, c]`` at ``coords`` ``[B, N, d]``."""
        ...

    def sample(self, net: nn.Module, coords: Tensor, channels: int, *, generator: torch.Generator | None = None,
               steps: int | None = None, progress: bool = False, callback: Callback | None = None,
               guide: DenoiserGuide | None = None) -> Tensor:
        """The method's sampler with its denoiser passed through ``guide`` (None: unconditional)."""
        ...


@runtime_checkable
class SupportsResampling(Protocol):
    """A sampler that can repeat each step, the state carried back between repeats (RePaint resampling,
    :func:`funcgen.samplers.ddim`): ``sample(..., resample=r)``. ``repeats_steps`` says whether the method's
    configured solver does (a multistep or ODE solver does not)."""

    @property
    def repeats_steps(self) -> bool: ...
