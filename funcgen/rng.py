"""Seeded random draws that do not depend on where the result lives.

Randomness flows through explicit ``torch.Generator`` objects. A draw is made on the generator's own
device and then moved, so a seed gives the same numbers whichever device the caller wants them on.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["randn", "rand"]


def _draw_device(generator: torch.Generator | None, device: torch.device | str | None) -> torch.device:
    if generator is not None:
        return generator.device
    return torch.device(device) if device is not None else torch.device("cpu")


def randn(shape: tuple[int, ...], generator: torch.Generator | None = None, *,
          device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """Standard normals ``shape`` of ``dtype``, drawn with ``generator`` on its device and returned on
    ``device`` (default: the generator's)."""
    z = torch.randn(shape, generator=generator, device=_draw_device(generator, device), dtype=dtype)
    return z if device is None else z.to(device)


def rand(shape: tuple[int, ...], generator: torch.Generator | None = None, *,
         device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """Uniforms on ``[0, 1)``, drawn like :func:`randn`."""
    u = torch.rand(shape, generator=generator, device=_draw_device(generator, device), dtype=dtype)
    return u if device is None else u.to(device)
