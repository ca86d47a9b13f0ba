"""Manifold Diffusion Fields (Elhag et al., ICLR 2024).

A function on a manifold is a set of pairs ``(phi(x_i), y_i)``, with ``phi`` the first ``k``
Laplace-Beltrami eigenfunctions (:mod:`funcgen.geometry.mesh`); the coordinates the method sees
are those eigenfunction coordinates ``[B, N, k]``, so nothing here depends on the embedding.

Diffusion: DDPM (Ho et al. 2020) on the values (MDF sec. 3),

    y_t = alpha(t) y_0 + sigma(t) xi,
    L = E_{t, Q, C} || xi_Q - eps_theta(phi_Q, y_t(Q), t | context (phi_C, y_t(C))) ||^2,

with a random query set ``Q`` of the function's points and a context ``C``; the loss is on the
queries. A PerceiverIO backbone (:class:`funcgen.nets.PerceiverNet` with its ``context`` argument)
pools the context tokens ``(phi, y_t, t)`` into latents and reads out at the queries. Steps are DDIM
(``eta = 1``: DDPM ancestral sampling, the default).

Context (``context``):
    ``full``: the context is every point: the query set in training, the whole current state at every
    sampler step. ``E[y_0 | y_t]`` given all points is what the sampler needs; PerceiverIO's encoding is
    ``O(N x latents)``, so this stays linear in ``N``.
    ``random`` (the paper's, and exports written before ``context`` existed): a random subset of
    ``num_context`` points, in training and freshly drawn at EVERY sampler step. A posterior mean given
    a subset is shrunk towards the prior, so samples come out with too little variance and no
    spatial correlation (measured in docs/mdf.md).

Noise (``noise_modes``):
    None: white noise, independent at every point (the paper's). Its projection on each eigenfunction
    has variance ``~1/N``, so the signal-to-noise ratio of a band-limited field grows with ``N`` and a
    fixed time grid fits one resolution only.
    ``m``: :class:`funcgen.processes.noise.EigenNoise`, a random combination of the first ``m``
    eigenfunctions (trace-class): the posterior at a given time does not depend on the mesh, so the
    same grid serves every refinement. Only the span of the first ``m`` eigenfunctions is noised (and
    generated), the right choice for fields of that span (GRFs of ``m`` modes).

This is :class:`FunctionalDiffusion` with epsilon prediction and the plain epsilon loss by default (the
paper's; ``prediction`` and ``loss_space`` choose others), plus its two
hooks: ``training_points`` (the query set) and ``network`` (bind the context).
"""

from __future__ import annotations

import functools
from typing import Callable, Literal

import torch
from torch import Tensor, nn

from ..pointset import PointSet
from ..processes.noise import EigenNoise, WhiteNoise
from ..processes.schedules import ScheduleName
from ..rng import rand
from .fdp import FunctionalDiffusion, Prediction

__all__ = ["ManifoldDiffusionField", "random_index", "ContextMode"]

ContextMode = Literal["full", "random"]


def random_index(batch: int, n: int, m: int, generator: torch.Generator | None,
                 device: torch.device | str = "cpu") -> Tensor:
    """``[batch, m]`` long: an independent uniform subset of ``m`` of ``n`` points per function (no repeats)."""
    scores = rand((batch, n), generator)
    return scores.argsort(dim=1)[:, :m].to(device)


class ManifoldDiffusionField(FunctionalDiffusion):
    """DDPM over function values at eigenfunction coordinates, with query/context point sets.

    Args:
        schedule: ``cosine`` or ``linear`` variance-preserving schedule (:mod:`funcgen.processes.schedules`).
        steps: default number of sampler steps.
        eta: DDIM stochasticity; 1 (default) is DDPM ancestral sampling, 0 the probability-flow ODE.
        num_context: context points ``|C|`` per function with ``context="random"`` (all points when a
            function has fewer); unused with ``context="full"``.
        num_queries: query points ``|Q|`` per training function (None: all of its points).
        clip_x0: clamp the predicted ``y_0`` to ``[-clip_x0, clip_x0]`` while sampling (None: never).
        t_min: smallest training time.
        context: ``full`` (default): every point is context, in training (the query set) and at every
            sampler step (the whole current state); ``random``: a fresh random subset of ``num_context``
            points (what configs written before this option meant; see the module docstring).
        noise_modes: None: white noise; ``m``: trace-class noise in the first ``m`` eigen-coordinates
            (:class:`funcgen.processes.noise.EigenNoise`, ``m <= k``).
        prediction: what the network outputs, ``eps`` (the paper's), ``x0`` or ``v``
            (:class:`~funcgen.methods.fdp.FunctionalDiffusion`). With white noise the ``eps`` and ``v`` targets
            hold the noise outside the span of the eigen-coordinates; the ``x0`` target of a field in that span
            does not, so a read-out linear in the coordinates (:class:`funcgen.nets.BranchTrunkNet`) can fit it.
        loss_space: ``target`` (the paper's: mean squared error on the network's target) or ``x0``.
    """

    #: exports written before ``context`` existed drew a random context subset at every step
    LEGACY_DEFAULTS = {"context": "random"}

    def __init__(self, schedule: ScheduleName = "cosine", steps: int = 100, eta: float = 1.0,
                 num_context: int = 256, num_queries: int | None = None, clip_x0: float | None = None,
                 t_min: float = 1e-3, context: ContextMode = "full", noise_modes: int | None = None,
                 prediction: Prediction = "eps", loss_space: Literal["x0", "target"] = "target") -> None:
        noise = WhiteNoise() if noise_modes is None else EigenNoise(int(noise_modes))
        super().__init__(noise, schedule=schedule, prediction=prediction, steps=steps, eta=eta,
                         clip_x0=clip_x0, t_min=t_min, loss_space=loss_space)
        if int(num_context) < 1 or (num_queries is not None and int(num_queries) < 1):
            raise ValueError(f"num_context and num_queries must be positive; got {num_context}, {num_queries}")
        if context not in ("full", "random"):
            raise ValueError(f"context must be 'full' (every point, the default) or 'random' (a subset of "
                             f"num_context points per step); got {context!r}")
        self.num_context = int(num_context)
        self.num_queries = None if num_queries is None else int(num_queries)
        self.context = context
        self.noise_modes = None if noise_modes is None else int(noise_modes)

    def training_points(self, batch: PointSet, generator: torch.Generator | None = None) -> PointSet:
        """A random query set ``Q`` of ``num_queries`` points per function (``[B, |Q|, .]``)."""
        if batch.mask is not None and not bool(batch.mask.all()):
            raise ValueError("ManifoldDiffusionField draws its context from every point of a function: ragged "
                             "(padded) batches are not supported; give every function the same points")
        if self.num_queries is None or self.num_queries >= batch.num_points:
            return batch
        idx = random_index(batch.batch_size, batch.num_points, self.num_queries, generator, batch.coords.device)
        return batch.gather(idx)

    def network(self, net: nn.Module, coords: Tensor, x_t: Tensor,
                generator: torch.Generator | None = None) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
        """``net`` with its context ``C`` bound: all ``N`` current points (``context="full"``) or a fresh
        random subset of ``num_context`` of them (``context="random"``).

        Args:
            net: a backbone accepting ``context=(coords [B, M, k], values [B, M, c])``.
            coords: ``[B, N, k]`` the query points; x_t: ``[B, N, c]`` the current noisy state there.
        """
        if not getattr(net, "accepts_context", False):
            raise TypeError(f"ManifoldDiffusionField needs a backbone that accepts a context point set "
                            f"(Backbone.accepts_context, e.g. PerceiverNet); {type(net).__name__} does not")
        b, n, _ = coords.shape
        if self.context == "full" or self.num_context >= n:
            ctx = (coords, x_t)
        else:
            idx = random_index(b, n, self.num_context, generator, coords.device)
            ctx = (torch.gather(coords, 1, idx.unsqueeze(-1).expand(-1, -1, coords.shape[-1])),
                   torch.gather(x_t, 1, idx.unsqueeze(-1).expand(-1, -1, x_t.shape[-1])))
        return functools.partial(net, context=ctx)
