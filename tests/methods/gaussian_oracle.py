"""The exact Bayes denoiser of a Gaussian field in a mesh eigenbasis, standing in for MDF's network.

Data ``y_0 = Phi_m w`` with ``w ~ N(0, diag(c^2))`` (:class:`funcgen.data.mesh.MeshGRFDataModule`) and
``y_t = alpha y_0 + sigma xi`` are jointly Gaussian, so ``E[y_0 | y_t(C)]`` given the context points ``C``
is linear in ``y_t(C)`` and computed exactly in the ``m``-dimensional coefficient space:

- white noise: ``E[w | y] = (alpha^2 Phi^T Phi / sigma^2 + diag(c^-2))^-1 alpha Phi^T y / sigma^2``;
- :class:`funcgen.processes.noise.EigenNoise` (``K >= m`` modes): ``y = Phi_K u`` exactly, and per mode
  ``E[w_j | u] = alpha c_j^2 / (alpha^2 c_j^2 + sigma^2 / K) u_j``.

The module returns ``eps_hat = (y_t(Q) - alpha Phi_m(Q) E[w | y_t(C)]) / sigma`` at the queries ``Q``, which
is the exact ``E[xi_Q | y_t]`` when the context holds every point (``context="full"``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from funcgen.processes.noise import EigenNoise, WhiteNoise


class GaussianEigenOracle(nn.Module):
    """Exact ``E[xi | context]`` for Gaussian data with eigen-coefficient stds ``coef_std`` ``[m]``."""

    accepts_context = True

    def __init__(self, method, coef_std: Tensor) -> None:
        super().__init__()
        self.method, self.c2 = method, coef_std.double() ** 2
        if not isinstance(method.noise, (WhiteNoise, EigenNoise)):
            raise TypeError(f"no exact oracle for {type(method.noise).__name__}")

    def _coefficients(self, phi: Tensor, y: Tensor, a: Tensor, s: Tensor) -> Tensor:
        """``E[w | y]`` ``[B, m, c]`` from context eigen-coordinates ``phi`` ``[B or 1, N, k]`` and values
        ``y`` ``[B, N, c]``."""
        m = self.c2.shape[0]
        if isinstance(self.method.noise, EigenNoise):
            k = self.method.noise.modes
            pk = phi[..., :k]
            if pk.shape[0] == 1:  # shared points: one [K, K] system for the whole batch
                u = torch.linalg.solve(pk[0].T @ pk[0], (y.transpose(1, 2) @ pk[0]).flatten(0, 1).T)
                u = u.T.view(y.shape[0], y.shape[2], -1).transpose(1, 2)  # y lies in the span
            else:
                u = torch.linalg.solve(pk.transpose(1, 2) @ pk, pk.transpose(1, 2) @ y)
            noise_var = s**2 * self.method.noise.variance / k
            return (a * self.c2[:, None] / (a**2 * self.c2[:, None] + noise_var)) * u[:, :m]
        pm = phi[..., :m]
        prec = a**2 * pm.transpose(1, 2) @ pm / s**2 + torch.diag(1.0 / self.c2)
        return torch.linalg.solve(prec, a * pm.transpose(1, 2) @ y / s**2)

    def forward(self, coords: Tensor, values: Tensor, t: Tensor,
                context: tuple[Tensor, Tensor] | None = None) -> Tensor:
        cc, cy = (coords, values) if context is None else context
        if not (t == t[0]).all():
            raise ValueError("the oracle serves one time per call (the sampler's)")
        a, s = (float(v.flatten()[0]) for v in self.method.marginal(t[:1]))
        a, s = torch.tensor(a, dtype=torch.float64), torch.tensor(s, dtype=torch.float64)
        shared = bool((cc[0] == cc[-1]).all()) and bool((coords[0] == coords[-1]).all())
        phi_c = (cc[:1] if shared else cc).double()
        w = self._coefficients(phi_c, cy.double(), a, s)
        phi_q = (coords[:1] if shared else coords).double()[..., :self.c2.shape[0]]
        x0 = phi_q @ w
        return ((values.double() - a * x0) / s).to(values.dtype)
