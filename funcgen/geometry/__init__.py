"""Geometry: manifolds, heat kernels and triangle meshes.

Submodules are imported explicitly (``import funcgen.geometry.mesh``), so that code which needs only
meshes never pays for (or depends on) the geomstats-based manifolds.
"""
