"""Samplers: plain functions of a model callable, a grid, a starting state, a noise sampler and a
per-step callback (:mod:`funcgen.samplers.base`); they know nothing about training or about methods.

- :mod:`.diffusion`: DDIM / ancestral (any Gaussian path) and DPM-Solver++(2M) (variance-preserving diffusions);
- :mod:`.sigma`: Euler / Heun on the denoiser ODE in the noise level (EDM, PFGM++);
- :mod:`.ode`: Euler / Heun / midpoint for flows ``dx/dt = v(x, t)`` (flow matching);
- :mod:`.manifold`: exponential-map Euler(-Maruyama) and the probability-flow ODE likelihood on manifolds;
- :mod:`.sde`: Euler-Maruyama in Euclidean space;
- :mod:`.path`: the Gaussian-path view of diffusion-type methods, which :mod:`.guidance` (posterior sampling
  from observed values) and :mod:`.likelihood` (log densities by the probability-flow ODE) work with.
"""

from .base import Callback, ModelFn, NoiseFn, apply_callback
from .diffusion import Scales, as_scales, ddim, dpm_solver_2m, time_grid
from .guidance import DenoiserGuide, Observation, replacement_callback, tweedie_guide
from .likelihood import ode_log_likelihood, path_log_likelihood
from .manifold import exp_euler_maruyama, manifold_ode_likelihood
from .ode import ODESolver, flow_ode
from .path import GaussianPath
from .sde import euler_maruyama
from .sigma import sigma_ode, sigma_ode_nfe

__all__ = ["Callback", "ModelFn", "NoiseFn", "apply_callback", "Scales", "as_scales", "ddim", "dpm_solver_2m",
           "time_grid",
           "exp_euler_maruyama", "manifold_ode_likelihood", "ODESolver", "flow_ode", "euler_maruyama",
           "sigma_ode", "sigma_ode_nfe", "GaussianPath", "Observation", "DenoiserGuide", "tweedie_guide",
           "replacement_callback", "ode_log_likelihood", "path_log_likelihood"]
