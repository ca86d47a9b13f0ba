"""Exact resume: an interrupted-and-resumed run reproduces the uninterrupted loss curve and final state."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from funcgen.data import GRFDataModule
from funcgen.data.base import EpochShuffleSampler
from funcgen.methods import FunctionalDiffusion
from funcgen.nets import PerceiverNet
from funcgen.processes.noise import SpectralNoise
from funcgen.train.module import GenerativeModule

REPO = Path(__file__).resolve().parents[2]


def make(subsample: float = 0.75) -> tuple[GenerativeModule, GRFDataModule]:
    L.seed_everything(0, verbose=False)
    method = FunctionalDiffusion(SpectralNoise(1, "fdp", modes=8), steps=4)
    net = PerceiverNet(1, 1, 1, width=16, num_latents=4, depth=1, heads=2, num_bands=3)
    module = GenerativeModule(method, net, warmup_steps=2, ema_decay=0.9, train_subsample=subsample)
    return module, GRFDataModule(dim=1, resolution=16, num_train=24, num_val=4, batch_size=8, seed=3)


class LossLog(Callback):
    """Per-step training losses keyed by the optimizer step they produced."""

    def __init__(self) -> None:
        self.losses: dict[int, torch.Tensor] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses[trainer.global_step] = outputs["loss"].detach().clone()


class Crash(Callback):
    """Simulates a crash at the start of step ``at`` (after the checkpoint of step ``at`` was written)."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.at:
            raise RuntimeError("simulated crash")


def fit(module, dm, root, max_steps, callbacks, ckpt_path=None):
    trainer = L.Trainer(max_steps=max_steps, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, num_sanity_val_steps=0, default_root_dir=str(root),
                        callbacks=callbacks, gradient_clip_val=1.0)
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    return trainer


def state(module: GenerativeModule, trainer: L.Trainer) -> dict[str, torch.Tensor]:
    out = {f"model.{k}": v for k, v in module.state_dict().items()}
    opt = trainer.optimizers[0].state_dict()["state"]
    for i, s in opt.items():
        out.update({f"opt.{i}.{k}": torch.as_tensor(v) for k, v in s.items()})
    return out


@pytest.mark.parametrize("k", [4, 6])  # 3 batches per epoch: mid-epoch (4) and an epoch boundary (6)
def test_resumed_loss_curve_equals_uninterrupted(k, tmp_path):
    n = 8
    module, dm = make()
    log = LossLog()
    t_full = fit(module, dm, tmp_path / "full", n, [log])
    assert sorted(log.losses) == list(range(1, n + 1))

    module2, dm2 = make()
    log2 = LossLog()
    ckpt_cb = ModelCheckpoint(dirpath=tmp_path / "ck", every_n_train_steps=k, save_top_k=-1)
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(module2, dm2, tmp_path / "int", n, [log2, Crash(k), ckpt_cb])
    ckpts = sorted((tmp_path / "ck").glob("*.ckpt"))
    assert len(ckpts) == 1 and f"step={k}" in ckpts[0].name
    torch.manual_seed(12345)  # the restore must not depend on the process's current RNG

    module3, dm3 = make()
    log3 = LossLog()
    t_res = fit(module3, dm3, tmp_path / "res", n, [log3], ckpt_path=str(ckpts[0]))
    assert sorted(log3.losses) == list(range(k + 1, n + 1))
    for step in range(k + 1, n + 1):
        assert torch.equal(log3.losses[step], log.losses[step]), (step, log3.losses[step], log.losses[step])
    for step in range(1, k + 1):  # the first run matched too, up to the crash
        assert torch.equal(log2.losses[step], log.losses[step])
    full, res = state(module, t_full), state(module3, t_res)
    assert full.keys() == res.keys()
    for key in full:  # weights, EMA weights, Adam moments and step counts
        assert torch.equal(full[key], res[key]), key
    assert t_res.lr_scheduler_configs[0].scheduler.last_epoch == t_full.lr_scheduler_configs[0].scheduler.last_epoch


class StopAt(Callback):
    """Stops training after step ``at`` the way Lightning's ``Timer`` does at ``max_time``."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.at:
            trainer.should_stop = True


def test_last_checkpoint_holds_the_final_step_and_resumes_exactly(tmp_path):
    """A run stopped between ModelCheckpoint's scheduled saves (as by ``max_time``) still leaves last.ckpt
    at its final step, and resuming from it continues the uninterrupted run."""
    every = 5
    k = int(torch.randint(6, 10, ()))  # not a multiple of the save interval
    n = k + 3
    module, dm = make()
    log = LossLog()
    t_full = fit(module, dm, tmp_path / "full", n, [log])

    module2, dm2 = make()
    ckpt_cb = ModelCheckpoint(dirpath=tmp_path / "ck", every_n_train_steps=every, save_last=True, save_top_k=0)
    fit(module2, dm2, tmp_path / "first", n, [ckpt_cb, StopAt(k)])
    last = tmp_path / "ck" / "last.ckpt"
    assert ckpt_cb.last_model_path == str(last)
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == k

    module3, dm3 = make()
    log3 = LossLog()
    t_res = fit(module3, dm3, tmp_path / "res", n, [log3], ckpt_path=str(last))
    assert sorted(log3.losses) == list(range(k + 1, n + 1))
    for step in range(k + 1, n + 1):
        assert torch.equal(log3.losses[step], log.losses[step]), step
    full, res = state(module, t_full), state(module3, t_res)
    for key in full:
        assert torch.equal(full[key], res[key]), key


def test_epoch_sampler_is_a_function_of_seed_and_epoch():
    data = list(range(10))
    s = EpochShuffleSampler(data, seed=5)
    e0 = list(s)
    assert sorted(e0) == data and list(s) == e0  # same epoch, same order
    s.set_epoch(1)
    e1 = list(s)
    assert sorted(e1) == data and e1 != e0
    s2 = EpochShuffleSampler(data, seed=5)
    s2.set_epoch(1)
    s2.skip(4)
    assert list(s2) == e1[4:]
    assert list(s2) == e1  # the skip applies to one pass only


SCRIPT = textwrap.dedent("""
    import signal, sys, lightning as L, torch
    # a terminal-launched run has Python's default Ctrl+C handler; an ignored SIGINT would be inherited
    # from the parent (Lightning's graceful shutdown sets SIG_IGN in the process it runs in)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from lightning.pytorch.callbacks import Callback, ModelCheckpoint
    sys.path.insert(0, {tests!r})
    from test_resume import make, LossLog

    class Slow(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            print("step", trainer.global_step, repr(float(outputs["loss"])), flush=True)
            if trainer.global_step >= {slow_from}:  # wait to be killed (SIGTERM: Lightning sets received_sigterm)
                import time
                for _ in range(600):
                    if getattr(trainer, "received_sigterm", False):
                        break
                    time.sleep(0.1)

    module, dm = make()
    ckpt = ModelCheckpoint(dirpath={ckdir!r}, every_n_train_steps=1, save_last=True, save_top_k=0)
    trainer = L.Trainer(max_steps={n}, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, num_sanity_val_steps=0, default_root_dir={ckdir!r},
                        callbacks=[Slow(), ckpt], gradient_clip_val=1.0)
    trainer.fit(module, datamodule=dm, ckpt_path={resume!r})
""")


@pytest.fixture(scope="module")
def reference_losses(tmp_path_factory) -> dict[int, torch.Tensor]:
    """Per-step losses of the uninterrupted 7-step run."""
    module, dm = make()
    log = LossLog()
    fit(module, dm, tmp_path_factory.mktemp("full"), 7, [log])
    return log.losses


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=["kill", "term", "int"])
def test_killed_training_process_resumes(sig, tmp_path, reference_losses):
    """A real process is killed once step 4's checkpoint exists; resuming from last.ckpt continues the run."""
    n, kill_after = 7, 4
    ckdir = tmp_path / "ck"
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", OMP_NUM_THREADS="1")
    script = tmp_path / "train.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).resolve().parent), slow_from=kill_after,
                                    ckdir=str(ckdir), n=n, resume=None))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            text=True)
    lines = []
    for line in proc.stdout:  # wait for step `kill_after` (the process then sleeps inside its step-end hook)
        lines.append(line)
        if line.startswith(f"step {kill_after} "):
            break
    last = ckdir / "last.ckpt"
    deadline = time.monotonic() + 120  # not a performance threshold: only a guard against hanging forever
    while not last.is_file() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(sig)
    try:
        proc.wait(timeout=300)  # a guard against hanging, not a performance threshold
    except subprocess.TimeoutExpired:
        proc.kill()
        rest = proc.communicate()[0]
        pytest.fail(f"training process ignored signal {sig!r} for 300 s; its output:\n{''.join(lines)}{rest}")
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    assert last.is_file(), "".join(lines)
    assert not list(ckdir.glob(".*.tmp")), "a temporary checkpoint file was left behind"
    raw = torch.load(last, weights_only=True)
    assert kill_after - 1 <= raw["global_step"] < n, "the signal did not stop the run"

    log = LossLog()
    log.losses = reference_losses
    module3, dm3 = make()
    log3 = LossLog()
    fit(module3, dm3, tmp_path / "res", n, [log3], ckpt_path=str(last))
    start = raw["global_step"]
    assert sorted(log3.losses) == list(range(start + 1, n + 1))
    for step in range(start + 1, n + 1):
        assert torch.equal(log3.losses[step], log.losses[step]), step
