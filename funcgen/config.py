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
from typing import Any, TypeVar

__all__ = ["Configurable", "build", "to_jsonable", "known_classes", "MOVED"]

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

    Nested configs in ``init_args`` (dicts with a ``class_path``) are built recursively. Arguments the
    config lacks take the class's ``absent_defaults`` (``{name: value}``, for configs written before an
    argument existed: the behaviour they were written with) before its constructor defaults.
    """
    if not isinstance(config, dict) or "class_path" not in config:
        raise ValueError(f"expected a config dict with 'class_path' and 'init_args'; got {config!r}")
    cls = _resolve(config["class_path"])
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ValueError(f"{config['class_path']} is not a {base.__name__}")
    args = dict(getattr(cls, "absent_defaults", {}))
    for k, v in dict(config.get("init_args", {})).items():
        if isinstance(v, dict) and "class_path" in v:
            v = build(v, Configurable)
        args[k] = v
    return cls(**args)
