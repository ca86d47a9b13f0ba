"""The backbone contract shared by every funcgen network, plus the embeddings all nets reuse.

Every backbone maps a batch of functions observed at points to a prediction at the same points::

    forward(coords [B, N, d], values [B, N, c_in], t [B], mask=None) -> [B, N, c_out]

for any number of points ``N`` (no grid is ever assumed). ``mask`` ``[B, N]`` bool (True = a real point)
marks padding in ragged batches: a backbone must give the same output at the real points whatever the
padded points hold (attention ignores them as keys, pooled means and local integrals skip them).
"""

from __future__ import annotations

import abc
import math

import torch
from torch import Tensor, nn

from funcgen.config import Configurable

__all__ = ["Backbone", "FourierFeatures", "TimeEmbedding"]


class Backbone(Configurable, nn.Module, metaclass=abc.ABCMeta):
    """Base class of all funcgen networks on point sets.

    Args:
        dim: dimension ``d`` of the domain (coordinates are ``[B, N, d]``).
        in_channels: channels ``c_in`` of the input values.
        out_channels: channels ``c_out`` of the prediction.

    Attributes:
        dim: domain dimension ``d``.
        in_channels: input channels ``c_in``.
        out_channels: output channels ``c_out``.
    """

    dim: int
    in_channels: int
    out_channels: int
    #: True when ``forward`` takes ``context=(coords [B, M, d], values [B, M, c_in])``: a separate point
    #: set the prediction is conditioned on (the queries are their own context without it)
    accepts_context: bool = False

    def __init__(self, dim: int, in_channels: int, out_channels: int) -> None:
        super().__init__()
        for name, v in (("dim", dim), ("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{type(self).__name__}: {name} must be a positive int; got {v!r}")
        self.dim = dim
        self.in_channels = in_channels
        self.out_channels = out_channels

    @abc.abstractmethod
    def forward(self, coords: Tensor, values: Tensor, t: Tensor, mask: Tensor | None = None) -> Tensor:
        """Predict at every input point.

        Args:
            coords: ``[B, N, d]`` float coordinates of the points (typically in ``[0, 1]^d``;
                any ``N >= 1``, any order, no grid assumed).
            values: ``[B, N, c_in]`` the (noisy) function values at ``coords``.
            t: ``[B]`` one float per function: diffusion time in ``[0, 1]`` or a noise level.
            mask: optional ``[B, N]`` bool, True at the real points of a padded (ragged) batch; the
                output at real points must not depend on the padded ones (their outputs are arbitrary).

        Returns:
            ``[B, N, c_out]``: output ``[:, i]`` is the prediction at ``coords[:, i]``.
        """

    def check_mask(self, mask: Tensor | None, coords: Tensor) -> Tensor | None:
        """Validate ``mask`` ``[B, N]`` against ``coords`` ``[B, N, d]``; None when absent or all True (no padding).

        Raises:
            ValueError: wrong shape or dtype, or a function without any real point.
        """
        if mask is None:
            return None
        name = type(self).__name__
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.shape != coords.shape[:2]:
            raise ValueError(f"{name}: mask must be a bool tensor [B, N] = {list(coords.shape[:2])} (True = real "
                             f"point); got {getattr(mask, 'dtype', type(mask).__name__)} "
                             f"{list(getattr(mask, 'shape', []))}")
        if bool(mask.all()):
            return None
        if not bool(mask.any(dim=1).all()):
            raise ValueError(f"{name}: every function needs at least one real point; mask rows "
                             f"{torch.nonzero(~mask.any(dim=1)).flatten().tolist()} are all False")
        return mask

    def check_inputs(self, coords: Tensor, values: Tensor, t: Tensor) -> Tensor:
        """Validate shapes against the contract; returns ``t`` as a float ``[B]`` tensor."""
        name = type(self).__name__
        if coords.ndim != 3 or coords.shape[-1] != self.dim:
            raise ValueError(f"{name}: coords must be [B, N, {self.dim}]; got {tuple(coords.shape)}")
        if values.ndim != 3 or values.shape[-1] != self.in_channels or values.shape[:2] != coords.shape[:2]:
            raise ValueError(f"{name}: values must be [B, N, {self.in_channels}] matching coords "
                             f"{tuple(coords.shape)}; got {tuple(values.shape)}")
        if coords.shape[1] == 0:
            raise ValueError(f"{name}: needs at least one point (N = 0)")
        b = coords.shape[0]
        t = torch.as_tensor(t, dtype=coords.dtype, device=coords.device)
        if t.ndim == 0:
            t = t.expand(b)
        t = t.reshape(-1)
        if t.shape[0] != b:
            raise ValueError(f"{name}: t must be [B] = [{b}]; got {tuple(t.shape)}")
        return t


class FourierFeatures(nn.Module):
    """Deterministic geometric Fourier features of coordinates (no random frequencies).

    For every coordinate axis and ``k = 0 .. num_bands - 1`` the frequency is ``2^k * pi``; the
    features are ``[x, sin(2^k pi x), cos(2^k pi x)]`` concatenated over axes and bands.

    Args:
        dim: number ``d`` of coordinate axes.
        num_bands: number of octaves per axis (0 gives just the raw coordinates).

    Attributes:
        out_dim: feature size ``d * (2 * num_bands + 1)``.
    """

    def __init__(self, dim: int, num_bands: int) -> None:
        super().__init__()
        if num_bands < 0:
            raise ValueError(f"num_bands must be >= 0; got {num_bands}")
        self.dim = dim
        self.num_bands = num_bands
        self.out_dim = dim * (2 * num_bands + 1)
        self.register_buffer("freqs", math.pi * 2.0 ** torch.arange(num_bands, dtype=torch.float32),
                             persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """Embed ``x`` ``[..., d]`` into ``[..., d * (2 * num_bands + 1)]``."""
        ang = (x.unsqueeze(-1) * self.freqs.to(x.dtype)).flatten(-2)  # [..., d * num_bands]
        return torch.cat([x, ang.sin(), ang.cos()], dim=-1)


class TimeEmbedding(nn.Module):
    """Embed a scalar per function (diffusion time or noise level) into a ``width`` vector.

    Sinusoidal features ``sin(t f), cos(t f)`` with ``num_freqs`` log-spaced frequencies
    ``f`` in ``[1, max_freq]``, followed by a two-layer SiLU MLP.

    Args:
        width: output size.
        num_freqs: number of frequencies (features are ``2 * num_freqs``).
        max_freq: largest frequency.
    """

    def __init__(self, width: int, num_freqs: int = 64, max_freq: float = 1000.0) -> None:
        super().__init__()
        self.register_buffer("freqs", torch.logspace(0.0, math.log10(max_freq), num_freqs), persistent=False)
        self.mlp = nn.Sequential(nn.Linear(2 * num_freqs, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t: Tensor) -> Tensor:
        """Embed ``t`` ``[B]`` into ``[B, width]``."""
        ang = t.reshape(-1, 1).to(self.freqs.dtype) * self.freqs
        return self.mlp(torch.cat([ang.sin(), ang.cos()], dim=-1).to(self.mlp[0].weight.dtype))
