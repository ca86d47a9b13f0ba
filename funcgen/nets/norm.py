"""Batch normalisation with several named sets of running statistics.

A network trained on batches drawn from different input laws (a method that applies one network to data, to
source noise and to its own outputs in every step) normalises each pass by that batch's own statistics in
training. One set of running statistics then averages over every law, and in ``eval()`` mode the network
normalises with statistics that match none of them (a mixture's mean and a variance inflated by the gap
between the laws). :class:`SetBatchNorm` keeps one running mean and variance per named input law; the caller
says which set a pass belongs to and whether it may update it, with :func:`norm_stats`:

    with norm_stats(net, "source"):            # training: normalise by the batch, update "source"
        fz = net(coords, z, t)
    with norm_stats(net, "data", update=False):
        ffz = net(coords, fz, t)               # training: normalise by the batch, leave the statistics

In ``eval()`` mode the layer normalises with the running statistics of the active set (Ioffe & Szegedy 2015,
sec. 3.1, per set); ``norm_stats(..., running=True)`` does so in training too (the pass is then the same
function it will be at inference, and updates nothing). Outside any :func:`norm_stats` block the first set is
active and updated, so a network built with one set behaves exactly as ``torch.nn.BatchNorm``. The affine scale
and shift are shared by all sets.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SetBatchNorm", "norm_stats", "stat_sets"]


class SetBatchNorm(nn.Module):
    """BatchNorm over the channel axis 1 of ``[B, C, *spatial]`` with one running mean / variance per name.

    Args:
        channels: ``C``.
        sets: names of the statistic sets (the first is the default); buffers ``running_mean_<name>``,
            ``running_var_<name>`` and one shared ``num_batches_tracked``.
        momentum: running-average momentum, as ``torch.nn.BatchNorm``.
        eps: added to the variance.
    """

    def __init__(self, channels: int, sets: Sequence[str], momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        names = [str(s) for s in sets]
        if not names or len(set(names)) != len(names) or not all(n.isidentifier() for n in names):
            raise ValueError(f"SetBatchNorm: sets must be distinct identifiers, at least one; got {list(sets)!r}")
        self.channels, self.sets, self.momentum, self.eps = int(channels), tuple(names), float(momentum), float(eps)
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        for name in names:
            self.register_buffer(f"running_mean_{name}", torch.zeros(channels))
            self.register_buffer(f"running_var_{name}", torch.ones(channels))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        self.active, self.update, self.running = names[0], True, False

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, *spatial] -> [B, C, *spatial]``; in training normalised by the batch (needs more than one
        value per channel), in eval by the active set's running statistics."""
        if x.ndim < 2 or x.shape[1] != self.channels:
            raise ValueError(f"SetBatchNorm: expected [B, {self.channels}, ...]; got {tuple(x.shape)}")
        mean, var = getattr(self, f"running_mean_{self.active}"), getattr(self, f"running_var_{self.active}")
        batch = self.training and not self.running
        track = batch and self.update
        if track:
            self.num_batches_tracked.add_(1)
        return F.batch_norm(x, mean, var, self.weight, self.bias, training=batch,
                            momentum=self.momentum if track else 0.0, eps=self.eps)

    def extra_repr(self) -> str:
        return f"{self.channels}, sets={self.sets}, momentum={self.momentum}, eps={self.eps}"


def stat_sets(net: nn.Module) -> tuple[str, ...]:
    """The statistic sets shared by every :class:`SetBatchNorm` in ``net`` (``()`` when it has none)."""
    layers = [m for m in net.modules() if isinstance(m, SetBatchNorm)]
    if not layers:
        return ()
    common = set(layers[0].sets).intersection(*(m.sets for m in layers[1:]))
    return tuple(s for s in layers[0].sets if s in common)


@contextmanager
def norm_stats(net: nn.Module, name: str, update: bool = True, running: bool = False) -> Iterator[None]:
    """Within the block, every :class:`SetBatchNorm` of ``net`` uses the statistic set ``name`` (and in
    training updates it only if ``update``; with ``running`` it normalises by the set's running statistics
    in training as well, updating nothing); the previous state is restored on exit. A network without
    such layers, or whose layers lack the set ``name``, is left alone (so callers need not know the
    backbone)."""
    layers = [m for m in net.modules() if isinstance(m, SetBatchNorm) and name in m.sets]
    saved = [(m.active, m.update, m.running) for m in layers]
    try:
        for m in layers:
            m.active, m.update, m.running = name, bool(update), bool(running)
        yield
    finally:
        for m, (active, upd, run) in zip(layers, saved):
            m.active, m.update, m.running = active, upd, run
