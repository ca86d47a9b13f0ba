"""Riemannian diffusion on symmetric spaces (Lou et al., "Scaling Riemannian Diffusion Models", NeurIPS 2023).

Forward process: Brownian motion on the manifold with generator ``Laplacian / 2`` run to time
``sigma(t)^2``, ``sigma(t) = sigma_min (sigma_max / sigma_min)^t``, i.e. the SDE ``dX = g(t) dB_t`` with
``g(t)^2 = d sigma^2 / dt = 2 sigma^2 log(sigma_max / sigma_min)``. Its transition law is the heat
kernel, so training uses the EXACT heat-kernel score (:mod:`funcgen.geometry.heat_kernel`):

    L = E_t E_{x0, x ~ p_sigma(.|x0)} sigma^2 || s_theta(x, sigma) - grad_x log p_sigma(x | x0) ||_g^2,
    s_theta(x, sigma) = proj_x(net(x, sigma)) / sigma                                (paper eq. 4)

Sampling integrates the reverse SDE ``dx = -g^2 s dt + g dB`` (``t: 1 -> 0``) with the
exponential-map Euler-Maruyama scheme (geodesic random walk), or the probability-flow ODE
``dx/dt = -g^2 s / 2`` with exponential-map Euler; the prior is the uniform law (the heat kernel at
``sigma_max`` is uniform to ``O(e^(-lambda_1 sigma_max^2 / 2))``). The log-likelihood follows the
probability-flow ODE from ``t = 0`` to ``1``:
``log p_0(x_0) = -log|M| + int_0^1 div_M v(x_t, t) dt`` with the Riemannian divergence
``div_M v = tr(P_x J_v(x))`` (``P_x`` the tangent projection, ``J_v`` the ambient Jacobian), exact
for small ambient dimension or Hutchinson's estimate ``xi^T J_v xi``, ``xi ~ N(0, P_x)``.

Batches: a PointSet whose ``values`` ``[B, N, D]`` hold flat ambient manifold points (one independent
point per entry; datamodules use ``N = 1``) and whose ``coords`` are a dummy ``[B, N, 1]``. This keeps
the shared :class:`funcgen.train.module.GenerativeModule` and :class:`funcgen.generator.FunctionGenerator`
unchanged: ``generator.sample(K)`` draws ``K`` points (``values[:, 0]``).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from ..geometry import Manifold, heat_kernel_score, sample_heat_kernel
from ..pointset import PointSet
from ..rng import randn
from ..samplers import Callback, exp_euler_maruyama, manifold_ode_likelihood
from .base import Method, bind_mask, masked_mean, stratified_times

__all__ = ["RiemannianDiffusion", "tangent_divergence"]

Sampler = Literal["sde", "ode"]
Divergence = Literal["auto", "exact", "hutchinson"]


def tangent_divergence(v: Tensor, x: Tensor, manifold: Manifold, exact: bool,
                       generator: torch.Generator | None = None) -> Tensor:
    """Riemannian divergence ``tr(P_x dv/dx)`` ``[...]`` of a tangent field ``v(x)`` ``[..., D]`` (graph to ``x``).

    Exact: ``D`` vector-Jacobian products. Hutchinson: one, with ``xi = proj_x(z)``, ``z ~ N(0, I)``.
    Valid because the tangent projection is the Euclidean-orthogonal one (also for SO(3), whose
    metric is a constant multiple of the Frobenius one; the divergence does not see that constant).
    """
    d = x.shape[-1]
    if exact:
        eye = torch.eye(d, dtype=x.dtype, device=x.device)
        total = torch.zeros(x.shape[:-1], dtype=x.dtype, device=x.device)
        for j in range(d):
            e = eye[j].expand_as(x)
            (row,) = torch.autograd.grad(v, x, e, retain_graph=True)  # row j of J: d v_j / d x
            total = total + (row * manifold.proj(x.detach(), e)).sum(-1)  # sum_k J_jk P_kj
        return total
    z = randn(tuple(x.shape), generator, device=x.device, dtype=x.dtype)
    xi = manifold.proj(x.detach(), z)
    (vjp,) = torch.autograd.grad(v, x, xi, retain_graph=True)
    return (vjp * xi).sum(-1)


class RiemannianDiffusion(Method):
    """Denoising score matching with exact heat-kernel scores on a compact symmetric space.

    Args:
        manifold: the manifold (``Sphere(n)``, ``SO3()``, ``Torus(n)``).
        sigma_min: smallest noise level (data end, ``t = 0``).
        sigma_max: largest noise level (prior end, ``t = 1``); large enough for the heat kernel to be
            uniform (3 on S^2: ``e^(-sigma^2) ~ 1e-4``).
        steps: default number of sampler / likelihood steps.
        sampler: ``sde`` (exponential-map Euler-Maruyama of the reverse SDE) or ``ode``
            (exponential-map Euler of the probability-flow ODE).
        divergence: likelihood divergence: ``exact`` (``D`` backward passes), ``hutchinson`` (one,
            unbiased) or ``auto`` (exact when the ambient dimension ``D <= 16``).
    """

    def __init__(self, manifold: Manifold, sigma_min: float = 1e-3, sigma_max: float = 3.0, steps: int = 100,
                 sampler: Sampler = "sde", divergence: Divergence = "auto") -> None:
        if not isinstance(manifold, Manifold):
            raise TypeError(f"manifold must be a funcgen.geometry.Manifold; got {type(manifold).__name__}")
        if not 0.0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max; got {sigma_min}, {sigma_max}")
        if int(steps) <= 0:
            raise ValueError(f"steps must be positive; got {steps}")
        if sampler not in ("sde", "ode"):
            raise ValueError(f"unknown sampler {sampler!r}; choose sde or ode")
        if divergence not in ("auto", "exact", "hutchinson"):
            raise ValueError(f"unknown divergence {divergence!r}; choose auto, exact or hutchinson")
        self.manifold = manifold
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.steps, self.sampler, self.divergence = int(steps), sampler, divergence

    # ----------------------------------------------------------------- schedule
    def sigma(self, t: Tensor) -> Tensor:
        """``sigma(t) = sigma_min (sigma_max / sigma_min)^t``."""
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def g2(self, t: Tensor) -> Tensor:
        """``g(t)^2 = d sigma(t)^2 / dt``."""
        return 2.0 * self.sigma(t) ** 2 * math.log(self.sigma_max / self.sigma_min)

    def score(self, net: nn.Module, coords: Tensor, x: Tensor, sigma: Tensor) -> Tensor:
        """Model score ``proj_x(net(x, sigma)) / sigma`` ``[B, N, D]`` for points ``x`` and ``sigma`` ``[B]``."""
        return self.manifold.proj(x, net(coords, x, sigma)) / sigma[:, None, None]

    # ----------------------------------------------------------------- training
    def loss(self, net: nn.Module, batch: PointSet,
             generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        x0 = self.manifold.check(batch.values, "data points")
        b, n = x0.shape[:2]
        t = stratified_times(b, generator, x0.device)
        sigma = self.sigma(t)
        s_pt = sigma[:, None].expand(b, n)
        xt = sample_heat_kernel(self.manifold, x0, s_pt, generator)
        target = heat_kernel_score(self.manifold, xt, x0, s_pt)
        out = self.manifold.proj(xt, bind_mask(net, batch.mask)(batch.coords, xt, sigma.to(x0.dtype)))
        res = out - sigma.to(x0.dtype)[:, None, None] * target
        sq = self.manifold.inner(xt, res, res)[..., None]
        return masked_mean(sq, batch.mask).mean(), {}

    # ----------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(self, net: nn.Module, coords: Tensor, channels: int, *,
               generator: torch.Generator | None = None, steps: int | None = None,
               progress: bool = False, callback: Callback | None = None) -> Tensor:
        m = self.manifold
        if channels != m.ambient_dim:
            raise ValueError(f"{m!r} points have {m.ambient_dim} ambient coordinates; got channels={channels}")
        steps = self.resolve_steps(steps)
        b, n = coords.shape[:2]
        x = m.random_uniform(b * n, generator, dtype=coords.dtype, device=coords.device).reshape(b, n, -1)
        ts = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64, device=coords.device)
        ode = self.sampler == "ode"

        def drift(x: Tensor, t: Tensor) -> Tensor:
            sigma = self.sigma(t).to(x.dtype).expand(b)
            return -(0.5 if ode else 1.0) * self.g2(t).to(x.dtype) * self.score(net, coords, x, sigma)

        x = exp_euler_maruyama(x, ts, drift, None if ode else (lambda t: self.g2(t).sqrt().to(x.dtype)), m.exp,
                               lambda x: m.random_tangent(x, generator), callback=callback, progress=progress)
        return m.wrap(x)

    # ----------------------------------------------------------------- likelihood
    def log_likelihood(self, net: nn.Module, x: Tensor, *, steps: int | None = None,
                       generator: torch.Generator | None = None, divergence: Divergence | None = None,
                       progress: bool = False) -> Tensor:
        """``log p_0(x)`` ``[M]`` (w.r.t. the Riemannian volume) of points ``x`` ``[M, D]`` by the probability-flow ODE.

        Heun's scheme on the manifold (second order, :func:`funcgen.samplers.manifold_ode_likelihood`).
        Prior ``-log |M|``.
        """
        m = self.manifold
        x = m.wrap(m.check(x, "likelihood points"))
        if x.ndim != 2:
            raise ValueError(f"log_likelihood takes points [M, {m.ambient_dim}]; got {tuple(x.shape)}")
        steps = self.resolve_steps(steps)
        mode = self.divergence if divergence is None else divergence
        exact = mode == "exact" or (mode == "auto" and m.ambient_dim <= 16)
        xs = x.unsqueeze(1)  # [M, 1, D]
        coords = torch.zeros(x.shape[0], 1, 1, dtype=x.dtype, device=x.device)
        ts = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64, device=x.device)

        def field(xs: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
            sigma = self.sigma(t).to(x.dtype).expand(x.shape[0])
            with torch.enable_grad():
                xg = xs.detach().requires_grad_(True)
                v = -0.5 * self.g2(t).to(x.dtype) * self.score(net, coords, xg, sigma)
                div = tangent_divergence(v, xg, m, exact, generator)
            return v.detach(), div[:, 0].detach().to(torch.float64)

        _, delta = manifold_ode_likelihood(field, xs, ts, m.exp, m.proj, progress=progress)
        return (delta - m.log_volume()).to(x.dtype)
