"""PerceiverIO over point sets: cost linear in the number of points ``N``.

Per-point tokens are pooled into a fixed latent array by cross-attention, processed there by
self-attention, and read out at every query point by a second cross-attention. Because the
pooling is a softmax-weighted average over points, it approximates an integral over the domain
and is (approximately) independent of the discretisation (Jaegle et al. 2021, "Perceiver IO").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from funcgen.nets.base import Backbone, FourierFeatures, TimeEmbedding

__all__ = ["PerceiverNet"]


class _Attention(nn.Module):
    """Multi-head attention split into projections so keys/values can be streamed in chunks."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(width, width)
        self.kv_proj = nn.Linear(width, 2 * width)
        self.out_proj = nn.Linear(width, width)

    def _split(self, x: Tensor) -> Tensor:  # [B, L, W] -> [B, H, L, W/H]
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def q(self, x: Tensor) -> Tensor:
        """Queries ``[B, H, L, Dh]`` from ``x`` ``[B, L, W]``."""
        return self._split(self.q_proj(x))

    def kv(self, ctx: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values, each ``[B, H, S, Dh]``, from ``ctx`` ``[B, S, W]``."""
        k, v = self.kv_proj(ctx).chunk(2, dim=-1)
        return self._split(k), self._split(v)

    def out(self, o: Tensor) -> Tensor:
        """Merge heads ``[B, H, L, Dh]`` -> ``[B, L, W]`` and project."""
        return self.out_proj(o.transpose(1, 2).flatten(-2))

    def forward(self, x: Tensor, ctx: Tensor) -> Tensor:
        """Attend from ``x`` ``[B, L, W]`` into ``ctx`` ``[B, S, W]``; returns ``[B, L, W]``."""
        return self.out(F.scaled_dot_product_attention(self.q(x), *self.kv(ctx)))


def _mlp(width: int, ratio: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, ratio * width), nn.GELU(), nn.Linear(ratio * width, width))


class _LatentBlock(nn.Module):
    """Pre-LayerNorm self-attention block with AdaLN (time-dependent scale/shift) conditioning."""

    def __init__(self, width: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False)
        self.attn = _Attention(width, heads)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False)
        self.mlp = _mlp(width, mlp_ratio)
        self.mod = nn.Linear(width, 4 * width)
        nn.init.zeros_(self.mod.weight)  # plain LayerNorm at initialisation
        nn.init.zeros_(self.mod.bias)

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        """``x`` ``[B, M, W]``, ``temb`` ``[B, W]`` -> ``[B, M, W]``."""
        s1, b1, s2, b2 = self.mod(F.silu(temb)).unsqueeze(1).chunk(4, dim=-1)
        h = self.norm1(x) * (1 + s1) + b1
        x = x + self.attn(h, h)
        return x + self.mlp(self.norm2(x) * (1 + s2) + b2)


class PerceiverNet(Backbone):
    """PerceiverIO backbone on point sets (encode -> latent self-attention -> decode).

    Tokens are ``Linear([fourier(coords), values]) + time_embedding(t)``. A learned latent array
    ``[num_latents, width]`` (plus the time embedding) cross-attends into the tokens, ``depth``
    AdaLN-conditioned self-attention blocks process the latents, and every point's token
    cross-attends to the latents, followed by an MLP and a zero-initialised linear head. Cost and
    memory are ``O(N * num_latents)``.

    Outside training (``eval()`` mode or ``torch.no_grad()``), the decode runs over chunks of
    ``query_chunk`` points, and when ``N > query_chunk`` the encode streams the context in chunks
    with an exact log-sum-exp softmax merge, so memory stays bounded for millions of points.
    Chunking is exact: results match the unchunked computation up to float rounding.

    ``forward(..., context=(coords_c, values_c))`` pools the latents from a separate context point set
    and reads out only at the queries (PerceiverIO's input/output split, as Manifold Diffusion Fields
    needs); without it the queries are their own context.

    Args:
        dim: domain dimension ``d``.
        in_channels: input value channels ``c_in``.
        out_channels: output channels ``c_out``.
        width: token / latent width (divisible by ``heads``).
        num_latents: number ``M`` of latent vectors.
        depth: number of latent self-attention blocks.
        heads: attention heads.
        num_bands: octaves of the coordinate Fourier features (highest frequency 2^(num_bands-1) pi);
            keep 2^num_bands below the training grid size per axis, or the features alias on the
            training grid and the net does not carry over to other resolutions.
        mlp_ratio: hidden-size multiplier of the MLPs.
        query_chunk: points per chunk when chunking is active (see above).
        query_values: the read-out tokens include the input values at the query points (default, what a
            denoiser wants: a per-point skip path). False: PerceiverIO's output queries, coordinates
            only, so an output depends on the input values only through the ``num_latents x width``
            latents: a bottleneck, which Idempotent Generative Networks need (with the skip path the
            identity map is an exact, easily found minimiser of their reconstruction and idempotence
            losses, and training collapses to it).
    """

    accepts_context = True

    def __init__(self, dim: int, in_channels: int, out_channels: int, width: int = 128, num_latents: int = 64,
                 depth: int = 4, heads: int = 4, num_bands: int = 6, mlp_ratio: int = 2,
                 query_chunk: int = 65536, query_values: bool = True) -> None:
        super().__init__(dim, in_channels, out_channels)
        if width % heads != 0:
            raise ValueError(f"PerceiverNet: width={width} must be divisible by heads={heads}")
        if query_chunk < 1 or num_latents < 1 or depth < 0:
            raise ValueError(f"PerceiverNet: need query_chunk >= 1, num_latents >= 1, depth >= 0; got "
                             f"{query_chunk}, {num_latents}, {depth}")
        self.query_chunk = query_chunk
        self.query_values = bool(query_values)
        self.fourier = FourierFeatures(dim, num_bands)
        self.token_in = nn.Linear(self.fourier.out_dim + in_channels, width)
        self.time = TimeEmbedding(width)
        self.latents = nn.Parameter(torch.randn(num_latents, width) * 0.02)
        # encoder: latents <- tokens
        self.enc_norm_q = nn.LayerNorm(width)
        self.enc_norm_kv = nn.LayerNorm(width)
        self.enc_attn = _Attention(width, heads)
        self.enc_norm_mlp = nn.LayerNorm(width)
        self.enc_mlp = _mlp(width, mlp_ratio)
        self.blocks = nn.ModuleList([_LatentBlock(width, heads, mlp_ratio) for _ in range(depth)])
        # decoder: queries <- latents
        self.dec_norm_kv = nn.LayerNorm(width)
        self.dec_norm_q = nn.LayerNorm(width)
        self.dec_attn = _Attention(width, heads)
        self.dec_norm_mlp = nn.LayerNorm(width)
        self.dec_mlp = _mlp(width, mlp_ratio)
        self.head_norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, out_channels)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def _chunking(self) -> bool:
        return not (self.training and torch.is_grad_enabled())

    def tokens(self, coords: Tensor, values: Tensor, temb: Tensor) -> Tensor:
        """Per-point tokens ``[B, n, W]`` from ``coords`` ``[B, n, d]``, ``values`` ``[B, n, c_in]``,
        ``temb`` ``[B, W]``."""
        return self.token_in(torch.cat([self.fourier(coords), values], dim=-1)) + temb.unsqueeze(1)

    def _pool(self, q: Tensor, coords: Tensor, values: Tensor, temb: Tensor, chunk: int,
              mask: Tensor | None = None) -> Tensor:
        """Exact streaming softmax attention of ``q`` ``[B, H, M, Dh]`` over all points, ``chunk`` at a time
        (points with ``mask`` ``[B, N]`` False take no part)."""
        scale = q.shape[-1] ** -0.5
        run_max = q.new_full((*q.shape[:-1], 1), float("-inf"))
        run_sum = q.new_zeros((*q.shape[:-1], 1))
        acc = torch.zeros_like(q)
        for s in range(0, coords.shape[1], chunk):
            tok = self.tokens(coords[:, s:s + chunk], values[:, s:s + chunk], temb)
            k, v = self.enc_attn.kv(self.enc_norm_kv(tok))
            scores = (q * scale) @ k.transpose(-1, -2)  # [B, H, M, chunk]
            if mask is not None:  # a finite fill: a chunk of padding only ever gets weight exp(fill - max) = 0
                scores = scores.masked_fill(~mask[:, None, None, s:s + chunk], torch.finfo(scores.dtype).min)
            new_max = torch.maximum(run_max, scores.amax(dim=-1, keepdim=True))
            p = torch.exp(scores - new_max)
            alpha = torch.exp(run_max - new_max)  # 0 on the first chunk
            run_sum = run_sum * alpha + p.sum(dim=-1, keepdim=True)
            acc = acc * alpha + p @ v
            run_max = new_max
        return acc / run_sum

    def encode(self, coords: Tensor, values: Tensor, t: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Pool the point set into latents.

        Args:
            coords: ``[B, N, d]``; values: ``[B, N, c_in]``; t: ``[B]``.
            mask: optional ``[B, N]`` bool: only the True points are attended to (key padding mask).

        Returns:
            ``(latents [B, M, W], temb [B, W])`` after the ``depth`` self-attention blocks.
        """
        t = self.check_inputs(coords, values, t)
        mask = self.check_mask(mask, coords)
        temb = self.time(t)
        lat = self.latents.unsqueeze(0) + temb.unsqueeze(1)
        q = self.enc_attn.q(self.enc_norm_q(lat))
        if self._chunking() and coords.shape[1] > self.query_chunk:
            o = self._pool(q, coords, values, temb, self.query_chunk, mask)
        else:
            kv = self.enc_attn.kv(self.enc_norm_kv(self.tokens(coords, values, temb)))
            o = F.scaled_dot_product_attention(q, *kv, attn_mask=None if mask is None else mask[:, None, None, :])
        lat = lat + self.enc_attn.out(o)
        lat = lat + self.enc_mlp(self.enc_norm_mlp(lat))
        for block in self.blocks:
            lat = block(lat, temb)
        return lat, temb

    def decode(self, latents: Tensor, temb: Tensor, coords: Tensor, values: Tensor) -> Tensor:
        """Read out at every point: ``latents`` ``[B, M, W]``, ``temb`` ``[B, W]`` -> ``[B, N, c_out]``."""
        k, v = self.dec_attn.kv(self.dec_norm_kv(latents))
        n = coords.shape[1]
        chunk = self.query_chunk if self._chunking() else n
        outs = []
        if not self.query_values:
            values = values.new_zeros(()).expand_as(values)  # coordinates-only output queries
        for s in range(0, n, chunk):
            x = self.tokens(coords[:, s:s + chunk], values[:, s:s + chunk], temb)
            x = x + self.dec_attn.out(F.scaled_dot_product_attention(self.dec_attn.q(self.dec_norm_q(x)), k, v))
            x = x + self.dec_mlp(self.dec_norm_mlp(x))
            outs.append(self.head(self.head_norm(x)))
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)

    def forward(self, coords: Tensor, values: Tensor, t: Tensor, mask: Tensor | None = None,
                context: tuple[Tensor, ...] | None = None) -> Tensor:
        """See :meth:`Backbone.forward`: ``[B, N, d], [B, N, c_in], [B] -> [B, N, c_out]``.

        Args:
            mask: optional ``[B, N]`` bool, True at the real points (padding takes no part in the pooling;
                the read-out is per point, so padded queries never affect real ones).
            context: optional ``(coords [B, M, d], values [B, M, c_in])`` or ``(coords, values, mask [B, M])``:
                the points the latents are pooled from (PerceiverIO's input array), while ``coords``/``values``
                are only the queries read out. None (default): the queries are their own context.
        """
        if context is None:
            latents, temb = self.encode(coords, values, t, mask)
        else:
            if not (isinstance(context, (tuple, list)) and len(context) in (2, 3)):
                raise ValueError("PerceiverNet: context must be a (coords [B, M, d], values [B, M, c_in]) pair "
                                 "or a (coords, values, mask [B, M]) triple")
            t = self.check_inputs(coords, values, t)
            self.check_mask(mask, coords)
            if context[0].shape[0] != coords.shape[0]:
                raise ValueError(f"PerceiverNet: context batch {context[0].shape[0]} != query batch {coords.shape[0]}")
            latents, temb = self.encode(context[0], context[1], t, context[2] if len(context) == 3 else None)
        return self.decode(latents, temb, coords, values)
