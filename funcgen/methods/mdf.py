"""Manifold Diffusion Fields (Elhag et al., ICLR 2024).

A function on a manifold is a set of pairs ``(phi(x_i), y_i)``, with ``phi`` the first ``k``
Laplace-Beltrami eigenfunctions (:mod:`funcgen.geometry.mesh`); the coordinates the method sees
are those eigenfunction coordinates ``[B, N, k]``, so nothing here depends on the embedding.

Diffusion: DDPM (Ho et al. 2020) on the values, with independent noise at every point (MDF sec. 3):

    y_t = alpha(t) y_0 + sigma(t) eps,   eps ~ N(0, I),
    L = E_{t, Q, C} || eps_Q - eps_theta(phi_Q, y_t(Q), t | context (phi_C, y_t(C))) ||^2,

with a random query set ``Q`` of the function's points and a random context subset ``C`` of ``Q``;
the loss is on the queries. A PerceiverIO backbone (:class:`funcgen.nets.PerceiverNet` with its
``context`` argument) pools the context tokens ``(phi, y_t, t)`` into latents and reads out at the
queries. Sampling at any set of points starts from white noise there and, at EVERY step, draws a
fresh random context of ``num_context`` points from the current state, so the cost of one step is
linear in the number of queries. Steps are DDIM (``eta = 1``: DDPM ancestral sampling, the default).

This is :class:`FunctionalDiffusion` with white noise, epsilon prediction and the plain epsilon loss,
plus its two hooks: ``training_points`` (the query set) and ``network`` (bind a context subset).
"""

from __future__ import annotations

import functools
from typing import Callable

import torch
from torch import Tensor, nn

from ..pointset import PointSet
from ..processes.noise import WhiteNoise
from ..processes.schedules import ScheduleName
from ..rng import rand
from .fdp import FunctionalDiffusion

__all__ = ["ManifoldDiffusionField", "random_index"]


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
        num_context: context points ``|C|`` per function, in training and at every sampler step
            (all points when a function has fewer).
        num_queries: query points ``|Q|`` per training function (None: all of its points).
        clip_x0: clamp the predicted ``y_0`` to ``[-clip_x0, clip_x0]`` while sampling (None: never).
        t_min: smallest training time.
    """

    def __init__(self, schedule: ScheduleName = "cosine", steps: int = 100, eta: float = 1.0,
                 num_context: int = 256, num_queries: int | None = None, clip_x0: float | None = None,
                 t_min: float = 1e-3) -> None:
        super().__init__(WhiteNoise(), schedule=schedule, prediction="eps", steps=steps, eta=eta,
                         clip_x0=clip_x0, t_min=t_min, loss_space="target")
        if int(num_context) < 1 or (num_queries is not None and int(num_queries) < 1):
            raise ValueError(f"num_context and num_queries must be positive; got {num_context}, {num_queries}")
        self.num_context = int(num_context)
        self.num_queries = None if num_queries is None else int(num_queries)

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
        """``net`` with a fresh random context ``C`` (``num_context`` of the ``N`` current points) bound.

        Args:
            net: a backbone accepting ``context=(coords [B, M, k], values [B, M, c])``.
            coords: ``[B, N, k]`` the query points; x_t: ``[B, N, c]`` the current noisy state there.
        """
        if not getattr(net, "accepts_context", False):
            raise TypeError(f"ManifoldDiffusionField needs a backbone that accepts a context point set "
                            f"(Backbone.accepts_context, e.g. PerceiverNet); {type(net).__name__} does not")
        b, n, _ = coords.shape
        if self.num_context >= n:
            ctx = (coords, x_t)
        else:
            idx = random_index(b, n, self.num_context, generator, coords.device)
            ctx = (torch.gather(coords, 1, idx.unsqueeze(-1).expand(-1, -1, coords.shape[-1])),
                   torch.gather(x_t, 1, idx.unsqueeze(-1).expand(-1, -1, x_t.shape[-1])))
        return functools.partial(net, context=ctx)
