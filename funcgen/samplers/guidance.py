"""Posterior sampling on a Gaussian path: condition any sampler on observed values at some of its points.

The sampler's state lives on the union of the query points and the observed points (:class:`Observation`
gives the observed points' indices in that state, their values ``y`` in model units and the observation
noise variance ``v``). Two ways to condition, both built only from the path view
:class:`funcgen.samplers.path.GaussianPath` (``x_t = a x_data + s xi``, ``Cov(xi) = C``):

**Tweedie-moment guidance** (:func:`tweedie_guide`, "tweedie"; Boys et al. 2023, TMPD). The sampler's
denoiser ``D(x_t) = E[x_data | x_t]`` is replaced by the conditional denoiser

    D_y(x_t) = D + Sigma A^T (A Sigma A^T + v I)^-1 (y - A D),
    Sigma = Cov(x_data | x_t) = (s^2 / a) J C,        J = dD / dx_t,                          (1)

``A`` the selection of the observed entries. (1) is Tweedie's second-moment formula for colored noise
(``Cov = s^2/a^2 (C + s^2 C grad^2 log p_t C)``) and Gaussian conditioning of ``x_data | x_t`` on ``y``: it
is EXACT when ``x_data | x_t`` is Gaussian (Gaussian data), and then any sampler run on ``D_y`` samples the
exact posterior up to its discretisation error (the forward path does not depend on ``y``, so ``D_y`` is the
denoiser of the posterior's own path). Cost: one extra backward pass per observed entry and denoiser call
(the rows ``A J`` by vector-Jacobian products), then an ``M x M`` solve. Symmetric by construction where
the network's Jacobian is.

**Gaussian-moment guidance** (:func:`moment_guide`, "moment"; the Gaussian-prior form of (1), as in
PiGDM / TMPD with a prior covariance): ``Sigma`` from a Gaussian approximation ``x_data ~ N(m, K)`` of the
data at the state's points instead of the network's Jacobian,

    Sigma = Cov(x_data | x_t) = K - a^2 K (a^2 K + s^2 C)^-1 K,                                      (2)

with ``K`` supplied by the caller (:meth:`funcgen.generator.FunctionGenerator.sample_conditional` estimates it
from the model's own unconditional samples at the same points). Exact for Gaussian data with ``K`` their
covariance (then (2) is (1) for the exact denoiser), symmetric and positive semi-definite by construction, and it
needs no backward pass: a trained network's Jacobian is far less accurate than its output (docs/conditioning.md).

**Replacement** (:func:`replacement_callback`, "replace"; Song et al. 2021, Lugmayr et al. 2022): after every
step to level ``t`` the observed entries are overwritten by a forward draw ``a(t) y + s(t) xi_obs``, ``xi_obs`` a
fresh draw of the noise at the observed points. Cheap, but the fresh draw ignores the correlation between the
noise at the observed points and the state elsewhere, so the posterior is only approximate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from .base import Callback, ModelFn
from .path import GaussianPath

__all__ = ["Observation", "LinearObservation", "tweedie_guide", "moment_guide", "error_covariance", "covariance_guide",
           "replacement_callback", "DenoiserGuide"]

#: turns a denoiser ``D(x, t) -> x0_hat`` into a conditional one (what a method's ``sample(guide=...)`` takes)
DenoiserGuide = Callable[[ModelFn], ModelFn]


@dataclass(frozen=True)
class Observation:
    """Observed entries of a sampler state ``[B, N, c]``.

    Attributes:
        index: ``[B, M]`` long, the observed points' positions among the state's ``N`` points.
        values: ``[B, M, c]`` their values in model units.
        variance: observation noise variance ``v`` (model units; 0: noise-free).
    """

    index: Tensor
    values: Tensor
    variance: float = 0.0

    def gather(self, x: Tensor) -> Tensor:
        """``A x``: the observed entries ``[B, M, c]`` of a state ``x`` ``[B, N, c]``."""
        return torch.gather(x, 1, self.index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))

    def scatter(self, x: Tensor, values: Tensor) -> Tensor:
        """A copy of ``x`` ``[B, N, c]`` with the observed entries set to ``values`` ``[B, M, c]``."""
        return x.scatter(1, self.index.unsqueeze(-1).expand(-1, -1, x.shape[-1]), values.to(x.dtype))


@dataclass
class LinearObservation:
    """Observed linear functionals ``A x`` of a sampler state ``[B, N, c]`` (e.g. cell averages for
    super-resolution from a coarse image), each channel through the same ``A``.

    Attributes:
        operator: ``A`` ``[M, N]`` (float64), shared by the batch.
        values: ``[B, M, c]`` the observed ``A x`` in model units.
        variance: observation noise variance ``v`` (model units; 0: noise-free).
    """

    operator: Tensor
    values: Tensor
    variance: float = 0.0

    def gather(self, x: Tensor) -> Tensor:
        """``A x`` ``[B, M, c]`` of a state ``x`` ``[B, N, c]``."""
        return torch.einsum("mn,bnc->bmc", self.operator.to(x.dtype), x)

    def enforce(self, x: Tensor) -> Tensor:
        """The closest state to ``x`` (Euclidean) with ``A x = y``: ``x + A^T (A A^T)^-1 (y - A x)``."""
        a = self.operator.double()
        resid = self.values.double() - self.gather(x.double())
        corr = torch.einsum("mn,bmc->bnc", a, torch.linalg.solve(a @ a.T, resid))
        return (x.double() + corr).to(x.dtype)


def tweedie_guide(path: GaussianPath, cov: Tensor, obs: Observation, jitter: float = 1e-10) -> DenoiserGuide:
    """The conditional denoiser (1) for a state whose noise has covariance ``cov`` ``[B or 1, N, N]``.

    Args:
        path: the method's path (``scales(t) -> (a, s)``).
        cov: ``C`` at the state's points.
        obs: the observed entries.
        jitter: added to ``A Sigma A^T + v I`` relative to its mean diagonal (a network's ``Sigma`` is only
            approximately positive definite); float64, so it can stay tiny: close observed points make
            ``A Sigma A^T`` nearly singular, and a larger jitter biases the posterior (docs/conditioning.md).

    Returns:
        ``guide(denoise) -> denoise_y``; ``denoise_y(x, t)`` needs autograd through ``denoise``. Where
        ``a(t) = 0`` (``x_t`` carries no information, and (1) is ``0 / 0``) the denoiser is returned unchanged.
    """
    cov64 = cov.double()

    def guide(denoise: ModelFn) -> ModelFn:
        def denoise_y(x: Tensor, t: float) -> Tensor:
            a, s = path.scales(t)
            if a <= 0.0 or s <= 0.0:
                x0 = denoise(x, t)
                return obs.scatter(x0, obs.values) if s <= 0.0 and obs.variance == 0.0 else x0
            b, n, c = x.shape
            with torch.enable_grad():
                xg = x.detach().requires_grad_(True)
                x0 = denoise(xg, t)
                sel = obs.gather(x0)  # [B, M, c]
                m = sel.shape[1]
                rows = []
                for j in range(m):
                    for k in range(c):
                        (g,) = torch.autograd.grad(sel[:, j, k].sum(), xg, retain_graph=j * c + k < m * c - 1)
                        rows.append(g)
            aj = torch.stack(rows, 1).double()  # [B, R, N, c]: rows of A J (functions are independent)
            r = m * c
            # A Sigma = (s^2 / a) (A J) C: contract the point axis of A J with C
            g_rows = (s * s / a) * torch.einsum("brnc,bnk->brkc", aj, cov64.expand(b, -1, -1))  # [B, R, N, c]
            # (A Sigma)^T stands for Sigma A^T (equal where the network's Jacobian gives a symmetric Sigma)
            return _solve_guided(x0.detach(), obs, g_rows.reshape(b, r, n * c).transpose(1, 2), jitter)

        return denoise_y

    return guide


def _regularised(s_y: Tensor, variance: float, jitter: float) -> Tensor:
    """``A Sigma A^T`` ``[..., R, R]`` symmetrised, plus ``(v + jitter * mean diagonal) I``."""
    s_y = 0.5 * (s_y + s_y.transpose(-1, -2))
    diag = s_y.diagonal(dim1=-2, dim2=-1).mean(-1).abs().clamp_min(1e-30)[..., None, None]
    eye = torch.eye(s_y.shape[-1], dtype=s_y.dtype, device=s_y.device)
    return s_y + (variance + jitter * diag) * eye


def _solve_guided(x0: Tensor, obs: Observation, sigma_at: Tensor, jitter: float) -> Tensor:
    """``x0 + Sigma A^T (A Sigma A^T + v I)^-1 (y - A x0)`` for the columns ``sigma_at = Sigma A^T`` ``[B, N c, R]``
    (float64), ``R = M c`` the observed entries; ``jitter`` relative to the mean diagonal of ``A Sigma A^T``."""
    b, n, c = x0.shape
    r = sigma_at.shape[-1]
    cols = (obs.index.unsqueeze(-1) * c + torch.arange(c, device=x0.device)).reshape(b, r)  # entries of A
    s_y = _regularised(torch.gather(sigma_at, 1, cols.unsqueeze(-1).expand(-1, -1, r)), obs.variance, jitter)
    resid = (obs.values.double() - obs.gather(x0).double()).reshape(b, r, 1)
    corr = (sigma_at @ torch.linalg.solve(s_y, resid)).reshape(b, n, c)
    return (x0.double() + corr).to(x0.dtype)


def moment_guide(path: GaussianPath, cov: Tensor, data_cov: Tensor, obs: Observation | LinearObservation,
                 jitter: float = 1e-10) -> DenoiserGuide:
    """The conditional denoiser (1) with ``Sigma`` of (2): a Gaussian approximation ``N(m, data_cov)`` of the data.

    Args:
        path: the method's path (``scales(t) -> (a, s)``).
        cov: ``C``, the noise covariance at the state's points ``[N, N]``.
        data_cov: ``K`` ``[N, N]`` at the same points, shared by the ``c`` channels (each channel is
            conditioned on its own observed values with the same ``K``).
        obs: the observed entries.
        jitter: as in :func:`tweedie_guide`.

    Returns:
        ``guide(denoise) -> denoise_y``; no autograd needed. Where ``a(t) = 0`` the denoiser is unchanged
        (``Sigma = K``: the conditioning then acts through the next levels).
    """
    k, c64 = data_cov.double(), cov.double()
    n = k.shape[0]
    if k.shape != (n, n) or c64.shape != (n, n):
        raise ValueError(f"cov and data_cov must both be [N, N] on the state's points; got {tuple(c64.shape)} and "
                         f"{tuple(k.shape)}")

    def sigma(t: float) -> Tensor:
        a, s = path.scales(t)
        sig = k - a * a * k @ torch.linalg.solve(a * a * k + s * s * c64, k)
        return 0.5 * (sig + sig.T)

    return covariance_guide(path, sigma, obs, jitter)


def error_covariance(denoise: ModelFn, path: GaussianPath, samples: Tensor, batch: int,
                     noise: Callable[[int], Tensor]) -> Callable[[float], Tensor]:
    """``t -> Sigma_t`` ``[N, N]`` (float64, cached per level) of (3): the denoiser's error covariance on samples,

        Sigma_t = E[(x - D(a x + s xi, t)) (x - D(a x + s xi, t))^T],   x ~ samples, xi ~ noise,          (3)

    the mean squared error matrix of ``D`` at level ``t`` (channels pooled). For the exact denoiser of the law of
    ``samples`` this is ``E[Cov(x_data | x_t)]``, which for Gaussian data is (2) (then constant in ``x_t``); for
    a trained network on its own samples it is the covariance of the errors the network actually makes.

    Args:
        denoise: ``D(x, t)`` on batches ``[batch, N, c]`` (a sampler's denoiser, bound to ``batch`` functions).
        path: the method's path.
        samples: ``[S, N, c]`` draws in model units, taken ``batch`` at a time (the last chunk padded with the
            first rows, whose errors are not counted).
        batch: the batch size ``denoise`` takes.
        noise: ``noise(batch) -> [batch, N, c]``, fresh draws of the path's noise at the points.
    """
    cache: dict[float, Tensor] = {}
    num, n, c = samples.shape

    def sigma(t: float) -> Tensor:
        if t not in cache:
            a, s = path.scales(t)
            total = torch.zeros(n, n, dtype=torch.float64, device=samples.device)
            for lo in range(0, num, batch):
                chunk = samples[lo:lo + batch]
                real = chunk.shape[0]
                if real < batch:
                    chunk = torch.cat([chunk, samples[torch.arange(batch - real, device=samples.device) % num]])
                err = (chunk - denoise(a * chunk + s * noise(batch), t))[:real].double()
                err = err.permute(2, 0, 1).reshape(-1, n)  # channels pooled: [real c, N]
                total = total + err.T @ err
            cache[t] = total / (num * c)
        return cache[t]

    return sigma


def covariance_guide(path: GaussianPath, sigma: Callable[[float], Tensor], obs: Observation | LinearObservation,
                     jitter: float = 1e-10) -> DenoiserGuide:
    """The conditional denoiser (1) with a supplied ``Sigma_t`` ``[N, N]`` shared by the batch and the channels
    (each channel conditioned on its own observed values): (2) from :func:`moment_guide`, (3) from
    :func:`error_covariance`. ``obs``: observed entries, or observed linear functionals ``A x``
    (:class:`LinearObservation`; ``A`` in place of the selection in (1)). ``jitter`` as in
    :func:`tweedie_guide`. Where ``a(t) = 0`` the denoiser is unchanged."""
    linear = isinstance(obs, LinearObservation)
    # one observed set for the whole batch: one gain per level
    shared = linear or bool((obs.index == obs.index[:1]).all())
    cache: dict[float, Tensor] = {}

    def gain(t: float) -> Tensor:
        """``Sigma A^T (A Sigma A^T + v I)^-1`` ``[N, M]`` of the shared observed set, per channel."""
        if t not in cache:
            sig = sigma(t)
            if linear:
                a_op = obs.operator.to(sig)
                sig_at = sig @ a_op.T  # [N, M]
                s_y = _regularised(a_op @ sig_at, obs.variance, jitter)
                cache[t] = torch.linalg.solve(s_y, sig_at.T).T
            else:
                idx = obs.index[0]
                s_y = _regularised(sig[idx][:, idx], obs.variance, jitter)
                cache[t] = torch.linalg.solve(s_y, sig[idx]).T  # s_y symmetric
        return cache[t]

    def guide(denoise: ModelFn) -> ModelFn:
        def denoise_y(x: Tensor, t: float) -> Tensor:
            a, s = path.scales(t)
            x0 = denoise(x, t)
            if s <= 0.0:
                if obs.variance != 0.0:
                    return x0
                return obs.enforce(x0) if linear else obs.scatter(x0, obs.values)
            if a <= 0.0:
                return x0
            if shared:
                resid = obs.values.double() - obs.gather(x0).double()  # [B, M, c]
                return (x0.double() + gain(t).to(x.device) @ resid).to(x0.dtype)
            b, n, ch = x.shape
            sig = sigma(t).to(x.device)
            m = obs.index.shape[1]
            # Sigma A^T per channel: rows n of every channel, columns (observed point j, channel k) -> [B, N c, M c]
            cols = sig[:, obs.index].permute(1, 0, 2)  # [B, N, M]
            eye_c = torch.eye(ch, dtype=torch.float64, device=x.device)
            sigma_at = torch.einsum("bnm,ck->bncmk", cols, eye_c).reshape(b, n * ch, m * ch)
            return _solve_guided(x0, obs, sigma_at, jitter)

        return denoise_y

    return guide


def replacement_callback(path: GaussianPath, obs: Observation, noise_at_obs: Callable[[], Tensor],
                         then: Callback | None = None) -> Callback:
    """After each step to level ``t``, set the observed entries to ``a(t) y + s(t) xi_obs`` (noise-free
    observations; a final level with ``s = 0`` gives ``y`` exactly), ``xi_obs`` ``[B, M, c]`` a fresh draw of
    ``noise_at_obs()``; then run ``then`` (e.g. progress)."""

    def callback(i: int, t: float, x: Tensor, x0_hat: Tensor) -> Tensor:
        a, s = path.scales(t)
        y = a * obs.values + (s * noise_at_obs() if s > 0 else 0.0)
        x = obs.scatter(x, y)
        if then is not None:
            out = then(i, t, x, x0_hat)
            x = x if out is None else out
        return x

    return callback
