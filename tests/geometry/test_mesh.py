"""Triangle meshes: Laplace-Beltrami spectrum against the sphere's l(l+1), rigid invariance of the
eigenfunction coordinates, barycentric interpolation, area-uniform sampling, and reader errors."""

import numpy as np
import pytest
import torch

from funcgen.geometry.mesh import (
    TriangleMesh,
    cotangent_laplacian,
    deformed_sphere,
    eigenbasis,
    icosphere,
    interpolate,
    mass_matrix,
    read_mesh,
    sample_surface,
    subdivide,
    torus,
    vertex_locations,
)
from funcgen.geometry.mesh_io import write_obj


def random_rotation(gen: torch.Generator) -> np.ndarray:
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q.numpy()


def clusters(lam: np.ndarray, rel: float = 1e-3) -> list[np.ndarray]:
    """Index groups of (numerically) repeated eigenvalues."""
    groups, cur = [], [0]
    for i in range(1, len(lam)):
        if lam[i] - lam[i - 1] <= rel * max(lam[i], 1.0):
            cur.append(i)
        else:
            groups.append(np.array(cur))
            cur = [i]
    groups.append(np.array(cur))
    return groups


def test_icosphere_spectrum_converges_to_l_l_plus_1(gen):
    rot = random_rotation(gen)  # orientation must not matter
    lmax = 4
    k = (lmax + 1) ** 2
    ell = np.repeat(np.arange(lmax + 1), 2 * np.arange(lmax + 1) + 1)
    errs = []
    for s in (2, 3, 4):
        mesh = icosphere(s).transformed(rot)
        lam = eigenbasis(mesh, k).eigenvalues
        errs.append(np.abs(lam - ell * (ell + 1)) / np.maximum(ell * (ell + 1), 1))
        # multiplicity 2l+1: the spread within a degree is far below the gap to the next degree
        for deg in range(1, lmax + 1):
            block = lam[ell == deg]
            assert block.max() - block.min() < 0.1 * (2 * deg + 2), (s, deg, block)
    assert abs(eigenbasis(icosphere(4), k).eigenvalues[0]) < 1e-8
    # second-order convergence: each refinement divides the error by about 4
    for coarse, fine in zip(errs, errs[1:]):
        assert np.all(fine[1:] < 0.4 * coarse[1:])
    assert errs[-1].max() < 0.01


def test_laplacian_and_mass_matrix_properties(gen):
    mesh = deformed_sphere(2, 0.3, seed=int(torch.randint(0, 1000, (), generator=gen)))
    lap, mass = cotangent_laplacian(mesh), mass_matrix(mesh)
    assert abs(lap - lap.T).max() < 1e-12
    assert np.abs(np.asarray(lap.sum(axis=1))).max() < 1e-10
    assert np.isclose(mass.diagonal().sum(), mesh.area)
    # Dirichlet energy of a random piecewise-linear function equals the sum over faces of area * |grad u|^2
    u = torch.randn(mesh.num_vertices, generator=gen, dtype=torch.float64).numpy()
    v, f = mesh.vertices, mesh.faces
    e = 0.0
    for (a, b, c), area in zip(f, mesh.face_areas):
        n = np.cross(v[b] - v[a], v[c] - v[a])
        n /= np.linalg.norm(n)
        grad = (u[a] * np.cross(n, v[c] - v[b]) + u[b] * np.cross(n, v[a] - v[c]) + u[c] * np.cross(n, v[b] - v[a]))
        grad /= 2 * area
        e += area * grad @ grad
    assert np.isclose(u @ (lap @ u), e, rtol=1e-9)


def test_eigenbasis_is_m_orthonormal_and_unit_mean_square():
    mesh = torus(n_major=24, n_minor=10)
    b = eigenbasis(mesh, 12)
    m = mass_matrix(mesh).diagonal()
    assert np.allclose(b.psi.T @ (m[:, None] * b.psi), np.eye(12), atol=1e-8)
    lap = cotangent_laplacian(mesh)
    assert np.allclose(lap @ b.psi, m[:, None] * b.psi * b.eigenvalues, atol=1e-6 * b.eigenvalues.max())
    phi = b.coords(torch.float64).numpy()
    assert np.allclose((m[:, None] * phi**2).sum(0) / mesh.area, 1.0)
    assert np.all(np.diff(b.eigenvalues) >= -1e-10)


@pytest.mark.parametrize("kind", ["deformed", "icosphere"])
def test_coordinates_are_invariant_to_rigid_motions(kind, gen):
    mesh = deformed_sphere(3, 0.3, seed=3) if kind == "deformed" else icosphere(3)
    moved = mesh.transformed(random_rotation(gen), torch.randn(3, generator=gen, dtype=torch.float64).numpy() * 5)
    k = 16
    a, b = eigenbasis(mesh, k), eigenbasis(moved, k)
    assert moved.key != mesh.key
    assert np.allclose(a.eigenvalues, b.eigenvalues, rtol=1e-7, atol=1e-9)
    pa, pb = a.coords(torch.float64).numpy(), b.coords(torch.float64).numpy()
    simple = 0
    for g in clusters(a.eigenvalues):
        if len(g) == 1:  # a simple eigenvalue: canonical signs make the coordinate itself invariant
            assert np.allclose(pa[:, g], pb[:, g], atol=1e-5), g
            simple += 1
        else:  # repeated: the eigenspace (its projector / Gram matrix phi phi^T) is what is defined
            assert np.allclose(pa[:, g] @ pa[:, g].T, pb[:, g] @ pb[:, g].T, atol=1e-5), g
    if kind == "deformed":
        assert simple >= k - 2  # the deformation breaks the symmetry, so most eigenvalues are simple
    else:
        assert simple == 1  # only the constant: the sphere's degrees are repeated


def test_a_copy_of_a_repeated_eigenvalue_missed_by_lanczos_is_restored(monkeypatch):
    """Shift-invert Lanczos can return k eigenvalues with one copy of a repeated eigenvalue missing and the next
    eigenvalue in its place (about 1 in 20 random orientations of icosphere(3) at k = 16, which made the test
    above fail). Simulated here deterministically: the solver's answer loses one copy of the 7-fold l = 3 cluster;
    eigenbasis must still return the dense solver's eigenvalues and l = 3 eigenspace."""
    import scipy.linalg as sla

    import funcgen.geometry.mesh as mesh_module

    real = mesh_module.spla.eigsh

    def lossy(*args, k, **kw):
        if k == 1:  # the completion check's deflated solve
            return real(*args, k=k, **kw)
        lam, psi = real(*args, k=k + 1, **kw)
        keep = np.delete(np.argsort(lam), 12)  # one of the l = 3 copies (indices 9..15) goes, l = 4 comes in
        return lam[keep], psi[:, keep]

    monkeypatch.setattr(mesh_module.spla, "eigsh", lossy)
    monkeypatch.setattr(mesh_module, "_EIGEN_CACHE", type(mesh_module._EIGEN_CACHE)())
    mesh = icosphere(3)
    assert mesh.num_vertices > 400  # the sparse (Lanczos) path
    lap, m = cotangent_laplacian(mesh).toarray(), mass_matrix(mesh).diagonal()
    lam, vec = sla.eigh(lap, np.diag(m), subset_by_index=[0, 15])
    b = eigenbasis(mesh, 16)
    assert np.allclose(b.eigenvalues, lam, rtol=1e-9, atol=1e-9)
    assert np.allclose(b.psi[:, 9:] @ b.psi[:, 9:].T, vec[:, 9:] @ vec[:, 9:].T, atol=1e-8)


def test_canonical_signs_are_vertex_order_independent(gen):
    mesh = deformed_sphere(2, 0.3, seed=5)
    perm = torch.randperm(mesh.num_vertices, generator=gen).numpy()
    inv = np.argsort(perm)
    relabelled = TriangleMesh(mesh.vertices[perm], inv[mesh.faces])
    a, b = eigenbasis(mesh, 10), eigenbasis(relabelled, 10)
    for g in clusters(a.eigenvalues):
        if len(g) == 1:
            assert np.allclose(a.psi[perm][:, g], b.psi[:, g], atol=1e-6)


def test_eigenpairs_are_cached_by_array_hash():
    a = icosphere(2)
    b = TriangleMesh(a.vertices.copy(), a.faces.copy())
    assert eigenbasis(a, 9) is eigenbasis(b, 9)
    assert eigenbasis(a, 8) is not eigenbasis(a, 9)
    with pytest.raises(ValueError, match="k must be"):
        eigenbasis(a, a.num_vertices)


def test_interpolation_at_vertices_and_of_linear_functions(gen):
    mesh = deformed_sphere(2, 0.2, seed=1)
    b = eigenbasis(mesh, 8)
    face, bary = vertex_locations(mesh)
    assert torch.allclose(b.coords_at(face, bary, torch.float64), b.coords(torch.float64))
    # barycentric interpolation is exact for the (linear) position function
    face, bary = sample_surface(mesh, 500, gen)
    pos = interpolate(torch.tensor(mesh.vertices), face, bary, mesh.faces)
    corners = torch.tensor(mesh.vertices)[torch.tensor(mesh.faces)[face]]
    assert torch.allclose(pos, (bary.unsqueeze(-1) * corners).sum(1))
    assert (bary >= 0).all() and torch.allclose(bary.sum(-1), torch.ones(500, dtype=torch.float64))
    with pytest.raises(ValueError, match="barycentric"):
        interpolate(torch.zeros(mesh.num_vertices, 1), face[:2], torch.tensor([[0.5, 0.6, 0.1], [1.0, 0, 0]]),
                    mesh.faces)


def test_surface_samples_are_area_uniform(gen):
    # two triangles of areas 1/2 and 3/2 (a 1x1 square and a 3x1 triangle sharing an edge)
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, -3, 0.0]])
    mesh = TriangleMesh(v, np.array([[0, 1, 2], [0, 3, 1]]))
    n = 20000
    face, bary = sample_surface(mesh, n, gen)
    p = 0.25
    frac = (face == 0).double().mean().item()
    assert abs(frac - p) < 5 * (p * (1 - p) / n) ** 0.5
    # uniform inside a triangle: each barycentric coordinate has mean 1/3 and variance 1/18
    mean_se = (1 / 18 / n) ** 0.5
    assert torch.all((bary.mean(0) - 1 / 3).abs() < 5 * mean_se)
    assert torch.all((bary.var(0) - 1 / 18).abs() < 0.004)


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_readers_roundtrip(tmp_path):
    mesh = icosphere(1)
    obj = write_obj(tmp_path / "s.obj", mesh.vertices, mesh.faces)
    assert np.allclose(read_mesh(obj).vertices, mesh.vertices) and np.array_equal(read_mesh(obj).faces, mesh.faces)
    v, f = mesh.vertices, mesh.faces
    off = "OFF\n# comment\n%d %d 0\n" % (len(v), len(f)) + "".join(f"{a!r} {b!r} {c!r}\n" for a, b, c in v.tolist()) \
        + "".join(f"3 {a} {b} {c}\n" for a, b, c in f.tolist())
    ply = ("ply\nformat ascii 1.0\ncomment x\nelement vertex %d\nproperty float x\nproperty float y\nproperty float z\n"
           "element face %d\nproperty list uchar int vertex_indices\nend_header\n" % (len(v), len(f))) \
        + "".join(f"{a!r} {b!r} {c!r}\n" for a, b, c in v.tolist()) \
        + "".join(f"3 {a} {b} {c}\n" for a, b, c in f.tolist())
    for name, text in (("s.off", off), ("s.ply", ply)):
        m = read_mesh(_write(tmp_path, name, text))
        assert np.allclose(m.vertices, v) and np.array_equal(m.faces, f)
    # quads are split into triangles; OBJ 'v/vt/vn' corners and negative indices are understood
    quad = read_mesh(_write(tmp_path, "q.obj", "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nf 1/1/1 2/2/2 3/3/3 -1\n"))
    assert quad.faces.tolist() == [[0, 1, 2], [0, 2, 3]] and np.isclose(quad.area, 1.0)


def test_reader_and_mesh_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.obj.*Wavefront OBJ"):
        read_mesh(tmp_path / "nothere.obj")
    with pytest.raises(ValueError, match="unknown mesh format '.stl'"):
        read_mesh(_write(tmp_path, "a.stl", "solid"))
    with pytest.raises(ValueError, match="outside 0..2"):
        read_mesh(_write(tmp_path, "b.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 4\n"))
    with pytest.raises(ValueError, match="line 4.*cannot parse face"):
        read_mesh(_write(tmp_path, "c.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 x\n"))
    with pytest.raises(ValueError, match="zero area"):
        read_mesh(_write(tmp_path, "d.obj", "v 0 0 0\nv 1 0 0\nv 2 0 0\nv 0 1 0\nf 1 2 3\nf 1 2 4\n"))
    with pytest.raises(ValueError, match="repeated vertex"):
        TriangleMesh(np.eye(3), np.array([[0, 1, 1], [0, 1, 2]]))
    # three triangles on one edge (0, 1): a non-manifold "book"
    book = "v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nv 0 -1 0\nf 1 2 3\nf 1 2 4\nf 1 2 5\n"
    with pytest.raises(ValueError, match=r"non-manifold edge \[0, 1\].*3 faces"):
        read_mesh(_write(tmp_path, "e.obj", book))
    with pytest.raises(ValueError, match="only ASCII"):
        read_mesh(_write(tmp_path, "f.ply", "ply\nformat binary_little_endian 1.0\nend_header\n"))
    with pytest.raises(ValueError, match="announces 4 vertices"):
        read_mesh(_write(tmp_path, "g.off", "OFF\n4 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n"))
    with pytest.raises(ValueError, match="used by no face"):
        TriangleMesh(np.eye(4)[:, :3], np.array([[0, 1, 2]]))
    with pytest.raises(ValueError, match="NaN"):
        TriangleMesh(np.array([[0, 0, 0], [1, 0, 0], [0, np.nan, 0]]), np.array([[0, 1, 2]]))


def test_subdivision_keeps_the_surface_and_locates_new_vertices(gen):
    mesh = deformed_sphere(1, 0.3, seed=int(torch.randint(0, 100, (), generator=gen)))
    fine, face, bary = subdivide(mesh, 2)
    assert fine.num_vertices == 10 * 4**3 + 2 and np.isclose(fine.area, mesh.area)
    assert torch.allclose(interpolate(torch.tensor(mesh.vertices), face, bary, mesh.faces),
                          torch.tensor(fine.vertices))
    # the eigen-coordinates of the fine vertices, interpolated on the coarse mesh, equal the coarse ones there
    b = eigenbasis(mesh, 6)
    assert torch.allclose(b.coords_at(face[:mesh.num_vertices], bary[:mesh.num_vertices]), b.coords())


def test_refined_level_size_is_known_before_subdividing_and_too_large_levels_are_refused():
    """``num_vertices_at`` (counted from V, E, F) against the vertices of the actual subdivision, on a closed mesh
    and on an open one (a single face); a level whose eigen-coordinates exceed the limit is refused with the largest
    refinement that fits, before any memory is spent."""
    from funcgen.geometry.mesh import MeshDomain

    dom = MeshDomain(icosphere(1), torch.zeros(42, 8, dtype=torch.float64))
    for r in (1, 2, 3):
        assert dom.num_vertices_at(r) == dom.level(r)[0].num_vertices
    tri = TriangleMesh(np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]]), np.array([[0, 1, 2]]))
    one = MeshDomain(tri, torch.zeros(3, 2, dtype=torch.float64))
    assert [one.num_vertices_at(r) for r in (1, 2)] == [one.level(r)[0].num_vertices for r in (1, 2)] == [6, 15]
    fresh = MeshDomain(icosphere(1), torch.zeros(42, 8, dtype=torch.float64))
    limit = fresh.num_vertices_at(2) * 8 * 8  # level 2 fits exactly, level 3 does not
    assert fresh.level(2, max_bytes=limit)[0].num_vertices == 642
    with pytest.raises(ValueError, match=r"refine=3 .* 2562 vertices.*use refine <= 2 \(642 vertices\)"):
        fresh.level(3, max_bytes=limit)
