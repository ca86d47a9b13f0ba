"""ONE LightningModule for every method: method + backbone + EMA + optimizer + validation sampling.

Methods are strategy objects (:class:`funcgen.methods.Method`); this module never branches on
which method it trains. Validation draws samples with the EMA weights at the training resolution
and at ``val_upsample`` times it, logs pictures to the dashboard and, where the data family has an
exact law at any resolution (``datamodule.reference``), moment errors against exact samples.
"""

from __future__ import annotations

import copy
import json
import math
from typing import Any, Literal

import lightning as L
import torch
from torch import Tensor

from ..generator import FunctionGenerator
from ..io import CONFIG_KEY, FORMAT_VERSION, VERSION
from ..methods.base import Method
from ..nets.base import Backbone
from ..pointset import PointSet, random_subset
from .budget import budget_fraction

__all__ = ["GenerativeModule"]


class GenerativeModule(L.LightningModule):
    """Trains any :class:`Method` with any backbone.

    Args:
        method: the generative method (loss + sampler).
        net: the backbone ``net(coords, values, t, mask=None) -> values``: a funcgen backbone
            (:class:`funcgen.nets.Backbone`; ``fit --help`` lists them under ``--model.net``).
        lr: peak learning rate of AdamW.
        weight_decay: AdamW weight decay.
        betas: AdamW's moment decay rates ``(beta1, beta2)`` (Idempotent Generative Networks train with
            ``(0.5, 0.999)``, as GANs do).
        warmup_steps: linear learning-rate warm-up steps.
        lr_schedule: ``constant`` after warm-up, or ``cosine`` decay to 10% over the run's budget: the
            progress is the larger of ``step / trainer.max_steps`` and, when the run has a time budget
            (:class:`funcgen.train.budget.CpuTimeBudget`, or ``trainer.max_time``), the fraction of it
            spent (both carried by checkpoints), so a time-budgeted run ends at the low learning rate
            too instead of stopping mid-decay.
        ema_decay: decay of the exponential moving average of the weights used for sampling.
        val_num_samples: functions drawn at each validation.
        val_upsample: the second validation resolution is this factor times the training one.
        val_steps: sampler steps at validation (None: the method's default).
        val_seed: seed of the validation samples (the same noise every epoch, so pictures compare).
        train_subsample: fraction of each function's points used per training step (a fresh random
            subset without replacement each step; 1 = all). The losses are Monte Carlo estimates of
            function-space norms, so this trades variance for speed; it suits methods whose
            perturbation can be drawn at the subset directly (functional diffusion). Methods that must
            perturb on the dense grid first (infty-Diff's mollifier) subsample inside their loss.
        nonfinite: what a NaN/inf loss or gradient does: ``raise`` stops training with a
            ``FloatingPointError`` naming the step and what to change; ``skip`` warns and drops that
            step's update (no parameter or optimizer-moment change), counted in ``train/skipped``.
            With ``precision=16-mixed`` the loss scaler handles inf gradients itself (not checked here).

    Checkpoints hold the method/net/data config as JSON and the global RNG states (restored at
    ``on_train_start``), are written atomically and read with ``weights_only=True``
    (:mod:`funcgen.train.checkpoint`); resuming with a checkpoint of another method, backbone or shape
    fails with a ``ValueError`` naming the file and the mismatch.
    """

    def __init__(self, method: Method, net: Backbone, lr: float = 3e-4, weight_decay: float = 0.0,
                 warmup_steps: int = 200, lr_schedule: Literal["constant", "cosine"] = "cosine",
                 ema_decay: float = 0.999, val_num_samples: int = 16, val_upsample: int = 4,
                 val_steps: int | None = 50, val_seed: int = 0, train_subsample: float = 1.0,
                 nonfinite: Literal["raise", "skip"] = "raise", betas: tuple[float, float] = (0.9, 0.999)) -> None:
        super().__init__()
        if not hasattr(net, "config"):
            raise TypeError("net must be a funcgen backbone (a Configurable nn.Module); got "
                            f"{type(net).__name__}")
        if not 0.0 < train_subsample <= 1.0:
            raise ValueError(f"train_subsample must lie in (0, 1]; got {train_subsample}")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1); got {ema_decay}")
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1); got {betas!r}")
        if nonfinite not in ("raise", "skip"):
            raise ValueError(f"nonfinite must be 'raise' or 'skip'; got {nonfinite!r}")
        self.method, self.net = method, net
        self.ema_net = copy.deepcopy(net).requires_grad_(False).eval()
        self.save_hyperparameters(ignore=["method", "net"])
        self.hparams["method"] = method.config
        self.hparams["net"] = net.config
        self.data_config: dict[str, Any] | None = None
        #: tensors the data's domain needs at sampling (a mesh and its eigenbasis), exported with the model
        self.domain_tensors: dict[str, Tensor] = {}
        self._ema_step, self._resume_rng, self._skipped = -1, None, 0

    # ------------------------------------------------------------------ training
    def _batch(self, batch: Any) -> PointSet:
        if isinstance(batch, PointSet):
            return batch
        coords, values = batch[0], batch[1]
        return PointSet(coords, values, batch[2] if len(batch) > 2 else None)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        ps = self._batch(batch)
        self.method.observe_batch(ps)
        if self.hparams.train_subsample < 1.0:
            ps = random_subset(ps, self.hparams.train_subsample)
        self.method.on_train_step(self.global_step)
        loss, extra = self.method.loss(self.net, ps)
        if not torch.isfinite(loss):
            self._nonfinite(f"loss ({loss.item()})")
            return None  # Lightning skips backward and the optimizer update
        self.log("train/loss", loss, prog_bar=True, batch_size=ps.batch_size)
        for k, v in extra.items():
            self.log(f"train/{k}", v, batch_size=ps.batch_size)
        self.log("lr", self.optimizers().param_groups[0]["lr"], batch_size=ps.batch_size)
        reason = self.method.stop_reason()
        if reason is not None and self._trainer is not None and not self.trainer.should_stop:
            from lightning.pytorch.utilities import rank_zero_warn
            rank_zero_warn(f"stopping training at step {self.global_step}: {reason}")
            self.trainer.should_stop = True
        return loss

    def _nonfinite(self, what: str) -> None:
        msg = (f"non-finite {what} at step {self.global_step}: lower the learning rate (model.lr), enable "
               "gradient clipping (trainer.gradient_clip_val), use precision 32 or check the data")
        if self.hparams.nonfinite == "raise":
            raise FloatingPointError(msg + "; or set model.nonfinite=skip to drop such steps")
        self._skipped += 1
        from lightning.pytorch.utilities import rank_zero_warn
        rank_zero_warn(f"skipping the update: {msg} ({self._skipped} skipped so far)")
        self.log("train/skipped", float(self._skipped))

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if getattr(self.trainer.precision_plugin, "scaler", None) is not None:
            return  # fp16 loss scaling: overflow steps are skipped by the GradScaler by design
        grads = [p.grad for p in self.net.parameters() if p.grad is not None]
        if grads and not torch.isfinite(torch.stack([g.detach().abs().sum() for g in grads]).sum()):
            self._nonfinite("gradient")
            for p in self.net.parameters():  # AdamW leaves parameters without a gradient untouched
                p.grad = None

    def on_train_start(self) -> None:
        if self._resume_rng is not None:  # after the sanity check and the loader's set-up, like a fresh run
            from .checkpoint import set_rng_state
            set_rng_state(self._resume_rng)
            self._resume_rng = None

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if not (self._ema_step == self.global_step and self._trainer is not None):
            self._update_ema()  # unless already folded in by on_save_checkpoint (callbacks run before this hook)
        trainer = self._trainer
        if trainer is not None and (trainer.should_stop or 0 < trainer.max_steps <= self.global_step):
            self._save_last_checkpoints()

    def _save_last_checkpoints(self) -> None:
        """Write every ``save_last`` checkpoint at the final step. Lightning's ``ModelCheckpoint`` saves on
        its own schedule (e.g. every N steps), so a run stopped by ``max_time`` (its ``Timer`` sets
        ``should_stop`` in an earlier batch-end hook) or by ``max_steps`` would otherwise leave
        ``last.ckpt`` up to N-1 steps behind: sampling from it, or resuming, would lose that training.
        Saved from this hook, where the scheduled saves happen, so a resume continues the run exactly."""
        from lightning.pytorch.callbacks import ModelCheckpoint

        step = {"epoch": torch.tensor(self.current_epoch), "step": torch.tensor(self.global_step)}
        for cb in self.trainer.checkpoint_callbacks:
            if isinstance(cb, ModelCheckpoint) and cb.save_last and cb.dirpath is not None:
                path = cb.format_checkpoint_name(step, cb.CHECKPOINT_NAME_LAST)
                self.trainer.save_checkpoint(path)
                cb.last_model_path = path

    def _update_ema(self) -> None:
        """EMA of the weights, decay ``min(ema_decay, (1 + step) / (10 + step))``; buffers are copied."""
        self._ema_step = step = self.global_step
        decay = min(self.hparams.ema_decay, (1.0 + step) / (10.0 + step))
        with torch.no_grad():
            for e, p in zip(self.ema_net.parameters(), self.net.parameters()):
                e.lerp_(p.detach(), 1.0 - decay)
            for e, b in zip(self.ema_net.buffers(), self.net.buffers()):
                e.copy_(b)

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.net.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay,
                                betas=tuple(self.hparams.get("betas", (0.9, 0.999))))
        warm = max(1, self.hparams.warmup_steps)
        total = max(self.trainer.estimated_stepping_batches if self._trainer else 1, warm + 1)
        cosine = self.hparams.lr_schedule == "cosine"
        trainer = self._trainer

        def factor(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            if not cosine:
                return 1.0
            p = (step - warm) / max(1, total - warm) if math.isfinite(total) else 0.0
            spent = budget_fraction(trainer) if trainer is not None else None
            if spent is not None:
                p = max(p, spent)
            p = min(1.0, p)
            return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * p))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ------------------------------------------------------------------ validation
    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        ps = self._batch(batch)
        gen = torch.Generator(device=ps.coords.device).manual_seed(1000 + batch_idx)
        loss, _ = self.method.loss(self.ema_net, ps, generator=gen)
        self.log("val/loss", loss, prog_bar=True, batch_size=ps.batch_size, sync_dist=True)
        return loss

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer else None
        if dm is not None and hasattr(dm, "data_config"):
            self.data_config = dm.data_config()
            self.domain_tensors = dm.domain_tensors() if hasattr(dm, "domain_tensors") else {}
        if self._trainer is not None:
            from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

            from .checkpoint import SafeCheckpointIO
            if type(self.trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # keep a user's own plugin
                self.trainer.strategy.checkpoint_io = SafeCheckpointIO()

    def generator(self) -> FunctionGenerator:
        """The EMA model as a :class:`FunctionGenerator` (the library's one sampling entry point)."""
        if self.data_config is None:
            raise RuntimeError("GenerativeModule has no data metadata: train with a funcgen datamodule")
        return FunctionGenerator(self.method, self.ema_net, self.data_config, domain=self.domain_tensors)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking or self.data_config is None or not self.trainer.is_global_zero:
            return
        from ..viz.plotting import render
        from .tracking import log_image, log_metrics

        gen = self.generator()
        dm = self.trainer.datamodule
        train_shape = tuple(self.data_config["train_shape"])
        manifold = self.data_config.get("manifold")  # points on a manifold: one map, no resolutions
        metrics: dict[str, float] = {}
        factors = (1,) if manifold is not None else tuple(dict.fromkeys((1, self.hparams.val_upsample)))
        for factor in factors:
            shape = tuple(s * factor for s in train_shape)
            # data on non-grid domains (meshes) give their own query points and pictures
            coords = (dm.validation_coords(factor, self.hparams.val_num_samples)
                      if hasattr(dm, "validation_coords") else None)
            ps = gen.sample(self.hparams.val_num_samples, shape, coords=coords, seed=self.hparams.val_seed,
                            steps=self.hparams.val_steps, denormalize=False)
            step = f"step {self.global_step}"
            if hasattr(dm, "render"):
                rgb = dm.render(ps.coords, ps.values, title=f"{ps.batch_size} samples at {ps.num_points} points, "
                                                            f"{step}")
            elif manifold is not None:
                rgb = render(ps.coords, ps.values, shape, "points", manifold=manifold, data=_data_points(dm),
                             title=f"{ps.batch_size} samples beside the data, {step}")
            else:
                rgb = render(ps.coords, ps.values, shape, self.data_config.get("kind", "image"), value_range=None,
                             title=f"{ps.batch_size} samples at {'x'.join(map(str, shape))}, {step} (model units)")
            log_image(self.logger, f"samples/res{factor}x", rgb, self.global_step,
                      fallback_dir=self.trainer.default_root_dir)
            ref = dm.reference(ps.coords, torch.Generator().manual_seed(1)) if hasattr(dm, "reference") else None
            if ref is not None:
                ref = ref.to(ps.values)
                metrics[f"val/mean_abs_err@{factor}x"] = float((ps.values.mean(0) - ref.mean(0)).abs().mean())
                metrics[f"val/std_ratio@{factor}x"] = float(ps.values.std(0).mean() / ref.std(0).mean())
        log_metrics(self.logger, metrics, self.global_step)

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        from .checkpoint import rng_state
        if self._trainer is not None and self.trainer.training and self._ema_step != self.global_step:
            self._update_ema()  # saved from a callback's on_train_batch_end: EMA first
            checkpoint["state_dict"].update({f"ema_net.{k}": v.detach().clone()
                                             for k, v in self.ema_net.state_dict().items()})
        checkpoint["funcgen_rng"] = rng_state()
        if self.domain_tensors:
            checkpoint["funcgen_domain"] = {k: v.detach().cpu().clone() for k, v in self.domain_tensors.items()}
        checkpoint[CONFIG_KEY] = json.dumps({"format": FORMAT_VERSION, "version": VERSION,
                                             "method": self.method.config, "net": self.net.config,
                                             "data": self.data_config})
        # plain containers only, so the file loads with torch.load(weights_only=True)
        checkpoint["hyper_parameters"] = json.loads(json.dumps(dict(self.hparams), default=str))

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        from .checkpoint import check_state_shapes
        source = str(getattr(self._trainer, "ckpt_path", None) or "checkpoint")
        if CONFIG_KEY not in checkpoint:
            raise ValueError(f"{source}: not a funcgen training checkpoint (no {CONFIG_KEY!r} entry)")
        saved = json.loads(checkpoint[CONFIG_KEY])
        for key, mine in (("method", self.method.config), ("net", self.net.config)):
            if saved[key]["class_path"] != mine["class_path"]:
                raise ValueError(f"{source}: checkpoint was trained with {key} {saved[key]['class_path']} but this "
                                 f"run builds {mine['class_path']}; use the checkpoint's config")
        check_state_shapes(checkpoint["state_dict"], self.state_dict(), source)
        self.data_config = saved.get("data")
        self.domain_tensors = dict(checkpoint.get("funcgen_domain", {}))
        self._resume_rng = checkpoint.get("funcgen_rng")


def _data_points(dm: Any, limit: int = 4000) -> Tensor | None:
    """Up to ``limit`` data points ``[M, c]`` of a datamodule's training (else validation) set, for pictures."""
    for name in ("train_set", "val_set"):
        values = getattr(getattr(dm, name, None), "values", None)
        if isinstance(values, Tensor) and values.numel():
            return values[:limit].reshape(-1, values.shape[-1])
    return None
