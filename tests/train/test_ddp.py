"""Scale: Lightning DDP with 2 CPU processes (gloo) gives the gradients of one process on the combined batch."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
import torch.distributed as dist

from funcgen.data import GRFDataModule
from funcgen.methods.base import Method, masked_mean
from funcgen.nets import PerceiverNet
from funcgen.pointset import PointSet
from funcgen.train.module import GenerativeModule


class Regression(Method):
    """A deterministic loss (mean squared error of ``net(coords, values, t=0.5)`` against ``values``).

    The generative methods draw random times and noise per process; with a deterministic loss the
    per-rank losses are exactly the halves of the combined batch's loss, so gradients must agree.
    """

    steps = 1

    def loss(self, net, batch: PointSet, generator=None):
        t = torch.full((batch.batch_size,), 0.5, dtype=batch.values.dtype, device=batch.values.device)
        return masked_mean((net(batch.coords, batch.values, t) - 2.0 * batch.values) ** 2, batch.mask).mean(), {}

    def sample(self, net, coords, channels, *, generator=None, steps=None, progress=False):
        raise NotImplementedError("test method")


class SaveGrads(L.Callback):
    def __init__(self, folder: str) -> None:
        self.folder = folder

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        grads = {n: p.grad.detach().clone() for n, p in pl_module.net.named_parameters() if p.grad is not None}
        torch.save(grads, Path(self.folder) / f"grads_rank{trainer.global_rank}_of{trainer.world_size}.pt")


def build() -> tuple[GenerativeModule, GRFDataModule]:
    torch.manual_seed(0)
    net = PerceiverNet(1, 1, 1, width=16, num_latents=4, depth=1, heads=2, num_bands=3)
    with torch.no_grad():  # the head starts at zero: give every layer a gradient
        net.head.weight.normal_(generator=torch.Generator().manual_seed(1))
    return GenerativeModule(Regression(), net, warmup_steps=1), GRFDataModule(dim=1, resolution=16, num_train=8,
                                                                             num_val=2, batch_size=4, seed=2)


def run(folder: Path, **kw) -> None:
    module, dm = build()
    opts = dict(max_steps=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                enable_checkpointing=False, limit_val_batches=0, num_sanity_val_steps=0, accelerator="cpu",
                default_root_dir=str(folder), callbacks=[SaveGrads(str(folder))])
    opts.update(kw)
    L.Trainer(**opts).fit(module, datamodule=dm)


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch without gloo")
def test_ddp_two_cpu_processes_match_one_process_on_the_combined_batch(tmp_path):
    run(tmp_path, strategy="ddp_spawn", devices=2)  # 2 processes x 4 functions
    rank0 = torch.load(tmp_path / "grads_rank0_of2.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "grads_rank1_of2.pt", weights_only=True)
    build_dm = build()[1]
    build_dm.batch_size = 8
    module, _ = build()
    L.Trainer(max_steps=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
              enable_checkpointing=False, limit_val_batches=0, num_sanity_val_steps=0, accelerator="cpu",
              devices=1, default_root_dir=str(tmp_path),
              callbacks=[SaveGrads(str(tmp_path))]).fit(module, datamodule=build_dm)
    single = torch.load(tmp_path / "grads_rank0_of1.pt", weights_only=True)
    assert rank0.keys() == single.keys() and len(single) > 10
    nonzero = 0
    for name, g in single.items():
        assert torch.equal(rank0[name], rank1[name]), name  # all-reduced: identical on both ranks
        # float32 sums in another order: errors scale with the largest entry, not with each entry
        tol = 1e-5 * float(g.abs().max()) + 1e-7
        assert torch.allclose(rank0[name], g, rtol=1e-4, atol=tol), (name, (rank0[name] - g).abs().max())
        nonzero += int(g.abs().max() > 0)
    assert nonzero > len(single) // 2
    # the check has power: one rank's half of the batch alone gives a different gradient
    module, dm = build()
    dm.setup("fit")
    items = [dm.train_set[i] for i in range(4)]
    half = PointSet(torch.stack([c for c, _ in items]), torch.stack([v for _, v in items]))
    module.method.loss(module.net, half)[0].backward()
    assert any(not torch.allclose(p.grad, single[n], rtol=1e-2, atol=1e-5) for n, p in module.net.named_parameters())
