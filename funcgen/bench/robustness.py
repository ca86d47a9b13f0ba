"""Robustness tools for the PFGM++ study (Xu et al. 2023, Sec. 5.2): weight quantization and
sampler perturbations, applied to a trained :class:`funcgen.generator.FunctionGenerator` without
retraining. Used by ``funcgen bench robustness``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..generator import FunctionGenerator

__all__ = ["quantize_weights", "quantized"]


@torch.no_grad()
def quantize_weights(net: nn.Module, bits: int) -> nn.Module:
    """A copy of ``net`` with every parameter tensor quantized to ``bits`` bits (post-training).

    Per-tensor symmetric uniform quantization: ``scale = max|w| / (2^(bits-1) - 1)``,
    ``w_q = round(w / scale) * scale``, so each tensor takes at most ``2^bits - 1`` distinct values
    and ``|w_q - w| <= scale / 2``. Buffers (e.g. fixed Fourier frequencies) are left untouched.

    Args:
        net: the network (not modified).
        bits: bits per weight, 2 to 16.
    """
    if not isinstance(bits, int) or not 2 <= bits <= 16:
        raise ValueError(f"bits must be an int in [2, 16]; got {bits!r}")
    out = copy.deepcopy(net)
    levels = 2 ** (bits - 1) - 1
    for p in out.parameters():
        if not p.is_floating_point():
            continue
        scale = p.abs().max() / levels
        if scale > 0:
            p.copy_(torch.round(p / scale) * scale)
    return out


def quantized(gen: FunctionGenerator, bits: int) -> FunctionGenerator:
    """``gen`` with its network's weights quantized to ``bits`` bits."""
    return FunctionGenerator(gen.method, quantize_weights(gen.net, bits), gen.data)
