"""Dashboards: validation pictures and metrics reach wandb (offline) or the CSV fallback."""

import csv

import lightning as L
import pytest

from funcgen.data import ProceduralImageDataModule
from funcgen.train.tracking import default_logger
from tests.apps.test_module_cli import tiny_module


@pytest.mark.parametrize("kind", ["wandb", "csv"])
def test_validation_logs_pictures_at_two_resolutions(kind, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    logger = default_logger(tmp_path / "runs", name="t", kind=kind)
    dm = ProceduralImageDataModule("blobs", resolution=8, num_train=8, num_val=4, batch_size=4)
    trainer = L.Trainer(max_steps=2, logger=logger, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, log_every_n_steps=1, limit_val_batches=1,
                        check_val_every_n_epoch=1, num_sanity_val_steps=0)
    trainer.fit(tiny_module(2), datamodule=dm)
    pngs = sorted(p.name for p in (tmp_path / "runs").rglob("samples/*.png"))
    assert any("res1x" in p for p in pngs) and any("res4x" in p for p in pngs)
    if kind == "wandb":
        import wandb

        wandb.finish()
        runs = list((tmp_path / "runs" / "wandb").glob("offline-run-*"))
        assert runs and any(f.suffix == ".wandb" for f in runs[0].iterdir())
        media = list(runs[0].rglob("media/images/**/*.png"))
        assert media, "sample images did not reach the wandb run"
    else:
        rows = list(csv.DictReader(open(next((tmp_path / "runs").rglob("metrics.csv")))))
        keys = set().union(*(r.keys() for r in rows))
        assert {"train/loss", "val/loss", "val/std_ratio@1x", "val/std_ratio@4x"} <= keys


def test_unknown_logger_kind(tmp_path):
    with pytest.raises(ValueError, match="wandb or csv"):
        default_logger(tmp_path, kind="mlflow")
