"""Manifolds: exp/log/dist/proj identities in float32 and float64, Haar sampling, clear errors off the manifold."""

import math

import pytest
import torch

from funcgen.geometry import SO3, Sphere, Torus
from funcgen.geometry.manifolds import quaternion_to_matrix, vector_to_skew

MANIFOLDS = [Sphere(2), Sphere(5), SO3(), Torus(3)]
IDS = ["S2", "S5", "SO3", "T3"]


def near(m, x, gen, scale):
    """Points at a random tangent offset of size ~scale from x."""
    return m.exp(x, scale * m.random_tangent(x, gen))


@pytest.mark.parametrize("m", MANIFOLDS, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_exp_log_dist_roundtrip_keep_dtype(m, dtype, gen):
    x = m.random_uniform(64, gen, dtype=dtype)
    y = near(m, x, gen, 0.5)
    assert x.dtype == y.dtype == dtype and m.belongs(x).all() and m.belongs(y).all()
    v = m.log(x, y)
    assert v.dtype == dtype
    tol = 2e-5 if dtype == torch.float32 else 1e-10
    # the log is tangent, exp inverts it, and its Riemannian norm is the distance
    assert torch.allclose(m.proj(x, v), v, atol=tol)
    assert torch.allclose(m.exp(x, v), y, atol=5 * tol)
    d = m.dist(x, y)
    assert d.dtype == dtype
    assert torch.allclose(m.inner(x, v, v).sqrt(), d, atol=5 * tol)
    assert torch.allclose(m.dist(y, x), d, atol=5 * tol)
    assert torch.allclose(m.dist(x, x), torch.zeros_like(d), atol=5 * tol)


@pytest.mark.parametrize("m", MANIFOLDS, ids=IDS)
def test_proj_is_idempotent_and_random_tangent_is_standard(m, gen):
    x = m.random_uniform(20000, gen, dtype=torch.float64)
    v = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    p = m.proj(x, v)
    assert torch.allclose(m.proj(x, p), p, atol=1e-12)
    xi = m.random_tangent(x, gen)
    assert torch.allclose(m.proj(x, xi), xi, atol=1e-12)
    sq = m.inner(x, xi, xi)  # chi^2 with dim degrees of freedom: mean dim, variance 2 dim
    se = math.sqrt(2 * m.dim / x.shape[0])
    assert abs(sq.mean().item() - m.dim) < 5 * se


def test_sphere_distance_is_accurate_at_tiny_angles():
    m = Sphere(2)
    x = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    for eps in (1e-3, 1e-7, 1e-10):
        y = torch.tensor([[math.sin(eps), 0.0, math.cos(eps)]], dtype=torch.float64)
        assert abs(m.dist(x, y).item() - eps) < 1e-6 * eps


def test_so3_log_near_pi_and_exp_of_known_rotation(gen):
    m = SO3()
    eye = torch.eye(3, dtype=torch.float64).reshape(1, 9)
    axis = torch.randn(3, generator=gen, dtype=torch.float64)
    axis = axis / axis.norm()
    for angle in (1e-8, 0.3, math.pi - 1e-3, math.pi - 1e-7):
        y = m.exp(eye, m.tangent_vector(eye, angle * axis[None]))
        # Rodrigues by hand
        k = vector_to_skew(axis)
        ref = torch.eye(3, dtype=torch.float64) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k
        assert torch.allclose(SO3.as_matrix(y)[0], ref, atol=1e-12)
        assert abs(m.dist(eye, y).item() - angle) < 1e-9
        assert torch.allclose(m.exp(eye, m.log(eye, y)), y, atol=1e-9)


def test_so3_uniform_is_haar(gen):
    """Haar: E tr R = 0, E (tr R)^2 = 1 (characters are orthonormal), angle law (1 - cos t)/pi."""
    m = SO3()
    n = 20000
    r = SO3.as_matrix(m.random_uniform(n, gen, dtype=torch.float64))
    tr = r.diagonal(dim1=-2, dim2=-1).sum(-1)
    assert abs(tr.mean().item()) < 5 * tr.std().item() / math.sqrt(n)
    assert abs((tr**2).mean().item() - 1.0) < 5 * (tr**2).std().item() / math.sqrt(n)
    # P(angle < pi/2) = int_0^{pi/2} (1 - cos t)/pi dt = 1/2 - 1/pi
    ang = m.dist(torch.eye(3, dtype=torch.float64).reshape(1, 9), SO3.from_matrix(r))
    frac = (ang < math.pi / 2).double().mean().item()
    p = 0.5 - 1 / math.pi
    assert abs(frac - p) < 5 * math.sqrt(p * (1 - p) / n)


def test_sphere_uniform_moments(gen):
    m = Sphere(3)
    n = 20000
    x = m.random_uniform(n, gen, dtype=torch.float64)
    assert (x.mean(0).abs() < 5 / math.sqrt(4 * n)).all()  # each coordinate has variance 1/4
    second = (x[:, 0] ** 2).mean().item()  # E x_0^2 = 1/4, Var x_0^2 = E x^4 - 1/16 = 3/24 - 1/16
    assert abs(second - 0.25) < 5 * math.sqrt((3 / 24 - 1 / 16) / n)


def test_quaternion_matrices_are_rotations(gen):
    q = torch.randn(100, 4, generator=gen, dtype=torch.float64)
    assert SO3().belongs(SO3.from_matrix(quaternion_to_matrix(q / q.norm(dim=-1, keepdim=True)))).all()


def test_check_rejects_bad_points_with_clear_messages():
    s = Sphere(2)
    with pytest.raises(ValueError, match="not on Sphere.*unit Euclidean norm"):
        s.check(torch.tensor([[1.0, 1.0, 0.0]]))
    with pytest.raises(ValueError, match=r"shape \[\.\.\., 3\]"):
        s.check(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="NaN"):
        s.check(torch.tensor([[float("nan"), 0.0, 1.0]]))
    with pytest.raises(ValueError, match="not on SO3"):
        SO3().check(2 * torch.eye(3).reshape(1, 9))
    with pytest.raises(ValueError, match="not on Torus"):
        Torus(2).check(torch.tensor([[4.0, 0.0]]))
    with pytest.raises(TypeError, match="floating"):
        s.check(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="n >= 1"):
        Sphere(0)
    assert s.check(torch.tensor([[0.0, 0.6, 0.8]])).shape == (1, 3)


def test_manifolds_record_config_and_volumes():
    assert Sphere(4).config == {"class_path": "funcgen.geometry.manifolds.Sphere", "init_args": {"n": 4}}
    assert math.isclose(math.exp(Sphere(2).log_volume()), 4 * math.pi)
    assert math.isclose(math.exp(Sphere(3).log_volume()), 2 * math.pi**2)
    assert math.isclose(math.exp(SO3().log_volume()), 8 * math.pi**2)
    assert math.isclose(math.exp(Torus(2).log_volume()), 4 * math.pi**2)


def test_geomstats_does_not_change_torch_default_dtype():
    before = torch.get_default_dtype()
    m = Sphere(2)
    x = m.random_uniform(3)
    m.exp(x, m.random_tangent(x))
    assert torch.get_default_dtype() == before
