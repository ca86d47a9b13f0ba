"""``funcgen demo``: the main job on a fresh machine.

Trains a small functional-diffusion model on procedural 2D "blob" images at 32x32 for a few CPU
minutes (with a progress bar), then samples at the training resolution and at 4x (128x128), and
writes side-by-side pictures (generated above, exact samples below, every tile at least 96 px), the
exported model and a summary that compares the samples with exact ones drawn at the same points:

* the error of the radially averaged log power spectrum (:func:`funcgen.metrics.spectrum_error`,
  ``kind="log"``) and the ratio of the mean per-pixel std (generated / exact);
* the floor of each: the same statistic between independent exact sets of the same size (median
  over three pairs), what a perfect generator would score.

The recipe: a sparse neural operator whose coarse stage is a grid U-Net
(:class:`funcgen.nets.SparseNeuralOperator`, normalised kernel read-in, the grid backbone for 2D
data), squared-exponential noise of about the blobs' width (lengthscale 0.14) band-limited to the
coarse grid's Nyquist frequency, x0-loss with v-prediction, training points jittered inside their
pixels (so the model never sees only one grid). Noise with the data's smoothness puts little noise
where the data have little power, so the network's residual error there is small too; the FDP
paper's nearly white spectrum (``noise_lengthscale=None``) leaves the samples speckled at
wavenumbers 5-16 after a few CPU minutes.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["run_demo", "demo_statistics", "side_by_side"]

RES = 32  # training resolution
GRID = 16  # the SNO's grid (cells per axis); see run_demo's ``grid``
NOISE_LENGTHSCALE = 0.14  # the SE noise's lengthscale; see run_demo's ``noise_lengthscale``


def demo_statistics(samples: torch.Tensor, exact: list[torch.Tensor], shape: tuple[int, int]) -> dict[str, float]:
    """Spectrum error and std ratio of ``samples`` ``[S, N, 1]`` against ``exact[0]``, and their floors
    (the median over ``exact[1:]`` against ``exact[0]``); every set ``[S, N, 1]`` on the grid ``shape``."""
    from ..metrics.spectrum import spectrum_error
    from ..pointset import pointset_to_grid

    def grid(x: torch.Tensor) -> torch.Tensor:
        return pointset_to_grid(x.double(), shape)[:, 0]

    def std(x: torch.Tensor) -> float:
        return float(x.double().std(0).mean())

    ref = grid(exact[0])
    spec = [spectrum_error(grid(e), ref, kind="log") for e in exact[1:]]
    ratio = [std(e) / std(exact[0]) for e in exact[1:]]
    return {"spec_err": spectrum_error(grid(samples), ref, kind="log"),
            "floor_spec_err": float(np.median(spec)),
            "std_ratio": std(samples) / std(exact[0]),
            "floor_std_ratio_spread": float(np.max(np.abs(np.array(ratio) - 1.0))),
            "mean_abs_err": float((samples.mean(0) - exact[0].mean(0)).abs().mean())}


def side_by_side(generated: torch.Tensor, exact: torch.Tensor, shape: tuple[int, int], title: str = "",
                 tile_px: int = 112, ncol: int = 8) -> np.ndarray:
    """RGB picture ``[H, W, 3]``: the first ``ncol`` ``generated`` functions (``[B, N, 1]`` on the grid
    ``shape``) in the top row, ``exact`` ones in the bottom row, every tile ``tile_px`` pixels wide, one
    colour scale (the data range ``[-1, 1]``) with its colour bar."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from ..pointset import pointset_to_grid

    k = min(ncol, generated.shape[0], exact.shape[0])
    dpi, inch = 80, tile_px / 80
    fig, axes = plt.subplots(2, k, figsize=(inch * k + 1.2, 2 * inch + 0.7), dpi=dpi, squeeze=False,
                             layout="constrained")
    im = None
    for row, (vals, label) in enumerate(((generated, "generated"), (exact, "exact"))):
        img = pointset_to_grid(vals[:k].detach().float().cpu(), shape)[:, 0]
        for c in range(k):
            ax = axes[row, c]
            ax.set_axis_off()
            im = ax.imshow(img[c].numpy(), cmap="viridis", vmin=-1.0, vmax=1.0, interpolation="nearest")
        axes[row, 0].set_title(label, fontsize=9, loc="left")
    fig.colorbar(im, ax=axes, shrink=0.9, fraction=0.05, pad=0.02)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return rgb


def run_demo(out_dir: str | os.PathLike = "demo_out", minutes: float = 5.0, logger: str = "wandb",
             max_steps: int | None = None, num_samples: int = 64, seed: int = 0,
             sample_steps: int = 25, grid: int = GRID,
             noise_lengthscale: float | None = NOISE_LENGTHSCALE, threads: int | None = 1) -> dict[str, Any]:
    """Train for ``minutes`` CPU minutes of this process (or ``max_steps``), sample ``num_samples`` at 32x32
    and 128x128, write ``samples_32.png``, ``samples_128.png`` (generated above exact), ``model.safetensors``
    and ``summary.json`` / ``summary.md`` under ``out_dir``. Returns the summary dict.

    ``grid``: cells per axis of the sparse neural operator's grid U-Net (the noise keeps ``grid // 2`` modes).
    ``noise_lengthscale``: lengthscale ``l`` of the squared-exponential noise spectrum
    ``exp(-|w|^2 l^2 / 2)`` (:class:`funcgen.processes.noise.SpectralNoise`); None: the FDP paper's spectrum.
    ``threads``: torch threads while training (None: leave torch's setting). The budget counts the CPU time of
    every thread, and this small model trains the most steps per CPU second on one.
    The samples are the grid's multilinear interpolation plus point-wise terms, so the grid bounds how close
    their spectrum can come to the data's (``scripts/demo_grid_bound.py`` measures the bound with exact blobs
    at the nodes); a finer grid costs more CPU per step."""
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    import lightning as L

    from ..data import ProceduralImageDataModule
    from ..methods import FunctionalDiffusion
    from ..nets import SparseNeuralOperator
    from ..processes.noise import SpectralNoise
    from ..train.budget import CpuTimeBudget
    from ..train.module import GenerativeModule
    from ..train.tracking import default_logger, log_image, log_metrics
    from ..viz.plotting import save_png

    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1 (or None for torch's setting); got {threads}")
    if num_samples < 2:
        raise ValueError(f"num_samples must be >= 2 (a per-pixel std needs two samples); got {num_samples}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(seed, verbose=False)
    data = ProceduralImageDataModule(family="blobs", resolution=RES, num_train=20000, num_val=256,
                                     batch_size=32, seed=seed, coords="jitter")
    # the noise is band-limited to the coarse grid's Nyquist frequency (GRID // 2 cycles): the grid U-Net
    # resolves every noised mode, and finer detail (blobs have almost none) passes through the point path;
    # its spectrum falls off like the blobs' (module docstring)
    noise = (SpectralNoise(2, "fdp", modes=grid // 2) if noise_lengthscale is None
             else SpectralNoise(2, "se", modes=grid // 2, lengthscale=noise_lengthscale))
    method = FunctionalDiffusion(noise, prediction="v", loss_space="x0",
                                 steps=sample_steps, clip_x0=1.0)
    net = SparseNeuralOperator(dim=2, in_channels=1, out_channels=1, width=32, radius=0.07, grid_size=grid,
                               depth=0, grid_net="unet", grid_mults=(1, 2, 2), grid_blocks=1, grid_attention=True,
                               chunk=16384)
    module = GenerativeModule(method, net, lr=1e-3, warmup_steps=100, ema_decay=0.995,
                              val_num_samples=8, val_steps=sample_steps)
    run_logger = default_logger(out / "runs", name="demo", kind=logger)
    budget = CpuTimeBudget(minutes)
    trainer = L.Trainer(max_steps=max_steps or -1, logger=run_logger, callbacks=[budget],
                        gradient_clip_val=1.0, limit_val_batches=0, enable_checkpointing=False,
                        default_root_dir=str(out), log_every_n_steps=20)
    t0, threads_before = time.time(), torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        trainer.fit(module, datamodule=data)
    finally:
        torch.set_num_threads(threads_before)
    train_seconds = time.time() - t0

    gen = module.generator()
    gen.save(out / "model.safetensors")
    summary: dict[str, Any] = {"train_steps": int(trainer.global_step), "train_seconds": round(train_seconds, 1),
                               "train_cpu_seconds": round(budget.spent(), 1), "num_samples": num_samples,
                               "train_threads": threads or threads_before,
                               "files": {}}
    for factor in (1, 4):
        r = RES * factor
        t1 = time.process_time()
        ps = gen.sample(num_samples, r, seed=seed, denormalize=False, progress=True)
        sample_seconds = time.process_time() - t1
        exact = [data.reference(ps.coords, torch.Generator().manual_seed(seed + 1 + k)) for k in range(4)]
        stats: dict[str, Any] = demo_statistics(ps.values, exact, (r, r))
        stats["sample_cpu_seconds"] = round(sample_seconds, 1)
        stats["value_range"] = [float(ps.values.min()), float(ps.values.max())]
        summary[f"{r}x{r}"] = stats
        rgb = side_by_side(ps.values, exact[0], (r, r), title=f"blobs at {r}x{r}: generated (step "
                           f"{trainer.global_step}) above, exact below")
        path = save_png(rgb, out / f"samples_{r}.png")
        log_image(run_logger, f"demo/samples_{r}x{r}", rgb, trainer.global_step)
        summary["files"][f"samples_{r}"] = str(path)
        log_metrics(run_logger, {f"demo/{k}@{r}": v for k, v in stats.items() if isinstance(v, float)},
                    trainer.global_step)
    summary["files"]["model"] = str(out / "model.safetensors")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    lines = ["# funcgen demo", "",
             f"Trained {summary['train_steps']} steps in {summary['train_cpu_seconds']} CPU s on "
             f"{summary['train_threads']} thread(s) "
             f"({summary['train_seconds']} s wall): functional diffusion, sparse neural operator with a grid U-Net, "
             f"procedural blobs at {RES}x{RES}. {num_samples} samples per resolution against exact samples at the "
             "same points; the floor is what independent exact sets of the same size score (the median of three "
             "pairs), so a ratio near or below 1 is as close as the evaluation can tell.", "",
             "| resolution | log-spectrum error | exact floor | ratio to floor | std ratio (generated / exact) "
             "| exact sets' std ratio within | sample CPU s |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in (RES, 4 * RES):
        s = summary[f"{r}x{r}"]
        lines.append(f"| {r}x{r} | {s['spec_err']:.3f} | {s['floor_spec_err']:.3f} | "
                     f"{s['spec_err'] / max(s['floor_spec_err'], 1e-12):.2f} | {s['std_ratio']:.3f} | "
                     f"1 +- {s['floor_std_ratio_spread']:.3f} | {s['sample_cpu_seconds']} |")
    lines += ["", "Pictures: samples_32.png, samples_128.png (generated above, exact below).",
              "Sample again at any resolution: `funcgen sample --ckpt "
              f"{out / 'model.safetensors'} --resolution 256 --num 8 --out {out / 'hires'}`"]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    if hasattr(run_logger, "experiment") and logger == "wandb":
        import wandb

        wandb.finish()
    return summary
