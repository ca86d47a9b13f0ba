"""Functional Flow Matching (Kerrigan, Migliorini & Smyth, AISTATS 2024).

A flow between a Gaussian measure ``mu_0 = N(0, C)`` on functions (the source ``noise``, whose law does
not depend on the number of points, :mod:`funcgen.processes.noise`) and the data measure ``mu_1``.
Conditioned on a data function ``x_1``, the Gaussian path ``mu_t(. | x_1) = N(t x_1, b(t)^2 C)`` is
traced by the straight interpolation from a source draw ``x_0 ~ mu_0``:

    x_t = t x_1 + b(t) x_0,          b(t) = 1 - (1 - sigma_min) t,
    u_t(x_t | x_1) = d x_t / dt = x_1 - (1 - sigma_min) x_0,

so ``x_t`` runs from ``x_0`` at ``t = 0`` to ``x_1 + sigma_min x_0`` at ``t = 1``. The network ``v(x, t)``
regresses the conditional velocity; the minimiser is the marginal velocity ``E[u_t | x_t]``, whose flow
carries ``mu_0`` to ``mu_1 * N(0, sigma_min^2 C)`` (FFM's conditional-to-marginal theorem in function space):

    L = E_{t, x_0, x_1} || v(x_t, t) - u_t(x_t | x_1) ||^2_{L^2(Omega)},

the ``L^2`` norm estimated by the mean over the points (:func:`funcgen.methods.base.masked_mean`), so
training and sampling run on any coordinates. Sampling draws ``x_0`` at the query points and integrates
``dx/dt = v(x, t)`` from ``t = 0`` to ``1`` with :func:`funcgen.samplers.flow_ode`, or (``solver="ddim"``) takes
DDIM / ancestral steps on the same Gaussian path (``alpha = t``, ``sigma = b(t)``, :func:`funcgen.samplers.ddim`)
from the denoiser ``E[x_1 | x_t] = b(t) v + (1 - sigma_min) x_t``: with ``eta = 0`` a first-order integrator of the
same flow, with ``eta > 0`` stochastic, and able to repeat steps (``resample``, for posterior sampling).

**Parametrisation** (``prediction``). ``velocity`` (the paper's): the network is ``v``. ``data``: the network is the
denoiser ``D(x, t) = E[x_1 | x_t = x]`` and the velocity follows from the path, ``v = (D - (1 - sigma_min) x) / b(t)``.
The two are one objective up to its weighting, since ``v - u_t = (D - x_1) / b(t)``; ``data`` regresses
``|D - x_1|^2``, times ``min(SNR, gamma) / gamma`` with ``SNR = t^2 / b(t)^2`` when ``snr_gamma`` is set (Min-SNR,
as :class:`funcgen.methods.FunctionalDiffusion` weights its x0 loss). Where the data have no variance the exact
``D`` is 0, which a smooth network output gives by itself, whereas a velocity network must reproduce
``-(1 - sigma_min)`` times the state's source component there, and what it misses stays in the samples.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from ..pointset import PointSet
from ..processes.noise import FunctionNoise
from ..rng import rand
from ..samplers import Callback, DenoiserGuide, GaussianPath, ModelFn, ddim, flow_ode
from .base import Method, bind_mask, checked_snr_offset, masked_mean, min_snr_weight, stratified_times

__all__ = ["FunctionalFlowMatching"]

TimeSampling = Literal["stratified", "uniform"]
FlowSolver = Literal["euler", "heun", "midpoint", "ddim"]
FlowPrediction = Literal["velocity", "data"]


class FunctionalFlowMatching(Method):
    """Flow matching between a Gaussian measure on functions and the data.

    Args:
        noise: the source ``mu_0 = N(0, C)``, a Gaussian field (e.g. ``SpectralNoise``,
            ``GaussianRandomField``) drawn at the batch's or the query's coordinates.
        sigma_min: width of the conditional path at ``t = 1``, in ``[0, 1)``: the flow's samples are
            the data plus ``sigma_min`` times a source draw.
        steps: default number of ODE steps (``steps`` network evaluations with ``euler``, twice that
            with ``heun`` or ``midpoint``).
        solver: ``euler`` (first order), ``heun`` or ``midpoint`` (second order) on the flow ODE, or ``ddim``
            (steps of the Gaussian path, module docstring).
        eta: ``ddim`` only: 0 (deterministic, the flow) to 1 (ancestral).
        time_sampling: training times ``t ~ U[0, 1)``: ``stratified`` (one offset, evenly spaced
            strata per batch, :func:`funcgen.methods.base.stratified_times`) or i.i.d. ``uniform``.
        prediction: the network's output, ``velocity`` (the paper's) or ``data`` (``E[x_1 | x_t]``; module
            docstring). ``data`` does not take ``heun``, whose last evaluation at ``t = 1`` divides by ``sigma_min``.
        snr_gamma: ``prediction="data"`` only: Min-SNR-gamma weight of the data error (None: unweighted).
        snr_offset: with ``snr_gamma``, the weight is ``min(SNR + snr_offset, gamma) / gamma`` (as in
            :class:`funcgen.methods.FunctionalDiffusion`: ``1`` keeps the high-noise times at ``1 / gamma``).
    """

    def __init__(self, noise: FunctionNoise, sigma_min: float = 1e-4, steps: int = 50, solver: FlowSolver = "heun",
                 time_sampling: TimeSampling = "stratified", eta: float = 0.0,
                 prediction: FlowPrediction = "velocity", snr_gamma: float | None = None,
                 snr_offset: float = 0.0) -> None:
        if not isinstance(noise, FunctionNoise):
            raise TypeError(f"noise must be a FunctionNoise (the Gaussian source); got {type(noise).__name__}")
        if not 0.0 <= sigma_min < 1.0:
            raise ValueError(f"sigma_min must lie in [0, 1); got {sigma_min}")
        if steps <= 0:
            raise ValueError(f"steps must be positive; got {steps}")
        if solver not in ("euler", "heun", "midpoint", "ddim"):
            raise ValueError(f"unknown solver {solver!r}; choose euler, heun, midpoint or ddim")
        if not 0.0 <= eta <= 1.0 or (eta > 0 and solver != "ddim"):
            raise ValueError(f"eta must lie in [0, 1] and is taken by solver='ddim' only; got eta={eta}, "
                             f"solver={solver!r}")
        if time_sampling not in ("stratified", "uniform"):
            raise ValueError(f"unknown time_sampling {time_sampling!r}; choose stratified or uniform")
        if prediction not in ("velocity", "data"):
            raise ValueError(f"unknown prediction {prediction!r}; choose velocity or data")
        if prediction == "data" and solver == "heun":
            raise ValueError("prediction='data' cannot use solver='heun': its last evaluation at t = 1 divides the "
                             "velocity by sigma_min; use ddim, midpoint or euler")
        if snr_gamma is not None and not (snr_gamma > 0 and prediction == "data"):
            raise ValueError(f"snr_gamma (Min-SNR weight of the data error) needs snr_gamma > 0 and "
                             f"prediction='data'; got snr_gamma={snr_gamma}, prediction={prediction!r}")
        self.snr_offset = checked_snr_offset(snr_offset, snr_gamma)
        self.noise, self.sigma_min, self.steps = noise, float(sigma_min), int(steps)
        self.solver, self.time_sampling, self.eta = solver, time_sampling, float(eta)
        self.prediction, self.snr_gamma = prediction, None if snr_gamma is None else float(snr_gamma)

    def path(self, x0: Tensor, x1: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """The conditional path and its velocity at times ``t`` ``[B]``: ``(x_t, u_t)``, each ``[B, N, c]``,
        for source draws ``x0`` and data ``x1`` ``[B, N, c]``."""
        t = t.to(x1.dtype)[:, None, None]
        k = 1.0 - self.sigma_min
        return t * x1 + (1.0 - k * t) * x0, x1 - k * x0

    def train_times(self, b: int, like: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Training times ``[B]`` in ``[0, 1)`` with ``like``'s dtype and device."""
        if self.time_sampling == "stratified":
            t = stratified_times(b, generator, like.device)
        else:
            t = rand((b,), generator, device=like.device, dtype=torch.float64)
        return t.to(like.device, like.dtype)

    def loss(self, net: nn.Module, batch: PointSet,
             generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        t = self.train_times(batch.batch_size, batch.values, generator)
        x0 = self.noise.sample(batch.coords, batch.values.shape[-1], generator)
        x_t, u_t = self.path(x0, batch.values, t)
        out = bind_mask(net, batch.mask)(batch.coords, x_t, t)
        if self.prediction == "velocity":
            return masked_mean((out - u_t) ** 2, batch.mask).mean(), {}
        return (masked_mean((out - batch.values) ** 2, batch.mask) * self.loss_weight(t)).mean(), {}

    def loss_weight(self, t: Tensor) -> Tensor:
        """Weight ``[B]`` of the data error at times ``t`` ``[B]``: ``min(SNR + snr_offset, gamma) / gamma`` with
        ``SNR = t^2 / b(t)^2`` under ``snr_gamma``, else 1."""
        if self.snr_gamma is None:
            return torch.ones_like(t)
        return min_snr_weight((t / (1.0 - (1.0 - self.sigma_min) * t)) ** 2, self.snr_gamma, self.snr_offset)

    def _data(self, out: Tensor, x: Tensor, t: float) -> Tensor:
        """``E[x_1 | x_t = x]`` ``[B, N, c]`` from the network's output ``out`` at time ``t``."""
        k = 1.0 - self.sigma_min
        return out if self.prediction == "data" else (1.0 - k * t) * out + k * x

    def _velocity(self, out: Tensor, x: Tensor, t: float) -> Tensor:
        """The velocity ``[B, N, c]`` from the network's output ``out`` at state ``x`` and time ``t``."""
        return out if self.prediction == "velocity" else self._velocity_of_data(out, x, t)

    def _velocity_of_data(self, d: Tensor, x: Tensor, t: float) -> Tensor:
        """The velocity ``(d - (1 - sigma_min) x) / b(t)`` ``[B, N, c]`` of a denoised estimate ``d`` of ``x_1``."""
        k = 1.0 - self.sigma_min
        return (d - k * x) / (1.0 - k * t)

    #: first time of a guided (posterior) sampler and prior end of the likelihood: ``a(t) = t > 0`` there, so the
    #: state carries information about the data and the Tweedie covariance of the guidance is defined
    t_start_guided: float = 1e-3

    def gaussian_path(self) -> GaussianPath:
        """``x_t = t x_1 + (1 - (1 - sigma_min) t) x_0`` (``a = t``, ``s = b(t)``, ``xi`` the source): data at
        ``t = 1``, prior at :attr:`t_start_guided`."""
        k = 1.0 - self.sigma_min
        return GaussianPath(lambda t: (float(t), 1.0 - k * float(t)), self.noise, 1.0, self.t_start_guided)

    def denoiser(self, net: nn.Module, coords: Tensor, generator: torch.Generator | None = None) -> ModelFn:
        """``E[x_1 | x_t = x]`` ``[B, N, c]`` at ``coords`` ``[B, N, d]``: the network itself (``prediction="data"``)
        or ``b(t) v(x, t) + (1 - sigma_min) x`` (the path solved for ``x_1`` with the velocity ``v = E[u_t | x_t]``)."""
        b = coords.shape[0]

        def denoise(x: Tensor, t: float) -> Tensor:
            return self._data(net(coords, x, torch.full((b,), t, device=x.device, dtype=x.dtype)), x, t)

        return denoise

    @property
    def repeats_steps(self) -> bool:
        """Whether ``sample(..., resample=r)`` can repeat steps: ``solver="ddim"`` only."""
        return self.solver == "ddim"

    @torch.no_grad()
    def sample(self, net: nn.Module, coords: Tensor, channels: int, *,
               generator: torch.Generator | None = None, steps: int | None = None,
               progress: bool = False, callback: Callback | None = None,
               guide: DenoiserGuide | None = None, resample: int = 1) -> Tensor:
        """Integrate from a source draw at ``coords`` ``[B, N, d]`` -> ``[B, N, channels]``. With ``guide`` (posterior
        sampling, docs/conditioning.md) the velocity is rebuilt from the guided denoiser,
        ``v_y = (D_y(x, t) - (1 - sigma_min) x) / b(t)``, from ``t = t_start_guided``. ``resample > 1`` repeats each
        step with the state carried back between repeats (RePaint resampling, :func:`funcgen.samplers.ddim`;
        ``solver="ddim"`` only)."""
        t0 = 0.0 if guide is None else self.t_start_guided
        ts = torch.linspace(t0, 1.0, self.resolve_steps(steps) + 1, dtype=torch.float64)
        b = coords.shape[0]

        guided = None if guide is None else guide(self.denoiser(net, coords, generator))
        if self.solver == "ddim":
            denoise = guided if guided is not None else self.denoiser(net, coords, generator)
            return self._sample_ddim(denoise, coords, channels, ts, generator, progress, callback, resample)
        if resample != 1:
            raise ValueError(f"resample={resample!r} repeats DDIM steps; solver={self.solver!r} integrates the flow "
                             "ODE and takes none (use solver='ddim')")

        def velocity(x: Tensor, t: float) -> Tensor:
            if guided is not None:
                return self._velocity_of_data(guided(x, t), x, t)
            return self._velocity(net(coords, x, torch.full((b,), t, device=x.device, dtype=x.dtype)), x, t)

        x = self.noise.sample(coords, channels, generator)
        return flow_ode(velocity, x, ts, solver=self.solver, callback=callback, progress=progress)

    def _sample_ddim(self, denoise: ModelFn, coords: Tensor, channels: int, ts: Tensor,
                     generator: torch.Generator | None, progress: bool, callback: Callback | None,
                     resample: int) -> Tensor:
        """:func:`funcgen.samplers.ddim` over the times ``ts`` ``[K + 1]`` (increasing to 1), run in ``u = 1 - t``
        (the sampler's grids decrease to 0, where it returns the last ``x0_hat``)."""
        path = self.gaussian_path()

        def scales(u: float) -> tuple[float, float]:
            return path.scales(1.0 - u)

        def cb(i: int, u: float, x: Tensor, x0: Tensor) -> Tensor | None:
            return callback(i, 1.0 - u, x, x0)  # type: ignore[misc]

        x = self.noise.sample(coords, channels, generator)
        return ddim(lambda x, u: denoise(x, 1.0 - u), scales, x, 1.0 - ts, eta=self.eta,
                    noise=lambda: self.noise.sample(coords, channels, generator),
                    callback=None if callback is None else cb, progress=progress, resample=resample)

    def nfe(self, steps: int | None = None) -> int:
        """Network evaluations of one sampler call."""
        k = self.resolve_steps(steps)
        return k if self.solver in ("euler", "ddim") else 2 * k
