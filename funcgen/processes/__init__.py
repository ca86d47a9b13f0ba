"""Function-space noise processes and time algebra: what a method perturbs its data with.

``noise`` (Gaussian random fields, white noise, Student-t processes at given coordinates),
``matched`` (spectrum-matched noise fitted to data), ``mollify`` (the heat-kernel mollifier and
mollified noise), ``schedules`` (variance-preserving schedules and noise-level grids).
"""

from .matched import SpectrumMatchedNoise
from .mollify import MollifiedNoise
from .noise import (
           EigenNoise,
           FunctionNoise,
           GaussianRandomField,
           SpectralNoise,
           StudentTProcess,
           WhiteNoise,
)
from .schedules import (
           CosineSchedule,
           LinearSchedule,
           VPSchedule,
           karras_sigmas,
           make_schedule,
)

__all__ = ["FunctionNoise", "WhiteNoise", "EigenNoise", "GaussianRandomField", "SpectralNoise", "StudentTProcess",
           "SpectrumMatchedNoise", "MollifiedNoise", "VPSchedule", "CosineSchedule", "LinearSchedule",
           "make_schedule", "karras_sigmas"]
