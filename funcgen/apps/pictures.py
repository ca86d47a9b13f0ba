"""The picture ``funcgen sample`` writes: an image grid with a colour bar in data units, curves, or for
points on a manifold a flat map (longitude/latitude on the sphere) with the training data beside."""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Sequence

import numpy as np
from torch import Tensor

from ..pointset import PointSet

__all__ = ["sample_picture", "training_points"]


def training_points(data: dict[str, Any], limit: int = 4000) -> Tensor | None:
    """Up to ``limit`` training points ``[M, c]`` of the data an exported model was trained on, or None.

    The datamodule is rebuilt from the export's data metadata (``class_path`` within ``funcgen`` and the
    constructor arguments the metadata holds); it is used only if the rebuilt module describes the same
    data (equal metadata apart from normalisation), e.g. an Earth dataset found under ``FUNCGEN_DATA``.
    """
    path = str(data.get("class_path", ""))
    if not path.startswith("funcgen."):
        return None
    try:
        module, _, name = path.rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        params = inspect.signature(cls).parameters
        kwargs = {k: v for k, v in data.items() if k in params and not isinstance(v, (dict, list))}
        dm = cls(**kwargs)
        rebuilt = dm.data_config()
        if any(rebuilt.get(k) != v for k, v in data.items() if k not in ("normalization", "class_path")):
            return None
        dm.setup("fit")
        values = getattr(getattr(dm, "train_set", None), "values", None)
    except Exception:  # noqa: BLE001 - the picture is drawn without the data whatever went wrong
        return None
    if not isinstance(values, Tensor) or not values.numel():
        return None
    return values[:limit].reshape(-1, values.shape[-1])


def sample_picture(gen: Any, ps: PointSet, values: Tensor, shape: Sequence[int], title: str) -> np.ndarray:
    """RGB picture ``[H, W, 3]`` of samples ``ps`` (model space) whose data-unit values are ``values``."""
    from ..viz.plotting import render

    manifold = gen.data.get("manifold")
    if manifold is not None:
        data = training_points(gen.data)
        note = " beside the training data" if data is not None else " (training data not found)"
        return render(ps.coords, ps.values, shape, "points", manifold=manifold, data=data, title=title + note)
    return render(ps.coords, values, shape, gen.data.get("kind", "image"), value_range=None,
                  title=title + " (data units)")
