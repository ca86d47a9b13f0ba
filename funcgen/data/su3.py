"""A lattice-gauge-style target on SU(3), generated in-process: exact samples and exact log density.

The single-link Wilson-type density (Boyda et al. 2021, "Sampling using SU(N) gauge equivariant
flows", eq. 26) w.r.t. the Haar measure

    rho(U) = exp((beta / 3) Re tr(sum_k c_k U^k)) / Z,

``Z = E_Haar exp(...)``. It is a class function, so ``Z`` is a 2-d integral over the maximal torus by
the Weyl integration formula ``E_Haar f = (1 / (3! (2 pi)^2)) int int f(theta) prod_(i<j) |e^(i theta_i) -
e^(i theta_j)|^2 dtheta_1 dtheta_2`` (``theta_3 = -theta_1 - theta_2``), computed with the periodic
trapezoid rule (spectrally accurate: the integrand is smooth and periodic). Exact samples by rejection
from Haar with a rigorous bound: the maximum of the exponent over the quadrature grid plus its
Lipschitz constant times the grid spacing.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from ..geometry import SU3
from .manifold import _LawDataModule

__all__ = ["WilsonTarget", "SU3WilsonDataModule"]


class WilsonTarget:
    """``rho(U) ∝ exp((beta/3) Re tr(sum_k c_k U^k))`` on SU(3): exact samples and log density.

    Args:
        beta: inverse coupling.
        coeffs: ``c_1, c_2, ...`` (``(1,)`` is the plain Wilson action; Boyda et al.'s multimodal
            target is ``beta = 9, coeffs = (0.17, -0.65, 1.22)``).
        grid: quadrature nodes per angle for ``Z`` and the sampling bound.
    """

    def __init__(self, beta: float = 2.0, coeffs: Sequence[float] = (1.0,), grid: int = 512) -> None:
        if not math.isfinite(beta) or len(coeffs) == 0 or grid < 16:
            raise ValueError(f"WilsonTarget needs a finite beta, at least one coefficient and grid >= 16; got "
                             f"{beta}, {tuple(coeffs)}, {grid}")
        self.beta, self.coeffs, self.manifold = float(beta), tuple(float(c) for c in coeffs), SU3()
        a = torch.arange(grid, dtype=torch.float64) * (2 * math.pi / grid) - math.pi
        t1, t2 = torch.meshgrid(a, a, indexing="ij")
        th = torch.stack([t1, t2, -t1 - t2], -1)
        self._theta = th.reshape(-1, 3)
        f = self.exponent(self._theta)
        vdm = (2 * torch.sin((th[..., [0, 0, 1]] - th[..., [1, 2, 2]]) / 2)).pow(2).prod(-1).reshape(-1)
        log_w = f + torch.log(vdm.clamp_min(1e-300))  # target density on the torus, unnormalised
        self.log_z = float(torch.logsumexp(log_w, 0) + 2 * math.log(2 * math.pi / grid)
                           - math.log(6 * (2 * math.pi) ** 2))
        self._weights = torch.softmax(log_w, 0)
        lip = 2 * abs(self.beta) / 3 * sum(abs(c) * k for k, c in enumerate(self.coeffs, start=1))
        self.log_bound = float(f.max()) + lip * (2 * math.pi / grid)  # >= sup of the exponent

    def exponent(self, theta: Tensor) -> Tensor:
        """``(beta/3) Re tr(sum_k c_k U^k)`` at eigen-angles ``theta`` ``[..., 3]`` -> ``[...]`` float64."""
        th = theta.to(torch.float64)
        return self.beta / 3 * sum(c * torch.cos(k * th).sum(-1) for k, c in enumerate(self.coeffs, start=1))

    def expectation(self, fn: Callable[[Tensor], Tensor]) -> float:
        """``E_rho fn(theta)`` by the torus quadrature, for a class function given on eigen-angles ``[..., 3]``."""
        return float((self._weights * fn(self._theta)).sum())

    def matrix_exponent(self, x: Tensor) -> Tensor:
        """The exponent at points ``[..., 18]`` from traces of matrix powers (no eigen-decomposition) -> float64."""
        u = self.manifold.as_matrix(x)
        power, total = u, torch.zeros(x.shape[:-1], dtype=torch.float64, device=x.device)
        for c in self.coeffs:
            total = total + c * power.diagonal(dim1=-2, dim2=-1).sum(-1).real
            power = power @ u
        return self.beta / 3 * total

    def log_prob(self, x: Tensor) -> Tensor:
        """log density ``[M]`` w.r.t. the Riemannian volume of points ``[M, 18]`` (Haar density / |SU(3)|)."""
        return (self.matrix_exponent(x) - self.log_z - self.manifold.log_volume()).to(x.dtype)

    def acceptance(self) -> float:
        """Expected acceptance rate ``Z e^(-bound)`` of the Haar rejection sampler."""
        return math.exp(self.log_z - self.log_bound)

    def sample(self, num: int, generator: torch.Generator | None = None, max_rounds: int = 100000) -> Tensor:
        """``[num, 18]`` exact draws (float32)."""
        out, have = [], 0
        batch = int(min(4 * num / self.acceptance() + 64, 1e6))
        for _ in range(max_rounds):
            if have >= num:
                return torch.cat(out)[:num].float()
            x = self.manifold.random_uniform(batch, generator, dtype=torch.float64)
            log_r = self.matrix_exponent(x) - self.log_bound
            if (log_r > 1e-9).any():
                raise RuntimeError("WilsonTarget rejection bound violated; please report beta and coeffs")
            u = torch.rand(batch, generator=generator, dtype=torch.float64)
            keep = x[torch.log(u) < log_r]
            out.append(keep)
            have += keep.shape[0]
        raise RuntimeError(f"WilsonTarget sampling did not finish in {max_rounds} rounds")


class SU3WilsonDataModule(_LawDataModule):
    """Points on SU(3) (``[.., 18]`` real, see :class:`funcgen.geometry.SU3`) from a :class:`WilsonTarget`.

    Args:
        beta: inverse coupling of the target.
        coeffs: coefficients ``c_k`` of ``Re tr(sum_k c_k U^k)``.
        num_train: training points.
        num_val: validation points.
        batch_size: points per batch.
        seed: seed of the samples and the shuffling.
        num_workers: DataLoader worker processes.
    """

    name = "su3_wilson"
    channels = 18

    def __init__(self, beta: float = 2.0, coeffs: Sequence[float] = (1.0,), num_train: int = 20000,
                 num_val: int = 2000, batch_size: int = 512, seed: int = 0, num_workers: int = 0) -> None:
        super().__init__(batch_size=batch_size, seed=seed, num_workers=num_workers)
        if num_train < 1 or num_val < 1:
            raise ValueError(f"need num_train >= 1 and num_val >= 1; got {num_train}, {num_val}")
        self.target = WilsonTarget(beta, coeffs)
        self.manifold = self.target.manifold
        self.num_train, self.num_val = int(num_train), int(num_val)

    @property
    def law(self) -> WilsonTarget:
        return self.target

    def _extra_config(self) -> dict[str, Any]:
        return {**super()._extra_config(), "beta": self.target.beta, "coeffs": list(self.target.coeffs),
                "log_z": self.target.log_z}
