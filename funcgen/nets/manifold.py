"""A small MLP for points on manifolds (Riemannian diffusion): ambient coordinates + noise-level embedding.

A manifold batch travels through funcgen as a PointSet whose ``values`` ``[B, N, D]`` hold the
flat ambient points (one independent point per entry, ``N = 1`` in training) and whose ``coords``
are a dummy ``[B, N, 1]``; this net ignores ``coords``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from funcgen.nets.base import Backbone

__all__ = ["ManifoldMLP"]


class ManifoldMLP(Backbone):
    """MLP ``(x [B, N, D], sigma [B]) -> [B, N, D]`` applied pointwise.

    Args:
        dim: dimension of the dummy coordinates (ignored; 1 for manifold datamodules).
        in_channels: ambient size ``D`` of the points.
        out_channels: ambient size of the output (``D``: an ambient vector the method projects).
        width: hidden width.
        depth: number of hidden layers.
        periodic: the inputs are angles (torus): feed ``cos, sin`` of them instead of the raw values.
        num_freqs: sinusoidal frequencies of the ``log sigma`` embedding.
        fourier_features: ``F > 0`` adds random Fourier features ``sin(x B), cos(x B)`` of the (ambient or
            angle) input, ``B`` ``[D, F]`` i.i.d. ``N(0, fourier_scale^2)`` drawn once from a fixed seed and
            stored with the weights (Tancik et al. 2020): a plain MLP on ``x`` is slow to learn scores that
            vary on short length scales (sharply clustered data such as the Earth sets); 0 = off.
        fourier_scale: standard deviation of ``B`` (inverse length scale in radians on the unit sphere).

    The last argument ``t`` of the backbone contract is a noise level ``sigma > 0``; the net sees
    ``log sigma`` through sinusoidal features (frequencies ``1/8 .. 8``, covering sigma in about
    ``[1e-4, 10]``) added into every hidden layer (FiLM-free, cheap).
    """

    def __init__(self, dim: int = 1, in_channels: int = 3, out_channels: int = 3, width: int = 256,
                 depth: int = 4, periodic: bool = False, num_freqs: int = 16, fourier_features: int = 0,
                 fourier_scale: float = 10.0) -> None:
        super().__init__(dim, in_channels, out_channels)
        if width < 1 or depth < 1 or num_freqs < 1:
            raise ValueError(f"ManifoldMLP needs width, depth, num_freqs >= 1; got {width}, {depth}, {num_freqs}")
        if fourier_features < 0 or not fourier_scale > 0:
            raise ValueError(f"ManifoldMLP needs fourier_features >= 0 and fourier_scale > 0; got "
                             f"{fourier_features}, {fourier_scale}")
        self.periodic = bool(periodic)
        feat = 2 * in_channels if periodic else in_channels
        self.fourier_features = int(fourier_features)
        if self.fourier_features:
            basis = torch.randn(feat, self.fourier_features, generator=torch.Generator().manual_seed(0))
            self.register_buffer("fourier_basis", basis * float(fourier_scale))
            feat += 2 * self.fourier_features
        self.register_buffer("freqs", torch.logspace(math.log10(1 / 8), math.log10(8.0), num_freqs),
                             persistent=False)
        self.embed = nn.Sequential(nn.Linear(2 * num_freqs, width), nn.SiLU(), nn.Linear(width, width))
        self.inp = nn.Linear(feat, width)
        self.hidden = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.cond = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.out = nn.Linear(width, out_channels)
        self.act = nn.SiLU()

    def forward(self, coords: Tensor, values: Tensor, t: Tensor, mask: Tensor | None = None) -> Tensor:
        """``[B, N, 1], [B, N, D], sigma [B] -> [B, N, D]``, point by point (a ``mask`` changes nothing)."""
        t = self.check_inputs(coords, values, t)
        self.check_mask(mask, coords)
        if (t <= 0).any():
            raise ValueError("ManifoldMLP: t must be the noise level sigma > 0")
        x = torch.cat([values.cos(), values.sin()], -1) if self.periodic else values
        if self.fourier_features:
            proj = x.to(self.fourier_basis.dtype) @ self.fourier_basis
            x = torch.cat([x.to(proj.dtype), proj.sin(), proj.cos()], -1)
        ang = torch.log(t)[:, None].to(self.freqs.dtype) * self.freqs
        e = self.embed(torch.cat([ang.sin(), ang.cos()], -1).to(self.inp.weight.dtype))[:, None, :]  # [B, 1, W]
        h = self.act(self.inp(x.to(self.inp.weight.dtype)))
        for lin, cond in zip(self.hidden, self.cond):
            h = self.act(lin(h) + cond(e))
        return self.out(h).to(values.dtype)
