"""Implicit neural representations (INRs) as backbones.

* :class:`SirenNet`: a pointwise SIREN MLP (Sitzmann et al. 2020, "Implicit Neural Representations
  with Periodic Activation Functions"); no interaction between points, a building block.
* :class:`AdaptiveINR`: the architecture of "Functional Diffusion Processes" (Franzese et al.
  2023): a SIREN-style INR whose per-function modulation vector is fitted to the input function
  by a few inner gradient steps (CAVIA / MAML style meta-learning), then read out by a head.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from funcgen.nets.base import Backbone, FourierFeatures, TimeEmbedding

__all__ = ["SirenNet", "AdaptiveINR"]

_TIME_DIM = 16  # size of the time embedding fed to the INRs (kept small: it enters the first layer's fan-in)


def _siren_uniform_(linear: nn.Linear, w0: float, first: bool) -> None:
    """SIREN init: ``U(-1/n, 1/n)`` for the first layer, ``U(-sqrt(6/n)/w0, sqrt(6/n)/w0)`` otherwise."""
    n = linear.in_features
    bound = 1.0 / n if first else math.sqrt(6.0 / n) / w0
    with torch.no_grad():
        linear.weight.uniform_(-bound, bound)
        linear.bias.uniform_(-bound, bound)


class _SineLayer(nn.Module):
    """``sin(w0 * (W x + b) + shift)`` with SIREN initialisation; ``shift`` is an optional FiLM phase."""

    def __init__(self, in_features: int, out_features: int, w0: float, first: bool) -> None:
        super().__init__()
        self.w0 = w0
        self.linear = nn.Linear(in_features, out_features)
        _siren_uniform_(self.linear, w0, first)

    def forward(self, x: Tensor, shift: Tensor | None = None) -> Tensor:
        """``x`` ``[..., in]``, ``shift`` broadcastable to ``[..., out]`` -> ``[..., out]``."""
        z = self.w0 * self.linear(x)
        return torch.sin(z if shift is None else z + shift)


def _sine_stack(in_features: int, width: int, depth: int, w0: float) -> nn.ModuleList:
    return nn.ModuleList([_SineLayer(in_features if i == 0 else width, width, w0, first=i == 0) for i in range(depth)])


class SirenNet(Backbone):
    """Pointwise SIREN: ``out_i = MLP_sin([coords_i, values_i, time_embedding(t)])``.

    Points never interact, so this is a local (per-point) map; useful as a building block or a
    baseline. The output layer is linear with SIREN's hidden-layer initialisation.

    Args:
        dim: domain dimension ``d``.
        in_channels: input value channels ``c_in``.
        out_channels: output channels ``c_out``.
        width: hidden width.
        depth: number of sine layers (>= 1).
        w0: SIREN frequency factor ``omega_0``.
    """

    def __init__(self, dim: int, in_channels: int, out_channels: int, width: int = 128, depth: int = 4,
                 w0: float = 30.0) -> None:
        super().__init__(dim, in_channels, out_channels)
        if depth < 1:
            raise ValueError(f"SirenNet: depth must be >= 1; got {depth}")
        self.time = TimeEmbedding(_TIME_DIM)
        self.layers = _sine_stack(dim + in_channels + _TIME_DIM, width, depth, w0)
        self.head = nn.Linear(width, out_channels)
        _siren_uniform_(self.head, w0, first=False)

    def forward(self, coords: Tensor, values: Tensor, t: Tensor, mask: Tensor | None = None) -> Tensor:
        """See :meth:`Backbone.forward`: ``[B, N, d], [B, N, c_in], [B] -> [B, N, c_out]`` (point-wise: a
        ``mask`` changes nothing at the real points)."""
        t = self.check_inputs(coords, values, t)
        self.check_mask(mask, coords)
        temb = self.time(t).unsqueeze(1).expand(-1, coords.shape[1], -1)
        h = torch.cat([coords, values, temb], dim=-1)
        for layer in self.layers:
            h = layer(h)
        return self.head(h)


class AdaptiveINR(Backbone):
    """Per-function adapted INR of "Functional Diffusion Processes" (Franzese et al. 2023).

    A SIREN over ``[fourier(coords), time_embedding(t)]`` whose hidden layers ``l`` get a FiLM
    phase shift ``(A phi)_l`` from a modulation vector ``phi`` ``[B, latent_dim]``. For every
    function, ``phi`` starts at zero and takes ``inner_steps`` gradient steps
    ``phi <- phi - lr_k * grad_phi L_inner`` (CAVIA-style; the per-step rates ``lr_k`` are learned)
    on the inner loss ``L_inner = mean over points and channels of (aux_head(h) - values)^2``,
    i.e. the INR is fitted to the observed (noisy) input function. The loss is a mean over the
    points, so the adaptation does not depend on ``N``. The main head then predicts ``c_out``
    channels at every point from the modulated features. Points interact only through ``phi``.

    In training mode with gradients enabled, the inner loop is differentiated through
    (``create_graph=True``, second-order MAML), so the inner rates and every weight learn to make
    the adaptation useful. In eval mode (or under ``torch.no_grad()``) the inner loop still runs
    (inside ``torch.enable_grad()``) but builds no graph: the adapted ``phi`` is detached.

    Args:
        dim: domain dimension ``d``.
        in_channels: input value channels ``c_in`` (reconstructed by the inner loss).
        out_channels: output channels ``c_out``.
        width: hidden width of the INR.
        depth: number of sine layers (>= 1), each FiLM-shifted by ``phi``.
        latent_dim: size of the modulation vector ``phi``.
        inner_steps: number of inner gradient steps (0 means ``phi = 0``).
        num_bands: octaves of the coordinate Fourier features.
        w0: SIREN frequency factor ``omega_0``.
        inner_lr: initial value of every learned per-step inner learning rate.
    """

    def __init__(self, dim: int, in_channels: int, out_channels: int, width: int = 128, depth: int = 4,
                 latent_dim: int = 64, inner_steps: int = 3, num_bands: int = 8, w0: float = 30.0,
                 inner_lr: float = 1.0) -> None:
        super().__init__(dim, in_channels, out_channels)
        if depth < 1 or latent_dim < 1 or inner_steps < 0:
            raise ValueError(f"AdaptiveINR: need depth >= 1, latent_dim >= 1, inner_steps >= 0; got "
                             f"{depth}, {latent_dim}, {inner_steps}")
        self.depth, self.width, self.latent_dim, self.inner_steps = depth, width, latent_dim, inner_steps
        self.fourier = FourierFeatures(dim, num_bands)
        self.time = TimeEmbedding(_TIME_DIM)
        self.layers = _sine_stack(self.fourier.out_dim + _TIME_DIM, width, depth, w0)
        self.film = nn.Linear(latent_dim, depth * width)
        # std sqrt(3 / latent_dim) (3x PyTorch's default): with this scale an inner rate ~1 already fits
        # a fair part of a smooth function in 3 steps at initialisation; zero bias: phi = 0 means no shift
        nn.init.normal_(self.film.weight, std=math.sqrt(3.0 / latent_dim))
        nn.init.zeros_(self.film.bias)
        self.aux_head = nn.Linear(width, in_channels)
        self.head = nn.Linear(width, out_channels)
        # heads keep PyTorch's default U(-1/sqrt(n), 1/sqrt(n)) init: SIREN's 1/w0-scaled init would make
        # the auxiliary output, hence the inner gradient on phi, ~w0 times smaller
        self.inner_lr = nn.Parameter(torch.full((inner_steps,), float(inner_lr)))

    def _inputs(self, coords: Tensor, t: Tensor) -> Tensor:
        """INR input ``[B, N, F]`` from ``coords`` ``[B, N, d]`` and checked ``t`` ``[B]``."""
        temb = self.time(t).unsqueeze(1).expand(-1, coords.shape[1], -1)
        return torch.cat([self.fourier(coords), temb], dim=-1)

    def _features(self, x: Tensor, phi: Tensor) -> Tensor:
        """Modulated features ``[B, N, width]`` from inputs ``x`` ``[B, N, F]`` and ``phi`` ``[B, latent_dim]``."""
        shifts = self.film(phi).view(-1, self.depth, 1, self.width)
        for i, layer in enumerate(self.layers):
            x = layer(x, shifts[:, i])
        return x

    def _inner_loss(self, x: Tensor, values: Tensor, phi: Tensor, mask: Tensor | None = None) -> Tensor:
        """Per-function reconstruction loss ``[B]`` (mean over the real points, ``mask`` ``[B, N]``, and channels)."""
        sq = (self.aux_head(self._features(x, phi)) - values).square()
        if mask is None:
            return sq.mean(dim=(1, 2))
        m = mask.to(sq.dtype).unsqueeze(-1)
        return (sq * m).sum(dim=(1, 2)) / (m.sum(dim=(1, 2)) * sq.shape[-1])

    def _adapt(self, x: Tensor, values: Tensor, mask: Tensor | None = None) -> Tensor:
        """Inner loop: ``phi`` ``[B, latent_dim]`` fitted to ``values`` ``[B, N, c_in]`` at the real points
        (``mask`` ``[B, N]``; graph kept only when training)."""
        create = self.training and torch.is_grad_enabled()
        phi = values.new_zeros(values.shape[0], self.latent_dim)
        with torch.enable_grad():
            phi.requires_grad_(True)
            for k in range(self.inner_steps):
                # sum over the batch: each function's phi gets the gradient of its own mean loss
                (g,) = torch.autograd.grad(self._inner_loss(x, values, phi, mask).sum(), phi, create_graph=create)
                phi = phi - self.inner_lr[k] * g
                if not create:
                    phi = phi.detach().requires_grad_(True)
        return phi if create else phi.detach()

    def adapt(self, coords: Tensor, values: Tensor, t: Tensor, mask: Tensor | None = None) -> Tensor:
        """Fit the modulation to the input function (its real points): returns ``phi`` ``[B, latent_dim]``."""
        t = self.check_inputs(coords, values, t)
        return self._adapt(self._inputs(coords, t), values, self.check_mask(mask, coords))

    def inner_loss(self, coords: Tensor, values: Tensor, t: Tensor, phi: Tensor,
                   mask: Tensor | None = None) -> Tensor:
        """Inner reconstruction loss ``[B]`` of ``values`` ``[B, N, c_in]`` under modulation ``phi``
        ``[B, latent_dim]`` (mean over the real points of ``mask`` ``[B, N]``)."""
        t = self.check_inputs(coords, values, t)
        return self._inner_loss(self._inputs(coords, t), values, phi, self.check_mask(mask, coords))

    def forward(self, coords: Tensor, values: Tensor, t: Tensor, mask: Tensor | None = None) -> Tensor:
        """See :meth:`Backbone.forward`: ``[B, N, d], [B, N, c_in], [B] -> [B, N, c_out]``; the inner loss
        averages over the real points of ``mask`` ``[B, N]`` only."""
        t = self.check_inputs(coords, values, t)
        x = self._inputs(coords, t)
        return self.head(self._features(x, self._adapt(x, values, self.check_mask(mask, coords))))
