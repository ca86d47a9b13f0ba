"""A small time-conditioned U-Net on a fixed ``d``-dimensional grid: the global-context stage of the
sparse neural operator (:class:`funcgen.nets.SparseNeuralOperator`, ``grid_net="unet"``).

infty-Diff (Bond-Taylor & Willcocks 2024, sec. 3.3) puts a grid U-Net between the sparse local
blocks: the point set is interpolated onto a fixed coarse grid, the U-Net mixes information across
the whole domain at several scales, and the result is interpolated back to the points. The grid is
fixed in physical units, so the network's cost and receptive field do not depend on how many points
the function is observed at.

    levels:  [res blocks at width * mults[i]] -> downsample (stride-2 conv)     i = 0 .. L-1
    middle:  res block -> self-attention -> res block                          (coarsest grid)
    up:      [concat skip -> res block] -> upsample (nearest, to the skip's size) -> conv

Each residual block adds a projection of the time embedding between its two convolutions
(DDPM, Ho et al. 2020, appendix B). Odd grid sizes are fine: downsampling rounds up and upsampling
returns to the exact size of the matching skip connection.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GridUNet"]


def _groups(channels: int) -> int:
    """GroupNorm groups: the largest of 8, 4, 2 dividing ``channels`` with at least two channels per
    group, else 1. With one channel per group the norm would subtract the per-channel time bias that
    the residual block adds just before it, and the block would ignore the time."""
    return next((g for g in (8, 4, 2) if channels % g == 0 and channels // g >= 2), 1)


class _ResBlock(nn.Module):
    def __init__(self, conv: type[nn.Module], cin: int, cout: int, temb: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(_groups(cin), cin), conv(cin, cout, 3, padding=1)
        self.time = nn.Linear(temb, cout)
        self.norm2, self.conv2 = nn.GroupNorm(_groups(cout), cout), conv(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity (plus the skip projection)
        nn.init.zeros_(self.conv2.bias)
        self.skip = conv(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time(temb).reshape(*h.shape[:2], *(1,) * (h.ndim - 2))
        return self.skip(x) + self.conv2(F.silu(self.norm2(h)))


class _Attention(nn.Module):
    """Multi-head self-attention over all grid cells (pre-norm, residual, zero-initialised output)."""

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.attn = nn.MultiheadAttention(channels, heads, batch_first=True)
        nn.init.zeros_(self.attn.out_proj.weight)
        nn.init.zeros_(self.attn.out_proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        b, c = x.shape[:2]
        h = self.norm(x).reshape(b, c, -1).transpose(1, 2)
        h = self.attn(h, h, h, need_weights=False)[0]
        return x + h.transpose(1, 2).reshape(x.shape)


class GridUNet(nn.Module):
    """``forward(x [B, C, *grid], temb [B, T]) -> [B, C, *grid]``, a U-Net on a ``dim``-d grid.

    Args:
        dim: grid dimension (1, 2 or 3).
        channels: input and output channels ``C``.
        temb: size ``T`` of the time embedding.
        mults: channel multipliers of the levels (``len(mults) - 1`` downsamplings).
        blocks: residual blocks per level on the way down (one more on the way up, as in DDPM).
        attention: self-attention in the middle (on the coarsest grid).
        heads: attention heads (must divide ``channels * mults[-1]``).
    """

    def __init__(self, dim: int, channels: int, temb: int, mults: Sequence[int] = (1, 2, 2), blocks: int = 1,
                 attention: bool = True, heads: int = 4) -> None:
        super().__init__()
        if dim not in (1, 2, 3):
            raise ValueError(f"GridUNet: dim must be 1, 2 or 3; got {dim}")
        if len(mults) < 1 or any(int(m) < 1 for m in mults) or blocks < 1:
            raise ValueError(
                f"GridUNet: need mults >= 1 (at least one level) and blocks >= 1; got {list(mults)}, {blocks}")
        if attention and (channels * mults[-1]) % heads:
            raise ValueError(f"GridUNet: heads={heads} must divide the coarsest width {channels * mults[-1]}")
        conv: type[nn.Module] = getattr(nn, f"Conv{dim}d")
        widths = [channels * int(m) for m in mults]
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skips, c = [channels], channels
        for i, w in enumerate(widths):
            for _ in range(blocks):
                self.down.append(_ResBlock(conv, c, w, temb))
                c = w
                skips.append(c)
            if i < len(widths) - 1:
                self.downsample.append(conv(c, c, 3, stride=2, padding=1))
                skips.append(c)
        self.mid1, self.mid2 = _ResBlock(conv, c, c, temb), _ResBlock(conv, c, c, temb)
        self.attn = _Attention(c, heads) if attention else nn.Identity()
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i, w in reversed(list(enumerate(widths))):
            for _ in range(blocks + 1):
                self.up.append(_ResBlock(conv, c + skips.pop(), w, temb))
                c = w
            if i > 0:
                self.upsample.append(conv(c, c, 3, padding=1))
        self.out = nn.Sequential(nn.GroupNorm(_groups(c), c), nn.SiLU(), conv(c, channels, 3, padding=1))
        self.blocks, self.levels = int(blocks), len(widths)

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        hs, h = [x], x
        it = iter(self.down)
        for i in range(self.levels):
            for _ in range(self.blocks):
                h = next(it)(h, temb)
                hs.append(h)
            if i < self.levels - 1:
                h = self.downsample[i](h)
                hs.append(h)
        h = self.mid2(self.attn(self.mid1(h, temb)), temb)
        it = iter(self.up)
        for j in range(self.levels):
            for _ in range(self.blocks + 1):
                h = next(it)(torch.cat([h, hs.pop()], dim=1), temb)
            if j < self.levels - 1:
                h = self.upsample[j](F.interpolate(h, size=hs[-1].shape[2:], mode="nearest"))
        return self.out(h)
