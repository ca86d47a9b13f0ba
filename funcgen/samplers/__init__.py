"""Samplers: plain functions of a denoiser or a velocity field, a schedule and a starting state."""

from .ode import ODESolver, flow_ode
from .steppers import euler_maruyama, exp_euler_maruyama, sigma_ode

__all__ = ["euler_maruyama", "exp_euler_maruyama", "sigma_ode", "flow_ode", "ODESolver"]
