"""PFGM++ on function spaces (Xu et al., "PFGM++: Unlocking the Potential of Physics-Inspired
Generative Models", ICML 2023), in the form that is consistent across resolutions.

Perturbation kernel (paper eq. 4) with the alignment ``r = sigma sqrt(D)``::

    p_sigma(x | y) ~ (|x - y|^2 + D sigma^2)^(-(N + D) / 2)
    <=>  x = y + sigma eps / sqrt(w),   eps ~ GP(0, C),   w ~ chi^2_D / D   (ONE w per function)

The chi-square form never needs the number of points ``N``: the perturbation is a Student-t
*process* (:class:`funcgen.processes.noise.StudentTProcess`), so any subset of points has the same law as a
perturbation drawn at the subset, and a model trained at 64 points is consistent at 256. (The paper's
code draws ``R`` from a Beta distribution that depends on a fixed ``N`` and clips it, which biases the
noise when ``N / D`` is large.) ``D = inf`` is Gaussian diffusion (EDM) through the same code path.

Objective (EDM, Karras et al. 2022, eqs. 2, 7, 8 and Table 1), for ``ln sigma ~ N(P_mean, P_std^2)``::

    D_theta(x, sigma) = c_skip x + c_out F_theta(c_in x, c_noise)
    c_skip = s_d^2 / (sigma^2 + s_d^2),  c_out = sigma s_d / sqrt(sigma^2 + s_d^2),
    c_in = 1 / sqrt(sigma_eff^2 + s_d^2),  c_noise = ln(sigma) / 4,
    loss = lambda(sigma) |D_theta(y + n, sigma) - y|^2,  lambda = (sigma^2 + s_d^2) / (sigma s_d)^2

with ``sigma_eff = sigma`` (the paper) or, with ``variance_correction``, the true per-point standard
deviation ``sigma sqrt(D / (D - 2))`` of the Student-t perturbation. The squared norm is the mean over
points (a Monte Carlo estimate of the ``L^2(Omega)`` norm), so the loss does not depend on ``N``.

Two options give the training weighting of :class:`funcgen.methods.FunctionalDiffusion` instead (the
preconditioning is unchanged): ``sigma_sampling="cosine"`` draws ``sigma = tan(pi u / 2)``, ``u`` uniform
(the noise levels of uniform times on the cosine schedule, ``alpha_t = cos(pi t / 2)``, in the variance-exploding
form ``sigma = sigma_t / alpha_t``; ``ln sigma`` then has the hyperbolic-secant density ``sech(s) / pi``), clipped
to ``[sigma_min, sigma_max]``; ``snr_gamma`` replaces ``lambda`` by the Min-SNR-gamma weight
``min(SNR, gamma) / gamma`` with ``SNR = 1 / sigma^2`` (Hang et al. 2023), as FunctionalDiffusion weights its x0 loss.

Sampler: the prior is the same Student-t process at ``sigma_max``; then the ODE
``dx/dsigma = (x - D_theta(x, sigma)) / sigma`` (:func:`funcgen.samplers.sigma_ode`, Heun or Euler on
the rho-schedule). No Gaussian churn (it is inconsistent with the t-kernel); ``inject_alpha > 0``
adds ``alpha sigma eps`` before each step for the paper's robustness study.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from ..pointset import PointSet
from ..processes.noise import FunctionNoise, StudentTProcess, WhiteNoise
from ..processes.schedules import karras_sigmas
from ..rng import rand, randn
from ..samplers import Callback, DenoiserGuide, GaussianPath, ModelFn, sigma_ode, sigma_ode_nfe
from .base import Method, bind_mask, masked_mean, min_snr_weight

__all__ = ["PFGMPP"]


class PFGMPP(Method):
    """PFGM++ with a Student-t process perturbation; ``D = inf`` is EDM.

    Args:
        noise: the Gaussian field ``eps`` of the perturbation (white noise or a Gaussian random
            field; unit variance per point keeps ``sigma`` in data units). Default: white noise.
        D: augmented dimension ``D`` = degrees of freedom of the Student-t process (``inf``: Gaussian).
        sigma_data: standard deviation of the (normalised) data, EDM's ``s_d``.
        sigma_min: smallest sampling noise level.
        sigma_max: largest noise level: the prior is the perturbation at ``sigma_max`` (paper: 80).
        rho: exponent of the sampling grid (EDM eq. 5).
        p_mean: mean of ``ln sigma`` at training.
        p_std: standard deviation of ``ln sigma`` at training.
        steps: default number of sampler intervals (Heun: ``2 steps - 1`` network evaluations).
        solver: ``heun`` or ``euler``.
        variance_correction: scale the input by the Student-t process's true per-point variance
            ``sigma^2 D / (D - 2)`` (c_in) instead of ``sigma^2`` (no effect for ``D = inf``).
        inject_alpha: per-step noise injection ``x += alpha sigma eps`` while sampling (0 = off).
        sigma_sampling: training noise levels, ``lognormal`` (EDM: ``ln sigma ~ N(p_mean, p_std^2)``) or
            ``cosine`` (``sigma = tan(pi u / 2)``, ``u`` uniform on ``[sigma_min, sigma_max]``'s range).
        snr_gamma: Min-SNR-gamma weight ``min(sigma^-2, gamma) / gamma`` of the x0 error instead of EDM's
            ``lambda(sigma)`` (None: ``lambda``).
    """

    def __init__(self, noise: FunctionNoise | None = None, D: float = 128.0, sigma_data: float = 0.5,
                 sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0, p_mean: float = -1.2,
                 p_std: float = 1.2, steps: int = 18, solver: Literal["heun", "euler"] = "heun",
                 variance_correction: bool = False, inject_alpha: float = 0.0,
                 sigma_sampling: Literal["lognormal", "cosine"] = "lognormal", snr_gamma: float | None = None) -> None:
        if not D > 0:
            raise ValueError(f"D must be positive (float('inf') for Gaussian diffusion); got {D}")
        if not 0 < sigma_min < sigma_max or sigma_data <= 0 or p_std <= 0:
            raise ValueError("need 0 < sigma_min < sigma_max, sigma_data > 0 and p_std > 0; got "
                             f"sigma_min={sigma_min}, sigma_max={sigma_max}, sigma_data={sigma_data}, p_std={p_std}")
        if steps < 1 or solver not in ("heun", "euler") or inject_alpha < 0:
            raise ValueError(f"need steps >= 1, solver heun|euler, inject_alpha >= 0; got {steps}, {solver!r}, "
                             f"{inject_alpha}")
        if sigma_sampling not in ("lognormal", "cosine") or (snr_gamma is not None and not snr_gamma > 0):
            raise ValueError(f"need sigma_sampling lognormal|cosine and snr_gamma > 0 or None; got {sigma_sampling!r}, "
                             f"{snr_gamma}")
        self.noise = noise if noise is not None else WhiteNoise()
        self.D = float(D)
        self.perturbation = StudentTProcess(self.noise, self.D)
        self.sigma_data, self.sigma_min, self.sigma_max = float(sigma_data), float(sigma_min), float(sigma_max)
        self.rho, self.p_mean, self.p_std = float(rho), float(p_mean), float(p_std)
        self.steps, self.solver = int(steps), solver
        self.variance_correction, self.inject_alpha = bool(variance_correction), float(inject_alpha)
        self.sigma_sampling, self.snr_gamma = sigma_sampling, None if snr_gamma is None else float(snr_gamma)

    # ----------------------------------------------------------------- preconditioning
    def denoise(self, net: nn.Module, coords: Tensor, x: Tensor, sigma: Tensor) -> Tensor:
        """``D_theta(x, sigma)`` ``[B, N, c]`` for ``x`` ``[B, N, c]`` and ``sigma`` ``[B]`` (EDM eq. 7)."""
        s = sigma.to(x.dtype).reshape(-1, 1, 1)
        sd2 = self.sigma_data**2
        var_in = s * s * (self.perturbation.variance_factor() if self.variance_correction and self.D > 2 else 1.0)
        c_skip = sd2 / (s * s + sd2)
        c_out = s * self.sigma_data / (s * s + sd2).sqrt()
        c_in = (var_in + sd2).rsqrt()
        c_noise = sigma.to(x.dtype).log() / 4.0
        return c_skip * x + c_out * net(coords, c_in * x, c_noise)

    def perturb(self, y: Tensor, coords: Tensor, sigma: Tensor,
                generator: torch.Generator | None = None) -> Tensor:
        """``y + sigma eps / sqrt(w)`` ``[B, N, c]``: a draw of the PFGM++ kernel at ``coords``."""
        n = self.perturbation.sample(coords, y.shape[-1], generator)
        return y + sigma.to(y.dtype).reshape(-1, 1, 1) * n

    # ----------------------------------------------------------------- training
    def training_sigmas(self, batch_size: int, generator: torch.Generator | None = None,
                        device: torch.device | str | None = None) -> Tensor:
        """Training noise levels ``[batch_size]`` (float32) drawn by ``sigma_sampling`` (module docstring)."""
        if self.sigma_sampling == "lognormal":
            z = randn((batch_size,), generator, device=device, dtype=torch.float32)
            return (self.p_mean + self.p_std * z).exp()
        lo, hi = (2.0 / math.pi * math.atan(s) for s in (self.sigma_min, self.sigma_max))
        u = lo + (hi - lo) * rand((batch_size,), generator, device=device, dtype=torch.float32)
        return torch.tan(0.5 * math.pi * u)

    def loss_weight(self, sigma: Tensor) -> Tensor:
        """Weight ``[B]`` of each function's x0 error: EDM's ``lambda(sigma)`` or the Min-SNR-gamma weight."""
        if self.snr_gamma is None:
            return (sigma**2 + self.sigma_data**2) / (sigma * self.sigma_data) ** 2
        return min_snr_weight(sigma.pow(-2), self.snr_gamma)

    def loss(self, net: nn.Module, batch: PointSet,
             generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        y, coords = batch.values, batch.coords
        sigma = self.training_sigmas(batch.batch_size, generator, y.device).to(y.dtype)
        x = self.perturb(y, coords, sigma, generator)
        weight = self.loss_weight(sigma)
        err = masked_mean((self.denoise(bind_mask(net, batch.mask), coords, x, sigma) - y) ** 2, batch.mask)  # [B]
        return (weight * err).mean(), {"x0_mse": err.mean().detach()}

    # ----------------------------------------------------------------- sampling
    def sigmas(self, steps: int | None = None) -> Tensor:
        """The sampler's noise levels ``[steps + 1]`` (float64), from ``sigma_max`` down to 0."""
        return karras_sigmas(self.resolve_steps(steps), self.sigma_min, self.sigma_max, self.rho)

    def prior(self, coords: Tensor, channels: int, generator: torch.Generator | None = None) -> Tensor:
        """A draw of the perturbation at ``sigma_max`` around 0 (the prior), ``[B, N, channels]``."""
        return self.sigma_max * self.perturbation.sample(coords, channels, generator)

    def gaussian_path(self) -> GaussianPath:
        """``x_sigma = y + sigma n`` (``a = 1``, ``s = sigma``, ``n`` the Student-t process) from ``sigma_min`` to
        ``sigma_max``."""
        return GaussianPath(lambda sigma: (1.0, float(sigma)), self.perturbation, self.sigma_min, self.sigma_max)

    def denoiser(self, net: nn.Module, coords: Tensor, generator: torch.Generator | None = None) -> ModelFn:
        """The sampler's model callable ``D(x, sigma) -> x0_hat`` ``[B, N, c]`` at ``coords``."""
        b = coords.shape[0]

        def denoise(x: Tensor, sigma: float) -> Tensor:
            return self.denoise(net, coords, x, torch.full((b,), sigma, device=x.device, dtype=x.dtype))

        return denoise

    @torch.no_grad()
    def sample(self, net: nn.Module, coords: Tensor, channels: int, *,
               generator: torch.Generator | None = None, steps: int | None = None,
               progress: bool = False, callback: Callback | None = None,
               guide: DenoiserGuide | None = None) -> Tensor:
        """Draw ``[B, N, channels]`` at ``coords``; ``guide`` makes the denoiser conditional (posterior sampling by
        Tweedie-moment guidance, docs/conditioning.md: with the Student-t kernel (1) of
        :mod:`funcgen.samplers.guidance` is the Gaussian approximation, exact as ``D -> inf``)."""
        denoiser = self.denoiser(net, coords, generator)
        if guide is not None:
            denoiser = guide(denoiser)
        return sigma_ode(denoiser, self.prior(coords, channels, generator), self.sigmas(steps), solver=self.solver,
                         noise=lambda: self.noise.sample(coords, channels, generator), inject_alpha=self.inject_alpha,
                         callback=callback, progress=progress)

    def nfe(self, steps: int | None = None) -> int:
        """Network evaluations of one sampler call."""
        return sigma_ode_nfe(self.resolve_steps(steps), self.solver)

    def __repr__(self) -> str:
        d = "inf" if math.isinf(self.D) else f"{self.D:g}"
        return f"PFGMPP(D={d}, sigma_max={self.sigma_max:g}, steps={self.steps}, solver={self.solver})"
