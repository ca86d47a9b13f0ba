"""Train a config from Python: the one path that ``funcgen fit``, ``funcgen bench`` and scripts share.

A run is described by LightningCLI YAML files applied in order (later files override earlier ones:
``configs/base/trainer.yaml`` then ``configs/METHOD/DATASET.yaml`` then any ablation) plus a mapping of
dotted settings (``{"trainer.max_steps": 2000, "data.init_args.seed": 1}``) applied last. :func:`prepare`
builds the module, data module and trainer; :meth:`Run.fit` trains within the budget; :func:`fit` does both.

    run = fit(["configs/base/trainer.yaml", "configs/fdp/grf1d.yaml"], minutes=5, seed=0)
    gen = run.generator()                     # a FunctionGenerator with the EMA weights
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping, Sequence

if TYPE_CHECKING:
    import lightning as L

    from ..data.base import FunctionDataModule
    from ..generator import FunctionGenerator
    from .module import GenerativeModule

__all__ = ["Run", "prepare", "fit", "make_cli", "check_cli_args", "budget_string", "shipped_config_args"]

ConfigFiles = str | os.PathLike | Sequence[str | os.PathLike]


def check_cli_args(args: Sequence[str]) -> None:
    """Fail early with a clear message: ``--config`` files or flags naming an unknown method, net or data
    (the message lists the known ones), or a ``--ckpt_path`` that is missing, corrupt or holds pickled code."""
    import importlib

    import yaml

    from ..config import known_classes
    from ..data.base import FunctionDataModule
    from ..methods.base import Method
    from ..nets.base import Backbone

    slots = {"model.method": ("funcgen.methods", Method), "model.net": ("funcgen.nets", Backbone),
             "data": ("funcgen.data", FunctionDataModule)}
    given: list[tuple[str, str]] = []
    args = list(args)
    for i, arg in enumerate(args):
        key, _, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        if not value and i + 1 < len(args) and not args[i + 1].startswith("--"):
            value = args[i + 1]
        if key == "config" and value and Path(value).is_file():
            cfg = yaml.safe_load(Path(value).read_text()) or {}
            for slot in slots:
                node = cfg
                for part in slot.split("."):
                    node = node.get(part) if isinstance(node, dict) else None
                name = node.get("class_path") if isinstance(node, dict) else node
                if isinstance(name, str):
                    given.append((slot, name))
        elif key.removesuffix(".class_path") in slots and value:
            given.append((key.removesuffix(".class_path"), value))
    for i, arg in enumerate(args):  # LightningCLI reads --ckpt_path with a bare torch.load: check it first
        if arg == "--ckpt_path" and i + 1 < len(args) or arg.startswith("--ckpt_path="):
            path = arg.partition("=")[2] or args[i + 1]
            if path not in ("null", "None", "last", "best", "hpc", "registry"):
                from .checkpoint import SafeCheckpointIO
                SafeCheckpointIO().load_checkpoint(path)
    for slot, name in given:
        package, base = slots[slot]
        if name in ("FunctionDataModule", "funcgen.data.FunctionDataModule", "funcgen.data.base.FunctionDataModule"):
            raise ValueError(f"--{slot} {name}: FunctionDataModule is the abstract base of funcgen datamodules; pick "
                             "one of: " + ", ".join(f"{package}.{n}" for n in known_classes(package, base)
                                                    if n != "FunctionDataModule")
                             + " (your own data: funcgen.data.FileDataModule --data.init_args.path FILE)")
        known = known_classes(package, base)
        if "." not in name:
            ok = name in known
        else:
            module_name, _, cls = name.rpartition(".")
            try:
                ok = isinstance(getattr(importlib.import_module(module_name), cls, None), type)
            except ImportError:
                ok = False
        if not ok:
            raise ValueError(f"unknown {slot.split('.')[-1]} {name!r} for --{slot}; known: "
                             f"{', '.join(f'{package}.{n}' for n in known)}")


def shipped_config_args(args: Sequence[str]) -> list[str]:
    """``args`` with every ``--config configs/...`` that does not exist here replaced by the shipped file
    (:func:`funcgen.config.resolve_config`), so the documented commands work from any folder."""
    from ..config import resolve_config

    out = list(args)
    for i, arg in enumerate(out):
        if arg == "--config" and i + 1 < len(out):
            out[i + 1] = str(resolve_config(out[i + 1]))
        elif arg.startswith("--config="):
            out[i] = "--config=" + str(resolve_config(arg.partition("=")[2]))
    return out


def make_cli(args: Sequence[str] | None, run: bool = True):
    """The LightningCLI over :class:`GenerativeModule` and any funcgen datamodule."""
    args = shipped_config_args(sys.argv[1:] if args is None else args)
    check_cli_args(args)
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    from lightning.pytorch.cli import LightningCLI

    from ..data.base import FunctionDataModule
    from .module import GenerativeModule

    # the command line itself (funcgen fit ...): let LightningCLI read sys.argv, as it prefers
    return LightningCLI(GenerativeModule, FunctionDataModule, subclass_mode_data=True, run=run,
                        args=None if args == sys.argv[1:] else args,
                        save_config_kwargs={"overwrite": True}, auto_configure_optimizers=False)


def budget_string(minutes: float) -> str:
    """A training budget in minutes as Lightning's ``max_time`` string ``DD:HH:MM:SS``."""
    if not minutes >= 0:
        raise ValueError(f"minutes must be >= 0; got {minutes}")
    secs = int(minutes * 60)
    return f"{secs // 86400:02d}:{secs % 86400 // 3600:02d}:{secs % 3600 // 60:02d}:{secs % 60:02d}"


def _arguments(configs: ConfigFiles, settings: Mapping[str, Any]) -> list[str]:
    """The LightningCLI argument list of config files and dotted settings (the only place it is written)."""
    import json

    from ..config import resolve_config

    files = [configs] if isinstance(configs, (str, os.PathLike)) else list(configs)
    if not files:
        raise ValueError("fit needs at least one config file")
    args: list[str] = []
    for f in files:
        f = resolve_config(f)
        if not f.is_file():
            raise FileNotFoundError(f"no config file at {f}")
        args += ["--config", str(f)]
    for key, value in settings.items():
        text = value if isinstance(value, str) else json.dumps(value)
        args.append(f"--{key}={text}")
    return args


@dataclass
class Run:
    """A configured training run: the module, its data and the trainer (after :meth:`fit`, trained)."""

    module: GenerativeModule
    datamodule: FunctionDataModule
    trainer: L.Trainer
    #: optimizer steps taken by :meth:`fit` (0 before)
    steps: int = 0
    #: wall-clock seconds spent in :meth:`fit`
    seconds: float = 0.0
    #: CPU seconds of this process spent in :meth:`fit`
    cpu_seconds: float = 0.0
    #: the dotted settings applied after the config files (seed, budget and ``settings`` of :func:`prepare`)
    settings: dict[str, Any] = field(default_factory=dict)

    def fit(self) -> "Run":
        """Train within the trainer's budget (``max_steps`` / CPU or wall minutes); returns ``self``."""
        t0, c0 = time.time(), time.process_time()
        self.trainer.fit(self.module, datamodule=self.datamodule)
        self.seconds += time.time() - t0
        self.cpu_seconds += time.process_time() - c0
        self.steps = int(self.trainer.global_step)
        return self

    def generator(self) -> FunctionGenerator:
        """The trained (or, before :meth:`fit`, freshly initialised) model as a
        :class:`funcgen.FunctionGenerator`."""
        if getattr(self.module, "data_config", None) is None:
            self.datamodule.setup("fit")
            self.module.data_config = self.datamodule.data_config()
            if hasattr(self.datamodule, "domain_tensors"):
                self.module.domain_tensors = self.datamodule.domain_tensors()
        return self.module.generator()


def prepare(configs: ConfigFiles, *, settings: Mapping[str, Any] | None = None, seed: int | None = None,
            max_steps: int | None = None, minutes: float | None = None,
            clock: Literal["cpu", "wall"] = "cpu") -> Run:
    """Build the module, data module and trainer of ``configs`` (applied in order) without training.

    Args:
        configs: one YAML file or several (later ones override earlier ones, as LightningCLI's
            repeated ``--config``).
        settings: dotted overrides applied last, e.g. ``{"trainer.logger": False}``.
        seed: seeds everything: ``seed_everything`` (initialisation) and the data module's ``seed``
            (data generation and shuffling).
        max_steps: stop after this many optimizer steps.
        minutes: stop after this many minutes of training: CPU minutes of this process
            (:class:`funcgen.train.budget.CpuTimeBudget`, the protocol's single-thread CPU minutes when
            ``OMP_NUM_THREADS=1``) or, with ``clock="wall"``, wall-clock minutes (Lightning's ``max_time``).
        clock: ``"cpu"`` (default) or ``"wall"``, what ``minutes`` counts.
    """
    merged: dict[str, Any] = {}
    if seed is not None:
        merged.update({"seed_everything": int(seed), "data.init_args.seed": int(seed)})
    if max_steps is not None:
        merged["trainer.max_steps"] = int(max_steps)
    if minutes is not None and clock == "wall":
        merged["trainer.max_time"] = budget_string(minutes)
    elif clock != "cpu":
        raise ValueError(f"clock must be 'cpu' or 'wall'; got {clock!r}")
    merged.update(settings or {})
    cli = make_cli(_arguments(configs, merged), run=False)
    if minutes is not None and clock == "cpu":
        from .budget import CpuTimeBudget

        cli.trainer.callbacks.append(CpuTimeBudget(minutes))
    return Run(cli.model, cli.datamodule, cli.trainer, settings=merged)


def fit(configs: ConfigFiles, **kwargs: Any) -> Run:
    """:func:`prepare` then :meth:`Run.fit`: train ``configs`` within the budget and return the run."""
    return prepare(configs, **kwargs).fit()
