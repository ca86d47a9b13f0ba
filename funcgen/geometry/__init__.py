"""Geometry: manifolds and heat kernels on symmetric spaces, and triangle meshes.

Meshes live in :mod:`funcgen.geometry.mesh` (numpy/scipy only; import it explicitly).

The only part of funcgen that imports geomstats (lazily, with its pytorch backend set once, in
:mod:`funcgen.geometry.manifolds`).
"""

from .heat_kernel import (
    heat_kernel_log_prob,
    heat_kernel_score,
    radial_dlogp_dtheta,
    radial_log_heat_kernel,
    so3_log_heat_kernel,
    sphere_log_heat_kernel,
    torus_log_heat_kernel,
)
from .heat_sampling import sample_heat_kernel, sample_radius
from .manifolds import (
    SO3,
    Manifold,
    Sphere,
    Torus,
    quaternion_to_matrix,
    skew_to_vector,
    vector_to_skew,
    wrap_angle,
)
from .su3 import SU3, sample_su3_heat_kernel, su3_heat_kernel_score, su3_log_heat_kernel

__all__ = [
    "Manifold", "Sphere", "SO3", "Torus", "skew_to_vector", "vector_to_skew", "quaternion_to_matrix", "wrap_angle",
    "heat_kernel_log_prob", "heat_kernel_score", "sample_heat_kernel", "sample_radius",
    "sphere_log_heat_kernel", "so3_log_heat_kernel", "torus_log_heat_kernel",
    "radial_log_heat_kernel", "radial_dlogp_dtheta",
    "SU3", "su3_log_heat_kernel", "su3_heat_kernel_score", "sample_su3_heat_kernel",
]
