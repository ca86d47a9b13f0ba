"""Samplers: plain functions of a denoiser or a velocity field, a schedule and a starting state."""

from .steppers import euler_maruyama, exp_euler_maruyama, sigma_ode

__all__ = ["euler_maruyama", "exp_euler_maruyama", "sigma_ode"]
