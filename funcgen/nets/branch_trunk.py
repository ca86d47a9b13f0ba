"""A read-out linear in the coordinates beside PerceiverIO's: a DeepONet branch/trunk path.

For a function given in a basis ``phi`` (the Laplace-Beltrami eigen-coordinates of a mesh), a denoiser of a
Gaussian field is linear in the context and in ``phi`` at the query: ``E[y_0(q) | y_t] = phi(q) . G(t) P``
with ``P = <phi, y_t>`` the projection of the state onto the basis. PerceiverIO's attention read-out finds such
bilinear maps slowly. :class:`BranchTrunkPerceiverNet` adds the path explicitly (Lu et al. 2021, DeepONet:
trunk = the coordinates, branch = a function of the input):

    out(q) = perceiver(q) + sum_{j < r} phi_j(q) b_j,
    b = Linear(mean_M(latents)) + g(t) * (P W_p),     P_j = mean_{i in C} phi_j(x_i) y_t(x_i),

with ``latents`` the Perceiver's latents after its self-attention blocks, ``g(t)`` a per-mode gain read from
the time embedding, ``W_p`` a channel map and ``C`` the context points. ``P`` is a Monte Carlo estimate of
``<phi_j, y_t> / |surface|`` (points spread evenly over the surface). Both branch layers start at zero, so
the network starts as the plain :class:`~funcgen.nets.perceiver.PerceiverNet`.

Only ``encode`` / ``decode`` are extended, never the attention: ``encode`` appends the packed projection ``P``
as extra rows after the latents and ``decode`` takes them off again.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .perceiver import PerceiverNet

__all__ = ["BranchTrunkPerceiverNet"]


class BranchTrunkPerceiverNet(PerceiverNet):
    """:class:`~funcgen.nets.perceiver.PerceiverNet` plus a branch/trunk read-out linear in the coordinates.

    Args:
        dim, in_channels, out_channels, width, num_latents, depth, heads, num_bands, mlp_ratio, query_chunk,
            query_values: as :class:`~funcgen.nets.perceiver.PerceiverNet`.
        trunk_modes: ``r``, the leading coordinates used as the trunk (None: all ``dim``).
        projection: add the projection path ``g(t) * (P W_p)`` to the branch (False: latents only).
    """

    def __init__(self, dim: int, in_channels: int, out_channels: int, width: int = 128, num_latents: int = 64,
                 depth: int = 4, heads: int = 4, num_bands: int = 0, mlp_ratio: int = 2,
                 query_chunk: int = 65536, query_values: bool = True, trunk_modes: int | None = None,
                 projection: bool = True) -> None:
        super().__init__(dim, in_channels, out_channels, width=width, num_latents=num_latents, depth=depth,
                         heads=heads, num_bands=num_bands, mlp_ratio=mlp_ratio, query_chunk=query_chunk,
                         query_values=query_values)
        r = dim if trunk_modes is None else int(trunk_modes)
        if not 1 <= r <= dim:
            raise ValueError(f"BranchTrunkPerceiverNet: trunk_modes must be in 1..dim={dim}; got {trunk_modes!r}")
        self.trunk_modes, self.projection = r, bool(projection)
        self.num_latents = num_latents
        self.branch_norm = nn.LayerNorm(width)
        self.branch = nn.Linear(width, r * out_channels)
        nn.init.zeros_(self.branch.weight)
        nn.init.zeros_(self.branch.bias)
        if self.projection:
            self.proj_channels = nn.Linear(in_channels, out_channels, bias=False)
            self.proj_gain = nn.Linear(width, r * out_channels)
            nn.init.zeros_(self.proj_gain.weight)
            nn.init.zeros_(self.proj_gain.bias)

    def _projection_rows(self, coords: Tensor, values: Tensor, mask: Tensor | None) -> Tensor:
        """``P`` ``[B, r, c_in]`` packed into ``[B, ceil(r c_in / W), W]`` rows (zero-padded)."""
        phi = coords[..., :self.trunk_modes]
        if mask is None:
            proj = torch.einsum("bnr,bnc->brc", phi, values) / coords.shape[1]
        else:
            w = mask.to(values.dtype)
            proj = torch.einsum("bnr,bnc,bn->brc", phi, values, w) / w.sum(1).clamp_min(1.0)[:, None, None]
        width = self.latents.shape[1]
        flat = proj.flatten(1)
        rows = math.ceil(flat.shape[1] / width)
        return nn.functional.pad(flat, (0, rows * width - flat.shape[1])).view(-1, rows, width)

    def encode(self, coords: Tensor, values: Tensor, t: Tensor, *args, **kwargs) -> tuple[Tensor, Tensor]:
        """:meth:`PerceiverNet.encode`, returning ``[B, M + rows, W]``: the latents, then the packed ``P``."""
        latents, temb = super().encode(coords, values, t, *args, **kwargs)
        if not self.projection:
            return latents, temb
        mask = kwargs.get("mask", args[0] if args else None)
        return torch.cat([latents, self._projection_rows(coords, values, mask).to(latents)], dim=1), temb

    def decode(self, latents: Tensor, temb: Tensor, coords: Tensor, values: Tensor, *args, **kwargs) -> Tensor:
        """:meth:`PerceiverNet.decode` at the queries plus ``sum_j phi_j(q) b_j`` ``[B, N, c_out]``."""
        lat = latents[:, :self.num_latents]
        out = super().decode(lat, temb, coords, values, *args, **kwargs)
        b, r, c = lat.shape[0], self.trunk_modes, self.out_channels
        coef = self.branch(self.branch_norm(lat.mean(1))).view(b, r, c)
        if self.projection:
            proj = latents[:, self.num_latents:].flatten(1)[:, :r * self.in_channels].view(b, r, self.in_channels)
            coef = coef + self.proj_gain(temb).view(b, r, c) * self.proj_channels(proj)
        return out + torch.einsum("bnr,brc->bnc", coords[..., :r], coef)
