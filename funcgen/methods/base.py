"""The method contract: a strategy object with a loss and a sampler, nothing else.

Methods know nothing about Lightning, optimizers or logging; the one
:class:`funcgen.train.module.GenerativeModule` trains any of them. Adding a method = one file here.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from typing import Callable

import torch
from torch import Tensor, nn

from ..config import Configurable
from ..pointset import PointSet
from ..samplers.base import Callback

__all__ = ["Method", "masked_mean", "stratified_times", "bind_mask", "min_snr_weight", "checked_snr_offset"]


def masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of ``x`` ``[B, N, c]`` over points and channels per function -> ``[B]``.

    The mean over points is the Monte Carlo estimate of ``|Omega|^-1 int_Omega x(u) du``, so a loss
    built from it estimates a function-space norm and does not depend on the number of points.
    """
    if mask is None:
        return x.mean(dim=(1, 2))
    m = mask.to(x.dtype).unsqueeze(-1)
    return (x * m).sum(dim=(1, 2)) / (m.sum(dim=(1, 2)) * x.shape[-1]).clamp_min(1.0)


def bind_mask(net: Callable[..., Tensor], mask: Tensor | None) -> Callable[..., Tensor]:
    """``net`` with the padding mask ``[B, N]`` (True = real point) of a ragged batch bound as ``mask=``;
    ``net`` itself when there is no padding (``mask`` None or all True), so unpadded batches call backbones
    exactly as before."""
    if mask is None or bool(mask.all()):
        return net
    return functools.partial(net, mask=mask)


def stratified_times(batch: int, generator: torch.Generator | None = None,
                     device: torch.device | str = "cpu") -> Tensor:
    """``batch`` training times in ``[0, 1)``, float64 ``[batch]``: one uniform offset ``u`` and the
    evenly spaced strata ``(u + i / B) mod 1`` in random order (a lower-variance estimate of the
    time integral in the loss than i.i.d. uniform times). Drawn on the generator's device."""
    gen_device = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand((), generator=generator, device=gen_device, dtype=torch.float64).cpu()
    t = (u + torch.arange(batch, dtype=torch.float64) / batch) % 1.0
    return t[torch.randperm(batch, generator=generator, device=gen_device).cpu()].to(device)


def min_snr_weight(snr: Tensor, gamma: float, offset: float = 0.0) -> Tensor:
    """The Min-SNR-gamma loss weight ``min(SNR + offset, gamma) / gamma`` (Hang et al., ICCV 2023, eq. 6, at
    ``offset = 0``) of an x0 (data) error at signal-to-noise ratios ``snr`` (any shape, returned alike).
    ``offset = 1`` is the weight ``1 + SNR`` a v loss puts on the x0 error, truncated at ``gamma``."""
    return (snr + offset).clamp(max=gamma) / gamma


def checked_snr_offset(offset: float, gamma: float | None) -> float:
    """``offset`` as a float, refused unless it is 0 or positive with a Min-SNR ``gamma`` set."""
    if offset != 0.0 and not (offset > 0 and gamma is not None):
        raise ValueError(f"snr_offset shifts the Min-SNR weight and needs snr_offset >= 0 and snr_gamma set; got "
                         f"snr_offset={offset}, snr_gamma={gamma}")
    return float(offset)


class Method(Configurable, ABC):
    """A generative method: ``loss`` for training, ``sample`` for generation at any coordinates."""

    #: default number of sampler steps (network evaluations may differ per method)
    steps: int

    @abstractmethod
    def loss(self, net: nn.Module, batch: PointSet,
             generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """Scalar training loss of ``net`` on ``batch`` and a dict of extra scalars to log."""

    def observe_batch(self, batch: PointSet) -> None:
        """Called by the trainer with each FULL training batch, before any point subsampling
        (``model.train_subsample``) and before the loss (default: nothing).

        For methods that fit statistics of the training data on its native grid (IGN's
        spectrum-matched source noise) while training on random subsets of points.
        """

    def on_train_step(self, step: int) -> None:
        """Called by the trainer with the global step before each training step's loss (default: nothing).

        For methods whose loss changes with training progress (e.g. a warm-up of a loss weight).
        """

    def stop_reason(self) -> str | None:
        """Polled by the trainer after each training step: a reason to end training now (e.g. a collapse
        monitor's finding), or None to go on (default)."""
        return None

    @abstractmethod
    def sample(self, net: nn.Module, coords: Tensor, channels: int, *,
               generator: torch.Generator | None = None, steps: int | None = None,
               progress: bool = False, callback: Callback | None = None) -> Tensor:
        """Draw ``B`` functions at ``coords`` ``[B, N, d]`` -> values ``[B, N, channels]``.

        ``callback(i, t, x, x0_hat) -> x or None`` runs after every sampler step and may replace the state
        (:mod:`funcgen.samplers.base`): the hook for conditioning and guidance.
        """

    def nfe(self, steps: int | None = None) -> int:
        """Network evaluations of one :meth:`sample` call with ``steps`` steps (default: one per step)."""
        return self.resolve_steps(steps)

    def resolve_steps(self, steps: int | None) -> int:
        """The sampler's step count: ``steps``, or the method's default when None; must be positive."""
        steps = self.steps if steps is None else int(steps)
        if steps <= 0:
            raise ValueError(f"steps must be positive; got {steps}")
        return steps

    def decode(self, values: Tensor, coords: Tensor) -> Tensor:
        """Map the sampler's output ``[B, N, c]`` at ``coords`` ``[B, N, d]`` to data space (default: identity).

        Methods whose samples live in a transformed space (infty-Diff's mollified functions) undo it here.
        """
        return values
