"""Functions on triangle meshes, served at their Laplace-Beltrami eigenfunction coordinates (MDF).

Every item is ``(coords [N, k], values [N, c])`` where ``coords`` are the first ``k`` eigenfunctions
``phi`` (:func:`funcgen.geometry.mesh.eigenbasis`) at the mesh vertices, or at fresh uniform surface
points (``points="surface"``, barycentric interpolation). The model never sees 3D positions.

Gaussian random fields are exact draws in the eigenbasis (Borovitskiy et al. 2020, "Matern Gaussian
processes on Riemannian manifolds", NeurIPS 2020; truncated to ``m`` modes):

    f(x) = sum_{i < m} c_i z_i phi_i(x),   z_i ~ N(0, 1),   c_i^2 = variance * S(lambda_i) / sum_j S(lambda_j),

with ``S`` the spectral density ``matern``: ``(2 nu / l^2 + lambda)^-(nu + 1)`` or ``heat``:
``exp(-l^2 lambda / 2)``. Since ``phi_i`` has mean square 1 over the surface, the surface-averaged
variance of ``f`` is ``variance``. Off the vertices ``f`` is the piecewise-linear interpolant, exactly
what ``coords[:, :m] @ (c * z)`` gives, so :meth:`MeshGRFDataModule.reference` draws the same law at
ANY eigen-coordinates and :meth:`MeshGRFDataModule.covariance` is exact there.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from funcgen.geometry.mesh import (
    MeshDomain,
    TriangleMesh,
    deformed_sphere,
    eigenbasis,
    icosphere,
    interpolate,
    read_mesh,
    sample_surface,
    torus,
)

from .base import FunctionDataModule

__all__ = ["MeshFunctionDataModule", "rebuild_domain", "MeshGRFDataModule", "MNISTSphereDataModule",
           "SphereGRFDataModule", "MeshFieldDataset", "spectral_density", "build_mesh", "render_mesh_functions",
           "texture_hemisphere", "hemisphere_chart", "chart_images"]

MeshName = Literal["icosphere", "torus", "deformed_sphere", "file"]
SpectrumName = Literal["matern", "heat"]
PointsOption = Literal["vertices", "surface"]


def build_mesh(mesh: MeshName, subdivisions: int = 3, path: str | None = None) -> TriangleMesh:
    """A procedural mesh by name (``subdivisions`` sets its resolution), or the file at ``path``."""
    if mesh == "icosphere":
        return icosphere(subdivisions)
    if mesh == "deformed_sphere":
        return deformed_sphere(subdivisions)
    if mesh == "torus":
        n = 4 * 2 ** subdivisions
        return torus(n_major=2 * n, n_minor=n)
    if mesh == "file":
        if not path:
            raise ValueError("mesh='file' needs path=... to an ASCII .obj, .off or .ply file")
        return read_mesh(path)
    raise ValueError(f"unknown mesh {mesh!r}; choose icosphere, torus, deformed_sphere or file")


def rebuild_domain(data: dict[str, Any]) -> MeshDomain | None:
    """The :class:`MeshDomain` of a mesh model exported before models carried their mesh, rebuilt from the
    procedural mesh its data metadata name (``mesh``, ``subdivisions``, ``num_eigs``; checked against
    ``mesh_sha256``); None when they name a file or too little."""
    name = data.get("mesh", "icosphere" if data.get("name") == "mnist_sphere" else None)
    if name not in ("icosphere", "torus", "deformed_sphere") or "subdivisions" not in data or "num_eigs" not in data:
        return None
    mesh = build_mesh(name, int(data["subdivisions"]))
    if data.get("mesh_sha256") not in (None, mesh.key):
        return None
    return MeshDomain(mesh, eigenbasis(mesh, int(data["num_eigs"])).coords(torch.float64))


def spectral_density(lam: Tensor, spectrum: SpectrumName, lengthscale: float, nu: float = 1.5) -> Tensor:
    """Unnormalised spectral density ``S(lambda)`` of a Matern or heat (squared-exponential) field on a surface."""
    if spectrum == "matern":
        return (2.0 * nu / lengthscale**2 + lam) ** (-(nu + 1.0))  # -(nu + d/2) with d = 2
    if spectrum == "heat":
        return torch.exp(-0.5 * lengthscale**2 * lam)
    raise ValueError(f"unknown spectrum {spectrum!r}; choose matern or heat")


class MeshFieldDataset(Dataset):
    """Functions ``f = phi[:, :m] @ w`` given by eigen-coefficients ``w``.

    Args:
        mesh: the mesh (surface points are sampled on it).
        phi: ``[V, k]`` eigen-coordinates of its vertices.
        weights: ``[M, m, c]`` coefficients of the ``M`` functions.
        num_points: None: observe every function at the vertices; else at this many uniform surface
            points, drawn afresh at every access (torch's global generator: seed it for reproducibility,
            as ``seed_everything`` does).
    """

    def __init__(self, mesh: TriangleMesh, phi: Tensor, weights: Tensor, num_points: int | None = None) -> None:
        self.mesh, self.phi, self.weights, self.num_points = mesh, phi.float(), weights.float(), num_points

    def __len__(self) -> int:
        return self.weights.shape[0]

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        if self.num_points is None:
            coords = self.phi
        else:
            face, bary = sample_surface(self.mesh, self.num_points)
            coords = interpolate(self.phi, face, bary, self.mesh.faces)
        m = self.weights.shape[1]
        return coords, coords[:, :m] @ self.weights[i]


def render_mesh_functions(mesh: TriangleMesh, values: Tensor, title: str = "", max_functions: int = 8) -> np.ndarray:
    """Per-vertex functions ``[B, V, c]`` (first channel) drawn on the 3D mesh -> RGB ``[H, W, 3]``.

    One symmetric colour scale for all functions, +-(99th percentile of ``|values|``); beyond it, saturated."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    vals = values.detach().float().cpu()[..., 0].numpy()
    if vals.shape[1] != mesh.num_vertices:
        raise ValueError(f"render: values hold {vals.shape[1]} points but the mesh has {mesh.num_vertices} vertices")
    b = min(max_functions, vals.shape[0])
    cols = min(4, b)
    rows = math.ceil(b / cols)
    fig = plt.figure(figsize=(2.6 * cols, 2.6 * rows + 0.4), dpi=80)
    # a robust colour range: a few extreme points (e.g. of an undertrained model) must not grey out the rest
    lim = float(np.quantile(np.abs(vals[:b]), 0.99)) or 1.0
    tri = mesh.vertices[mesh.faces]
    lo, hi = mesh.vertices.min(0), mesh.vertices.max(0)
    for j in range(b):
        ax = fig.add_subplot(rows, cols, j + 1, projection="3d")
        colors = plt.cm.coolwarm((vals[j][mesh.faces].mean(1) / lim + 1.0) / 2.0)
        ax.add_collection3d(Poly3DCollection(tri, facecolors=colors, edgecolor="none"))
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_zlim(lo[2], hi[2])
        ax.set_box_aspect(hi - lo, zoom=1.4)
        ax.set_axis_off()
    fig.suptitle(title)
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return rgb


class MeshFunctionDataModule(FunctionDataModule):
    """Base of datamodules serving functions on a mesh at its eigen-coordinates ``[N, k]``.

    Subclasses call :meth:`_init_mesh`; this class provides the evaluation hooks that
    :class:`funcgen.train.module.GenerativeModule` uses on non-grid domains (``validation_coords``, ``render``).
    """

    mesh: TriangleMesh

    def _init_mesh(self, mesh: TriangleMesh, num_eigs: int) -> None:
        self.mesh = mesh
        self.basis = eigenbasis(mesh, int(num_eigs))
        self.phi = self.basis.coords()
        self.dim = self.basis.k
        self.kind = "mesh"
        self.domain = "eigen"
        self.mesh_domain = MeshDomain(mesh, self.basis.coords(torch.float64))

    def domain_tensors(self) -> dict[str, Tensor]:
        """The mesh and its vertices' eigen-coordinates, exported with a model (:class:`MeshDomain`)."""
        return self.mesh_domain.to_tensors()

    # --- evaluation hooks (used by GenerativeModule's validation) ------------------------
    def _level(self, factor: int) -> tuple[TriangleMesh, Tensor]:
        """The mesh subdivided ``ceil(log4(factor))`` times and its vertices' eigen-coordinates."""
        times = max(0, math.ceil(math.log(max(factor, 1), 4) - 1e-9))
        mesh, phi = self.mesh_domain.level(times)
        return mesh, (self.phi if times == 0 else phi.float())

    def validation_coords(self, factor: int, num: int) -> Tensor:
        """Eigen-coordinates ``[num, V', k]`` of the vertices of the mesh refined ~``factor`` times
        (midpoint subdivision of the same surface; ``factor=1``: the mesh itself)."""
        return self._level(factor)[1].unsqueeze(0).expand(num, -1, -1)  # a broadcast view: one stored copy

    def render(self, coords: Tensor, values: Tensor, title: str = "") -> np.ndarray:
        """Picture of functions at the points of :meth:`validation_coords` (any level)."""
        n = coords.shape[1]
        for factor in (1, 4, 16, 64):
            mesh, _ = self._level(factor)
            if mesh.num_vertices == n:
                return render_mesh_functions(mesh, values, title)
        raise ValueError(f"render: {n} points are not the vertices of this mesh or of its subdivisions "
                         "(use validation_coords to get drawable points)")


class MeshGRFDataModule(MeshFunctionDataModule):
    """Exact Gaussian random fields on a triangle mesh, at eigenfunction coordinates.

    Args:
        mesh: ``icosphere``, ``torus``, ``deformed_sphere`` (procedural) or ``file`` (``path``).
        subdivisions: resolution of a procedural mesh (icosphere: ``10 * 4^s + 2`` vertices).
        path: ASCII ``.obj`` / ``.off`` / ``.ply`` file for ``mesh="file"``.
        num_eigs: ``k``, eigenfunctions used as coordinates (the net's ``dim``).
        spectrum: ``matern`` or ``heat`` spectral density of the Laplace-Beltrami operator.
        lengthscale: correlation length of the field (units of the mesh).
        nu: Matern smoothness.
        variance: surface-averaged marginal variance.
        points: ``vertices``: every function at all mesh vertices; ``surface``: at ``num_points`` fresh
            uniform surface points per access.
        num_points: surface points per function for ``points="surface"`` (default: the vertex count).
        num_train, num_val: numbers of functions.
        batch_size, seed, num_workers: see :class:`FunctionDataModule`.
    """

    name = "mesh_grf"

    def __init__(self, mesh: MeshName = "icosphere", subdivisions: int = 3, path: str | None = None,
                 num_eigs: int = 64, spectrum: SpectrumName = "matern", lengthscale: float = 0.5, nu: float = 1.5,
                 variance: float = 1.0, points: PointsOption = "vertices", num_points: int | None = None,
                 num_train: int = 2000, num_val: int = 128, batch_size: int = 32, seed: int = 0,
                 num_workers: int = 0) -> None:
        super().__init__(batch_size=batch_size, seed=seed, num_workers=num_workers)
        self.save_hyperparameters()
        if points not in ("vertices", "surface"):
            raise ValueError(f"points must be 'vertices' or 'surface'; got {points!r}")
        if lengthscale <= 0 or variance <= 0 or nu <= 0 or num_train <= 0 or num_val <= 0:
            raise ValueError("lengthscale, variance, nu, num_train and num_val must be positive; got "
                             f"{lengthscale}, {variance}, {nu}, {num_train}, {num_val}")
        spectral_density(torch.zeros(1), spectrum, lengthscale, nu)  # validates the name
        self.mesh_name, self.subdivisions, self.path = mesh, int(subdivisions), path
        self._init_mesh(build_mesh(mesh, subdivisions, path), num_eigs)
        self.spectrum, self.lengthscale = spectrum, float(lengthscale)
        self.nu, self.variance = float(nu), float(variance)
        self.points = points
        self.num_points = None if points == "vertices" else int(num_points or self.mesh.num_vertices)
        self.num_train, self.num_val = int(num_train), int(num_val)
        self.channels = 1
        self.train_shape = (self.mesh.num_vertices if self.num_points is None else self.num_points,)
        self.coef_std = self._coefficient_std()

    def _coefficient_std(self) -> Tensor:
        """``c_i`` ``[m]``: standard deviations of the eigen-coefficients."""
        s = spectral_density(torch.as_tensor(self.basis.eigenvalues, dtype=torch.float64).clamp_min(0.0),
                             self.spectrum, self.lengthscale, self.nu)
        return (self.variance * s / s.sum()).sqrt().float()

    @property
    def num_modes(self) -> int:
        """``m``: eigenfunctions the field is built from (``<= k``)."""
        return int(self.coef_std.shape[0])

    # --- data ---------------------------------------------------------------------------
    def _make_split(self, count: int, generator: torch.Generator, train: bool) -> MeshFieldDataset:
        w = torch.randn(count, self.num_modes, self.channels, generator=generator) * self.coef_std[:, None]
        return MeshFieldDataset(self.mesh, self.phi, w, self.num_points)

    def reference(self, coords: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Exact fresh draws ``[B, N, 1]`` of the field at eigen-coordinates ``coords`` ``[B, N, k]``."""
        if coords.ndim != 3 or coords.shape[-1] != self.dim:
            raise ValueError(
                f"reference coords must be eigen-coordinates [B, N, {self.dim}]; got {tuple(coords.shape)}")
        z = torch.randn(coords.shape[0], self.num_modes, self.channels, generator=generator, dtype=torch.float64)
        w = (z * self.coef_std.double()[:, None]).to(coords)
        return self.normalize(coords[..., :self.num_modes] @ w)

    def covariance(self, x: Tensor, y: Tensor) -> Tensor:
        """Exact covariance ``[N, M]`` of the field between eigen-coordinates ``x`` ``[N, k]`` and ``y`` ``[M, k]``."""
        m = self.num_modes
        return (x[..., :m].double() * self.coef_std.double() ** 2) @ y[..., :m].double().T

    def _extra_config(self) -> dict[str, Any]:
        return {"mesh": self.mesh_name, "subdivisions": self.subdivisions, "path": self.path,
                "mesh_sha256": self.mesh.key, "num_vertices": self.mesh.num_vertices, "num_eigs": self.basis.k,
                "num_modes": self.num_modes, "spectrum": self.spectrum, "lengthscale": self.lengthscale,
                "nu": self.nu, "variance": self.variance, "points": self.points, "num_train": self.num_train,
                "num_val": self.num_val}


class SphereGRFDataModule(MeshGRFDataModule):
    """A GRF on the unit sphere with a known angular power spectrum, observed on an icosphere.

    The field uses the complete degrees ``l <= L = floor(sqrt(k)) - 1`` (``m = (L+1)^2`` modes) and
    gives every mode of degree ``l`` the variance ``c_l^2 = variance * S(l(l+1)) / sum_l' (2l'+1) S(l'(l'+1))``
    from the EXACT sphere eigenvalues. Its angular power spectrum (``f = sum a_lm Y_lm``,
    ``E a_lm^2 = C_l``) is ``C_l = 4 pi c_l^2`` and its covariance on the sphere is
    ``sum_l (2l+1)/(4 pi) C_l P_l(<x, y>)`` (:meth:`sphere_covariance`); the mesh eigenfunctions of
    one degree span that degree's spherical harmonics up to the discretisation error, and any basis
    of that span gives the same law, so the sign/rotation ambiguity of eigenvectors does not matter.

    Args: as :class:`MeshGRFDataModule` (``mesh`` is always ``icosphere``).

    Raises:
        ValueError: the icosphere is too coarse to resolve degree ``L`` (an eigenvalue of degree ``l``
            further than ``l + 1`` from ``l(l+1)``): raise ``subdivisions`` or lower ``num_eigs``.
    """

    name = "sphere_grf"

    def __init__(self, subdivisions: int = 3, num_eigs: int = 64, spectrum: SpectrumName = "matern",
                 lengthscale: float = 0.5, nu: float = 1.5, variance: float = 1.0,
                 points: PointsOption = "vertices", num_points: int | None = None, num_train: int = 2000,
                 num_val: int = 128, batch_size: int = 32, seed: int = 0, num_workers: int = 0) -> None:
        super().__init__("icosphere", subdivisions, None, num_eigs, spectrum, lengthscale, nu, variance, points,
                         num_points, num_train, num_val, batch_size, seed, num_workers)

    @property
    def max_degree(self) -> int:
        return math.isqrt(self.basis.k) - 1

    def degrees(self) -> Tensor:
        """Degree ``l`` of each of the ``m`` modes, ``[m]``."""
        return torch.repeat_interleave(torch.arange(self.max_degree + 1), 2 * torch.arange(self.max_degree + 1) + 1)

    def _coefficient_std(self) -> Tensor:
        ell = self.degrees()
        lam = self.basis.eigenvalues[: len(ell)]
        exact = (ell * (ell + 1)).double().numpy()
        bad = np.flatnonzero(np.abs(lam - exact) > ell.numpy() + 1)
        if len(bad):
            i = int(bad[0])
            raise ValueError(f"icosphere({self.subdivisions}) does not resolve degree {int(ell[i])}: eigenvalue {i} "
                             f"is {lam[i]:.3f}, expected about {exact[i]:.0f}; raise subdivisions or lower num_eigs")
        s = spectral_density(torch.as_tensor(exact), self.spectrum, self.lengthscale, self.nu)
        return (self.variance * s / s.sum()).sqrt().float()

    def angular_power_spectrum(self) -> Tensor:
        """``C_l`` ``[L + 1]`` (float64) of the field on the unit sphere (orthonormal ``Y_lm`` convention)."""
        first = torch.cumsum(2 * torch.arange(self.max_degree + 1) + 1, 0) - 1  # last index of each degree
        return 4.0 * math.pi * self.coef_std.double()[first] ** 2

    def sphere_covariance(self, x: Tensor, y: Tensor) -> Tensor:
        """Covariance ``[N, M]`` of the continuum field between unit vectors ``x`` ``[N, 3]`` and ``y`` ``[M, 3]``."""
        cos = (x.double() @ y.double().T).clamp(-1.0, 1.0).numpy()
        ell = np.arange(self.max_degree + 1)
        coeffs = (2 * ell + 1) / (4 * math.pi) * self.angular_power_spectrum().numpy()
        return torch.as_tensor(np.polynomial.legendre.legval(cos, coeffs))

    def estimate_power_spectrum(self, values: Tensor) -> Tensor:
        """Estimate ``C_l`` ``[L + 1]`` from functions at the mesh vertices ``[S, V, 1]`` (M-weighted projection)."""
        if values.ndim != 3 or values.shape[1] != self.mesh.num_vertices:
            raise ValueError(
                f"values must be [S, {self.mesh.num_vertices}, c] at the vertices; got {tuple(values.shape)}")
        from funcgen.geometry.mesh import mass_matrix

        m = torch.as_tensor(mass_matrix(self.mesh).diagonal())
        w = torch.einsum("vk,v,svc->skc", self.phi.double()[:, :self.num_modes], m, values.double()) / self.mesh.area
        per_mode = (w**2).mean(dim=(0, 2))  # E w_i^2 = c_i^2
        ell = self.degrees()
        c2 = torch.zeros(self.max_degree + 1, dtype=torch.float64).index_add_(0, ell, per_mode)
        return 4.0 * math.pi * c2 / (2 * torch.arange(self.max_degree + 1) + 1)


def texture_hemisphere(images: Tensor, positions: Tensor) -> Tensor:
    """Paint images ``[M, c, H, W]`` onto the hemisphere ``x > 0`` of the unit sphere.

    Orthographic projection along ``x``: the point ``(x, y, z)`` reads the image at row ``(1 - z) / 2``
    and column ``(1 + y) / 2`` (bilinear, pixel edges at the square's border); the back hemisphere and
    the outside of the square read 0. Returns ``[M, V, c]`` for ``positions`` ``[V, 3]``.
    """
    grid = torch.stack([positions[:, 1], -positions[:, 2]], -1).to(images.dtype)  # (col, row) in [-1, 1]
    vals = torch.nn.functional.grid_sample(images, grid.view(1, 1, -1, 2).expand(images.shape[0], -1, -1, -1),
                                           mode="bilinear", padding_mode="zeros", align_corners=False)
    front = (positions[:, 0] > 0).to(images.dtype)
    return (vals[:, :, 0, :] * front).transpose(1, 2).contiguous()


def hemisphere_chart(mesh: TriangleMesh, size: int = 28) -> tuple[Tensor, Tensor, Tensor]:
    """Where the pixels of the image chart of :func:`texture_hemisphere` lie on a sphere-like ``mesh``.

    Pixel ``(row, col)`` of a ``size x size`` image is the unit vector ``(x, y, z)`` with
    ``y = (2 col + 1) / size - 1``, ``z = 1 - (2 row + 1) / size`` and ``x = sqrt(1 - y^2 - z^2) > 0``; its
    ray from the origin meets the mesh in one face (the mesh must be star-shaped about the origin).

    Returns:
        ``(face [P] long, bary [P, 3] float64, pixel [P] long)`` for the ``P`` pixels inside the unit disk
        (``pixel`` = ``row * size + col``); the others read the background.
    """
    c = (2 * torch.arange(size, dtype=torch.float64) + 1) / size - 1
    z, y = torch.meshgrid(-c, c, indexing="ij")
    inside = (y**2 + z**2 < 1).flatten()
    pix = torch.nonzero(inside).flatten()
    p = torch.stack([(1 - y**2 - z**2).clamp_min(0).sqrt(), y, z], -1).reshape(-1, 3)[pix]
    v = torch.as_tensor(mesh.vertices)
    tri = v[torch.as_tensor(mesh.faces)]  # [F, 3, 3]
    # ray p * s hits the plane of face f at s = n.a / n.p; barycentric coordinates by the triple products
    face = torch.full((len(pix),), -1, dtype=torch.long)
    bary = torch.zeros(len(pix), 3, dtype=torch.float64)
    for lo in range(0, len(pix), 256):
        q = p[lo:lo + 256, None, None, :]  # [P, 1, 1, 3]
        a, b, cc = tri[None, :, 0], tri[None, :, 1], tri[None, :, 2]
        w = torch.stack([torch.linalg.det(torch.stack(torch.broadcast_tensors(q[:, :, 0], b, cc), -2)),
                         torch.linalg.det(torch.stack(torch.broadcast_tensors(a, q[:, :, 0], cc), -2)),
                         torch.linalg.det(torch.stack(torch.broadcast_tensors(a, b, q[:, :, 0]), -2))], -1)
        total = w.sum(-1, keepdim=True)
        w = w / total
        ok = (w >= -1e-9).all(-1) & (total[..., 0] > 0)  # same side as the ray's direction
        first = ok.float().argmax(1)
        if not ok.any(1).all():
            raise ValueError("hemisphere_chart: a pixel's ray meets no face; the mesh must enclose the origin")
        face[lo:lo + 256] = first
        bary[lo:lo + 256] = w[torch.arange(len(first)), first].clamp_min(0)
    return face, bary / bary.sum(-1, keepdim=True), pix


def chart_images(values: Tensor, mesh: TriangleMesh, size: int = 28, background: float = 0.0) -> Tensor:
    """Per-vertex functions ``[S, V, 1]`` on a sphere-like mesh -> their image charts ``[S, size, size]``
    (barycentric interpolation at :func:`hemisphere_chart`; pixels off the disk read ``background``)."""
    face, bary, pix = hemisphere_chart(mesh, size)
    out = torch.full((values.shape[0], size * size), float(background), dtype=values.dtype)
    corners = values[:, torch.as_tensor(mesh.faces)[face], 0]  # [S, P, 3]
    out[:, pix] = (corners * bary.to(values.dtype)).sum(-1)
    return out.view(-1, size, size)


class MNISTSphereDataModule(MeshFunctionDataModule):
    """MNIST digits textured onto an icosphere, served at its eigen-coordinates (MDF's "MNIST on a sphere").

    Benchmark split: images ``0 .. num_train-1`` train (at most 8000), ``8000 .. 8000+num_val-1`` validation;
    the files are read from ``root`` (or ``$FUNCGEN_DATA``), never downloaded. Values are intensities in
    ``[0, 1]`` served in model space ``[-1, 1]`` (``shift = scale = 0.5``); see :func:`texture_hemisphere`.

    Args:
        root: folder holding ``mnist/t10k-images-idx3-ubyte.gz`` (default ``$FUNCGEN_DATA``).
        subdivisions: icosphere level (4: 2562 vertices, about 640 on the digit's hemisphere).
        num_eigs: eigen-coordinates ``k``.
        num_train, num_val, batch_size, seed, num_workers: see :class:`FunctionDataModule`.
    """

    name = "mnist_sphere"
    shift = 0.5
    scale = 0.5

    def __init__(self, root: str | None = None, subdivisions: int = 4, num_eigs: int = 64, num_train: int = 8000,
                 num_val: int = 256, batch_size: int = 32, seed: int = 0, num_workers: int = 0) -> None:
        super().__init__(batch_size=batch_size, seed=seed, num_workers=num_workers)
        self.save_hyperparameters()
        if not 0 < num_train <= 8000 or not 0 < num_val <= 2000:
            raise ValueError(f"need 0 < num_train <= 8000 and 0 < num_val <= 2000 (protocol split); got "
                             f"{num_train}, {num_val}")
        self.root, self.subdivisions = root, int(subdivisions)
        self.num_train, self.num_val = int(num_train), int(num_val)
        self._init_mesh(icosphere(self.subdivisions), num_eigs)
        self.channels = 1
        self.train_shape = (self.mesh.num_vertices,)

    def setup(self, stage: str | None = None) -> None:
        """Read the digits (once) and paint them onto the mesh vertices."""
        if self.train_set is not None and self.val_set is not None:
            return
        from .base import PointDataset
        from .mnist import load_mnist_idx, resolve_data_root

        images, _ = load_mnist_idx(resolve_data_root(self.root))
        imgs = torch.from_numpy(images).float().div(255.0).unsqueeze(1)
        pos = torch.tensor(self.mesh.vertices, dtype=torch.float32)
        for split, lo, n in (("train_set", 0, self.num_train), ("val_set", 8000, self.num_val)):
            values = self.normalize(texture_hemisphere(imgs[lo:lo + n], pos))
            setattr(self, split, PointDataset(self.phi, values))

    def _extra_config(self) -> dict[str, Any]:
        return {"subdivisions": self.subdivisions, "num_eigs": self.basis.k, "mesh_sha256": self.mesh.key,
                "num_vertices": self.mesh.num_vertices, "num_train": self.num_train, "num_val": self.num_val}
