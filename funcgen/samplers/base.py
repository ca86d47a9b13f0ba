"""The contracts between methods and samplers (k-diffusion style): plain callables, no training code.

A sampler is a plain function of

- a **model callable**: ``denoise(x, t) -> x0_hat`` for diffusion-type methods (``t`` the time or noise
  level as a Python float, ``x`` the state ``[B, N, c]``), or ``velocity(x, t) -> dx/dt`` for flows;
  the method binds the network and the query coordinates into it;
- a **grid** of times or noise levels ``[K + 1]`` from the starting point to the end (a sampler started
  part-way, e.g. from a noised observation, takes a grid that starts there);
- the **starting state** ``x`` ``[B, N, c]`` at ``grid[0]``;
- a **noise sampler** ``noise() -> Tensor`` drawing the method's function-space noise shaped like the state
  (a Gaussian random field, mollified or Student-t noise, with the coordinates and generator bound), where
  the sampler is stochastic;
- an optional **callback** ``callback(i, t, x, x0_hat) -> x or None`` run after every step ``i`` with the
  new state ``x`` at grid level ``t = grid[i + 1]`` and the step's estimate ``x0_hat`` of the clean sample
  (the denoiser output, or a flow's extrapolated end point); a returned tensor replaces the state. This is
  where conditioning (replacement, guidance) and progress reporting hook in.
"""

from __future__ import annotations

from typing import Callable, Iterable, Protocol

from torch import Tensor
from tqdm.auto import tqdm

__all__ = ["ModelFn", "NoiseFn", "Callback", "apply_callback", "steps_of", "decreasing_levels"]

#: ``f(x [B, N, c], t) -> [B, N, c]``: a denoiser ``x0_hat`` or a velocity ``dx/dt`` at time / level ``t``
ModelFn = Callable[[Tensor, float], Tensor]


class NoiseFn(Protocol):
    """Draws one sample of the method's function-space noise, shaped like the sampler's state."""

    def __call__(self) -> Tensor: ...


#: ``callback(i, t, x, x0_hat) -> x or None``, after step ``i`` (state ``x`` at level ``t``)
Callback = Callable[[int, float, Tensor, Tensor], "Tensor | None"]


def apply_callback(callback: Callback | None, i: int, t: float, x: Tensor, x0_hat: Tensor) -> Tensor:
    """Run ``callback`` after step ``i``; its returned tensor (if any) replaces the state ``x``."""
    if callback is None:
        return x
    out = callback(i, t, x, x0_hat)
    if out is None:
        return x
    if out.shape != x.shape:
        raise ValueError(f"sampler callback returned shape {tuple(out.shape)}; the state is {tuple(x.shape)}")
    return out


def steps_of(n: int, progress: bool, desc: str = "sampling") -> Iterable[int]:
    """``range(n)``, with a progress bar when ``progress``."""
    return tqdm(range(n), desc=desc, leave=False) if progress else range(n)


def decreasing_levels(grid: Tensor, name: str = "the grid") -> list[float]:
    """``grid`` ``[K + 1]`` as Python floats, checked to decrease over >= 2 non-negative times / noise levels."""
    levels = [float(t) for t in grid]
    if len(levels) < 2 or any(b >= a for a, b in zip(levels[:-1], levels[1:])) or levels[-1] < 0:
        raise ValueError(f"{name} must decrease: a decreasing grid of >= 2 non-negative levels; got {levels}")
    return levels
