"""A bottlenecked autoencoder on point sets: point set -> grid -> conv encoder -> latent vector -> conv decoder ->
grid -> values at any query points.

The shape of the paper's IGN network (Shocher et al., ICLR 2024, sec. 4 and appendix: a DCGAN discriminator
as encoder to a small latent, a DCGAN generator as decoder), made resolution-free at both ends:

* **read-in** (:func:`splat`): every point spreads its value over the ``2^d`` nodes of a fixed cell-centre
  grid around it with multilinear weights ``w``; a node's value is the weighted mean ``sum w v / sum w`` of
  the points near it and its coverage ``min(1, sum w)`` says how much data it saw. On the grid itself (the
  training resolution) this is the identity; on finer sets it is a local average (a resolution-consistent
  estimate of the function near the node); masked-out points get weight 0, so a partly observed function
  is read as what it is, a function known on part of the domain (coverage 0 elsewhere).
* **bottleneck**: strided convolutions to a coarse grid, one linear map to ``latent_dim`` numbers (about
  100: far fewer than the pixels, so the identity map is out of reach and ``f`` must model the data).
* **read-back** (:func:`gather`): the decoder's grid is evaluated at the query coordinates by multilinear
  interpolation, the adjoint of the read-in, so ``f(z)`` can be drawn at any resolution.

Nothing is zero-initialised: the output depends on the input from the first step, so every IGN loss term
has a gradient at initialisation. Coordinates live in the unit cube ``[0, 1]^d`` (points outside are read
as on its boundary); node ``j`` of an axis with ``G`` nodes sits at ``(j + 0.5) / G``.
"""

from __future__ import annotations

import itertools
import math
from typing import Literal, Sequence

import torch
from torch import Tensor, nn

from funcgen.nets.base import Backbone, TimeEmbedding
from funcgen.nets.norm import SetBatchNorm

__all__ = ["GridAutoencoder", "splat", "gather"]

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_CONVT = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}


def _corners(coords: Tensor, shape: Sequence[int]) -> tuple[Tensor, Tensor]:
    """Flat node indices ``[B, N, 2^d]`` (long) and multilinear weights ``[B, N, 2^d]`` of ``coords``
    ``[B, N, d]`` on the cell-centre grid ``shape``; weights sum to 1 per point."""
    d = len(shape)
    size = torch.tensor(shape, dtype=coords.dtype, device=coords.device)
    u = (coords * size - 0.5).clamp(min=torch.zeros_like(size), max=size - 1)  # node units
    lo = u.floor().clamp(max=(size - 2).clamp_min(0))  # the lower corner of the cell holding the point
    frac = u - lo
    lo = lo.long()
    strides = [math.prod(shape[k + 1:]) for k in range(d)]
    idx, wts = [], []
    for bits in itertools.product((0, 1), repeat=d):
        i = torch.zeros(coords.shape[:-1], dtype=torch.long, device=coords.device)
        w = torch.ones(coords.shape[:-1], dtype=coords.dtype, device=coords.device)
        for k, bit in enumerate(bits):
            if shape[k] == 1:  # one node on this axis: all weight on it (the upper corner gets none)
                w = w * (0.0 if bit else 1.0)
                continue
            i = i + (lo[..., k] + bit) * strides[k]
            w = w * (frac[..., k] if bit else 1.0 - frac[..., k])
        idx.append(i)
        wts.append(w)
    return torch.stack(idx, -1), torch.stack(wts, -1)


def splat(coords: Tensor, values: Tensor, shape: Sequence[int], mask: Tensor | None = None) -> Tensor:
    """Read a point set onto the cell-centre grid ``shape``: ``[B, c + 1, *shape]``.

    Channels ``0..c-1``: the multilinear-weighted mean of the values near each node (0 where no point
    contributes); channel ``c``: the coverage ``min(1, sum of weights)``. ``coords`` ``[B, N, d]`` in
    ``[0, 1]^d``, ``values`` ``[B, N, c]``, ``mask`` ``[B, N]`` bool (True = observed; other values are
    ignored, even if NaN).
    """
    b, n, c = values.shape
    idx, w = _corners(coords, shape)  # [B, N, K]
    if mask is not None:
        w = w * mask.to(w.dtype).unsqueeze(-1)
        values = torch.where(mask.unsqueeze(-1), values, torch.zeros((), dtype=values.dtype, device=values.device))
    cells = math.prod(shape)
    k = idx.shape[-1]
    src = torch.cat([values.unsqueeze(2) * w.unsqueeze(-1), w.unsqueeze(-1)], dim=-1)  # [B, N, K, c + 1]
    acc = values.new_zeros(b, cells, c + 1).scatter_add_(1, idx.reshape(b, n * k, 1).expand(-1, -1, c + 1),
                                                         src.reshape(b, n * k, c + 1))
    den = acc[..., c:]
    mean = acc[..., :c] / den.clamp_min(1e-6)
    grid = torch.cat([mean, den.clamp(max=1.0)], dim=-1)  # [B, cells, c + 1]
    return grid.transpose(1, 2).reshape(b, c + 1, *shape)


def gather(grid: Tensor, coords: Tensor) -> Tensor:
    """Multilinear interpolation of ``grid`` ``[B, c, *shape]`` (cell-centre nodes) at ``coords`` ``[B, N, d]``
    -> ``[B, N, c]`` (the adjoint of :func:`splat`'s weighting)."""
    b, c = grid.shape[:2]
    shape = tuple(grid.shape[2:])
    idx, w = _corners(coords, shape)  # [B, N, K]
    n, k = idx.shape[1:]
    flat = grid.reshape(b, c, -1).transpose(1, 2)  # [B, cells, c]
    vals = torch.gather(flat, 1, idx.reshape(b, n * k, 1).expand(-1, -1, c)).reshape(b, n, k, c)
    return (vals * w.unsqueeze(-1)).sum(2)


def _groups(channels: int) -> int:
    return next((g for g in (8, 4, 2) if channels % g == 0 and channels // g >= 2), 1)


_BN = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


def _norm(kind: str, dim: int, channels: int, sets: Sequence[str] | None = None) -> nn.Module:
    if kind == "group":
        return nn.GroupNorm(_groups(channels), channels)
    return _BN[dim](channels) if sets is None else SetBatchNorm(channels, sets)


class GridAutoencoder(Backbone):
    """Point set -> grid -> conv encoder -> ``latent_dim`` vector -> conv decoder -> values at the queries.

    Encoder (a DCGAN discriminator's shape): a 3x3 convolution of the read-in grid (values and coverage,
    :func:`splat`) to ``width`` channels, then ``levels`` times [norm, SiLU, 3x3 convolution of
    stride 2 doubling the channels], then one linear map of the flattened coarse grid to the latent.
    Decoder (a DCGAN generator's shape): a linear map back to the coarse grid, then ``levels`` times
    [norm, SiLU, transposed 3x3 convolution of stride 2 halving the channels, to the exact size of
    the encoder's level], then norm, SiLU and a 3x3 convolution to ``out_channels``, read back at the
    query points by multilinear interpolation (:func:`gather`). ``blocks`` extra residual 3x3
    convolutions per level deepen both halves. With ``time_embedding`` the time ``t`` adds an embedding
    to the latent (IGN feeds a constant ``t``).

    Cost is ``O(N 2^d)`` for the read-in and read-back plus a fixed grid cost, for any number of points.

    ``forward(coords, values, t, mask=None)``: ``mask`` ``[B, N]`` bool (True = a real, observed point)
    removes the other points from the read-in; the output is predicted at EVERY query point, observed or
    not (so a partly observed function is completed).

    Args:
        dim: domain dimension ``d`` (1, 2 or 3).
        in_channels: input value channels ``c_in``.
        out_channels: output channels ``c_out``.
        grid: nodes per axis of the read-in / read-back grid (an int for every axis, or one per axis);
            the data's training grid is the natural choice (then read-in and read-back are exact there).
        width: channels at the finest level (doubled at each coarser one).
        levels: stride-2 convolutions between the grid and the coarse grid.
        latent_dim: size of the bottleneck vector.
        blocks: extra residual convolutions per level in encoder and decoder.
        time_embedding: add an embedding of ``t`` to the latent.
        out_activation: ``none`` or ``tanh`` (outputs in ``(-1, 1)``, for data normalised to ``[-1, 1]``).
        norm: ``batch`` (the DCGAN's BatchNorm, default) or ``group`` (GroupNorm) before every activation.
            BatchNorm normalises each feature over the batch in training, which removes whatever all
            functions of a batch share, so the output cannot start (or settle) as one function for every
            input: measured on IGN, GroupNorm collapses to a constant map within a few hundred steps,
            BatchNorm does not. In ``eval()`` mode it uses running statistics, so a sample never depends on
            the other functions of its batch; in training mode it does (and needs 2 or more values per
            feature: a batch of one function trains only with a coarse grid of 2 or more cells).
        norm_sets: with ``norm="batch"``, names of separate sets of running statistics
            (:class:`funcgen.nets.norm.SetBatchNorm`, chosen per pass with :func:`funcgen.nets.norm.norm_stats`),
            for a method that feeds the network inputs of different laws; None: one set (``torch.nn.BatchNorm``).
    """

    def __init__(self, dim: int, in_channels: int, out_channels: int, grid: int | Sequence[int] = 32,
                 width: int = 64, levels: int = 2, latent_dim: int = 100, blocks: int = 0,
                 time_embedding: bool = True, out_activation: Literal["none", "tanh"] = "none",
                 norm: Literal["batch", "group"] = "batch", norm_sets: Sequence[str] | None = None) -> None:
        super().__init__(dim, in_channels, out_channels)
        if dim not in _CONV:
            raise ValueError(f"GridAutoencoder: dim must be 1, 2 or 3; got {dim}")
        shape = [int(grid)] * dim if isinstance(grid, int) else [int(g) for g in grid]
        if len(shape) != dim or min(shape) < 1:
            raise ValueError(f"GridAutoencoder: grid must be a positive int or {dim} positive ints; got {grid!r}")
        if width < 1 or levels < 0 or latent_dim < 1 or blocks < 0:
            raise ValueError(f"GridAutoencoder: need width >= 1, levels >= 0, latent_dim >= 1, blocks >= 0; got "
                             f"{width}, {levels}, {latent_dim}, {blocks}")
        if out_activation not in ("none", "tanh"):
            raise ValueError(f"GridAutoencoder: out_activation must be 'none' or 'tanh'; got {out_activation!r}")
        if norm not in ("group", "batch"):
            raise ValueError(f"GridAutoencoder: norm must be 'group' or 'batch'; got {norm!r}")
        if norm_sets is not None and norm != "batch":
            raise ValueError(f"GridAutoencoder: norm_sets needs norm='batch'; got norm={norm!r}")
        sets = None if norm_sets is None else [str(n) for n in norm_sets]
        self.grid_shape = tuple(shape)
        self.out_activation = out_activation
        conv, convt = _CONV[dim], _CONVT[dim]
        sizes = [self.grid_shape]
        for _ in range(levels):
            sizes.append(tuple((s + 1) // 2 for s in sizes[-1]))
        self.sizes = sizes
        chans = [width * 2 ** level for level in range(levels + 1)]
        self.conv_in = conv(in_channels + 1, width, 3, padding=1)
        self.enc = nn.ModuleList()
        for level in range(levels + 1):
            stage = nn.ModuleList([_Res(conv, chans[level], _norm(norm, dim, chans[level], sets))
                                   for _ in range(blocks)])
            if level < levels:
                stage.append(nn.Sequential(_norm(norm, dim, chans[level], sets), nn.SiLU(),
                                           conv(chans[level], chans[level + 1], 3, stride=2, padding=1)))
            self.enc.append(stage)
        coarse = chans[-1] * math.prod(sizes[-1])
        self.to_latent = nn.Linear(coarse, latent_dim)
        self.time = TimeEmbedding(latent_dim, num_freqs=16) if time_embedding else None
        self.from_latent = nn.Linear(latent_dim, coarse)
        self.dec = nn.ModuleList()
        for level in range(levels, -1, -1):
            stage = nn.ModuleList([_Res(conv, chans[level], _norm(norm, dim, chans[level], sets))
                                   for _ in range(blocks)])
            if level > 0:
                pad = [t - (2 * s - 1) for t, s in zip(sizes[level - 1], sizes[level])]  # 0 or 1 per axis
                stage.append(nn.Sequential(_norm(norm, dim, chans[level], sets), nn.SiLU(),
                                           convt(chans[level], chans[level - 1], 3, stride=2, padding=1,
                                                 output_padding=tuple(pad))))
            self.dec.append(stage)
        self.head = nn.Sequential(_norm(norm, dim, width, sets), nn.SiLU(), conv(width, out_channels, 3,
                                                                                          padding=1))

    def encode(self, coords: Tensor, values: Tensor, t: Tensor, mask: Tensor | None = None) -> Tensor:
        """The latent ``[B, latent_dim]`` of the function ``values`` ``[B, N, c_in]`` at ``coords``
        ``[B, N, d]`` (``mask`` ``[B, N]``: True = observed)."""
        t = self.check_inputs(coords, values, t)
        mask = self.check_mask(mask, coords)
        h = self.conv_in(splat(coords, values, self.grid_shape, mask))
        for stage in self.enc:
            for layer in stage:
                h = layer(h)
        z = self.to_latent(h.flatten(1))
        return z if self.time is None else z + self.time(t)

    def decode(self, latent: Tensor, coords: Tensor) -> Tensor:
        """The decoded function of ``latent`` ``[B, latent_dim]`` at ``coords`` ``[B, N, d]`` -> ``[B, N, c_out]``."""
        return gather(self.decode_grid(latent), coords)

    def decode_grid(self, latent: Tensor) -> Tensor:
        """The decoder's grid ``[B, c_out, *grid]`` of ``latent`` ``[B, latent_dim]``."""
        h = self.from_latent(latent).reshape(latent.shape[0], -1, *self.sizes[-1])
        for stage in self.dec:
            for layer in stage:
                h = layer(h)
        h = self.head(h)
        return torch.tanh(h) if self.out_activation == "tanh" else h

    def forward(self, coords: Tensor, values: Tensor, t: Tensor, mask: Tensor | None = None) -> Tensor:
        """See :meth:`Backbone.forward`: ``[B, N, d], [B, N, c_in], [B] -> [B, N, c_out]``; ``mask`` ``[B, N]``
        bool (True = observed) limits what is read in, not where the output is predicted."""
        return self.decode(self.encode(coords, values, t, mask), coords)


class _Res(nn.Module):
    """``x + conv(SiLU(norm(x)))``, a 3x3 residual convolution."""

    def __init__(self, conv: type[nn.Module], channels: int, norm: nn.Module) -> None:
        super().__init__()
        self.body = nn.Sequential(norm, nn.SiLU(),
                                  conv(channels, channels, 3, padding=1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)
