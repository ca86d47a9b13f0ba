"""Idempotent Generative Networks (Shocher et al., ICLR 2024) on functions.

One network ``f`` maps a source-noise function ``z`` to a data function in one step and is trained so
that data points are fixed points (``f(x) = x``) and everything it produces is one as well
(``f(f(z)) = f(z)``), while the set of fixed points is kept tight. With ``f'`` a copy of ``f`` whose
parameters are detached (a snapshot taken at every step; here a ``torch.func.functional_call`` with
the detached parameters, so no copy is ever stored):

    L_rec(x)   = D(f(x), x)                                                        (IGN eq. 5)
    L_idem(z)  = D(f'(f(z)), f(z))          gradient through the inner f only       (IGN eq. 6)
    L~_tight(z) = -D(f(y), y),  y = f(z).detach()   gradient through the outer f only (IGN eq. 7)
    L_tight(z) = tanh(L~_tight(z) / (a L_rec(z))) a L_rec(z),  a = 1.5             (IGN eq. 9)
    L = w_rec L_rec + w_idem L_idem + w_tight L_tight

The tightness term must run the live network on the detached ``f(z)``: computing it with the frozen
copy (as in some public code) leaves it without any gradient. ``D`` is the mean over points (and
channels) of the absolute or squared difference, a Monte Carlo estimate of an ``L^1``/``L^2``
function norm, so no loss depends on the number of points.

**The clamp's scale** (``tight_scale``). Eq. 9 as printed scales the tightness term of ``z`` by
``L_rec(z)``, i.e. eq. 5's reconstruction distance evaluated at that same ``z``: ``s = D(f(z), z)``, how
far ``f`` moves the noise (``"rec_z"``, the default, per function, detached). Public code instead pairs
the ``i``-th ``z`` with the reconstruction loss of the unrelated ``i``-th data function
(``"rec_x"``; ``"rec_x_mean"``: its batch mean); once ``f`` reconstructs the data (``L_rec(x) -> 0``)
that scale vanishes, the ``tanh`` saturates and the tightness gradient (``sech^2``) with it. With
``"rec_z"`` the clamp bounds the tightness term by ``a`` times the distance ``f`` moved the noise and
stays in its linear range while ``f`` maps noise to data.

**Defaults** are the paper's trained setting (its MNIST/CelebA configs): ``D = L1``, weights
20 / 20 / 2.5, the clamp with ``a = 1.5``, no tightness warm-up, Adam betas ``(0.5, 0.999)`` (the
optimizer is the module's: ``model.betas`` in the configs). The paper's code listing uses ``L2`` with
1 / 1 / 0.1; under ``L2`` the tightness gradient ``2(f(y) - y)`` vanishes at every fixed point, the
constant function included, so that listing drifts into collapse far more easily.

The backbone is any funcgen network called as ``net(coords, values, t, mask=...)`` with the CONSTANT
time ``t = t_value`` (0 by default): IGN has no time, the argument only satisfies the shared contract.
It needs ``in_channels == out_channels`` and a bottleneck: a backbone whose output at a point sees the
input value there learns the identity, which fixes the data and is idempotent. The configs use
:class:`funcgen.nets.GridAutoencoder` (the paper's encoder to a ~100-number latent and decoder, with a
resolution-free read-in and read-back), whose output does not start at zero: with a zero-initialised
head ``f = 0`` at step 0 and ``L_idem``, ``L_tight`` have exactly zero gradient.

**Normalisation statistics.** One network sees three input laws in every step: data (``f(x)``), source
noise (``f(z)``) and its own outputs (``f(f(z))``, ``f(y)``). A BatchNorm backbone normalises each pass by that
batch in training, so what it learns is "``f`` with the statistics of the law it is applied to"; a single set of
running statistics averages the three laws and the ``eval()``-mode network then matches none of them (the
one-step samples come out with the wrong variance). With a backbone built with the sets ``source`` and ``data``
(:class:`funcgen.nets.norm.SetBatchNorm`, e.g. ``GridAutoencoder(norm_sets=[source, data])``) the ``f(z)`` pass
updates ``source``, the ``f(x)`` pass updates ``data``, the passes on ``f``'s own outputs use the batch without
updating either; sampling applies ``f`` to the noise with ``source`` and every later application (refinement,
:meth:`project`) with ``data`` (``stats="per_law"``, the default). The alternative ``stats="data"`` (an
ablation) normalises only the ``f(x)`` pass by its batch (updating ``data``) and every other pass, in training
and sampling alike, by the data's running statistics, so that ``f`` is one function of its input as IGN's losses
assume; it trains far worse on MNIST (docs/results/extra.md). Backbones without such layers are used as they are.

Source noise ``z``: any :class:`funcgen.processes.noise.FunctionNoise` evaluated at the batch's coordinates
(a Gaussian random field for functions), or :class:`funcgen.processes.matched.SpectrumMatchedNoise` for
images (the paper's per-frequency mean/std of the data FFT): its statistics are collected from the
first full training batches (:meth:`observe_batch`, before any point subsampling, so they must lie
on the training grid; a validation batch is used only while no statistics exist yet, e.g. in
Lightning's sanity check), it is then frozen and recorded in
the method's config, and it can be evaluated at any resolution as a band-limited random function.

Sampling: ``z`` at the query coordinates, then ``f`` applied ``steps`` times (1 = one-step
generation, more = the paper's refinement). :meth:`IdempotentGenerative.project` applies ``f`` to a
given (noisy, partly observed, corrupted) function: IGN's projection onto the data manifold; missing
points are a mask.

Optional coverage term (``imle_weight``; not in the paper): Implicit Maximum Likelihood Estimation
(Li & Malik 2018), as the non-adversarial IGN variant (Al-Jaff et al. 2025) pairs it with reconstruction. Each
data function of the batch pulls its NEAREST one-step sample towards itself,

    L_imle = mean_i min_j D(f(z_j), x_i)        (gradient through f(z_j))

so every datum has a sample near it: a map that sends all noise to one function pays for every other
mode, which none of the paper's three terms does (they are all satisfied by a map onto one fixed point
that reconstructs the data).

Collapse monitor (every training step): ``diversity`` = mean per-point std of ``f(z)`` across the batch
over that of the data batch (near 0: every noise maps to one function), ``identity_gap`` = ``D(f(z), z)``
over ``D(x, z)`` (near 0: ``f`` returns the noise unchanged). Either below its threshold for
``collapse_patience`` consecutive training steps warns, and with ``collapse_stop`` asks the trainer to
stop (:meth:`stop_reason`). A linear warm-up of the tightness weight is available
(``tight_warmup_steps``, driven by :meth:`Method.on_train_step`), off by default.

Reconstruction warm-up (``rec_warmup_steps``): ``L_rec`` alone for the first training steps (``f`` an
autoencoder of the data; the passes on ``f(z)``'s output are skipped, the source statistics still tracked), then
all three terms. An untrained ``f`` maps every input near one function, and ``L_idem`` is satisfied at once by the
easiest fixed point (the empty image): the batch diversity of ``f(z)`` falls and stays low. An autoencoder of the
data applied to source noise with the data's spectrum already spreads it over the data's principal directions,
and ``L_idem``, ``L_tight`` then start from a diverse ``f(z)``. Not in the paper; off by default, on in the MNIST
config.
"""

from __future__ import annotations

import warnings
from contextlib import AbstractContextManager
from typing import Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ..nets.norm import norm_stats
from ..pointset import PointSet, shares_points
from ..processes.matched import SpectrumMatchedNoise
from ..processes.noise import FunctionNoise
from ..samplers.base import Callback, apply_callback
from .base import Method, bind_mask, masked_mean

__all__ = ["IdempotentGenerative", "distance", "clamp_tight", "nearest_distance"]

Distance = Literal["l2", "l1"]
TightScale = Literal["rec_z", "rec_x", "rec_x_mean"]


def distance(a: Tensor, b: Tensor, mask: Tensor | None, kind: Distance) -> Tensor:
    """Per-function distance ``[B]`` between ``a`` and ``b`` ``[B, N, c]``: mean of ``(a-b)^2`` or ``|a-b|``."""
    diff = a - b
    if kind == "l2":
        return masked_mean(diff.square(), mask)
    if kind == "l1":
        return masked_mean(diff.abs(), mask)
    raise ValueError(f"unknown distance {kind!r}; choose l2 or l1")


def nearest_distance(samples: Tensor, data: Tensor, kind: Distance) -> Tensor:
    """``min_j D(samples_j, data_i)`` per data function ``i`` -> ``[B_data]``; ``samples [B_s, N, c]`` and ``data
    [B_data, N, c]`` at the same ``N`` points; the gradient reaches each datum's nearest sample only."""
    a, b = data.flatten(1), samples.flatten(1)
    d = torch.cdist(a, b, p=1.0) / a.shape[1] if kind == "l1" else torch.cdist(a, b).pow(2) / a.shape[1]
    return d.min(dim=1).values


def clamp_tight(tight: Tensor, scale: Tensor, a: float) -> Tensor:
    """IGN's smooth clamp ``tanh(tight / (a s)) a s`` (eq. 9), elementwise; ``scale`` is used as given."""
    return torch.tanh(tight / (a * scale)) * (a * scale)


class IdempotentGenerative(Method):
    """Idempotent Generative Network: ``f(z)`` is a sample, ``f(f(z)) = f(z)``, ``f(x) = x`` on data.

    Args:
        noise: the source noise ``z`` (any function noise; ``SpectrumMatchedNoise`` for images).
        distance: ``l1`` (mean absolute, the paper's trained setting) or ``l2`` (mean squared) difference ``D``.
        rec_weight: weight of ``L_rec`` (20 with L1; the paper's L2 listing uses 1).
        idem_weight: weight of ``L_idem`` (20 with L1; 1 with L2).
        tight_weight: weight of ``L_tight`` after warm-up (2.5 with L1; 0.1 with L2).
        tight_clamp: the clamp factor ``a`` (1.5 in the paper); None disables the clamp.
        tight_scale: the clamp's scale ``s`` (module docstring): ``rec_z`` = ``D(f(z), z)`` per function
            (eq. 9 as printed), ``rec_x`` = ``D(f(x_i), x_i)`` of the batch's ``i``-th data function,
            ``rec_x_mean`` = its batch mean.
        rec_warmup_steps: train with ``L_rec`` alone for this many training steps (module docstring).
        tight_warmup_steps: the tightness weight grows linearly from 0 over this many training
            steps (0 = full weight from the start). The step comes from :meth:`on_train_step`; a
            method never told the step uses the full weight.
        steps: default number of applications of ``f`` when sampling (1 = one-step generation).
        t_value: the constant time fed to the backbone.
        min_scale: floor of the clamp's scale ``s`` (avoids 0/0 when a distance is exactly 0).
        collapse_diversity: the collapse monitor's threshold on ``diversity`` (0 disables that check).
        collapse_identity: the threshold on ``identity_gap`` (0 disables that check).
        collapse_patience: consecutive training steps below a threshold before the monitor acts.
        collapse_stop: besides warning, ask the trainer to stop (:meth:`stop_reason`).
        stats: the backbone's normalisation statistics per pass (module docstring): ``per_law`` (``source``
            for the noise, ``data`` for data-like inputs) or ``data`` (the data's running statistics for
            every pass but ``f(x)``).
        imle_weight: weight of the coverage term ``L_imle`` (module docstring; 0 = the paper's losses only).
            Needs every function of a training batch at the same points (a grid; no point mask).
    """

    #: constructor arguments of exports written before they existed: their training used the
    #: public-code pairing of the clamp scale (samples do not depend on it)
    LEGACY_DEFAULTS = {"tight_scale": "rec_x"}
    #: one-step generation and the paper's refinement ``f(f(z))``, ``f(f(f(z)))``
    refinement_steps: tuple[int, ...] = (1, 2, 3)
    #: the backbone's normalisation-statistics sets (:func:`funcgen.nets.norm.norm_stats`): inputs drawn from
    #: the source noise, and data-like inputs (data, ``f``'s own outputs, functions to project)
    SOURCE, DATA = "source", "data"

    def __init__(self, noise: FunctionNoise, distance: Distance = "l1", rec_weight: float = 20.0,
                 idem_weight: float = 20.0, tight_weight: float = 2.5, tight_clamp: float | None = 1.5,
                 tight_scale: TightScale = "rec_z", tight_warmup_steps: int = 0, rec_warmup_steps: int = 0,
                 steps: int = 1,
                 t_value: float = 0.0, min_scale: float = 1e-8, collapse_diversity: float = 0.1,
                 collapse_identity: float = 0.05, collapse_patience: int = 200, collapse_stop: bool = False,
                 stats: Literal["per_law", "data"] = "per_law", imle_weight: float = 0.0) -> None:
        if distance not in ("l2", "l1"):
            raise ValueError(f"unknown distance {distance!r}; choose l2 or l1")
        if min(rec_weight, idem_weight, tight_weight, imle_weight) < 0:
            raise ValueError(f"loss weights must be >= 0; got {rec_weight}, {idem_weight}, {tight_weight}, "
                             f"{imle_weight}")
        if tight_clamp is not None and tight_clamp <= 0:
            raise ValueError(f"tight_clamp must be positive (or None for no clamp); got {tight_clamp}")
        if tight_scale not in ("rec_z", "rec_x", "rec_x_mean"):
            raise ValueError(f"unknown tight_scale {tight_scale!r}; choose rec_z, rec_x or rec_x_mean")
        if steps <= 0 or tight_warmup_steps < 0 or rec_warmup_steps < 0 or min_scale <= 0:
            raise ValueError(f"need steps > 0, tight_warmup_steps >= 0, rec_warmup_steps >= 0, min_scale > 0; got "
                             f"{steps}, {tight_warmup_steps}, {rec_warmup_steps}, {min_scale}")
        if collapse_diversity < 0 or collapse_identity < 0 or collapse_patience < 1:
            raise ValueError(f"need collapse_diversity >= 0, collapse_identity >= 0, collapse_patience >= 1; got "
                             f"{collapse_diversity}, {collapse_identity}, {collapse_patience}")
        if stats not in ("per_law", "data"):
            raise ValueError(f"unknown stats {stats!r}; choose per_law or data")
        self.noise, self.distance, self.stats = noise, distance, stats
        self.rec_weight, self.idem_weight = float(rec_weight), float(idem_weight)
        self.tight_weight, self.imle_weight = float(tight_weight), float(imle_weight)
        self.tight_clamp = None if tight_clamp is None else float(tight_clamp)
        self.tight_scale = tight_scale
        self.tight_warmup_steps, self.steps = int(tight_warmup_steps), int(steps)
        self.rec_warmup_steps = int(rec_warmup_steps)
        self.t_value, self.min_scale = float(t_value), float(min_scale)
        self.collapse_diversity, self.collapse_identity = float(collapse_diversity), float(collapse_identity)
        self.collapse_patience, self.collapse_stop = int(collapse_patience), bool(collapse_stop)
        self._step: int | None = None
        self._low = {"diversity": 0, "identity_gap": 0}  # consecutive training steps below each threshold
        self._collapse: str | None = None  # the monitor's finding, once it acted

    # ----------------------------------------------------------------- helpers
    def observe_batch(self, batch: PointSet) -> None:
        """Feed the spectrum-matched source noise with the full training batch (on its grid), so that
        training itself may use random subsets of the points (``model.train_subsample``)."""
        if isinstance(self.noise, SpectrumMatchedNoise):
            self.noise.observe(batch.coords, batch.values)

    def on_train_step(self, step: int) -> None:
        self._step = int(step)

    def rec_only(self) -> bool:
        """Whether the current training step is in the reconstruction warm-up (never, when not told the step)."""
        return self._step is not None and self._step < self.rec_warmup_steps

    def tight_ramp(self) -> float:
        """Current fraction ``[0, 1]`` of the tightness weight (linear warm-up)."""
        if self._step is None or self.tight_warmup_steps == 0:
            return 1.0
        return min(1.0, self._step / self.tight_warmup_steps)

    def _norm(self, net: nn.Module, name: str, update: bool = True) -> AbstractContextManager[None]:
        """The normalisation statistics of a pass other than ``f(x)``: the set ``name`` (per law), or the data's
        running statistics (``stats="data"``)."""
        if self.stats == "data":
            return norm_stats(net, self.DATA, running=True)
        return norm_stats(net, name, update=update)

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
        with norm_stats(net, self.DATA):
            fx = f(coords, x, t)
        warmup = self.rec_only()
        with self._norm(net, self.SOURCE), torch.set_grad_enabled(torch.is_grad_enabled() and not warmup):
            fz = f(coords, z, t)
        rec = distance(fx, x, mask, self.distance)  # [B]
        y = fz.detach()
        if warmup:  # L_rec alone; f(z) only feeds the source statistics and the collapse monitor
            total = self.rec_weight * rec.mean()
            extras = {"rec": rec.mean().detach(), "tight_weight": torch.tensor(0.0)}
        else:
            frozen = {k: p.detach() for k, p in net.named_parameters()}
            kw = {} if f is net else {"mask": mask}
            with self._norm(net, self.DATA, update=False):
                f_fz = functional_call(net, frozen, (coords, fz, t), kw)  # f'(f(z)): gradient only to the inner f
                f_y = f(coords, y, t)  # f(f(z).detach()): gradient only to the outer f (the LIVE net, not f')
            idem = distance(f_fz, fz, mask, self.distance)
            tight_raw = -distance(f_y, y, mask, self.distance)
            moved = distance(y, z, mask, self.distance)  # L_rec(z) = D(f(z), z), detached
            scale = {"rec_z": moved, "rec_x": rec.detach(),
                     "rec_x_mean": rec.detach().mean().expand_as(rec)}[self.tight_scale].clamp_min(self.min_scale)
            tight = tight_raw if self.tight_clamp is None else clamp_tight(tight_raw, scale, self.tight_clamp)
            ramp = self.tight_ramp()
            total = (self.rec_weight * rec.mean() + self.idem_weight * idem.mean()
                     + self.tight_weight * ramp * tight.mean())
            extras = {"rec": rec.mean().detach(), "idem": idem.mean().detach(), "tight": tight.mean().detach(),
                      "tight_raw": tight_raw.mean().detach(), "tight_weight": torch.tensor(self.tight_weight * ramp),
                      "tight_scale": scale.mean()}
            if self.imle_weight > 0:
                if mask is not None or not shares_points(coords):
                    raise ValueError("IGN imle_weight > 0 compares every sample with every datum point by point: "
                                     "train on one shared grid (data coords: grid, train_subsample: 1, no mask)")
                imle = nearest_distance(fz, x, self.distance)
                total = total + self.imle_weight * imle.mean()
                extras["imle"] = imle.mean().detach()
        extras.update(self.monitor(y, z, x.detach(), mask))
        if torch.is_grad_enabled() and not warmup:  # training steps after the warm-up (validation has no gradients)
            self._watch({k: float(v) for k, v in extras.items() if k in self._low})
        return total, extras

    def monitor(self, fz: Tensor, z: Tensor, x: Tensor, mask: Tensor | None) -> dict[str, Tensor]:
        """The collapse statistics of a batch: ``fz`` = ``f(z)``, ``z`` the noise, ``x`` the data, all ``[B, N, c]``.

        ``diversity`` (:meth:`diversity`; absent with one function), ``identity_gap`` = mean ``D(f(z), z)`` over
        mean ``D(x, z)`` (in the method's distance; the data are unrelated to the noise, so the denominator is
        the typical distance between noise and data) and ``identity_dist`` = mean ``D(f(z), z)``.
        """
        with torch.no_grad():
            moved = distance(fz, z, mask, self.distance).mean()
            out = {"identity_dist": moved,
                   "identity_gap": moved / distance(x, z, mask, self.distance).mean().clamp_min(1e-12)}
            div = self.diversity(fz, x, mask)
            if div is not None:
                out["diversity"] = div
        return out

    def _watch(self, stats: dict[str, float]) -> None:
        """Count consecutive training steps below each threshold; warn (and flag a stop) at ``collapse_patience``."""
        limits = {"diversity": self.collapse_diversity, "identity_gap": self.collapse_identity}
        for key, limit in limits.items():
            if key not in stats or limit <= 0:
                continue
            self._low[key] = self._low[key] + 1 if stats[key] < limit else 0
            if self._low[key] == self.collapse_patience:
                what = ("every noise is mapped to nearly the same function (mode collapse)" if key == "diversity"
                        else "f returns the noise nearly unchanged (f has become the identity)")
                self._collapse = (f"IGN collapse: {key} < {limit} for {self.collapse_patience} consecutive "
                                  f"training steps (now {stats[key]:.3g}): {what}. Check that the backbone has a "
                                  "bottleneck and a non-zero output at initialisation, and the loss weights "
                                  "(L1, 20/20/2.5)")
                warnings.warn(self._collapse, RuntimeWarning, stacklevel=3)

    def stop_reason(self) -> str | None:
        """The collapse monitor's finding when ``collapse_stop`` is set and it acted, else None."""
        return self._collapse if self.collapse_stop else None

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
        s_fz, s_x = fz[:, keep].detach().std(0).mean(), x[:, keep].detach().std(0).mean()
        return s_fz / s_x.clamp_min(1e-12)

    # ----------------------------------------------------------------- generation
    @torch.no_grad()
    def project(self, net: nn.Module, coords: Tensor, values: Tensor, k: int = 1, mask: Tensor | None = None,
                generator: torch.Generator | None = None) -> Tensor:
        """Apply ``f`` ``k`` times to the functions ``values`` ``[B, N, c]`` at ``coords`` ``[B, N, d]``: IGN's
        projection of a noisy, partly observed or otherwise corrupted function onto the data manifold.

        Values are in the model's units (the generator normalises data units). ``k = 0`` returns the input.
        ``mask`` ``[B, N]`` bool (True = observed): the unobserved values may be anything (NaN included);
        they start as a draw of the source noise (``generator``), the backbone is told the mask (every
        funcgen backbone takes one; :class:`funcgen.nets.GridAutoencoder` then reads only the observed
        points), and the observed values are restored after every application of ``f``, so the result
        agrees with them exactly and ``f`` fills in the rest (applications after the first see the
        completed function, the paper's refinement). Returns ``[B, N, c]``.

        Raises:
            ValueError: wrong shapes, a mask that is not bool ``[B, N]``, NaN / inf among the observed values
                or coordinates, ``k < 0``, or a backbone with ``in_channels != out_channels``.
        """
        if coords.ndim != 3 or values.ndim != 3 or coords.shape[:2] != values.shape[:2]:
            raise ValueError(f"need coords [B, N, d] and values [B, N, c] with matching B, N; got "
                             f"{tuple(coords.shape)} and {tuple(values.shape)}")
        if mask is not None:
            if mask.shape != coords.shape[:2] or mask.dtype != torch.bool:
                raise ValueError(f"mask must be bool [B, N] = {tuple(coords.shape[:2])} (True = observed); got "
                                 f"{mask.dtype} {tuple(mask.shape)}")
            values = torch.where(mask.unsqueeze(-1), values.nan_to_num(0.0),
                                 self.noise.sample(coords, values.shape[-1], generator).to(values.dtype))
        if not (torch.isfinite(coords).all() and torch.isfinite(values).all()):
            raise ValueError("project: coords or values contain NaN or inf (pass a mask marking the missing points)")
        if k < 0:
            raise ValueError(f"k (applications of f) must be >= 0; got {k}")
        self._check_net(net, values.shape[-1])
        return self._apply(net, coords, values, int(k), mask, self.DATA)

    def _apply(self, net: nn.Module, coords: Tensor, values: Tensor, k: int, mask: Tensor | None,
               first: str) -> Tensor:
        """``f`` applied ``k`` times, the first time with the normalisation statistics ``first``, later ones with
        the data's; observed values (``mask``) restored after each application."""
        t = self._t(coords)
        observed = values
        for i in range(k):
            with self._norm(net, first if i == 0 else self.DATA, update=False):
                values = bind_mask(net, mask if i == 0 else None)(coords, values, t)  # later: the completed function
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
        self._check_net(net, channels)
        for i in range(self.resolve_steps(steps)):
            x = self._apply(net, coords, x, 1, None, self.SOURCE if i == 0 else self.DATA)
            x = apply_callback(callback, i, float(i + 1), x, x)
        return x
