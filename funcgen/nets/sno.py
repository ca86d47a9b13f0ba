"""Sparse neural operator (infty-Diff, Bond-Taylor & Willcocks 2024, sec. 3.3), pure PyTorch.

    point-wise lift -> local blocks -> k=3 inverse-distance interpolation onto a fixed coarse grid ->
    a small grid conv net (global context) -> interpolation back to the points -> local blocks -> head

A local block is a kernel integral over a ball of physical radius ``r``,

    (K h)(x) = sum_y w(x - y) k(x - y) * h(y) / sum_y w(x - y),   w(u) = (1 - |u|^2/r^2)_+^2,     (1)

a depthwise kernel ``k(u) = sum_m a_m phi_m(u / r)`` on a fixed basis (1, u, u^2 per axis) with
learned per-channel coefficients ``a_m``. The normalisation by the (smoothly weighted) neighbour
count makes (1) a self-normalised Monte Carlo estimate of the ball average ``int w k h / int w``:
it does not depend on the sampling density, and the support stays ``r`` at every resolution.
Neighbourhoods are found by brute force in query chunks (``O(N^2)`` time, memory bounded by the
chunk size); no compiled sparse-conv library is needed.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from funcgen.nets.base import Backbone, TimeEmbedding
from funcgen.pointset import grid_coords

__all__ = ["LocalIntegral", "SparseNeuralOperator", "idw_interpolate"]


class LocalIntegral(nn.Module):
    """Depthwise local kernel integral (1) with radius ``radius`` in physical units.

    ``forward(queries [B, Q, d], sources [B, N, d], h [B, N, C]) -> [B, Q, C]``; queries with no
    source inside the ball get 0. Evaluated in chunks of ``chunk`` queries.
    """

    def __init__(self, dim: int, channels: int, radius: float, chunk: int = 1024) -> None:
        super().__init__()
        if not radius > 0 or chunk < 1:
            raise ValueError(f"LocalIntegral: need radius > 0 and chunk >= 1; got {radius}, {chunk}")
        self.dim, self.radius, self.chunk = dim, float(radius), int(chunk)
        self.num_basis = 1 + 2 * dim
        coef = torch.zeros(self.num_basis, channels)
        coef[0] = 1.0  # start as the plain local average
        self.coef = nn.Parameter(coef + 0.1 * torch.randn(self.num_basis, channels) / math.sqrt(self.num_basis))

    def forward(self, queries: Tensor, sources: Tensor, h: Tensor) -> Tensor:
        outs = []
        for lo in range(0, queries.shape[1], self.chunk):
            u = (queries[:, lo:lo + self.chunk, None, :] - sources[:, None, :, :]) / self.radius  # [B, q, N, d]
            w = (1.0 - (u * u).sum(-1)).clamp_min(0.0) ** 2  # [B, q, N]
            out = torch.bmm(w, h) * self.coef[0]  # basis 1; then u_a and u_a^2 per axis, one [B, q, N] at a time
            for a in range(self.dim):
                ua = u[..., a]
                out = out + torch.bmm(w * ua, h) * self.coef[1 + a] + torch.bmm(w * ua * ua, h) * self.coef[1 + self.dim + a]
            out = out / w.sum(-1, keepdim=True).clamp_min(1e-12)
            outs.append(out)
        return torch.cat(outs, dim=1)


def idw_interpolate(queries: Tensor, sources: Tensor, h: Tensor, k: int = 3, chunk: int = 4096,
                    eps: float = 1e-8) -> Tensor:
    """Inverse-distance interpolation from the ``k`` nearest sources: ``[B, Q, d], [B, N, d], [B, N, C] -> [B, Q, C]``.

    ``f(x) = sum_i f(y_i) / |x - y_i| / sum_i 1 / |x - y_i|`` over the ``k`` nearest ``y_i``; exact at a source.
    """
    k = min(k, sources.shape[1])
    outs = []
    for lo in range(0, queries.shape[1], chunk):
        dist = torch.cdist(queries[:, lo:lo + chunk], sources, compute_mode="donot_use_mm_for_euclid_dist")
        d, idx = dist.topk(k, dim=-1, largest=False)
        wgt = 1.0 / (d + eps)
        wgt = wgt / wgt.sum(-1, keepdim=True)
        b, q, _ = idx.shape
        picked = torch.gather(h, 1, idx.reshape(b, q * k, 1).expand(-1, -1, h.shape[-1])).reshape(b, q, k, -1)
        outs.append((picked * wgt[..., None]).sum(2))
    return torch.cat(outs, dim=1)


class _LocalBlock(nn.Module):
    def __init__(self, dim: int, width: int, radius: float, chunk: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.integral = LocalIntegral(dim, width, radius, chunk)
        self.mlp = nn.Sequential(nn.Linear(2 * width, 2 * width), nn.SiLU(), nn.Linear(2 * width, width))

    def forward(self, coords: Tensor, h: Tensor, temb: Tensor) -> Tensor:
        z = self.norm(h) + temb[:, None]
        return h + self.mlp(torch.cat([self.integral(coords, coords, z), z], dim=-1))


class SparseNeuralOperator(Backbone):
    """Sparse neural operator on point sets (any ``N``, any resolution, same physical kernel support).

    Args:
        dim: domain dimension ``d`` (1, 2 or 3; the coarse net uses ``Conv{d}d``).
        in_channels, out_channels: value channels.
        width: feature width.
        radius: physical radius of the local kernels (e.g. 2-3 pixels of the training grid).
        grid_size: cells per axis of the fixed coarse grid.
        depth: local blocks before and after the coarse grid (each).
        grid_depth: conv layers of the coarse-grid net.
        chunk: query points per chunk of the local integrals (bounds memory).
    """

    def __init__(self, dim: int, in_channels: int, out_channels: int, width: int = 64, radius: float = 0.08,
                 grid_size: int = 16, depth: int = 1, grid_depth: int = 2, chunk: int = 1024) -> None:
        super().__init__(dim, in_channels, out_channels)
        if dim > 3:
            raise ValueError(f"SparseNeuralOperator supports dim 1, 2 or 3; got {dim}")
        if grid_size < 2 or depth < 0 or grid_depth < 1:
            raise ValueError(f"need grid_size >= 2, depth >= 0, grid_depth >= 1; got {grid_size}, {depth}, {grid_depth}")
        self.grid_size = int(grid_size)
        self.lift = nn.Linear(dim + in_channels, width)
        self.time = TimeEmbedding(width)
        self.down = nn.ModuleList([_LocalBlock(dim, width, radius, chunk) for _ in range(depth)])
        self.up = nn.ModuleList([_LocalBlock(dim, width, radius, chunk) for _ in range(depth)])
        conv = getattr(nn, f"Conv{dim}d")
        layers: list[nn.Module] = []
        for _ in range(grid_depth):
            layers += [nn.GroupNorm(1, width), nn.SiLU(), conv(width, width, 3, padding=1, padding_mode="replicate")]
        self.grid_net = nn.Sequential(*layers)
        self.grid_time = nn.Linear(width, width)
        self.head = nn.Sequential(nn.LayerNorm(width), nn.SiLU(), nn.Linear(width, out_channels))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)
        self.register_buffer("grid", grid_coords((grid_size,) * dim), persistent=False)

    def forward(self, coords: Tensor, values: Tensor, t: Tensor) -> Tensor:
        t = self.check_inputs(coords, values, t)
        temb = self.time(t)
        h = self.lift(torch.cat([coords, values], dim=-1))
        for blk in self.down:
            h = blk(coords, h, temb)
        b, width = h.shape[0], h.shape[-1]
        grid = self.grid.to(coords.dtype).expand(b, -1, -1)
        g = idw_interpolate(grid, coords, h)  # [B, G^d, C]
        g = g.transpose(1, 2).reshape(b, width, *(self.grid_size,) * self.dim)
        g = g + self.grid_net(g + self.grid_time(temb).reshape(b, width, *(1,) * self.dim))
        g = g.reshape(b, width, -1).transpose(1, 2)
        h = h + idw_interpolate(coords, grid, g)
        for blk in self.up:
            h = blk(coords, h, temb)
        return self.head(h)
