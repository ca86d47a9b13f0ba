"""Idempotent Generative Networks (Shocher et al., ICLR 2024) on functions.

One network ``f`` maps a source-noise function ``z`` to a data function in one step and is trained so
that data points are fixed points (``f(x) = x``) and everything it produces is one as well
(``f(f(z)) = f(z)``), while the set of fixed points is kept tight. With ``f'`` a copy of ``f`` whose
parameters are detached (a snapshot taken at every step; here a ``torch.func.functional_call`` with
the detached parameters, so no copy is ever stored):

    L_rec(x)   = D(f(x), x)                                                        (IGN eq. 5)
    L_idem(z)  = D(f'(f(z)), f(z))          gradient through the inner f only       (IGN eq. 6)
    L~_tight(z) = -D(f(y), y),  y = f(z).detach()   gradient through the outer f only (IGN eq. 7)
    L_tight(z) = tanh(L~_tight / (a s)) a s,  s = L_rec (detached), a = 1.5          (IGN eq. 9)
    L = w_rec L_rec + w_idem L_idem + w_tight L_tight

The tightness term must run the live network on the detached ``f(z)``: computing it with the frozen
copy (as in some public code) leaves it without any gradient. ``D`` is the mean over points (and
channels) of the squared or absolute difference, a Monte Carlo estimate of an ``L^2``/``L^1``
function norm, so no loss depends on the number of points. The clamp bounds the tightness term in
``(-a s, 0]``, per function ``i`` with the reconstruction loss of the ``i``-th data function of the
batch as its scale ``s_i``.

Weights: 1 / 1 / 0.1 with ``D = L2`` (the paper's listing, the default) or 20 / 20 / 2.5 with
``D = L1`` (its CelebA configs).

The backbone is any funcgen network called as ``net(coords, values, t)`` with the CONSTANT time
``t = t_value`` (0 by default): IGN has no time, the argument only satisfies the shared contract.
It needs ``in_channels == out_channels``, and it needs a bottleneck: a backbone whose output at a point
sees the input value there directly (``PerceiverNet``'s default per-point read-out) learns the identity,
which fixes the data and is idempotent, so L_rec and L_idem vanish and the clamped tightness term
(scale ``s = L_rec -> 0``) cannot push back (docs/results/extra.md, "IGN with a bottlenecked
backbone"). The configs use ``PerceiverNet(query_values=False)``
(coordinate-only read-out: values pass only through the latents), the role of the paper's
encoder-decoder.

Source noise ``z``: any :class:`funcgen.processes.noise.FunctionNoise` evaluated at the batch's coordinates
(a Gaussian random field for functions), or :class:`funcgen.processes.matched.SpectrumMatchedNoise` for
images (the paper's per-frequency mean/std of the data FFT): its statistics are collected from the
first full training batches (:meth:`observe_batch`, before any point subsampling, so they must lie
on the training grid; a validation batch is used only while no statistics exist yet, e.g. in
Lightning's sanity check), it is then frozen and recorded in
the method's config, and it can be evaluated at any resolution as a band-limited random function.

Sampling: ``z`` at the query coordinates, then ``f`` applied ``steps`` times (1 = one-step
generation, more = the paper's refinement). :meth:`IdempotentGenerative.project` applies ``f`` to a
given (noisy, masked, corrupted) function: IGN's projection onto the data manifold.

Stability aids: a linear warm-up of the tightness weight over ``tight_warmup_steps`` training steps
(driven by :meth:`Method.on_train_step`), and a collapse monitor: ``diversity`` = mean per-point std
of ``f(z)`` across the batch divided by that of the data batch (near 0 means mode collapse).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ..pointset import PointSet
from ..processes.matched import SpectrumMatchedNoise
from ..processes.noise import FunctionNoise
from ..samplers.base import Callback, apply_callback
from .base import Method, bind_mask, masked_mean

__all__ = ["IdempotentGenerative", "distance", "clamp_tight"]

Distance = Literal["l2", "l1"]


def distance(a: Tensor, b: Tensor, mask: Tensor | None, kind: Distance) -> Tensor:
    """Per-function distance ``[B]`` between ``a`` and ``b`` ``[B, N, c]``: mean of ``(a-b)^2`` or ``|a-b|``."""
    diff = a - b
    if kind == "l2":
        return masked_mean(diff.square(), mask)
    if kind == "l1":
        return masked_mean(diff.abs(), mask)
    raise ValueError(f"unknown distance {kind!r}; choose l2 or l1")


def clamp_tight(tight: Tensor, scale: Tensor, a: float) -> Tensor:
    """IGN's smooth clamp ``tanh(tight / (a s)) a s`` (eq. 9), elementwise; ``scale`` is used as given."""
    return torch.tanh(tight / (a * scale)) * (a * scale)


class IdempotentGenerative(Method):
    """Idempotent Generative Network: ``f(z)`` is a sample, ``f(f(z)) = f(z)``, ``f(x) = x`` on data.

    Args:
        noise: the source noise ``z`` (any function noise; ``SpectrumMatchedNoise`` for images).
        distance: ``l2`` (mean squared) or ``l1`` (mean absolute) difference ``D``.
        rec_weight: weight of ``L_rec`` (1 with L2; the paper's L1 configs use 20).
        idem_weight: weight of ``L_idem`` (1 with L2; 20 with L1).
        tight_weight: weight of ``L_tight`` after warm-up (0.1 with L2; 2.5 with L1).
        tight_clamp: the clamp factor ``a`` (1.5 in the paper); None disables the clamp.
        tight_warmup_steps: the tightness weight grows linearly from 0 over this many training
            steps (0 = full weight from the start). The step comes from :meth:`on_train_step`; a
            method never told the step uses the full weight.
        steps: default number of applications of ``f`` when sampling (1 = one-step generation).
        t_value: the constant time fed to the backbone.
        min_scale: floor of the clamp's scale ``s`` (avoids 0/0 when a reconstruction is exact).
    """

    #: one-step generation and the paper's refinement ``f(f(z))``, ``f(f(f(z)))``
    refinement_steps: tuple[int, ...] = (1, 2, 3)

    def __init__(self, noise: FunctionNoise, distance: Distance = "l2", rec_weight: float = 1.0,
                 idem_weight: float = 1.0, tight_weight: float = 0.1, tight_clamp: float | None = 1.5,
                 tight_warmup_steps: int = 0, steps: int = 1, t_value: float = 0.0, min_scale: float = 1e-8) -> None:
        if distance not in ("l2", "l1"):
            raise ValueError(f"unknown distance {distance!r}; choose l2 or l1")
        if min(rec_weight, idem_weight, tight_weight) < 0:
            raise ValueError(f"loss weights must be >= 0; got {rec_weight}, {idem_weight}, {tight_weight}")
        if tight_clamp is not None and tight_clamp <= 0:
            raise ValueError(f"tight_clamp must be positive (or None for no clamp); got {tight_clamp}")
        if steps <= 0 or tight_warmup_steps < 0 or min_scale <= 0:
            raise ValueError(f"need steps > 0, tight_warmup_steps >= 0, min_scale > 0; got {steps}, "
                             f"{tight_warmup_steps}, {min_scale}")
        self.noise, self.distance = noise, distance
        self.rec_weight, self.idem_weight = float(rec_weight), float(idem_weight)
        self.tight_weight = float(tight_weight)
        self.tight_clamp = None if tight_clamp is None else float(tight_clamp)
        self.tight_warmup_steps, self.steps = int(tight_warmup_steps), int(steps)
        self.t_value, self.min_scale = float(t_value), float(min_scale)
        self._step: int | None = None

    # ----------------------------------------------------------------- helpers
    def observe_batch(self, batch: PointSet) -> None:
        """Feed the spectrum-matched source noise with the full training batch (on its grid), so that
        training itself may use random subsets of the points (``model.train_subsample``)."""
        if isinstance(self.noise, SpectrumMatchedNoise):
            self.noise.observe(batch.coords, batch.values)

    def on_train_step(self, step: int) -> None:
        self._step = int(step)

    def tight_ramp(self) -> float:
        """Current fraction ``[0, 1]`` of the tightness weight (linear warm-up)."""
        if self._step is None or self.tight_warmup_steps == 0:
            return 1.0
        return min(1.0, self._step / self.tight_warmup_steps)

    def _t(self, coords: Tensor) -> Tensor:
        return torch.full((coords.shape[0],), self.t_value, dtype=coords.dtype, device=coords.device)

    @staticmethod
    def _check_net(net: nn.Module, channels: int) -> None:
        cin, cout = getattr(net, "in_channels", channels), getattr(net, "out_channels", channels)
        if cin != channels or cout != channels:
            raise ValueError(f"IGN applies f to its own output, so the backbone needs in_channels == out_channels == "
                             f"{channels} (the data's channels); got in_channels={cin}, out_channels={cout}")

    # ----------------------------------------------------------------- training
    def loss(self, net: nn.Module, batch: PointSet,
             generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        coords, x, mask = batch.coords, batch.values, batch.mask
        self._check_net(net, x.shape[-1])
        if isinstance(self.noise, SpectrumMatchedNoise) and self.noise.count == 0:
            self.noise.observe(coords, x)  # no training batch seen yet (e.g. Lightning's sanity check)
        z = self.noise.sample(coords, x.shape[-1], generator)
        t = self._t(coords)
        f = bind_mask(net, mask)
        fx = f(coords, x, t)
        fz = f(coords, z, t)
        frozen = {k: p.detach() for k, p in net.named_parameters()}
        kw = {} if f is net else {"mask": mask}
        f_fz = functional_call(net, frozen, (coords, fz, t), kw)  # f'(f(z)): gradient reaches only the inner f
        y = fz.detach()
        f_y = f(coords, y, t)  # f(f(z).detach()): gradient reaches only the outer f (the LIVE net, not f')
        rec = distance(fx, x, mask, self.distance)  # [B]
        idem = distance(f_fz, fz, mask, self.distance)
        tight_raw = -distance(f_y, y, mask, self.distance)
        scale = rec.detach().clamp_min(self.min_scale)
        tight = tight_raw if self.tight_clamp is None else clamp_tight(tight_raw, scale, self.tight_clamp)
        ramp = self.tight_ramp()
        total = (self.rec_weight * rec.mean() + self.idem_weight * idem.mean()
                 + self.tight_weight * ramp * tight.mean())
        extras = {"rec": rec.mean().detach(), "idem": idem.mean().detach(), "tight": tight.mean().detach(),
                  "tight_raw": tight_raw.mean().detach(), "tight_weight": torch.tensor(self.tight_weight * ramp)}
        div = self.diversity(fz.detach(), x, mask)
        if div is not None:
            extras["diversity"] = div
        return total, extras

    @staticmethod
    def diversity(fz: Tensor, x: Tensor, mask: Tensor | None) -> Tensor | None:
        """Mean per-point std of ``f(z)`` across the batch over that of the data ``x`` (both ``[B, N, c]``).

        Only points present in every function count; None when fewer than 2 functions or no common point.
        """
        if fz.shape[0] < 2:
            return None
        keep = torch.ones(fz.shape[1], dtype=torch.bool, device=fz.device) if mask is None else mask.all(0)
        if not keep.any():
            return None
        s_fz, s_x = fz[:, keep].std(0).mean(), x[:, keep].detach().std(0).mean()
        return s_fz / s_x.clamp_min(1e-12)

    # ----------------------------------------------------------------- generation
    @torch.no_grad()
    def project(self, net: nn.Module, coords: Tensor, values: Tensor, k: int = 1, mask: Tensor | None = None,
                generator: torch.Generator | None = None) -> Tensor:
        """Apply ``f`` ``k`` times to the functions ``values`` ``[B, N, c]`` at ``coords`` ``[B, N, d]``.

        Maps a noisy, masked or otherwise corrupted function towards the data manifold (``k = 0``
        returns the input). With ``mask`` ``[B, N]`` (True = observed; conditional generation by projection)
        the unobserved values are first replaced by a draw of the source noise and the observed ones are
        restored after every application of ``f``, so the result agrees with them exactly. Returns ``[B, N, c]``.
        """
        if coords.ndim != 3 or values.ndim != 3 or coords.shape[:2] != values.shape[:2]:
            raise ValueError(f"need coords [B, N, d] and values [B, N, c] with matching B, N; got "
                             f"{tuple(coords.shape)} and {tuple(values.shape)}")
        if mask is not None:
            if mask.shape != coords.shape[:2] or mask.dtype != torch.bool:
                raise ValueError(f"mask must be bool [B, N] = {tuple(coords.shape[:2])}; got {mask.dtype} "
                                 f"{tuple(mask.shape)}")
            values = torch.where(mask.unsqueeze(-1), values.nan_to_num(0.0),
                                 self.noise.sample(coords, values.shape[-1], generator).to(values.dtype))
        if not (torch.isfinite(coords).all() and torch.isfinite(values).all()):
            raise ValueError("project: coords or values contain NaN or inf (fill missing values first)")
        if k < 0:
            raise ValueError(f"k (applications of f) must be >= 0; got {k}")
        self._check_net(net, values.shape[-1])
        t = self._t(coords)
        observed = values
        for _ in range(int(k)):
            values = net(coords, values, t)
            if mask is not None:
                values = torch.where(mask.unsqueeze(-1), observed, values)
        return values

    @torch.no_grad()
    def sample(self, net: nn.Module, coords: Tensor, channels: int, *,
               generator: torch.Generator | None = None, steps: int | None = None,
               progress: bool = False, callback: Callback | None = None) -> Tensor:
        """``f^steps(z)`` with ``z`` the source noise at ``coords`` ``[B, N, d]`` -> ``[B, N, channels]``;
        ``callback(i, i + 1, x, x)`` after the ``i``-th application of ``f``."""
        x = self.noise.sample(coords, channels, generator)
        for i in range(self.resolve_steps(steps)):
            x = self.project(net, coords, x, k=1)
            x = apply_callback(callback, i, float(i + 1), x, x)
        return x
