"""infty-Diff (Bond-Taylor & Willcocks, ICLR 2024): mollified diffusion trained on random coordinate subsets.

Mollified states (paper eq. 6-8), with ``T`` the heat-kernel blur of std ``width`` in physical units
(:mod:`funcgen.processes.mollify`) and ``xi`` white noise of unit variance per cell of side
``noise_cell`` (the paper's ``randn`` per pixel of the training grid):

    x_t = T(sqrt(abar_t) x0 + sqrt(1 - abar_t) xi) = alpha_t T x0 + sigma_t T xi,
    x_t | x0 ~ GP(alpha_t T x0, sigma_t^2 C),   C(x, y) = noise_cell^d heat kernel of std sqrt(2) width.

With a 1-pixel mollifier the noise has per-point variance ``(4 pi)^(-d/2)`` (about 0.08 in 2-D), so the
signal-to-noise ratio of the data sweeps the cosine schedule as in the paper. ``T xi`` is trace-class
(a Gaussian random field whose covariance is a Gaussian kernel of physical width) and ``noise_cell``
is a physical length, so the law is the same at every resolution: at ``r`` times the training
resolution the blur spans ``r`` pixels and each pixel's white noise is ``r^d`` times stronger, which
the mollifier handles by construction.

Training: mollify data and noise on the dense grid FIRST (a DCT, exact for the discretised
operator), then gather a random subset of the points per function, without replacement, at rate
``subsample``; the network sees only the subset and regresses the mollified noise ``T xi``
("mollified epsilon", the paper's parametrisation) with plain MSE, the mean over the subset: a Monte
Carlo estimate of the ``L^2(Omega)`` norm of the residual, unbiased for any rate when the prediction at
a point does not depend on which other points are present.

**Parametrisation** (``prediction``). The mollified noise ``T xi`` carries detail down to the mollifier's
width; a backbone that builds its output on a coarser grid (the SNO with a grid U-Net) cannot represent that
detail, so an ``eps`` network leaves it unpredicted, and the sampler's ``x0 = (x_t - sigma eps)/alpha`` turns
it into high-frequency residue amplified by ``sigma / alpha`` (large at high noise). With ``x0`` prediction
the network outputs the smooth ``T x0`` and the noise estimate ``(x_t - alpha x0)/sigma`` keeps every detail
of ``x_t``; ``v = alpha eps - sigma x0`` bounds the amplification by ``alpha sigma <= 1/2``. ``loss_space``
as in :class:`FunctionalDiffusion` (``target``: MSE on the network's own target, the paper's loss for
``eps``; ``x0``: MSE of the implied ``T x0``).

Sampling (any coordinates): the prior is a draw of the mollified field at the query points and the
updates are :class:`FunctionalDiffusion`'s DDIM steps on respaced times (``eta = 0``: DDIM,
``eta = 1``: ancestral), whose fresh noise is again the mollified field, so the sampler's law is
unchanged across resolutions. Samples are of ``T x0``; :meth:`InftyDiff.deconvolve` applies the
Wiener filter ``X G / (G^2 + eps^2)`` for display and metrics (:meth:`InftyDiff.decode`, applied by
:meth:`funcgen.generator.FunctionGenerator.sample` on grids unless ``decode=False``).

Large resolutions: the prior and the fresh noise are DCTs on the grid (``O(N log N)``), and with
:class:`funcgen.nets.SparseNeuralOperator` each network call is exact layer-by-layer passes over the
points in chunks (local integrals by FFT on grids or by cell-grid neighbours; the coarse grid is
built in one pass that reads the features at its nodes' nearest points), so the chunk sizes do
not change the sample and peak memory is a few ``[N, width]`` buffers (measured by
``funcgen bench sample-scaling --method inftydiff``).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from ..pointset import PointSet, random_subset, shared_grid_shape
from ..processes.mollify import MollifiedNoise, mollify, require_grid, wiener_deconvolve
from ..processes.schedules import ScheduleName
from .base import masked_mean
from .fdp import FunctionalDiffusion, Prediction

__all__ = ["InftyDiff"]


class InftyDiff(FunctionalDiffusion):
    """infty-Diff: mollified-noise diffusion trained on coordinate subsets (epsilon-prediction in the paper).

    Args:
        width: std of the Gaussian mollifier in physical units of ``[0, 1]^d`` (the paper: 1 pixel at
            the training resolution, e.g. ``1/32`` at 32x32).
        dim: dimension ``d`` of the domain.
        subsample: fraction of each function's grid points used per training step (1, 1/2, 1/4, 1/8,
            ...), drawn without replacement, a fresh subset per function and step.
        schedule: ``cosine`` (the paper's) or ``linear``.
        steps: default number of respaced sampler steps.
        eta: 0 = DDIM (probability-flow ODE), 1 = ancestral sampling.
        clip_x0: clamp the predicted ``T x0`` while sampling (None: never; not needed at the paper's
            noise scale).
        t_min: smallest training time.
        wiener_eps: regulariser ``eps`` of the Wiener deconvolution in :meth:`deconvolve` (paper 0.05).
        noise_cell: side, in physical units, of the cell on which the driving white noise has unit
            variance. None: ``width``, the paper's convention (unit-variance noise per pixel of the
            training grid, blurred by one pixel). Models exported before this argument existed were
            trained with ``1.0`` (white noise of unit intensity on the unit cube, ``1/width^d`` times
            stronger) and load with it.
        prediction: the network's output, ``eps`` (the paper's, default), ``x0`` or ``v`` (module docstring).
        loss_space: ``target`` (MSE on the network's target, default) or ``x0`` (MSE of the implied ``T x0``).
        snr_gamma: Min-SNR-gamma weighting of the x0 loss, as in :class:`FunctionalDiffusion`.
    """

    #: exports written before ``noise_cell`` existed drew physical white noise on the unit cube
    LEGACY_DEFAULTS = {"noise_cell": 1.0}

    def __init__(self, width: float = 1.0 / 32, dim: int = 2, subsample: float = 0.25,
                 schedule: ScheduleName = "cosine", steps: int = 100, eta: float = 0.0,
                 clip_x0: float | None = None, t_min: float = 1e-3, wiener_eps: float = 0.05,
                 noise_cell: float | None = None, prediction: Prediction = "eps",
                 loss_space: Literal["x0", "target"] = "target", snr_gamma: float | None = None) -> None:
        if not 0.0 < subsample <= 1.0:
            raise ValueError(f"subsample rate must lie in (0, 1] (e.g. 1, 0.5, 0.25, 0.125); got {subsample}")
        if not wiener_eps > 0:
            raise ValueError(f"wiener_eps must be positive; got {wiener_eps}")
        if noise_cell is not None and not noise_cell > 0:
            raise ValueError(f"noise_cell must be positive (a length of [0, 1]^d) or None; got {noise_cell}")
        self.noise_cell = float(width if noise_cell is None else noise_cell)
        super().__init__(MollifiedNoise(width, dim, cell=self.noise_cell), schedule=schedule, prediction=prediction,
                         steps=steps, eta=eta, clip_x0=clip_x0, t_min=t_min, loss_space=loss_space,
                         snr_gamma=snr_gamma)
        self.width, self.dim = float(width), int(dim)
        self.subsample, self.wiener_eps = float(subsample), float(wiener_eps)

    def perturb(self, x0: Tensor, coords: Tensor, t: Tensor,
                     generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``(x_t, T xi)`` on the dense grid, each ``[B, N, c]``: ``x_t = alpha T x0 + sigma T xi``.

        Overrides :meth:`FunctionalDiffusion.perturb`: the data are mollified too, so ``coords``
        ``[B, N, d]`` must be one full cell-centre grid shared by the batch.
        """
        require_grid(coords, "InftyDiff")
        return super().perturb(mollify(x0, coords, self.width), coords, t, generator)

    def loss(self, net: nn.Module, batch: PointSet,
             generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        if batch.mask is not None and not bool(batch.mask.all()):
            raise ValueError("InftyDiff trains on full grids: a batch with masked-out points cannot be mollified")
        if batch.dim != self.dim:
            raise ValueError(f"InftyDiff built for dim={self.dim} got a batch with d={batch.dim}")
        t = self.train_times(batch.batch_size, batch.values, generator)
        require_grid(batch.coords, "InftyDiff")
        tx0 = mollify(batch.values, batch.coords, self.width)
        x_t, xi = super().perturb(tx0, batch.coords, t, generator)  # the mollified data, perturbed
        c = batch.channels
        want = tx0 if self.loss_space == "x0" else self.target(tx0, xi, t)
        sub = random_subset(PointSet(batch.coords, torch.cat([x_t, want], dim=-1)), self.subsample, generator)
        out = net(sub.coords, sub.values[..., :c], t)
        residual = (self._to_x0(out, sub.values[..., :c], t) if self.loss_space == "x0" else out) - sub.values[..., c:]
        return (masked_mean(residual**2, None) * self.loss_weight(t)).mean(), {}

    def deconvolve(self, values: Tensor, coords: Tensor) -> Tensor:
        """Wiener-filtered samples ``[B, N, c]`` (undo ``T`` for display/metrics) on a full grid ``coords``."""
        return wiener_deconvolve(values, coords, self.width, self.wiener_eps)

    def decode(self, values: Tensor, coords: Tensor) -> Tensor:
        """:meth:`deconvolve` where ``coords`` ``[B, N, d]`` is one full cell-centre grid; elsewhere the
        samples of ``T x0`` unchanged (no dense grid to deconvolve on). ``[B, N, c]``."""
        if shared_grid_shape(coords) is not None:
            return self.deconvolve(values, coords)
        return values
