"""Pictures of generated functions: image grids for 2D data, curve plots for 1D data.

Everything returns ``uint8`` RGB arrays ``[H, W, 3]`` (what dashboards and PNG writers take) and
never opens a window (matplotlib's Agg backend).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from torch import Tensor

from ..pointset import pointset_to_grid

__all__ = ["image_grid", "curve_plot", "render", "save_png", "write_summary_html"]


def image_grid(values: Tensor, shape: Sequence[int], value_range: tuple[float, float] = (-1.0, 1.0),
               nrow: int = 8) -> np.ndarray:
    """Values ``[B, N, c]`` on a grid of ``shape`` (H, W) -> one tiled RGB image ``[H', W', 3]``."""
    from torchvision.utils import make_grid

    img = pointset_to_grid(values.detach().float().cpu(), shape)
    lo, hi = value_range
    img = ((img - lo) / (hi - lo)).clamp(0, 1)
    if img.shape[1] not in (1, 3):
        img = img[:, :1]
    grid = make_grid(img, nrow=min(nrow, img.shape[0]), padding=2, pad_value=1.0)
    return (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def curve_plot(coords: Tensor, values: Tensor, title: str = "", max_curves: int = 8) -> np.ndarray:
    """1D functions ``coords [B, N, 1]``, ``values [B, N, c]`` -> line plot RGB image."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3), dpi=100)
    for i in range(min(max_curves, coords.shape[0])):
        order = coords[i, :, 0].argsort()
        ax.plot(coords[i, order, 0].cpu().numpy(), values[i, order, 0].detach().cpu().numpy(), lw=1)
    ax.set_xlabel("x")
    ax.set_title(title)
    fig.tight_layout()
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return rgb


def render(coords: Tensor, values: Tensor, shape: Sequence[int], kind: str,
           value_range: tuple[float, float] = (-1.0, 1.0), title: str = "") -> np.ndarray:
    """Picture of a batch of functions: a curve plot for ``kind='signal'``, else an image grid."""
    if kind == "signal" or len(shape) == 1:
        return curve_plot(coords, values, title)
    return image_grid(values, shape, value_range)


def save_png(rgb: np.ndarray, path: str | Path) -> Path:
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)
    return path


def write_summary_html(path: str | Path, png: str | Path, settings: dict[str, object],
                       title: str = "funcgen samples") -> Path:
    """A self-contained HTML page: the PNG ``png`` embedded as base64 and a table of ``settings``
    (for people without a dashboard: open it in any browser, send it as one file)."""
    import base64
    import html

    data = base64.b64encode(Path(png).read_bytes()).decode("ascii")
    rows = "\n".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                     for k, v in settings.items())
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}} th{{text-align:left;padding-right:1em}} img{{max-width:100%}}</style>
</head><body>
<h1>{html.escape(title)}</h1>
<table>
{rows}
</table>
<p><img alt="samples" src="data:image/png;base64,{data}"></p>
</body></html>
"""
    path = Path(path)
    path.write_text(page, encoding="utf-8")
    return path
