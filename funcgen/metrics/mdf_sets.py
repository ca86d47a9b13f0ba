"""COV and MMD between a generated and a reference set of functions (Achlioptas et al. 2018, as in MDF).

Both sets hold functions observed at the SAME ``N`` points, ``[S, N, c]``. The distance between two
functions is the (optionally area-weighted) root-mean-square difference over points and channels,
a Monte Carlo / quadrature estimate of their ``L^2`` distance normalised by the domain's size:

    d(f, g)^2 = sum_i w_i |f(x_i) - g(x_i)|^2 / (c sum_i w_i).

- MMD ("minimum matching distance", lower is better): the mean over REFERENCE functions of the
  distance to their nearest generated function: ``(1/|R|) sum_{r in R} min_{g in G} d(g, r)``.
- COV ("coverage", higher is better): the fraction of reference functions that are the nearest
  reference neighbour of at least one generated function.

A set compared with itself has MMD 0 and COV 1; a collapsed generator (one function) has COV 1/|R|.
(General MMD/energy distances live in :mod:`funcgen.metrics.distances`; this file is the MDF protocol only.)
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["pairwise_l2", "coverage", "minimum_matching_distance", "cov_mmd"]


def pairwise_l2(a: Tensor, b: Tensor, weights: Tensor | None = None, chunk: int = 256) -> Tensor:
    """Distances ``[Sa, Sb]`` between functions ``a`` ``[Sa, N, c]`` and ``b`` ``[Sb, N, c]`` (float64).

    Args:
        weights: optional ``[N]`` non-negative quadrature weights (e.g. the lumped mass of mesh vertices).
    """
    if a.ndim != 3 or b.ndim != 3 or a.shape[1:] != b.shape[1:]:
        raise ValueError(
            f"function sets must be [S, N, c] at the same points; got {tuple(a.shape)} and {tuple(b.shape)}")
    n, c = a.shape[1], a.shape[2]
    w = torch.full((n,), 1.0 / n, dtype=torch.float64) if weights is None else weights.double().reshape(-1)
    if w.shape[0] != n or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be [N = {n}] non-negative with a positive sum; got {tuple(weights.shape)}")
    w = (w / (w.sum() * c)).to(a.device)
    af = (a.double() * w.sqrt()[:, None]).flatten(1)
    bf = (b.double() * w.sqrt()[:, None]).flatten(1)
    rows = [torch.cdist(af[i:i + chunk], bf) for i in range(0, af.shape[0], chunk)]
    return torch.cat(rows)


def minimum_matching_distance(generated: Tensor, reference: Tensor, weights: Tensor | None = None) -> float:
    """MMD: mean over reference functions of the distance to the nearest generated one (lower is better)."""
    return float(pairwise_l2(generated, reference, weights).min(dim=0).values.mean())


def coverage(generated: Tensor, reference: Tensor, weights: Tensor | None = None) -> float:
    """COV: fraction of reference functions that are some generated function's nearest neighbour."""
    nearest = pairwise_l2(generated, reference, weights).argmin(dim=1)
    return float(nearest.unique().numel() / reference.shape[0])


def cov_mmd(generated: Tensor, reference: Tensor, weights: Tensor | None = None, suffix: str = "") -> dict[str, float]:
    """``{"cov" + suffix, "mmd" + suffix}`` from one distance matrix."""
    d = pairwise_l2(generated, reference, weights)
    return {f"cov{suffix}": float(d.argmin(dim=1).unique().numel() / reference.shape[0]),
            f"mmd{suffix}": float(d.min(dim=0).values.mean())}
