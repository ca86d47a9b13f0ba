"""Functional diffusion (Functional Diffusion Processes, Franzese et al., NeurIPS 2023).

Forward process in function space, driven by a Gaussian random field ``xi ~ GP(0, C)`` whose law
does not depend on the number of points (:mod:`funcgen.processes.noise`):

    dX_t = -1/2 beta(t) X_t dt + sqrt(beta(t)) C^(1/2) dW_t,
    X_t | X_0 ~ GP(alpha(t) X_0, sigma(t)^2 C),   alpha^2 + sigma^2 = 1.                 (FDP eq. 5)

This is the FDP SDE with ``b(w) = 1`` and ``r(w) = S(w)`` (the spectrum of ``C``); the default
``SpectralNoise(spectrum="fdp")`` uses the reference code's ``r(w)/b(w)`` as that spectrum. With a
constant ``b`` the mean decay is pointwise, so the reverse process needs no Fourier transform of
the state: ``R grad log p_t = -(x_t - alpha x0_hat) / sigma^2`` is pointwise and the reverse noise
is a fresh draw of the same field (the same ``R^(1/2)`` colouring), so training, scoring and sampling
run on ANY coordinates. A per-mode ``b(w)`` (the reference code's Fourier-diagonal drift) needs a
grid FFT of the state and is not used here.

Loss: mean squared error of the network's target over the points, a Monte Carlo estimate of the
``L^2(Omega)`` norm of the residual function. Sampling: the shared samplers of
:mod:`funcgen.samplers.diffusion` on the denoiser ``x0_hat(x_t, t)``: DDIM (``eta = 0``, the first-order
exponential integrator of the probability-flow ODE; ``eta = 1``, ancestral sampling, whose fresh noise is
a new draw of the same field) or DPM-Solver++(2M) (``solver="dpm2m"``, second order).
"""

from __future__ import annotations

from typing import Callable, Literal

import torch
from torch import Tensor, nn

from ..pointset import PointSet
from ..processes.noise import FunctionNoise
from ..processes.schedules import ScheduleName, make_schedule
from ..samplers import Callback, DenoiserGuide, GaussianPath, ModelFn, as_scales, ddim, dpm_solver_2m, time_grid
from .base import Method, bind_mask, checked_snr_offset, masked_mean, min_snr_weight, stratified_times

__all__ = ["FunctionalDiffusion"]

Prediction = Literal["x0", "eps", "v"]
Solver = Literal["ddim", "dpm2m"]


class FunctionalDiffusion(Method):
    """Diffusion on functions with resolution-free Gaussian-random-field noise.

    Args:
        noise: the driving field ``xi`` (law independent of the number of points).
        schedule: ``cosine`` or ``linear`` variance-preserving schedule.
        prediction: what the network outputs: ``x0`` (the FDP paper's choice), ``eps`` (the noise
            function) or ``v = alpha eps - sigma x0``.
        steps: default number of sampler steps.
        eta: DDIM stochasticity, 0 = probability-flow ODE, 1 = ancestral sampling.
        solver: ``ddim`` (first order, any ``eta``) or ``dpm2m`` (second-order multistep solver of the
            probability-flow ODE, needs ``eta = 0``; same cost per step, second-order discretisation
            error).
        clip_x0: clamp predicted ``x0`` to ``[-clip_x0, clip_x0]`` while sampling (None: never).
        t_min: smallest training time (avoids the degenerate ``sigma = 0``).
        loss_space: ``x0``: mean squared error between the predicted and the true ``x0`` function,
            whatever the parametrisation (the FDP objective; with ``prediction="v"`` this is the
            v-loss weighted by ``sigma^2``); ``target``: mean squared error on the raw network target.
            With ``prediction="v"`` this is the x0 loss weighted by ``1 + SNR(t)``, so small ``t``,
            where the fine and mid-scale detail is resolved, weighs more. It carries an irreducible
            error at small ``t`` (the low-frequency part of ``xi`` is unidentifiable there), which only
            adds a constant to the loss. The two are compared on grf1d in docs/results/extra.md.
        snr_gamma: Min-SNR-gamma weighting (Hang et al., ICCV 2023, eq. 6) of the x0-space loss: each
            function's squared x0 error is weighted by ``min(SNR(t), gamma) / gamma`` with
            ``SNR = alpha^2 / sigma^2``, so the low-SNR levels, whose x0 error is large and mostly
            irreducible, no longer dominate the gradient, and every level with ``SNR >= gamma`` keeps
            the plain x0 loss. None (default): the unweighted loss of ``loss_space``. Needs
            ``loss_space="x0"``.
        snr_offset: with ``snr_gamma``, the weight is ``min(SNR(t) + snr_offset, gamma) / gamma``.
            ``1`` truncates the v loss's x0 weight ``1 + SNR`` at ``gamma``: the high-noise levels, which
            fix the data's large-variance directions, keep the weight ``1 / gamma`` instead of falling to 0
            with ``SNR``. Default 0 (Min-SNR-gamma).
    """

    def __init__(self, noise: FunctionNoise, schedule: ScheduleName = "cosine", prediction: Prediction = "v",
                 steps: int = 100, eta: float = 0.0, clip_x0: float | None = None, t_min: float = 1e-3,
                 loss_space: Literal["x0", "target"] = "x0", solver: Solver = "ddim",
                 snr_gamma: float | None = None, snr_offset: float = 0.0) -> None:
        if prediction not in ("x0", "eps", "v"):
            raise ValueError(f"unknown prediction {prediction!r}; choose x0, eps or v")
        if solver not in ("ddim", "dpm2m"):
            raise ValueError(f"unknown solver {solver!r}; choose ddim or dpm2m")
        if solver == "dpm2m" and eta != 0.0:
            raise ValueError(f"solver='dpm2m' integrates the probability-flow ODE and needs eta=0; got eta={eta} "
                             "(use solver='ddim' for stochastic sampling)")
        if steps <= 0 or not 0.0 <= eta <= 1.0:
            raise ValueError(f"need steps > 0 and 0 <= eta <= 1; got steps={steps}, eta={eta}")
        self.noise = noise
        self.schedule = make_schedule(schedule)
        self.prediction = prediction
        if loss_space not in ("x0", "target"):
            raise ValueError(f"unknown loss_space {loss_space!r}; choose x0 or target")
        self.steps, self.eta, self.clip_x0, self.t_min = int(steps), float(eta), clip_x0, float(t_min)
        self.loss_space = loss_space
        self.solver = solver
        if snr_gamma is not None and not (snr_gamma > 0 and loss_space == "x0"):
            raise ValueError(f"snr_gamma (Min-SNR weighting of the x0 loss) needs snr_gamma > 0 and loss_space='x0'; "
                             f"got snr_gamma={snr_gamma}, loss_space={loss_space!r}")
        self.snr_gamma = None if snr_gamma is None else float(snr_gamma)
        self.snr_offset = checked_snr_offset(snr_offset, snr_gamma)

    # ----------------------------------------------------------------- forward process
    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``alpha(t), sigma(t)`` shaped ``[B, 1, 1]`` for ``t`` ``[B]``."""
        return self.schedule.alpha(t)[:, None, None], self.schedule.sigma(t)[:, None, None]

    def perturb(self, x0: Tensor, coords: Tensor, t: Tensor,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Draw ``x_t = alpha x0 + sigma xi`` -> ``(x_t, xi)``, both ``[B, N, c]``."""
        xi = self.noise.sample(coords, x0.shape[-1], generator)
        a, s = self.marginal(t)
        return a * x0 + s * xi, xi

    def target(self, x0: Tensor, xi: Tensor, t: Tensor) -> Tensor:
        a, s = self.marginal(t)
        return {"x0": x0, "eps": xi, "v": a * xi - s * x0}[self.prediction]

    def _to_x0(self, out: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """Network output in the chosen parametrisation -> predicted ``x0``."""
        a, s = self.marginal(t)
        if self.prediction == "x0":
            return out
        if self.prediction == "eps":
            return (x_t - s * out) / a
        return a * x_t - s * out

    def denoise(self, net: nn.Module | Callable[[Tensor, Tensor, Tensor], Tensor], coords: Tensor, x_t: Tensor,
                t: Tensor) -> tuple[Tensor, Tensor]:
        """Network call turned into ``(x0_hat, eps_hat)``, each ``[B, N, c]``."""
        x0 = self._to_x0(net(coords, x_t, t), x_t, t)
        a, s = self.marginal(t)
        if self.clip_x0 is not None:
            x0 = x0.clamp(-self.clip_x0, self.clip_x0)
        eps = (x_t - a * x0) / s
        return x0, eps

    # ----------------------------------------------------------------- hooks for variants
    def training_points(self, batch: PointSet, generator: torch.Generator | None = None) -> PointSet:
        """The points the loss is evaluated at (all of them here; a random query set in MDF)."""
        return batch

    def network(self, net: nn.Module, coords: Tensor, x_t: Tensor,
                generator: torch.Generator | None = None) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
        """The callable ``(coords, x_t, t) -> output`` used for one loss or sampler step (``net`` itself
        here; MDF binds a random context subset of the current state)."""
        return net

    # ----------------------------------------------------------------- training
    def train_times(self, b: int, like: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Stratified training times ``[B]`` in ``[t_min, 1]`` (one uniform offset, B evenly spaced strata,
        shuffled: a lower-variance loss), with ``like``'s dtype and device."""
        t = stratified_times(b, generator, like.device).to(like.dtype)
        return self.t_min + (1.0 - self.t_min) * t

    def loss(self, net: nn.Module, batch: PointSet,
             generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        batch = self.training_points(batch, generator)
        t = self.train_times(batch.batch_size, batch.values, generator)
        x_t, xi = self.perturb(batch.values, batch.coords, t, generator)
        f = bind_mask(self.network(net, batch.coords, x_t, generator), batch.mask)
        if self.loss_space == "x0":
            residual = self._to_x0(f(batch.coords, x_t, t), x_t, t) - batch.values
        else:
            residual = f(batch.coords, x_t, t) - self.target(batch.values, xi, t)
        per_fn = masked_mean(residual**2, batch.mask)
        return (per_fn * self.loss_weight(t)).mean(), {}

    def loss_weight(self, t: Tensor) -> Tensor:
        """Per-function loss weight ``[B]`` at times ``t`` ``[B]``: ``min(SNR(t) + snr_offset, gamma) / gamma``
        with ``snr_gamma`` (Min-SNR-gamma), else 1."""
        if self.snr_gamma is None:
            return torch.ones_like(t)
        a, s = self.marginal(t)
        return min_snr_weight((a / s).flatten() ** 2, self.snr_gamma, self.snr_offset)

    # ----------------------------------------------------------------- sampling
    def denoiser(self, net: nn.Module, coords: Tensor,
                 generator: torch.Generator | None = None) -> ModelFn:
        """The sampler's model callable ``D(x, t) -> x0_hat`` ``[B, N, c]`` at the query points ``coords``."""
        def denoise(x: Tensor, t: float) -> Tensor:
            tt = torch.full((coords.shape[0],), t, device=coords.device, dtype=coords.dtype)
            return self.denoise(self.network(net, coords, x, generator), coords, x, tt)[0]

        return denoise

    def gaussian_path(self) -> GaussianPath:
        """``x_t = alpha(t) x0 + sigma(t) xi`` from ``t_min`` (the smallest trained time) to 1 (the prior)."""
        return GaussianPath(as_scales(self.schedule), self.noise, self.t_min, 1.0)

    @property
    def repeats_steps(self) -> bool:
        """Whether ``sample(..., resample=r)`` can repeat steps: DDIM / ancestral yes, multistep ``dpm2m`` no."""
        return self.solver == "ddim"

    @torch.no_grad()
    def sample(self, net: nn.Module, coords: Tensor, channels: int, *,
               generator: torch.Generator | None = None, steps: int | None = None,
               progress: bool = False, callback: Callback | None = None,
               guide: DenoiserGuide | None = None, resample: int = 1) -> Tensor:
        """Draw ``[B, N, channels]`` at ``coords`` ``[B, N, d]``; ``guide`` turns the denoiser into a conditional
        one (posterior sampling, :mod:`funcgen.samplers.guidance`: Tweedie-moment guidance, chosen for the
        measured exactness on Gaussian data, docs/conditioning.md); ``resample > 1`` repeats each DDIM step with
        the state carried back between repeats (RePaint resampling, :func:`funcgen.samplers.ddim`; not with
        ``solver="dpm2m"``)."""
        ts = time_grid(self.resolve_steps(steps))
        x = self.noise.sample(coords, channels, generator)
        denoise = self.denoiser(net, coords, generator)
        if guide is not None:
            denoise = guide(denoise)
        if self.solver == "dpm2m":
            if resample != 1:
                raise ValueError(f"resample={resample!r} repeats DDIM steps; solver='dpm2m' is multistep and takes "
                                 "none (use solver='ddim')")
            return dpm_solver_2m(denoise, self.schedule, x, ts, callback=callback, progress=progress)
        return ddim(denoise, self.schedule, x, ts, eta=self.eta, callback=callback, progress=progress,
                    noise=lambda: self.noise.sample(coords, channels, generator), resample=resample)
