"""Training from Python: ``funcgen.train.fit`` trains a composed config within a budget and hands back the run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from funcgen.generator import FunctionGenerator
from funcgen.train.fit import budget_string, fit, prepare

REPO = Path(__file__).resolve().parents[2]
BASE = REPO / "configs" / "base" / "trainer.yaml"
TINY = {"trainer.logger": False, "trainer.callbacks": [], "trainer.enable_progress_bar": False,
        "trainer.limit_val_batches": 0, "data.init_args.num_train": 16, "data.init_args.num_val": 4,
        "data.init_args.batch_size": 4, "model.net.init_args.width": 16, "model.net.init_args.num_latents": 4,
        "model.net.init_args.depth": 1, "model.net.init_args.heads": 2}


def test_fit_trains_the_given_steps_and_returns_a_generator(tmp_path):
    run = fit([BASE, REPO / "configs/fdp/grf1d.yaml"], max_steps=3, seed=5,
              settings={**TINY, "trainer.default_root_dir": str(tmp_path)})
    assert run.steps == 3 and run.trainer.global_step == 3 and run.seconds > 0
    gen = run.generator()
    assert isinstance(gen, FunctionGenerator)
    assert gen.sample(2, 32, seed=0).values.shape == (2, 32, 1)
    assert run.datamodule.seed == 5  # the seed also seeds the data


def test_later_files_and_settings_override_earlier_ones(tmp_path):
    abl = REPO / "configs/ablations/pfgmpp/grf1d_D8.yaml"
    run = prepare([BASE, REPO / "configs/pfgmpp/grf1d.yaml", abl], settings={**TINY, "model.lr": 0.01})
    assert run.module.method.D == 8.0 and run.module.hparams.lr == 0.01
    assert run.trainer.max_steps == 20000  # from the base
    assert prepare([BASE, REPO / "configs/pfgmpp/grf1d.yaml"], settings=TINY, max_steps=7).trainer.max_steps == 7
    assert run.steps == 0  # prepared, not trained


def test_bad_inputs_say_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config file"):
        prepare([BASE, tmp_path / "missing.yaml"])
    with pytest.raises(ValueError, match="at least one"):
        prepare([])
    with pytest.raises(ValueError, match="minutes"):
        budget_string(-1)
    assert budget_string(25) == "00:00:25:00" and budget_string(60 * 24 + 1.5) == "01:00:01:30"


def test_an_untrained_run_samples_from_its_initial_weights():
    run = prepare([BASE, REPO / "configs/fdp/grf1d.yaml"], settings=TINY, seed=0)
    values = run.generator().sample(1, 16, seed=0).values
    assert torch.isfinite(values).all()
