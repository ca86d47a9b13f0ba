"""Triangle meshes, the cotangent Laplacian and Laplace-Beltrami eigenfunctions (pure numpy/scipy/torch).

Manifold Diffusion Fields (Elhag et al., ICLR 2024) represent a point ``x`` of a surface by its first
``k`` Laplace-Beltrami eigenfunctions ``phi(x) = (phi_1(x), ..., phi_k(x))``: the solutions of the
generalized eigenproblem (MDF sec. 3)

    L psi = lambda M psi,      psi^T M psi = I,

with ``L`` the cotangent Laplacian (stiffness matrix) and ``M`` the lumped (barycentric) mass matrix.
These coordinates are intrinsic: rigid motions (and isometries) of the mesh leave them unchanged,
up to the sign / rotation ambiguity of eigenvectors that :func:`eigenbasis` canonicalizes.

Scaling: the paper multiplies unit-norm eigenvectors by ``sqrt(#vertices)`` so that coordinates are
O(1). We use ``phi = sqrt(area) psi`` with ``psi`` M-orthonormal, i.e. ``mean_surface(phi_i^2) = 1``.
On a mesh of equal vertex areas the two agree exactly (``M = area / V * I``); unlike the vertex
count, the area does not change when a mesh is refined, so the same surface point gets the same
coordinates on a coarse and a fine mesh, which is what sampling "at any resolution" needs.

Off-vertex points are ``(face index, barycentric coordinates)`` pairs; every per-vertex quantity
is extended to them by linear (barycentric) interpolation inside the triangle.

Resolution: to sample a trained model on a finer discretisation of the SAME surface, interpolate the
training mesh's eigenbasis at the new points (:func:`subdivide` or :func:`sample_surface`, then
:meth:`MeshEigenbasis.coords_at`). Recomputing an eigenbasis on another mesh gives the same
coordinates only for simple eigenvalues: on symmetric surfaces (the sphere) an eigenspace's basis is
defined up to a rotation, which no canonicalization can fix.

Mesh files: ASCII OBJ / OFF / PLY are read by :func:`read_mesh` (see :mod:`funcgen.geometry.mesh_io`).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
from torch import Tensor

__all__ = ["TriangleMesh", "MeshEigenbasis", "eigenbasis", "cotangent_laplacian", "mass_matrix",
           "interpolate", "sample_surface", "vertex_locations", "subdivide", "icosphere", "torus", "deformed_sphere",
           "read_mesh", "MeshDomain"]

_AREA_TOL = 1e-12  # faces with area below this fraction of the mean face area count as degenerate


@dataclass(frozen=True, eq=False)
class TriangleMesh:
    """A closed or open 2-manifold triangle mesh.

    Args:
        vertices: ``[V, 3]`` float positions.
        faces: ``[F, 3]`` integer vertex indices (0-based), consistently oriented or not.
        name: label used in error messages.

    Raises:
        ValueError: bad shapes, non-finite positions, out-of-range indices, faces with a repeated
            vertex or zero area, edges shared by more than two faces (non-manifold), or vertices
            used by no face (they would get zero mass).
    """

    vertices: np.ndarray
    faces: np.ndarray
    name: str = "mesh"
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        v = np.array(self.vertices, dtype=np.float64, copy=True)
        f = np.array(self.faces, copy=True)
        where = f"mesh {self.name!r}"
        if v.ndim != 2 or v.shape[1] != 3 or v.shape[0] < 3:
            raise ValueError(f"{where}: vertices must be [V >= 3, 3]; got {v.shape}")
        if f.ndim != 2 or f.shape[1] != 3 or f.shape[0] < 1:
            raise ValueError(f"{where}: faces must be [F >= 1, 3] (triangles); got {f.shape}")
        if not np.issubdtype(f.dtype, np.integer):
            if not np.all(np.isfinite(f)) or not np.all(f == np.round(f)):
                raise ValueError(f"{where}: face indices must be integers")
        f = f.astype(np.int64)
        if not np.all(np.isfinite(v)):
            first = np.argwhere(~np.isfinite(v))[0][0]
            raise ValueError(f"{where}: vertices contain NaN or inf (first at row {first})")
        bad = np.argwhere((f < 0) | (f >= len(v)))
        if len(bad):
            i = bad[0][0]
            raise ValueError(f"{where}: face {i} = {f[i].tolist()} refers to a vertex outside 0..{len(v) - 1} "
                             "(indices are 0-based; OBJ files are 1-based and converted on reading)")
        rep = np.flatnonzero((f[:, 0] == f[:, 1]) | (f[:, 1] == f[:, 2]) | (f[:, 0] == f[:, 2]))
        if len(rep):
            raise ValueError(f"{where}: {len(rep)} degenerate face(s) with a repeated vertex, first face "
                             f"{rep[0]} = {f[rep[0]].tolist()}; remove them before building the mesh")
        areas = _face_areas(v, f)
        tiny = np.flatnonzero(areas <= _AREA_TOL * max(areas.mean(), np.finfo(float).tiny))
        if len(tiny):
            raise ValueError(f"{where}: {len(tiny)} face(s) of zero area (collinear vertices), first face "
                             f"{tiny[0]} = {f[tiny[0]].tolist()}; remove or repair them")
        edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
        uniq, counts = np.unique(edges, axis=0, return_counts=True)
        if counts.max() > 2:
            e = uniq[np.argmax(counts)]
            raise ValueError(f"{where}: non-manifold edge {e.tolist()} is shared by {counts.max()} faces "
                             f"({int((counts > 2).sum())} such edges); a surface edge borders at most 2 faces")
        unused = np.setdiff1d(np.arange(len(v)), f.ravel())
        if len(unused):
            raise ValueError(f"{where}: {len(unused)} vertex/vertices used by no face (first {unused[0]}); "
                             "drop unreferenced vertices before building the mesh")
        v.setflags(write=False)
        f.setflags(write=False)
        object.__setattr__(self, "vertices", v)
        object.__setattr__(self, "faces", f)
        object.__setattr__(self, "face_areas", areas)
        object.__setattr__(self, "is_closed", bool(np.all(counts == 2)))

    face_areas: np.ndarray = field(init=False, repr=False, compare=False)  # [F]
    is_closed: bool = field(init=False, repr=False, compare=False)  # every edge borders two faces

    @property
    def num_vertices(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def area(self) -> float:
        """Total surface area."""
        return float(self.face_areas.sum())

    @property
    def key(self) -> str:
        """SHA-256 of the vertex and face arrays: equal meshes share cached eigenpairs."""
        if "key" not in self._cache:
            h = hashlib.sha256()
            for a in (self.vertices, self.faces):
                h.update(str(a.shape).encode())
                h.update(np.ascontiguousarray(a).tobytes())
            self._cache["key"] = h.hexdigest()
        return self._cache["key"]

    def transformed(self, rotation: np.ndarray, translation: np.ndarray | None = None) -> "TriangleMesh":
        """The mesh moved rigidly: ``x -> R x + t`` (``rotation`` ``[3, 3]``, ``translation`` ``[3]``)."""
        t = np.zeros(3) if translation is None else np.asarray(translation, dtype=np.float64)
        return TriangleMesh(self.vertices @ np.asarray(rotation, dtype=np.float64).T + t, self.faces, self.name)


def _face_areas(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    return 0.5 * np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1)


# --------------------------------------------------------------------------- operators
def cotangent_laplacian(mesh: TriangleMesh) -> sp.csr_matrix:
    """Cotangent stiffness matrix ``L`` ``[V, V]`` (symmetric positive semi-definite, rows sum to 0).

    ``L_ij = -(cot a_ij + cot b_ij) / 2`` for an edge ``ij`` with opposite angles ``a_ij, b_ij``
    (one angle on a boundary edge), ``L_ii = -sum_j L_ij``; ``u^T L u = int |grad u|^2`` for the
    piecewise-linear ``u`` (Pinkall & Polthier 1993).
    """
    v, f = mesh.vertices, mesh.faces
    rows, cols, vals = [], [], []
    for k in range(3):  # angle at corner k, opposite edge (i, j)
        i, j, o = f[:, (k + 1) % 3], f[:, (k + 2) % 3], f[:, k]
        a, b = v[i] - v[o], v[j] - v[o]
        cot = np.einsum("ij,ij->i", a, b) / np.linalg.norm(np.cross(a, b), axis=1)
        rows += [i, j]
        cols += [j, i]
        vals += [-0.5 * cot, -0.5 * cot]
    n = mesh.num_vertices
    off = sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)).tocsr()
    return (off - sp.diags(np.asarray(off.sum(axis=1)).ravel())).tocsr()


def mass_matrix(mesh: TriangleMesh) -> sp.dia_matrix:
    """Lumped (barycentric) mass matrix ``M`` ``[V, V]``: a third of the area of every adjacent face."""
    m = np.bincount(mesh.faces.ravel(), weights=np.repeat(mesh.face_areas / 3.0, 3), minlength=mesh.num_vertices)
    return sp.diags(m)


# --------------------------------------------------------------------------- eigenpairs
@dataclass(frozen=True, eq=False)
class MeshEigenbasis:
    """The first ``k`` Laplace-Beltrami eigenpairs of a mesh.

    Attributes:
        eigenvalues: ``[k]`` ascending, ``eigenvalues[0] = 0`` on a closed connected mesh.
        psi: ``[V, k]`` M-orthonormal eigenvectors (``psi^T M psi = I``), sign-canonicalized.
        scale: ``sqrt(area)``; the coordinates are ``phi = scale * psi`` (mean square 1 over the surface).
    """

    eigenvalues: np.ndarray
    psi: np.ndarray
    scale: float

    @property
    def k(self) -> int:
        return int(self.eigenvalues.shape[0])

    def coords(self, dtype: torch.dtype = torch.float32) -> Tensor:
        """Eigenfunction coordinates ``phi`` of the vertices, ``[V, k]``."""
        return torch.as_tensor(self.scale * self.psi, dtype=dtype)

    def coords_at(self, face_index: Tensor, bary: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        """Coordinates ``[..., k]`` at surface points (``face_index`` ``[...]``, ``bary`` ``[..., 3]``)."""
        return interpolate(self.coords(torch.float64), face_index, bary, self._faces).to(dtype)

    _faces: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]


def _canonical_signs(psi: np.ndarray, mass: np.ndarray) -> np.ndarray:
    """Flip each column so that its M-weighted third moment ``int psi^3 dA`` is positive.

    Where that moment vanishes (``|int psi^3| < 1e-6 * (int psi^4)^(3/4)``, e.g. an odd function on
    a symmetric mesh) the value of largest magnitude is made positive instead (ties: lowest vertex
    index). Both rules are invariant under rigid motions; the first also under vertex relabelling.
    """
    m3 = (mass[:, None] * psi**3).sum(0)
    m4 = (mass[:, None] * psi**4).sum(0)
    peak = psi[np.abs(psi).argmax(axis=0), np.arange(psi.shape[1])]
    sign = np.where(np.abs(m3) > 1e-6 * m4**0.75, np.sign(m3), np.sign(peak))
    sign[sign == 0] = 1.0
    return psi * sign


def _add_missed_eigenpairs(lap: sp.csr_matrix, m: np.ndarray, sigma: float, lam: np.ndarray,
                           psi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Complete the ``k`` eigenpairs of a Lanczos run that skipped a copy of a repeated eigenvalue.

    Single-vector shift-invert Lanczos finds the copies of a repeated eigenvalue only through round-off, and it
    can return ``k`` eigenvalues with one copy missing and the next eigenvalue in its place (on randomly rotated
    icosphere(3) meshes: 5 of 150 orientations at k = 16, 21 of 200 at k = 36, where k ends a degree of the
    sphere's spectrum). The lowest eigenvalue of ``L psi = lambda M psi`` on the M-orthogonal complement of the
    found vectors (the dominant eigenvalue of the deflated shift-invert operator, in the symmetric form
    ``M^-1/2 L M^-1/2``) must not lie below the largest found one; while it does, its eigenvector replaces the
    largest. Complete runs are returned unchanged.
    """
    n, k = psi.shape
    sq = np.sqrt(m)
    lu = spla.splu((lap - sigma * sp.diags(m)).tocsc())
    v0 = np.random.default_rng(0).standard_normal(n)  # generic (the constant is an eigenvector), deterministic
    for _ in range(k):
        y = sq[:, None] * psi
        y, _r = np.linalg.qr(y)

        def deflated(v: np.ndarray, y: np.ndarray = y) -> np.ndarray:
            v = v - y @ (y.T @ v)
            w = sq * lu.solve(sq * v)
            return w - y @ (y.T @ w)

        op = spla.LinearOperator((n, n), matvec=deflated, dtype=np.float64)
        nu, vec = spla.eigsh(op, k=1, which="LA", v0=v0)
        low = sigma + 1.0 / float(nu[0])
        if low >= lam[-1] - 1e-9 * max(1.0, abs(lam[-1])):
            break
        lam = np.append(lam[:-1], low)
        psi = np.column_stack([psi[:, :-1], vec[:, 0] / sq])
        order = np.argsort(lam)
        lam, psi = lam[order], psi[:, order]
    return lam, psi


_EIGEN_CACHE: "OrderedDict[tuple[str, int], MeshEigenbasis]" = OrderedDict()
_EIGEN_CACHE_SIZE = 8  # memo of a pure function (same arrays + k -> same answer), bounded


def eigenbasis(mesh: TriangleMesh, k: int) -> MeshEigenbasis:
    """The first ``k`` eigenpairs of ``L psi = lambda M psi`` (shift-invert Lanczos, ``eigsh``).

    Results are memoized by ``(mesh.key, k)`` (a hash of the arrays), so meshes with equal arrays
    share one computation; at most the 8 most recent bases are kept.

    Raises:
        ValueError: ``k`` outside ``1 .. V - 1``.
    """
    n = mesh.num_vertices
    if not isinstance(k, int) or not 1 <= k < n:
        raise ValueError(f"number of eigenpairs k must be an int in 1..{n - 1} for mesh {mesh.name!r} "
                         f"with {n} vertices; got {k!r}")
    key = (mesh.key, k)
    if key in _EIGEN_CACHE:
        _EIGEN_CACHE.move_to_end(key)
        return _EIGEN_CACHE[key]
    lap, mass = cotangent_laplacian(mesh), mass_matrix(mesh)
    m = mass.diagonal()
    # L is singular (constants): shift slightly below 0 so L - sigma M is positive definite
    sigma = -1e-3 * float(lap.diagonal().mean() / m.mean()) / n
    if n <= 400:  # small meshes: dense solver, exact and fast
        import scipy.linalg as sla
        lam, psi = sla.eigh(lap.toarray(), np.diag(m), subset_by_index=[0, k - 1])
    else:
        lam, psi = spla.eigsh(lap.tocsc(), k=k, M=mass.tocsc(), sigma=sigma, which="LM",
                              v0=np.full(n, 1.0 / np.sqrt(n)))
    order = np.argsort(lam)
    lam, psi = lam[order], psi[:, order]
    if n > 400:
        lam, psi = _add_missed_eigenpairs(lap, m, sigma, lam, psi)
    # re-orthonormalize in the M inner product (Lanczos is accurate to ~1e-10 already)
    gram = psi.T @ (m[:, None] * psi)
    psi = psi @ np.linalg.inv(np.linalg.cholesky(gram)).T
    basis = MeshEigenbasis(lam, _canonical_signs(psi, m), float(np.sqrt(mesh.area)), mesh.faces)
    _EIGEN_CACHE[key] = basis
    while len(_EIGEN_CACHE) > _EIGEN_CACHE_SIZE:
        _EIGEN_CACHE.popitem(last=False)
    return basis


# --------------------------------------------------------------------------- surface points
def interpolate(values: Tensor, face_index: Tensor, bary: Tensor, faces: np.ndarray | Tensor) -> Tensor:
    """Barycentric (piecewise-linear) interpolation of per-vertex ``values`` ``[V, c]``.

    Args:
        values: ``[V, c]`` values at the vertices.
        face_index: ``[...]`` long, the face holding each point.
        bary: ``[..., 3]`` barycentric coordinates (non-negative, summing to 1) w.r.t. that face's corners.
        faces: ``[F, 3]`` the mesh faces.

    Returns:
        ``[..., c]``: ``sum_j bary_j values[faces[face_index, j]]``.
    """
    faces = torch.as_tensor(np.array(faces), dtype=torch.long, device=values.device)
    face_index = torch.as_tensor(face_index, dtype=torch.long, device=values.device)
    bary = torch.as_tensor(bary, device=values.device)
    if bary.shape != (*face_index.shape, 3):
        raise ValueError(
            f"bary must be [..., 3] matching face_index {tuple(face_index.shape)}; got {tuple(bary.shape)}")
    if face_index.numel() and (face_index.min() < 0 or face_index.max() >= faces.shape[0]):
        raise ValueError(f"face_index out of range 0..{faces.shape[0] - 1}")
    if (bary < -1e-6).any() or not torch.allclose(bary.sum(-1), torch.ones((), dtype=bary.dtype), atol=1e-5):
        raise ValueError("barycentric coordinates must be >= 0 and sum to 1 (points off their triangle)")
    corner = values[faces[face_index]]  # [..., 3, c]
    return (bary.to(values.dtype).unsqueeze(-1) * corner).sum(-2)


def sample_surface(mesh: TriangleMesh, n: int, generator: torch.Generator | None = None,
                   batch: int | None = None) -> tuple[Tensor, Tensor]:
    """Uniform random points on the surface (area-weighted face choice, uniform inside the face).

    Returns:
        ``(face_index [n] long, bary [n, 3] float64)``, with a leading ``[batch]`` axis if given.
    """
    if n < 1:
        raise ValueError(f"number of surface points must be positive; got {n}")
    shape = (n,) if batch is None else (batch, n)
    w = torch.as_tensor(mesh.face_areas, dtype=torch.float64)
    face = torch.multinomial(w, int(np.prod(shape)), replacement=True, generator=generator).reshape(shape)
    u = torch.rand((*shape, 2), generator=generator, dtype=torch.float64)
    flip = u.sum(-1, keepdim=True) > 1.0
    u = torch.where(flip, 1.0 - u, u)  # reflect into the lower triangle: uniform on the simplex
    return face, torch.cat([1.0 - u.sum(-1, keepdim=True), u], dim=-1)


def vertex_locations(mesh: TriangleMesh) -> tuple[Tensor, Tensor]:
    """Every vertex as a surface point: ``(face_index [V], bary [V, 3])`` with a one-hot barycentric."""
    f = torch.from_numpy(mesh.faces.copy())
    face = torch.empty(mesh.num_vertices, dtype=torch.long)
    corner = torch.empty(mesh.num_vertices, dtype=torch.long)
    for j in range(3):  # later corners overwrite earlier ones: any incident face is fine
        face[f[:, j]] = torch.arange(f.shape[0])
        corner[f[:, j]] = j
    return face, torch.nn.functional.one_hot(corner, 3).to(torch.float64)


def subdivide(mesh: TriangleMesh, times: int = 1) -> tuple[TriangleMesh, Tensor, Tensor]:
    """Split every face into 4 at its edge midpoints, ``times`` times, WITHOUT moving any point.

    The refined mesh is the same (piecewise-flat) surface with about ``4^times`` as many vertices,
    so quantities at its vertices are the barycentric interpolation of the coarse ones.

    Returns:
        ``(fine mesh, face_index [V'], bary [V', 3])``: every fine vertex as a point of ``mesh``.
    """
    if times < 0:
        raise ValueError(f"times must be >= 0; got {times}")
    v, f = mesh.vertices, mesh.faces
    parent = np.arange(len(f))  # coarse face holding each current face
    corner = np.broadcast_to(np.eye(3), (len(f), 3, 3)).copy()  # [F, corner, bary in parent]
    for _ in range(times):
        edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
        uniq, inv = np.unique(edges, axis=0, return_inverse=True)
        mid = len(v) + inv.reshape(3, -1).T  # [F, 3] new vertices on edges (01, 12, 20)
        v = np.concatenate([v, 0.5 * (v[uniq[:, 0]] + v[uniq[:, 1]])])
        ba, bb, bc = corner[:, 0], corner[:, 1], corner[:, 2]
        bab, bbc, bca = 0.5 * (ba + bb), 0.5 * (bb + bc), 0.5 * (bc + ba)
        a, b, c = f[:, 0], f[:, 1], f[:, 2]
        ab, bc_, ca = mid[:, 0], mid[:, 1], mid[:, 2]
        f = np.concatenate([np.stack(x, -1) for x in ((a, ab, ca), (b, bc_, ab), (c, ca, bc_), (ab, bc_, ca))])
        corner = np.concatenate([np.stack(x, 1) for x in ((ba, bab, bca), (bb, bbc, bab), (bc, bca, bbc),
                                                           (bab, bbc, bca))])
        parent = np.tile(parent, 4)
    fine = TriangleMesh(v, f, name=f"{mesh.name}/subdivided{times}")
    face, bary = np.empty(len(v), dtype=np.int64), np.empty((len(v), 3))
    for j in range(3):  # any face holding a vertex gives its location in the coarse mesh
        face[f[:, j]] = parent
        bary[f[:, j]] = corner[:, j]
    return fine, torch.from_numpy(face), torch.from_numpy(bary)


# --------------------------------------------------------------------------- a mesh model's domain
class MeshDomain:
    """A mesh and the eigen-coordinates of its vertices: where a model trained on the mesh lives.

    Exported with such a model (:meth:`to_tensors`), so that it samples on its training mesh, or on
    that mesh subdivided ``refine`` times, without rebuilding the data: the coordinates of a refined
    mesh's vertices are the barycentric interpolation of ``phi`` (:func:`subdivide`).

    Args:
        mesh: the training mesh.
        phi: ``[V, k]`` eigen-coordinates of its vertices (:meth:`MeshEigenbasis.coords`).
    """

    PREFIX = "domain.mesh."
    #: the most memory :meth:`level` spends on a refined level's eigen-coordinates (float64), in bytes
    MAX_LEVEL_BYTES = 2 * 1024**3

    def __init__(self, mesh: TriangleMesh, phi: Tensor) -> None:
        if phi.ndim != 2 or phi.shape[0] != mesh.num_vertices:
            raise ValueError(f"phi must be [V={mesh.num_vertices}, k]; got {tuple(phi.shape)}")
        self.mesh, self.phi = mesh, phi.detach().double().cpu()
        self._levels: dict[int, tuple[TriangleMesh, Tensor]] = {0: (mesh, self.phi)}

    def num_vertices_at(self, refine: int) -> int:
        """Vertices of the mesh subdivided ``refine`` times (:func:`subdivide`: each split adds one vertex per
        edge, ``V' = V + E``, ``E' = 2 E + 3 F``, ``F' = 4 F``), without subdividing it."""
        f = np.asarray(self.mesh.faces)
        edges = np.unique(np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1), axis=0)
        v, e, nf = self.mesh.num_vertices, len(edges), len(f)
        for _ in range(refine):
            v, e, nf = v + e, 2 * e + 3 * nf, 4 * nf
        return int(v)

    def level(self, refine: int = 0, max_bytes: int | None = None) -> tuple[TriangleMesh, Tensor]:
        """``(mesh subdivided refine times, its vertices' eigen-coordinates [V', k] float64)``.

        Raises:
            ValueError: ``refine`` not an int >= 0, or its coordinates would take more than ``max_bytes``
                (default :attr:`MAX_LEVEL_BYTES`).
        """
        if not isinstance(refine, int) or isinstance(refine, bool) or refine < 0:
            raise ValueError(f"refine must be an int >= 0 (times the mesh is subdivided, ~4x vertices each); "
                             f"got {refine!r}")
        if refine not in self._levels:
            limit = self.MAX_LEVEL_BYTES if max_bytes is None else int(max_bytes)
            k = self.phi.shape[1]
            counts = [self.num_vertices_at(r) for r in range(refine + 1)]
            if counts[refine] * k * 8 > limit:
                ok = max((r for r in range(refine) if counts[r] * k * 8 <= limit), default=0)
                raise ValueError(f"refine={refine} subdivides the mesh to {counts[refine]} vertices, whose {k} "
                                 f"eigen-coordinates take {counts[refine] * k * 8 / 2**30:.1f} GiB (limit "
                                 f"{limit / 2**30:.1f} GiB): use refine <= {ok} ({counts[ok]} vertices) or sample at "
                                 "points of your own (coords=..., `funcgen sample --coords Q.npy`)")
            fine, face, bary = subdivide(self.mesh, refine)
            self._levels[refine] = (fine, interpolate(self.phi, face, bary, self.mesh.faces))
        return self._levels[refine]

    def to_tensors(self) -> dict[str, Tensor]:
        """``{PREFIX + name: tensor}``: vertices ``[V, 3]``, faces ``[F, 3]``, phi ``[V, k]``."""
        return {self.PREFIX + "vertices": torch.from_numpy(np.array(self.mesh.vertices)),
                self.PREFIX + "faces": torch.from_numpy(np.array(self.mesh.faces)),
                self.PREFIX + "phi": self.phi.clone()}

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor], name: str = "mesh") -> "MeshDomain | None":
        """The domain stored by :meth:`to_tensors` (None when ``tensors`` hold none)."""
        keys = [cls.PREFIX + k for k in ("vertices", "faces", "phi")]
        if not all(k in tensors for k in keys):
            return None
        v, f, phi = (tensors[k] for k in keys)
        return cls(TriangleMesh(v.double().numpy(), f.long().numpy(), name=name), phi)


# --------------------------------------------------------------------------- procedural meshes
def icosphere(subdivisions: int = 3, radius: float = 1.0) -> TriangleMesh:
    """Unit icosahedron subdivided ``subdivisions`` times (each splits a face in 4), projected to the sphere.

    ``V = 10 * 4^s + 2`` vertices; Laplace-Beltrami eigenvalues approach ``l(l+1) / radius^2``.
    """
    if subdivisions < 0:
        raise ValueError(f"subdivisions must be >= 0; got {subdivisions}")
    p = (1.0 + 5**0.5) / 2
    verts = [(-1, p, 0), (1, p, 0), (-1, -p, 0), (1, -p, 0), (0, -1, p), (0, 1, p), (0, -1, -p), (0, 1, -p),
             (p, 0, -1), (p, 0, 1), (-p, 0, -1), (-p, 0, 1)]
    faces = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4), (11, 10, 2),
             (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9), (4, 9, 5),
             (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1)]
    v = [np.array(x, dtype=np.float64) / np.linalg.norm(x) for x in verts]
    f = np.array(faces)
    for _ in range(subdivisions):
        mid: dict[tuple[int, int], int] = {}

        def midpoint(a: int, b: int) -> int:
            key = (min(a, b), max(a, b))
            if key not in mid:
                m = v[a] + v[b]
                v.append(m / np.linalg.norm(m))
                mid[key] = len(v) - 1
            return mid[key]

        new = []
        for a, b, c in f:
            ab, bc, ca = midpoint(a, b), midpoint(b, c), midpoint(c, a)
            new += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        f = np.array(new)
    return TriangleMesh(radius * np.stack(v), f, name=f"icosphere{subdivisions}")


def torus(major_radius: float = 1.0, minor_radius: float = 0.4, n_major: int = 32, n_minor: int = 16) -> TriangleMesh:
    """Regular triangulated torus with ``n_major * n_minor`` vertices."""
    if not 0 < minor_radius < major_radius or n_major < 3 or n_minor < 3:
        raise ValueError(f"torus needs 0 < minor_radius < major_radius and n_major, n_minor >= 3; got "
                         f"{minor_radius}, {major_radius}, {n_major}, {n_minor}")
    u = 2 * np.pi * np.arange(n_major) / n_major
    w = 2 * np.pi * np.arange(n_minor) / n_minor
    uu, ww = np.meshgrid(u, w, indexing="ij")
    r = major_radius + minor_radius * np.cos(ww)
    v = np.stack([r * np.cos(uu), r * np.sin(uu), minor_radius * np.sin(ww)], -1).reshape(-1, 3)
    i, j = np.meshgrid(np.arange(n_major), np.arange(n_minor), indexing="ij")
    a, b = i * n_minor + j, ((i + 1) % n_major) * n_minor + j
    c, d = ((i + 1) % n_major) * n_minor + (j + 1) % n_minor, i * n_minor + (j + 1) % n_minor
    f = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    return TriangleMesh(v, f, name="torus")


def deformed_sphere(subdivisions: int = 3, amplitude: float = 0.25, seed: int = 0) -> TriangleMesh:
    """An icosphere with radius ``1 + amplitude * g(x)``, ``g`` a smooth random degree-3 polynomial.

    The deformation breaks the sphere's symmetry, so its eigenvalues are (generically) simple.
    """
    if not 0 <= amplitude < 0.5:
        raise ValueError(f"amplitude must lie in [0, 0.5) to keep the surface star-shaped; got {amplitude}")
    base = icosphere(subdivisions)
    x = base.vertices
    rng = np.random.default_rng(seed)
    feats = np.stack([x[:, 0], x[:, 1], x[:, 2], x[:, 0] * x[:, 1], x[:, 1] * x[:, 2], x[:, 2] ** 2,
                      x[:, 0] ** 3, x[:, 0] * x[:, 1] * x[:, 2]], -1)
    g = np.tanh(feats @ rng.normal(size=feats.shape[1]) / 2)
    return TriangleMesh(x * (1.0 + amplitude * g)[:, None], base.faces, name=f"deformed_sphere{subdivisions}")


def read_mesh(path: str, name: str | None = None) -> TriangleMesh:
    """Read an ASCII ``.obj``, ``.off`` or ``.ply`` triangle mesh (see :mod:`funcgen.geometry.mesh_io`)."""
    from .mesh_io import read_mesh_arrays

    v, f = read_mesh_arrays(path)
    return TriangleMesh(v, f, name=name or str(path))
