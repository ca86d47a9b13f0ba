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

:class:`BranchTrunkNet` is the same read-out without the Perceiver: the branch is a residual MLP of the
projection ``P`` itself (DeepONet with the basis coefficients as its sensors),

    out(q) = a(t) y(q) + sum_{j < r} phi_j(q) b_j,    b = g(t) * (P W_p) + MLP(P, t),

so a step costs ``O(N r)`` plus the MLP and never attends over points. With ``x0`` prediction and fields that
lie in the span of the ``r`` modes this is the form of the exact denoiser (``b`` a function of ``P``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..pointset import shares_points
from .base import Backbone, TimeEmbedding
from .perceiver import PerceiverNet

__all__ = ["BranchTrunkPerceiverNet", "BranchTrunkNet", "basis_projection"]


def basis_projection(phi: Tensor, values: Tensor, mask: Tensor | None = None) -> Tensor:
    """``P_jc = mean_i phi_j(x_i) y_c(x_i)`` ``[B, r, c]``: the Monte Carlo inner product with each basis function.

    Args:
        phi: ``[B, N, r]`` basis values at the points (or ``[N, r]`` shared by the batch); values: ``[B, N, c]``;
            mask: ``[B, N]`` bool (True = real point) or None: padded points are left out of the mean.
    """
    if phi.ndim == 2 and mask is None:  # one [r, N] x [N, B c] product
        b, n, c = values.shape
        return (phi.T @ values.transpose(0, 1).reshape(n, b * c)).view(-1, b, c).transpose(0, 1) / n
    if phi.ndim == 2:
        phi = phi.unsqueeze(0).expand(values.shape[0], -1, -1)
    if mask is None:
        return torch.einsum("bnr,bnc->brc", phi, values) / phi.shape[1]
    w = mask.to(values.dtype)
    return torch.einsum("bnr,bnc,bn->brc", phi, values, w) / w.sum(1).clamp_min(1.0)[:, None, None]


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
        proj = basis_projection(coords[..., :self.trunk_modes], values, mask)
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


class _FiLMBlock(nn.Module):
    """Pre-LayerNorm residual MLP block with a time-dependent scale and shift (zero-initialised: identity)."""

    def __init__(self, width: int, ratio: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False)
        self.mod = nn.Linear(width, 2 * width)
        self.mlp = nn.Sequential(nn.Linear(width, ratio * width), nn.SiLU(), nn.Linear(ratio * width, width))
        for lin in (self.mod, self.mlp[-1]):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, h: Tensor, temb: Tensor) -> Tensor:
        """``h`` ``[B, W]``, ``temb`` ``[B, W]`` -> ``[B, W]``."""
        scale, shift = self.mod(nn.functional.silu(temb)).chunk(2, dim=-1)
        return h + self.mlp(self.norm(h) * (1 + scale) + shift)


class BranchTrunkNet(Backbone):
    """DeepONet on basis coordinates: a residual MLP of the projection ``P`` (branch) read out in the basis (trunk).

    ``forward(coords [B, N, k], values [B, N, c_in], t [B], mask=None, context=None) -> [B, N, c_out]``, the
    coordinates being basis values (the first ``trunk_modes`` are used); ``context=(coords_c, values_c)`` gives
    the point set ``P`` is computed from (without it, the queries themselves). See the module docstring.

    Args:
        dim: size ``k`` of the coordinates (basis functions at each point).
        in_channels, out_channels: value channels ``c_in``, ``c_out``.
        width: hidden width of the branch MLP.
        depth: residual blocks of the branch MLP.
        mlp_ratio: hidden-size multiplier inside each block.
        trunk_modes: ``r``, the leading coordinates used (None: all ``dim``).
        value_skip: add ``a(t) y(q)``, a per-channel gain on the query's own value (needed by ``eps`` / ``v``
            prediction, whose target has a part outside the span; zero-initialised).
    """

    accepts_context = True

    def __init__(self, dim: int, in_channels: int, out_channels: int, width: int = 512, depth: int = 4,
                 mlp_ratio: int = 2, trunk_modes: int | None = None, value_skip: bool = True) -> None:
        super().__init__(dim, in_channels, out_channels)
        r = dim if trunk_modes is None else int(trunk_modes)
        if not 1 <= r <= dim:
            raise ValueError(f"BranchTrunkNet: trunk_modes must be in 1..dim={dim}; got {trunk_modes!r}")
        if width < 1 or depth < 0 or mlp_ratio < 1:
            raise ValueError(f"BranchTrunkNet needs width >= 1, depth >= 0, mlp_ratio >= 1; got {width}, {depth}, "
                             f"{mlp_ratio}")
        self.trunk_modes, self.value_skip = r, bool(value_skip)
        self.time = TimeEmbedding(width)
        self.inp = nn.Linear(r * in_channels, width)
        self.blocks = nn.ModuleList(_FiLMBlock(width, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, r * out_channels)
        self.proj_channels = nn.Linear(in_channels, out_channels, bias=False)
        self.proj_gain = nn.Linear(width, r * out_channels)
        zero = [self.head, self.proj_gain]
        if self.value_skip:
            self.skip = nn.Linear(width, in_channels * out_channels)
            zero.append(self.skip)
        for lin in zero:
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, coords: Tensor, values: Tensor, t: Tensor, mask: Tensor | None = None,
                context: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """Predict at the queries ``coords`` ``[B, N, k]`` from the projection of ``context`` (or the queries)."""
        t = self.check_inputs(coords, values, t)
        mask = self.check_mask(mask, coords)
        shared = shares_points(coords)
        if context is None:
            c_coords, c_values, c_mask, c_shared = coords, values, mask, shared
        else:
            c_coords, c_values = context
            if c_coords.shape[0] != coords.shape[0]:
                raise ValueError(f"BranchTrunkNet: context batch {c_coords.shape[0]} != query batch {coords.shape[0]}")
            self.check_inputs(c_coords, c_values, t)
            c_mask, c_shared = None, shares_points(c_coords)
        b, r, cin, cout = coords.shape[0], self.trunk_modes, self.in_channels, self.out_channels
        dtype = self.inp.weight.dtype
        c_phi = c_coords[0, :, :r] if c_mask is None and c_shared else c_coords[..., :r]
        proj = basis_projection(c_phi.to(dtype), c_values.to(dtype), c_mask)  # [B, r, c_in]
        temb = self.time(t)
        h = self.inp(proj.flatten(1))
        for block in self.blocks:
            h = block(h, temb)
        coef = self.head(self.norm(h)).view(b, r, cout)
        coef = coef + self.proj_gain(temb).view(b, r, cout) * self.proj_channels(proj)
        if shared:  # one [N, r] matrix times the batch's coefficients
            n = coords.shape[1]
            out = (coords[0, :, :r].to(dtype) @ coef.transpose(0, 1).reshape(r, b * cout)).view(n, b, cout)
            out = out.transpose(0, 1)
        else:
            out = torch.einsum("bnr,brc->bnc", coords[..., :r].to(dtype), coef)
        if self.value_skip:
            gain = self.skip(temb).view(b, cin, cout)
            out = out + torch.einsum("bnc,bcd->bnd", values.to(dtype), gain)
        return out
