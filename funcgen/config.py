"""Self-describing components: every net, method and noise records how it was built.

A class deriving from :class:`Configurable` remembers the arguments of its constructor in
``self.config`` as ``{"class_path": "funcgen.x.Y", "init_args": {...}}`` (the same format as
LightningCLI YAML). :func:`build` rebuilds an object from such a dict, but only for classes that
live inside the ``funcgen`` package and derive from the expected base: a checkpoint's metadata can
never make us import or run foreign code.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["Configurable", "build", "to_jsonable", "known_classes", "MOVED", "config_root", "resolve_config"]

#: modules that moved when the package took its layered layout: old module path -> new one. Configs
#: written before the move (exports, checkpoints) name the old paths; :func:`build` reads them through
#: this table, so they rebuild the same objects. Add a line here whenever a public class moves.
MOVED: dict[str, str] = {
    "funcgen.noise": "funcgen.processes.noise",
    "funcgen.noise_matched": "funcgen.processes.matched",
    "funcgen.mollify": "funcgen.processes.mollify",
    "funcgen.schedules": "funcgen.processes.schedules",
}

T = TypeVar("T")


def config_root() -> Path:
    """The folder of the shipped YAML configs (``base/trainer.yaml``, ``METHOD/DATASET.yaml``, ``ablations/``).

    An installed package carries them as package data in ``funcgen/configs``; a source checkout (editable
    install, ``PYTHONPATH``) has them in the repository's ``configs/``, which is what the package data is
    built from.
    """
    here = Path(__file__).resolve().parent
    for root in (here / "configs", here.parent / "configs"):
        if (root / "base" / "trainer.yaml").is_file():
            return root
    return here.parent / "configs"


def resolve_config(path: str | os.PathLike) -> Path:
    """``path`` when that file exists; else a ``configs/...`` path (e.g. ``configs/fdp/grf1d.yaml``, as the
    docs write them) found among the shipped configs (:func:`config_root`), so it works from any folder."""
    p = Path(path)
    if p.is_file() or p.is_absolute():
        return p
    parts = p.parts
    if parts and parts[0] == "configs":
        shipped = config_root().joinpath(*parts[1:])
        if shipped.is_file():
            return shipped
    return p


def to_jsonable(value: Any) -> Any:
    """Convert constructor arguments into JSON-compatible values (nested configs included)."""
    if isinstance(value, Configurable):
        return value.config
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"constructor argument {value!r} of type {type(value).__name__} cannot be recorded in a config")


class Configurable:
    """Mixin recording constructor arguments in ``self.config``.

    Subclasses just define ``__init__`` normally; the wrapper installed by ``__init_subclass__``
    binds the call's arguments (with defaults applied) before the constructor body runs.
    """

    config: dict[str, Any]
    #: constructor arguments whose default changed after models were exported: a recorded config that
    #: lacks one (written before it existed) is rebuilt with the value given here, i.e. the behaviour it
    #: was trained with, while new code gets the constructor's default. Read by :func:`build`.
    LEGACY_DEFAULTS: dict[str, Any] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # wrap the class's own constructor, or the raw inherited one, so every class records itself
        init = cls.__dict__.get("__init__") or getattr(cls.__init__, "__wrapped__", cls.__init__)
        sig = inspect.signature(init)

        @functools.wraps(init)
        def wrapped(self: Any, *args: Any, **kw: Any) -> None:
            if type(self) is not cls:  # only the most-derived constructor records
                init(self, *args, **kw)
                return
            bound = sig.bind(self, *args, **kw)
            bound.apply_defaults()
            params = list(bound.arguments.items())[1:]
            init_args = {k: to_jsonable(v) for k, v in params
                         if sig.parameters[k].kind not in (inspect.Parameter.VAR_POSITIONAL,
                                                           inspect.Parameter.VAR_KEYWORD)}
            init(self, *args, **kw)
            object.__setattr__(self, "config", {"class_path": f"{cls.__module__}.{cls.__qualname__}",
                                                "init_args": init_args})

        cls.__init__ = wrapped  # type: ignore[method-assign]


def known_classes(package: str, base: type | None = None) -> list[str]:
    """Public concrete classes exported by a funcgen package (``funcgen.methods``, ...), optionally subclasses
    of ``base``."""
    try:
        module = importlib.import_module(package)
    except ImportError:
        return []
    names = getattr(module, "__all__", [n for n in vars(module) if not n.startswith("_")])
    return sorted(n for n in names if isinstance(getattr(module, n, None), type)
                  and not inspect.isabstract(getattr(module, n))
                  and (base is None or issubclass(getattr(module, n), base)))


def _resolve(class_path: str) -> type:
    if not isinstance(class_path, str) or not class_path.startswith("funcgen.") or class_path.count(".") < 2:
        raise ValueError(f"refusing to build {class_path!r}: only classes inside the funcgen package can be rebuilt")
    module_name, _, name = class_path.rpartition(".")
    module_name = MOVED.get(module_name, module_name)
    try:
        module = importlib.import_module(module_name)
        return getattr(module, name)
    except (ImportError, AttributeError) as e:
        package = ".".join(class_path.split(".")[:2])
        known = ", ".join(f"{package}.{n}" for n in known_classes(package)) or "none"
        raise ValueError(f"unknown class {class_path!r} in config (known in {package}: {known}; "
                         "was it written by a newer funcgen?)") from e


def build(config: dict[str, Any], base: type[T]) -> T:
    """Instantiate ``config`` (``{"class_path", "init_args"}``), checking it derives from ``base``.

    Nested configs in ``init_args`` (dicts with a ``class_path``) are built recursively; arguments the
    config lacks take the class's ``LEGACY_DEFAULTS`` (configs recorded before the argument existed),
    else the constructor's default.
    """
    if not isinstance(config, dict) or "class_path" not in config:
        raise ValueError(f"expected a config dict with 'class_path' and 'init_args'; got {config!r}")
    cls = _resolve(config["class_path"])
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ValueError(f"{config['class_path']} is not a {base.__name__}")
    init_args = dict(config.get("init_args", {}))
    params = inspect.signature(cls).parameters
    for k, v in getattr(cls, "LEGACY_DEFAULTS", {}).items():
        if k in params:
            init_args.setdefault(k, v)
    args = {}
    for k, v in init_args.items():
        if isinstance(v, dict) and "class_path" in v:
            v = build(v, Configurable)
        args[k] = v
    return cls(**args)
