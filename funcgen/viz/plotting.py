"""Pictures of generated functions: image grids with a colour bar for 2D data, curve plots for 1D data,
flat maps (longitude/latitude for the sphere) for points on a manifold.

Everything returns ``uint8`` RGB arrays ``[H, W, 3]`` (what dashboards and PNG writers take) and
never opens a window (matplotlib's Agg backend).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from ..pointset import pointset_to_grid

__all__ = ["image_grid", "curve_plot", "manifold_plot", "sphere_lonlat", "render", "save_png",
           "write_summary_html"]


def _figure_rgb(fig) -> np.ndarray:
    """Draw a matplotlib figure into an RGB array ``[H, W, 3]`` and close it."""
    import matplotlib.pyplot as plt

    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return rgb


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def image_grid(values: Tensor, shape: Sequence[int], value_range: tuple[float, float] | None = (-1.0, 1.0),
               nrow: int = 8, title: str = "", max_images: int = 32) -> np.ndarray:
    """Values ``[B, N, c]`` on a grid of ``shape`` (H, W) -> one RGB picture ``[H', W', 3]``: the first
    ``max_images`` functions as tiles, ``title`` above and a colour bar of ``value_range`` (None: the
    values' own range) beside; three channels are shown as colour images (no colour bar)."""
    plt = _pyplot()
    img = pointset_to_grid(values.detach().float().cpu(), shape)[:max_images]  # [B, c, H, W]
    lo, hi = value_range if value_range is not None else (float(img.min()), float(img.max()))
    hi = hi if hi > lo else lo + 1.0
    rgb = img.shape[1] == 3
    b = img.shape[0]
    cols = min(nrow, b)
    rows = -(-b // cols)
    tile = max(0.9, min(2.0, 8.0 / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(tile * cols + 0.9, tile * rows + 0.5), squeeze=False, dpi=80,
                             layout="constrained")
    im = None
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k >= b:
            continue
        if rgb:
            ax.imshow(((img[k] - lo) / (hi - lo)).clamp(0, 1).permute(1, 2, 0).numpy(), interpolation="nearest")
        else:
            im = ax.imshow(img[k, 0].numpy(), cmap="viridis", vmin=lo, vmax=hi, interpolation="nearest")
    if im is not None:
        fig.colorbar(im, ax=axes, shrink=0.9, fraction=0.05, pad=0.02)
    if title:
        fig.suptitle(title, fontsize=10)
    return _figure_rgb(fig)


def curve_plot(coords: Tensor, values: Tensor, title: str = "", max_curves: int = 8) -> np.ndarray:
    """1D functions ``coords [B, N, 1]``, ``values [B, N, c]`` -> line plot RGB image."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3), dpi=100)
    for i in range(min(max_curves, coords.shape[0])):
        order = coords[i, :, 0].argsort()
        ax.plot(coords[i, order, 0].cpu().numpy(), values[i, order, 0].detach().cpu().numpy(), lw=1)
    ax.set_xlabel("x")
    ax.set_ylabel("value")
    ax.set_title(title)
    fig.tight_layout()
    return _figure_rgb(fig)


def sphere_lonlat(points: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors ``[M, 3]`` -> (longitude, latitude) in degrees, the inverse of
    ``(cos lat cos lon, cos lat sin lon, sin lat)``."""
    x = points.detach().double().cpu()
    x = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    lat = torch.rad2deg(torch.asin(x[:, 2].clamp(-1, 1)))
    lon = torch.rad2deg(torch.atan2(x[:, 1], x[:, 0]))
    return lon.numpy(), lat.numpy()


def _manifold_name(manifold: dict | None) -> str:
    path = str((manifold or {}).get("class_path", ""))
    return path.rsplit(".", 1)[-1]


def _planar(points: Tensor, manifold: dict | None) -> tuple[np.ndarray, np.ndarray, str, str, tuple | None]:
    """Flat manifold points ``[M, D]`` -> ``(x, y, x label, y label, (xlim, ylim) or None)`` of a flat map:
    S^2 -> longitude/latitude (equirectangular); SO(3) -> where each rotation sends the z axis, in
    longitude/latitude; T^2 -> the two angles; anything else -> its first two coordinates."""
    name = _manifold_name(manifold)
    n = (manifold or {}).get("init_args", {}).get("n")
    if name == "Sphere" and n == 2 and points.shape[-1] == 3:
        lon, lat = sphere_lonlat(points)
        return lon, lat, "longitude (deg)", "latitude (deg)", ((-180, 180), (-90, 90))
    if name == "SO3" and points.shape[-1] == 9:
        lon, lat = sphere_lonlat(points.reshape(-1, 3, 3)[:, :, 2])
        return lon, lat, "longitude of R e_z (deg)", "latitude of R e_z (deg)", ((-180, 180), (-90, 90))
    p = points.detach().double().cpu().numpy()
    if name == "Torus" and p.shape[-1] >= 2:
        return p[:, 0], p[:, 1], "angle 1 (rad)", "angle 2 (rad)", None
    y = p[:, 1] if p.shape[-1] > 1 else np.zeros(len(p))
    return p[:, 0], y, "coordinate 1", "coordinate 2", None


def manifold_plot(samples: Tensor, manifold: dict | None = None, data: Tensor | None = None, title: str = "",
                  bins: int = 0) -> np.ndarray:
    """Points on a manifold (``[M, D]`` flat ambient coordinates, or ``[B, N, D]`` flattened to ``[B N, D]``)
    drawn as a flat map (see :func:`_planar`: equirectangular longitude/latitude for S^2), the data
    ``data`` ``[K, D]`` in a panel beside with the same axes. ``bins > 0``: 2-D histograms instead of
    scatter plots. ``manifold``: the manifold's config (``{"class_path": ..., "init_args": ...}``)."""
    plt = _pyplot()
    sets = [("generated", samples.reshape(-1, samples.shape[-1]))]
    if data is not None:
        sets.append(("data", data.reshape(-1, data.shape[-1])))
    fig, axes = plt.subplots(1, len(sets), figsize=(4.6 * len(sets), 2.9), squeeze=False, dpi=90,
                             layout="constrained", sharex=True, sharey=True)
    from .colors import DATA_COLOR, SAMPLE_COLOR

    for ax, (label, pts) in zip(axes[0], sets):
        x, y, xl, yl, lims = _planar(pts, manifold)
        if bins:
            ax.hist2d(x, y, bins=bins, range=lims, cmap="magma")
        else:
            color = SAMPLE_COLOR if label == "generated" else DATA_COLOR
            ax.scatter(x, y, s=3, alpha=0.5, color=color, linewidths=0)
        if lims:
            ax.set_xlim(*lims[0])
            ax.set_ylim(*lims[1])
            ax.set_xticks([-180, -90, 0, 90, 180])
            ax.set_yticks([-90, -45, 0, 45, 90])
        ax.set_aspect("equal" if lims else "auto")
        ax.grid(alpha=0.3, lw=0.5)
        ax.set_xlabel(xl)
        ax.set_title(f"{label} ({len(x)} points)", fontsize=9)
    axes[0, 0].set_ylabel(yl)
    if title:
        fig.suptitle(title, fontsize=10)
    return _figure_rgb(fig)


def render(coords: Tensor, values: Tensor, shape: Sequence[int], kind: str,
           value_range: tuple[float, float] | None = (-1.0, 1.0), title: str = "", manifold: dict | None = None,
           data: Tensor | None = None) -> np.ndarray:
    """Picture of a batch of functions: a map of points for manifold data (``manifold``: the data's
    manifold config; ``data``: training points to draw beside), a curve plot for ``kind='signal'``, else
    an image grid with a colour bar."""
    if manifold is not None:
        return manifold_plot(values, manifold, data, title)
    if kind == "signal" or len(shape) == 1:
        return curve_plot(coords, values, title)
    return image_grid(values, shape, value_range, title=title)


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
