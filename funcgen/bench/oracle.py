"""Exact answers for Gaussian data: the Bayes denoiser of any Gaussian path and the GP posterior.

For data ``x_data ~ N(0, K)`` and a path ``x_t = a x_data + s xi`` with Gaussian ``xi ~ N(0, C)`` at the same
points, ``E[x_data | x_t] = a K (a^2 K + s^2 C)^-1 x_t`` is linear, so putting it in place of the network
makes a method's sampler, its posterior sampler and its likelihood checkable against closed forms: the
conditional samples against the GP posterior ``N(K_qo K_oo^-1 y, K_qq - K_qo K_oo^-1 K_oq)`` and ``log p``
against ``log N(x; 0, a^2 K + s^2 C)`` at the path's data level.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..samplers.base import ModelFn
from ..samplers.path import GaussianPath

__all__ = ["gaussian_denoiser", "gp_posterior", "gp_regression_problem", "moment_errors", "GaussianOracle"]


def gaussian_denoiser(path: GaussianPath, k: Tensor, c: Tensor) -> ModelFn:
    """``D(x, t) = a K (a^2 K + s^2 C)^-1 x`` for ``x`` ``[B, N, ch]`` on ONE point set with data covariance ``k`` and
    noise covariance ``c`` (``[N, N]``); differentiable in ``x`` (autograd sees a matrix product)."""
    k64, c64 = k.double(), c.double()
    cache: dict[float, Tensor] = {}

    def denoise(x: Tensor, t: float) -> Tensor:
        if t not in cache:
            a, s = path.scales(t)
            cache[t] = a * torch.linalg.solve(a * a * k64 + s * s * c64, k64).T  # K symmetric: (M^-1 K)^T = K M^-1
        return (cache[t].to(x.dtype) @ x)

    return denoise


def gp_posterior(k: Tensor, obs: Tensor, query: Tensor, y: Tensor, noise_var: float = 0.0) -> tuple[Tensor, Tensor]:
    """Posterior mean ``[Q, ch]`` and covariance ``[Q, Q]`` (float64) of the entries ``query`` (long ``[Q]``) of a
    ``N(0, k)`` vector given the entries ``obs`` (long ``[M]``) observed as ``y`` ``[M, ch]`` with noise variance
    ``noise_var``."""
    k = k.double()
    koo = k[obs][:, obs] + noise_var * torch.eye(len(obs), dtype=torch.float64, device=k.device)
    kqo = k[query][:, obs]
    mean = kqo @ torch.linalg.solve(koo, y.double())
    cov = k[query][:, query] - kqo @ torch.linalg.solve(koo, kqo.T)
    return mean, 0.5 * (cov + cov.T)


def gp_regression_problem(query: Tensor, m: int, kernel: Callable[[Tensor], Tensor],
                          generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """A GP regression problem with its exact answer: ``m`` uniform observation points ``[m, 1]`` in ``[0, 1]``,
    one draw of ``N(0, kernel(query + obs))`` (float64), its values ``y`` ``[m, 1]`` at the observation points, and
    the exact posterior mean ``[Q, 1]`` and covariance ``[Q, Q]`` at ``query`` ``[Q, 1]``: ``(obs, y, mean, cov)``."""
    obs = torch.rand(m, 1, generator=generator, dtype=torch.float64)
    pts = torch.cat([query.double(), obs])
    k = kernel(pts)
    draw = torch.linalg.cholesky(k) @ torch.randn(len(pts), 1, generator=generator, dtype=torch.float64)
    nq = len(query)
    mean, cov = gp_posterior(k, torch.arange(nq, nq + m), torch.arange(nq), draw[nq:])
    return obs, draw[nq:], mean, cov


def moment_errors(samples: Tensor, mean: Tensor, cov: Tensor) -> tuple[float, float]:
    """(mean error, covariance error) of samples ``[S, Q]`` against ``N(mean [Q], cov [Q, Q])``:
    ``|mean_S - mean| / sqrt(tr cov)`` and ``|cov_S - cov|_F / |cov|_F``."""
    return (float((samples.mean(0) - mean).norm() / cov.trace().sqrt()),
            float(torch.linalg.matrix_norm(torch.cov(samples.T) - cov) / torch.linalg.matrix_norm(cov)))


class GaussianOracle:
    """Swap a method's denoiser for the exact Gaussian one while in a ``with`` block (``method.denoiser`` is an
    instance attribute there; methods call ``self.denoiser(net, coords, generator)`` in their samplers).

    Args:
        method: a :class:`funcgen.methods.SupportsGaussianPath` method with Gaussian noise.
        kernel: the data covariance ``kernel(points [N, d]) -> [N, N]`` (every function of a sampler call on the
            same points).
    """

    def __init__(self, method, kernel: Callable[[Tensor], Tensor]) -> None:
        self.method, self.kernel = method, kernel

    def __enter__(self):
        path = self.method.gaussian_path()
        kernel = self.kernel

        def denoiser(net, coords, generator=None):
            pts = coords[0].double()
            return gaussian_denoiser(path, kernel(pts), path.noise.covariance(pts, pts))

        self.method.denoiser = denoiser
        return self.method

    def __exit__(self, *exc) -> None:
        del self.method.denoiser
