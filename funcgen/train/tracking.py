"""Experiment tracking: wandb (offline unless the user turns it online), CSV/TensorBoard fallback.

wandb runs land under ``save_dir/wandb`` and can be uploaded later with ``wandb sync``. To log
online, pass ``--trainer.logger.init_args.offline=false`` (and be logged in to wandb). To skip wandb,
use ``--trainer.logger=CSVLogger`` (or ``TensorBoardLogger`` where tensorboard is installed).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["log_image", "log_metrics", "default_logger"]


def _run_dir(logger) -> Path | None:
    for attr in ("log_dir", "save_dir"):
        d = getattr(logger, attr, None)
        if d:
            return Path(d)
    return None


def log_image(logger, key: str, rgb: np.ndarray, step: int, fallback_dir: str | os.PathLike | None = None
              ) -> Path | None:
    """Send an RGB image ``[H, W, 3]`` to the logger's dashboard; also write a PNG beside the run:
    ``RUN/samples/KEY_stepSTEP.png`` with ``RUN`` the logger's folder, or ``fallback_dir`` (e.g. the
    trainer's ``default_root_dir``) when there is no logger or it has no local folder.

    Returns the path of the PNG written (None when neither folder is known).
    """
    from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

    from ..viz.plotting import save_png

    if isinstance(logger, WandbLogger):
        logger.log_image(key=key, images=[rgb], step=step)
    elif isinstance(logger, TensorBoardLogger):
        logger.experiment.add_image(key, rgb, step, dataformats="HWC")
    run_dir = _run_dir(logger) if logger is not None else None
    if run_dir is None:
        if fallback_dir is None:
            return None
        run_dir = Path(fallback_dir)
    return save_png(rgb, run_dir / "samples" / f"{key.replace('/', '_')}_step{step:07d}.png")


def log_metrics(logger, metrics: dict[str, float], step: int) -> None:
    if logger is not None and metrics:
        logger.log_metrics(metrics, step=step)


def default_logger(save_dir: str | os.PathLike = "runs", name: str = "funcgen", kind: str = "wandb",
                   offline: bool = True):
    """The logger ``funcgen demo`` and ``funcgen bench`` use: wandb offline, or CSV when ``kind='csv'``."""
    from lightning.pytorch.loggers import CSVLogger, WandbLogger

    Path(save_dir).mkdir(parents=True, exist_ok=True)
    if kind == "wandb":
        return WandbLogger(project="funcgen", name=name, save_dir=str(save_dir), offline=offline)
    if kind == "csv":
        return CSVLogger(save_dir=str(save_dir), name=name)
    raise ValueError(f"unknown logger kind {kind!r}; choose wandb or csv")
