"""Exact rejection sampling of log-concave 1-d densities on an interval from tangent-line envelopes.

For a log-concave ``f`` on ``[lo, hi]``, the tangents of ``log f`` at sorted nodes ``x_0 < ... < x_(G-1)``
lie above ``log f`` everywhere (Gilks & Wild 1992, adaptive rejection sampling without the adaptation):
the envelope ``u(x) = min_i (l_i + s_i (x - x_i))`` is piecewise linear, tangent ``i`` ruling on
``[z_(i-1), z_i]`` (``z_i`` = where tangents ``i`` and ``i+1`` cross, ``z_(-1) = lo``, ``z_(G-1) = hi``), so
``exp(u)`` is a piecewise-exponential density sampled exactly by inversion. Accepting ``x ~ exp(u)``
with probability ``f(x) / exp(u(x))`` gives exact draws of ``f``. Log-concavity is checked on the nodes
(non-increasing slopes); a row that fails it is reported so the caller can use another sampler, and an
accepted proposal with ``f > exp(u)`` raises instead of silently biasing.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

__all__ = ["TangentEnvelope"]

_F64 = torch.float64


def _log_expm1_diff(a: Tensor, b: Tensor) -> Tensor:
    """log((e^(b) - e^(a))) for ``b >= a`` (stable)."""
    return b + torch.log(-torch.expm1((a - b).clamp(max=-1e-300)))


class TangentEnvelope:
    """Tangent-line envelopes of ``R`` log-concave densities, one per row.

    Args:
        x: nodes ``[R, G]`` (sorted per row, strictly inside ``[lo, hi]``).
        logf: ``log f`` at the nodes ``[R, G]`` (unnormalised).
        slope: ``d log f / dx`` at the nodes ``[R, G]``.
        lo, hi: support ``[lo, hi]``.
    """

    def __init__(self, x: Tensor, logf: Tensor, slope: Tensor, lo: float, hi: float) -> None:
        self.x, self.l, self.s = x.to(_F64), logf.to(_F64), slope.to(_F64)
        self.lo, self.hi = float(lo), float(hi)
        ds = self.s[:, :-1] - self.s[:, 1:]
        #: rows whose node slopes are non-increasing (log-concave on the nodes) and finite
        self.ok = (ds >= -1e-9 * (1 + self.s[:, :-1].abs())).all(-1) & torch.isfinite(self.l).all(-1) \
            & torch.isfinite(self.s).all(-1)
        # crossing points of consecutive tangents (midpoint where they are parallel)
        num = self.l[:, 1:] - self.l[:, :-1] - self.x[:, 1:] * self.s[:, 1:] + self.x[:, :-1] * self.s[:, :-1]
        par = ds.abs() < 1e-12
        z = torch.where(par, (self.x[:, 1:] + self.x[:, :-1]) / 2, num / torch.where(par, torch.ones_like(ds), ds))
        z = torch.minimum(torch.maximum(z, self.x[:, :-1]), self.x[:, 1:])
        r = x.shape[0]
        lo, hi = (torch.full((r, 1), v, dtype=_F64, device=x.device) for v in (self.lo, self.hi))
        self.a = torch.cat([lo, z], -1) - self.x  # piece start - x_i
        self.b = torch.cat([z, hi], -1) - self.x  # piece end - x_i
        self.log_mass = self.l + self._log_int(self.s, self.a, self.b)

    @staticmethod
    def _log_int(s: Tensor, a: Tensor, b: Tensor) -> Tensor:
        """log int_a^b e^(s t) dt."""
        small = (s.abs() * (b - a)) < 1e-8
        ss = torch.where(small, torch.ones_like(s), s)
        pos = _log_expm1_diff(ss * a, ss * b) - torch.log(ss.abs())
        neg = _log_expm1_diff(ss * b, ss * a) - torch.log(ss.abs())
        exact = torch.where(ss > 0, pos, neg)
        return torch.where(small, torch.log((b - a).clamp_min(1e-300)) + s * (a + b) / 2, exact)

    def log_envelope(self, rows: Tensor, x: Tensor) -> Tensor:
        """``u(x)`` ``[B]`` for points ``x`` ``[B]`` of rows ``rows`` ``[B]`` (min over tangents)."""
        return (self.l[rows] + self.s[rows] * (x[:, None] - self.x[rows])).amin(-1)

    def propose(self, rows: Tensor, generator: torch.Generator | None) -> Tensor:
        """Draws ``[B]`` from the normalised ``exp(u)`` of each of ``rows`` ``[B]``."""
        gdev = generator.device if generator is not None else self.x.device
        w = torch.softmax(self.log_mass[rows], -1)
        piece = torch.multinomial(w.to(gdev), 1, generator=generator).to(self.x.device)[:, 0]
        u = torch.rand(rows.shape, generator=generator, device=gdev, dtype=_F64).to(self.x.device)
        take = lambda t: t[rows].gather(-1, piece[:, None])[:, 0]  # noqa: E731
        s, a, b, x0 = take(self.s), take(self.a), take(self.b), take(self.x)
        small = (s.abs() * (b - a)) < 1e-8
        ss = torch.where(small, torch.ones_like(s), s)
        # inverse CDF of e^(s t) on [a, b]: t = log(e^(s a) + u (e^(s b) - e^(s a))) / s, in a stable form
        t_pos = b + torch.log(u + (1 - u) * torch.exp(ss * (a - b))) / ss
        t_neg = a + torch.log1p(u * torch.expm1(ss * (b - a))) / ss
        t = torch.where(small, a + u * (b - a), torch.where(ss > 0, t_pos, t_neg))
        return (x0 + t).clamp(self.lo, self.hi)

    def sample(self, rows: Tensor, log_f: Callable[[Tensor, Tensor], Tensor], generator: torch.Generator | None,
               max_rounds: int = 1000) -> Tensor:
        """Exact draws ``[B]`` of ``f`` for each of ``rows`` ``[B]``; ``log_f(x, rows)`` evaluates ``log f``."""
        out = torch.full(rows.shape, math.nan, dtype=_F64, device=self.x.device)
        todo = torch.arange(rows.shape[0], device=self.x.device)
        gdev = generator.device if generator is not None else self.x.device
        for _ in range(max_rounds):
            if todo.numel() == 0:
                return out
            r = rows[todo]
            x = self.propose(r, generator)
            log_ratio = log_f(x, r) - self.log_envelope(r, x)
            if (log_ratio > 1e-6).any():
                raise RuntimeError("tangent envelope violated (the density is not log-concave there); please report: "
                                   f"x = {x[log_ratio > 1e-6][:3].tolist()}")
            acc = torch.log(torch.rand(x.shape, generator=generator, device=gdev, dtype=_F64).to(x.device)) < log_ratio
            out[todo[acc]] = x[acc]
            todo = todo[~acc]
        raise RuntimeError(f"envelope rejection sampling did not finish in {max_rounds} rounds")
