"""Sparse neural operator (infty-Diff, Bond-Taylor & Willcocks 2024, sec. 3.3), pure PyTorch.

    point-wise lift -> local blocks -> normalised tent-kernel average onto a fixed coarse grid (2) ->
    a grid conv net or U-Net (global context) -> multilinear read-back at the points -> local blocks -> head

A local block is a kernel integral over a ball of physical radius ``r``,

    (K h)(x) = sum_y w(x - y) k(x - y) * h(y) / sum_y w(x - y),   w(u) = (1 - |u|^2/r^2)_+^2,     (1)

a depthwise kernel ``k(u) = sum_m a_m phi_m(u / r)`` on a fixed basis (1, u, u^2 per axis) with
learned per-channel coefficients ``a_m``. The normalisation by the (smoothly weighted) neighbour
count makes (1) a self-normalised Monte Carlo estimate of the ball average ``int w k h / int w``:
it does not depend on the sampling density, and the support stays ``r`` at every resolution.

The grid reads the point features by the same self-normalised average with a tent kernel of
half-width ``s`` grid cells (``readin_width``, spacing ``1 / G``),

    g(c) = sum_i T(c - x_i) h_i / sum_i T(c - x_i),   T(u) = prod_a (1 - |u_a| G / s)_+,          (2)

so 1x, 2x and 4x samplings of one function give nearly the same grid features (with ``s = 1.5`` the
three nodes ``0, +-1`` of a grid at the training resolution weigh ``1/3, 1, 1/3`` per axis, a
quadrature of the same tent average the finer samplings approach), and reads the grid back by
multilinear interpolation (exact at the nodes). ``readin="idw"`` keeps the first version's
``k = 3`` inverse-distance interpolation both ways (exports written before (2) existed rebuild with it).
A point ``mask`` ``[B, N]`` (False: padding) removes points from every sum: they neither feed the
local integrals nor the grid, so the outputs at the real points do not depend on them.
Neighbourhoods come from a uniform cell grid of cell size ``r`` (candidates from the ``3^d``
adjacent cells, ``O(N log N + #pairs)`` time, memory bounded by ``max_pairs``); on a full
cell-centre grid (the sampler's case) the integral is an FFT convolution, ``O(N log N)`` at any
radius. Every point-wise layer and the grid read-in/read-back run ``chunk`` points at a time, so one
forward holds a few ``[B, N, width]`` tensors and nothing larger (:mod:`funcgen.nets.sno_ops`). No
compiled sparse-conv library is needed.
"""

from __future__ import annotations

import math
from typing import Any, Callable, ClassVar, Literal, Sequence

import torch
from torch import Tensor, nn

from funcgen.nets.base import Backbone, TimeEmbedding
from funcgen.nets.grid_unet import GridUNet
from funcgen.nets.sno_ops import (
    LocalOperator,
    apply_local_operator,
    grid_gather,
    grid_local_integral,
    grid_splat,
    knn,
    local_operator,
    pairs_local_integral,
)
from funcgen.pointset import grid_coords, shared_grid_shape, shares_points

__all__ = ["LocalIntegral", "SparseNeuralOperator", "idw_interpolate"]


class LocalIntegral(nn.Module):
    """Depthwise local kernel integral (1) with radius ``radius`` in physical units.

    ``forward(queries [B, Q, d], sources [B, N, d], h [B, N, C]) -> [B, Q, C]``; queries with no
    source inside the ball get 0. Scattered points: the pairs within ``radius`` come from a cell
    grid (:func:`funcgen.nets.sno_ops.radius_pairs`: ``chunk`` queries at a time, at most
    ``max_pairs`` pairs in memory). With ``grid_shape`` (queries = sources = that full cell-centre
    grid) the same sum is an FFT convolution, ``O(N log N)`` whatever the radius. :meth:`operator` builds the
    scattered-point sum once as a sparse matrix (:func:`funcgen.nets.sno_ops.local_operator`) when its pairs
    fit ``operator_pairs``; passed to ``forward``, it replaces the neighbour search (layers of one radius
    share it) and makes forward and backward sparse products.
    """

    def __init__(self, dim: int, channels: int, radius: float, chunk: int = 1024, max_pairs: int = 2**18,
                 operator_pairs: int = 2**21) -> None:
        super().__init__()
        if not radius > 0 or chunk < 1 or max_pairs < 1 or operator_pairs < 0:
            raise ValueError(f"LocalIntegral: need radius > 0, chunk >= 1, max_pairs >= 1 and operator_pairs >= 0; "
                             f"got {radius}, {chunk}, {max_pairs}, {operator_pairs}")
        self.dim, self.radius, self.chunk, self.max_pairs = dim, float(radius), int(chunk), int(max_pairs)
        self.operator_pairs = int(operator_pairs)
        self.num_basis = 1 + 2 * dim
        coef = torch.zeros(self.num_basis, channels)
        coef[0] = 1.0  # start as the plain local average
        self.coef = nn.Parameter(coef + 0.1 * torch.randn(self.num_basis, channels) / math.sqrt(self.num_basis))

    def operator(self, points: Tensor, mask: Tensor | None = None,
                 dtype: torch.dtype | None = None) -> LocalOperator | None:
        """The sum (1) with queries = sources = ``points [B, N, d]`` as a sparse operator, or None when its pairs
        exceed ``operator_pairs`` (then ``forward`` searches in bounded memory). ``mask [B, N]``: sources to use."""
        if self.operator_pairs == 0:
            return None
        return local_operator(points, points, self.radius, dtype=dtype, mask=mask, chunk=self.chunk,
                              max_pairs=self.max_pairs, budget=self.operator_pairs)

    def forward(self, queries: Tensor, sources: Tensor, h: Tensor, grid_shape: tuple[int, ...] | None = None,
                inplace: bool = False, mask: Tensor | None = None, operator: LocalOperator | None = None) -> Tensor:
        """``inplace``: the grid path may overwrite ``h`` with the result (to save memory without autograd).
        ``mask [B, N]``: sources to use (False: left out of every sum; scattered path only). ``operator``: from
        :meth:`operator` on these queries, sources and mask (then the search is skipped; ``mask`` is in it)."""
        if operator is not None:
            if grid_shape is not None or (operator.batch, operator.queries) != tuple(queries.shape[:2]):
                raise ValueError(f"LocalIntegral: an operator for {operator.batch} x {operator.queries} scattered "
                                 f"queries got {tuple(queries.shape[:2])} (grid_shape {grid_shape})")
            return apply_local_operator(operator, h, self.coef)
        if grid_shape is not None:
            if mask is not None:
                raise ValueError("LocalIntegral: the grid path takes no mask (a masked grid is a scattered point set)")
            if math.prod(grid_shape) != h.shape[1] or queries.shape[1] != h.shape[1]:
                raise ValueError(f"LocalIntegral: grid_shape {grid_shape} needs queries = sources = its "
                                 f"{math.prod(grid_shape)} cell centres; "
                                 f"got {queries.shape[1]} and {h.shape[1]} points")
            return grid_local_integral(h, grid_shape, self.coef, self.radius, max_elems=16 * self.max_pairs,
                                       inplace=inplace)
        return pairs_local_integral(queries, sources, h, self.coef, self.radius, chunk=self.chunk,
                                    max_pairs=self.max_pairs, mask=mask)


def idw_interpolate(queries: Tensor, sources: Tensor, h: Tensor, k: int = 3, chunk: int = 4096,
                    eps: float = 1e-8) -> Tensor:
    """Inverse-distance interpolation from the ``k`` nearest sources: ``[B, Q, d], [B, N, d], [B, N, C] -> [B, Q, C]``.

    ``f(x) = sum_i f(y_i) / |x - y_i| / sum_i 1 / |x - y_i|`` over the ``k`` nearest ``y_i``
    (:func:`funcgen.nets.sno_ops.knn`: ties to the lower index); exact at a source. ``chunk``
    queries at a time, sources scanned in chunks: memory ``O(B (Q + N) C)``, never ``Q x N``.
    """
    out = h.new_empty(h.shape[0], queries.shape[1], h.shape[-1])
    # functions observed at the same points (grids, the sampler): one neighbour search serves the batch
    shared = queries.shape[0] > 1 and shares_points(queries) and shares_points(sources)
    for lo in range(0, queries.shape[1], chunk):
        if shared:
            d, idx = (a.expand(queries.shape[0], *a.shape[1:]) for a in knn(queries[:1, lo:lo + chunk], sources[:1], k))
        else:
            d, idx = knn(queries[:, lo:lo + chunk], sources, k)
        wgt = 1.0 / (d + eps)
        wgt = wgt / wgt.sum(-1, keepdim=True)
        b, q, kk = idx.shape
        picked = torch.gather(h, 1, idx.reshape(b, q * kk, 1).expand(-1, -1, h.shape[-1])).reshape(b, q, kk, -1)
        out[:, lo:lo + q] = (picked * wgt[..., None].to(h.dtype)).sum(2)
    return out


def chunked_map(fn: Callable[[slice], Tensor], n: int, chunk: int, out: Tensor | None = None) -> Tensor:
    """``cat([fn(slice(lo, lo + chunk)) for lo in range(0, n, chunk)], dim=1)`` written into ``out``
    (allocated from the first piece if None): a point-wise map over ``[B, n, *]`` in bounded memory."""
    for lo in range(0, n, chunk):
        sl = slice(lo, min(n, lo + chunk))
        piece = fn(sl)
        if out is None:
            out = piece.new_empty(piece.shape[0], n, *piece.shape[2:])
        out[:, sl] = piece
    assert out is not None
    return out


class _LocalBlock(nn.Module):
    def __init__(self, dim: int, width: int, radius: float, chunk: int, max_pairs: int, operator_pairs: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.integral = LocalIntegral(dim, width, radius, chunk, max_pairs, operator_pairs)
        self.mlp = nn.Sequential(nn.Linear(2 * width, 2 * width), nn.SiLU(), nn.Linear(2 * width, width))

    def forward(self, coords: Tensor, h: Tensor, temb: Tensor, grid_shape: tuple[int, ...] | None = None,
                mask: Tensor | None = None, operator: LocalOperator | None = None) -> Tensor:
        n, chunk = h.shape[1], self.integral.chunk
        def zc(sl: slice) -> Tensor:
            return self.norm(h[:, sl]) + temb[:, None]

        z = chunked_map(zc, n, chunk)
        grad = torch.is_grad_enabled()
        k = self.integral(coords, coords, z, grid_shape, inplace=not grad, mask=mask, operator=operator)
        # if the integral overwrote z, z is recomputed chunk by chunk (the same values)
        zs: Callable[[slice], Tensor] = zc if k is z else (lambda sl: z[:, sl])
        # without autograd the integral's buffer is overwritten chunk by chunk (each chunk is read first)
        return chunked_map(lambda sl: h[:, sl] + self.mlp(torch.cat([k[:, sl], zs(sl)], dim=-1)), n, chunk,
                           out=None if grad else k)


class SparseNeuralOperator(Backbone):
    """Sparse neural operator on point sets (any ``N``, any resolution, same physical kernel support).

    Args:
        dim: domain dimension ``d`` (1, 2 or 3; the coarse net uses ``Conv{d}d``).
        in_channels, out_channels: value channels.
        width: feature width.
        radius: physical radius of the local kernels (e.g. 2-3 pixels of the training grid).
        grid_size: cells per axis of the fixed coarse grid.
        depth: local blocks before and after the coarse grid (each).
        grid_depth: conv layers of the coarse-grid net (``grid_net="conv"``; ignored by ``"unet"``).
        chunk: points per chunk of every point-wise layer and of the neighbour search (bounds memory).
        max_pairs: neighbour pairs held at once by a local integral on scattered points (bounds memory).
        operator_pairs: on scattered points with at most this many neighbour pairs in the batch, the local
            blocks share one sparse operator (:meth:`LocalIntegral.operator`, about 80 bytes per pair in
            float32) instead of searching per block; more pairs, or 0, take the bounded-memory search.
        grid_net: the coarse-grid stage: ``conv``, ``grid_depth`` 3x3 convolutions at one scale (each
            cell mixes features from at most ``grid_depth`` cells away, beyond the GroupNorm
            statistics), or ``unet``, a multi-scale U-Net
            (:class:`funcgen.nets.grid_unet.GridUNet`, the infty-Diff choice) whose receptive field
            covers the whole grid; a grid as fine as the training data (``grid_size`` 28 on MNIST)
            then lets it model shapes as a pixel-space diffusion U-Net does, while the local blocks
            and the interpolation keep every other resolution available.
        grid_mults: the U-Net's channel multipliers per level (``len - 1`` halvings of the grid).
        grid_blocks: the U-Net's residual blocks per level.
        grid_attention: self-attention on the U-Net's coarsest grid.
        readin: how the grid reads the points and the points read the grid back: ``kernel``, the
            normalised tent average (2) in and multilinear interpolation out; ``idw``, ``k = 3``
            inverse-distance interpolation both ways (the first version: exact copies when the points
            are the grid's nodes, biased at other densities; kept for exports that predate (2)).
        readin_width: half-width ``s`` of the read-in tent in grid cells (``readin="kernel"``).
    """

    #: constructor values for arguments a stored config lacks (it was written before they existed)
    LEGACY_DEFAULTS: ClassVar[dict[str, Any]] = {"readin": "idw"}

    def __init__(self, dim: int, in_channels: int, out_channels: int, width: int = 64, radius: float = 0.08,
                 grid_size: int = 16, depth: int = 1, grid_depth: int = 2, chunk: int = 1024,
                 max_pairs: int = 2**18, grid_net: Literal["conv", "unet"] = "conv",
                 grid_mults: Sequence[int] = (1, 2, 2), grid_blocks: int = 1, grid_attention: bool = True,
                 readin: Literal["kernel", "idw"] = "kernel", readin_width: float = 1.5,
                 operator_pairs: int = 2**21) -> None:
        super().__init__(dim, in_channels, out_channels)
        if readin not in ("kernel", "idw"):
            raise ValueError(f"unknown readin {readin!r}; choose kernel or idw")
        if not readin_width >= 1.0:
            raise ValueError(f"readin_width must be >= 1 grid cell (every node then sees its own cell); "
                             f"got {readin_width}")
        self.readin, self.readin_width = readin, float(readin_width)
        if dim > 3:
            raise ValueError(f"SparseNeuralOperator supports dim 1, 2 or 3; got {dim}")
        if grid_size < 2 or depth < 0 or grid_depth < 1:
            raise ValueError(
                f"need grid_size >= 2, depth >= 0, grid_depth >= 1; got {grid_size}, {depth}, {grid_depth}")
        self.grid_size, self.chunk = int(grid_size), int(chunk)
        self.lift = nn.Linear(dim + in_channels, width)
        self.time = TimeEmbedding(width)
        blocks = [_LocalBlock(dim, width, radius, chunk, max_pairs, operator_pairs) for _ in range(2 * depth)]
        self.down, self.up = nn.ModuleList(blocks[:depth]), nn.ModuleList(blocks[depth:])
        if grid_net not in ("conv", "unet"):
            raise ValueError(f"unknown grid_net {grid_net!r}; choose conv or unet")
        self.grid_kind = grid_net
        if grid_net == "unet":
            self.grid_net: nn.Module = GridUNet(dim, width, width, grid_mults, grid_blocks, grid_attention)
        else:
            conv = getattr(nn, f"Conv{dim}d")
            layers: list[nn.Module] = []
            for _ in range(grid_depth):
                layers += [nn.GroupNorm(1, width), nn.SiLU(),
                           conv(width, width, 3, padding=1, padding_mode="replicate")]
            self.grid_net = nn.Sequential(*layers)
            self.grid_time = nn.Linear(width, width)
        self.head = nn.Sequential(nn.LayerNorm(width), nn.SiLU(), nn.Linear(width, out_channels))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)
        self.register_buffer("grid", grid_coords((grid_size,) * dim), persistent=False)

    def forward(self, coords: Tensor, values: Tensor, t: Tensor, mask: Tensor | None = None) -> Tensor:
        """``coords [B, N, d], values [B, N, c_in], t [B], mask [B, N] bool (True: a real point) -> [B, N, c_out]``.

        Masked points feed no sum (local integrals, grid read-in); the outputs at them are finite but
        meaningless. Their coordinates and values may be anything, NaN included.
        """
        mask = self.check_mask(mask, coords)
        if mask is not None:
            if self.readin == "idw":
                raise ValueError("SparseNeuralOperator: readin='idw' (models exported before the kernel "
                                 "read-in) takes no point mask; pass real points only")
            coords = torch.where(mask[..., None], coords, 0.5)
            values = torch.where(mask[..., None], values, 0.0)
        t = self.check_inputs(coords, values, t)
        if not bool(torch.isfinite(coords).all()):
            raise ValueError("SparseNeuralOperator: coords contain NaN or inf")
        temb = self.time(t)
        n, chunk = coords.shape[1], self.chunk
        shape = shared_grid_shape(coords) if mask is None else None  # FFT path on (unmasked) grids
        h = chunked_map(lambda sl: self.lift(torch.cat([coords[:, sl], values[:, sl]], dim=-1)), n, chunk)
        # scattered points: one neighbour search serves every local block (they share the radius)
        blocks = [*self.down, *self.up]
        op = blocks[0].integral.operator(coords, mask, h.dtype) if shape is None and blocks else None
        for blk in self.down:
            h = blk(coords, h, temb, shape, mask, op)
        b, width = h.shape[0], h.shape[-1]
        grid = self.grid.to(coords.dtype).expand(b, -1, -1)
        if self.readin == "kernel":
            g = grid_splat(coords, h, self.grid_size, self.readin_width, mask, chunk=chunk)  # eq. (2)
        else:
            g = idw_interpolate(grid, coords, h, chunk=chunk)  # [B, G^d, C]: reads h at 3 points per node
        g = g.transpose(1, 2).reshape(b, width, *(self.grid_size,) * self.dim)
        if self.grid_kind == "unet":
            g = g + self.grid_net(g, temb)
        else:
            g = g + self.grid_net(g + self.grid_time(temb).reshape(b, width, *(1,) * self.dim))
        g = g.reshape(b, width, -1).transpose(1, 2)
        if self.readin == "kernel":
            def back(sl: slice) -> Tensor:
                return h[:, sl] + grid_gather(coords[:, sl], g, self.grid_size, chunk=chunk)
        else:
            def back(sl: slice) -> Tensor:
                return h[:, sl] + idw_interpolate(coords[:, sl], grid, g, chunk=chunk)
        h = chunked_map(back, n, chunk, out=None if torch.is_grad_enabled() else h)
        for blk in self.up:
            h = blk(coords, h, temb, shape, mask, op)
        return chunked_map(lambda sl: self.head(h[:, sl]), n, chunk)
