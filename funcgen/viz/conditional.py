"""Pictures of conditional generation: completion grids (observed / samples / truth) and 1-D posterior bands.

Everything returns ``uint8`` RGB arrays ``[H, W, 3]`` and never opens a window (matplotlib's Agg backend).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from ..pointset import pointset_to_grid

__all__ = ["completion_grid", "posterior_band"]


def completion_grid(observed: Tensor, samples: Tensor, truth: Tensor | None, shape: Sequence[int],
                    value_range: tuple[float, float] = (0.0, 1.0), missing: float | None = None) -> np.ndarray:
    """Rows: observed (unobserved pixels shown at ``missing``, default the low end of ``value_range``), then each
    sample, then the truth; one column per function.

    Args:
        observed: ``[B, N, c]`` on the grid ``shape``, NaN where unobserved (inpainting), or ``[B, n, c]`` on a
            coarser grid of the same aspect (super-resolution; shown upsampled by nearest neighbour).
        samples: ``[B, K, N, c]`` completions on the grid ``shape``.
        truth: ``[B, N, c]`` or None.
    """
    b, k = samples.shape[:2]
    lo, hi = value_range
    fill = lo if missing is None else missing

    def img(v: Tensor) -> Tensor:
        n = v.shape[1]
        full = int(np.prod(shape))
        if n != full:  # a coarse grid: nearest-neighbour upsampling to ``shape``
            coarse = [round(s * (n / full) ** (1 / len(shape))) for s in shape]
            g = pointset_to_grid(v.detach().float().cpu(), coarse)
            g = torch.nn.functional.interpolate(g, size=tuple(shape), mode="nearest")
        else:
            g = pointset_to_grid(v.detach().float().cpu(), shape)
        return ((g.nan_to_num(fill) - lo) / (hi - lo)).clamp(0, 1)[:, :3]

    rows = [img(observed)] + [img(samples[:, j]) for j in range(k)] + ([img(truth)] if truth is not None else [])
    tiles = torch.stack(rows, 0).reshape(-1, *rows[0].shape[1:])  # row-major: one row per kind
    return (_tile(tiles, ncol=b) * 255).round().astype(np.uint8)


def _tile(tiles: Tensor, ncol: int, pad: int = 2, pad_value: float = 1.0) -> np.ndarray:
    """Tiles ``[T, c, H, W]`` (``c`` 1 or 3, values in [0, 1]) laid out row-major, ``ncol`` per row, with ``pad``
    pixels of ``pad_value`` around each -> RGB ``[H', W', 3]``."""
    t, c, h, w = tiles.shape
    rgb = tiles.expand(t, 3, h, w) if c == 1 else tiles
    nrow = -(-t // ncol)
    out = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, 3), pad_value, dtype=np.float32)
    for i in range(t):
        r, col = divmod(i, ncol)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        out[y:y + h, x:x + w] = rgb[i].permute(1, 2, 0).numpy()
    return out


def posterior_band(query: Tensor, samples: Tensor, obs_coords: Tensor, obs_values: Tensor,
                   exact: tuple[Tensor, Tensor] | None = None, truth: Tensor | None = None,
                   title: str = "") -> np.ndarray:
    """1-D: mean and central 95% band of ``samples`` ``[K, N]`` at ``query`` ``[N]`` against the observations
    (``obs_coords`` ``[M]``, ``obs_values`` ``[M]``); ``exact = (mean [N], std [N])`` draws the exact posterior
    band (e.g. the GP posterior) in dashed lines; ``truth`` ``[N]`` the function observed."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    order = query.argsort()
    q = query[order].cpu().numpy()
    s = samples[:, order].detach().double().cpu()
    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=100)
    lo, hi = torch.quantile(s, 0.025, dim=0).numpy(), torch.quantile(s, 0.975, dim=0).numpy()
    ax.fill_between(q, lo, hi, color="tab:blue", alpha=0.25, label=f"model 95% ({s.shape[0]} samples)")
    ax.plot(q, s.mean(0).numpy(), color="tab:blue", lw=1.5, label="model mean")
    for j in range(min(3, s.shape[0])):
        ax.plot(q, s[j].numpy(), color="tab:blue", lw=0.5, alpha=0.6)
    if exact is not None:
        m, sd = (t[order].detach().double().cpu().numpy() for t in exact)
        ax.plot(q, m, "k--", lw=1, label="exact mean")
        ax.plot(q, m - 1.96 * sd, "k:", lw=1, label="exact 95%")
        ax.plot(q, m + 1.96 * sd, "k:", lw=1)
    if truth is not None:
        ax.plot(q, truth[order].detach().cpu().numpy(), color="tab:green", lw=1, label="truth")
    ax.scatter(obs_coords.cpu().numpy(), obs_values.cpu().numpy(), color="tab:red", zorder=5, s=18,
               label="observed")
    ax.set_xlabel("x")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return rgb
