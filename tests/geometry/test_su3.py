"""SU(3): Haar sampling, geometry, heat kernel (images vs characters, normalisation), score, exact forward
sampling against the Casimir moments, the in-process Wilson target, and the Riemannian method on SU(3)."""

import math

import pytest
import torch

from funcgen.data.su3 import WilsonTarget
from funcgen.geometry import (
    SU3,
    heat_kernel_log_prob,
    heat_kernel_score,
    sample_heat_kernel,
)
from funcgen.geometry.su3 import (
    LOG_VOLUME,
    minimal_angles,
    su3_character_log_kernel,
    su3_images_log_kernel,
    su3_log_heat_kernel,
)
from funcgen.methods import RiemannianDiffusion
from funcgen.pointset import PointSet

F64 = torch.float64
M = SU3()


def traces(x0, x):
    """tr(U0^dagger U) ``[...]`` complex."""
    return (M.as_matrix(x0).mH @ M.as_matrix(x)).diagonal(dim1=-2, dim2=-1).sum(-1)


def close(values, want, k=5.0):
    """|mean - want| within k standard errors (plus float64 rounding)."""
    v = values.double()
    return abs(v.mean().item() - want) < k * v.std().item() / math.sqrt(v.numel()) + 1e-9


def angles(x):
    return minimal_angles(torch.angle(torch.linalg.eigvals(M.as_matrix(x))))


def test_haar_samples_have_the_haar_moments(gen):
    n = 20000
    x = M.random_uniform(n, gen, dtype=F64)
    assert x.shape == (n, 18) and M.belongs(x).all()
    tr = traces(torch.tensor([1.0, 0, 0, 0, 1, 0, 0, 0, 1] + [0.0] * 9, dtype=F64), x)
    assert close(tr.real, 0.0) and close(tr.imag, 0.0)
    assert close(tr.abs() ** 2, 1.0)
    # (tr U)^3 has mean 1 on SU(3) (the determinant singlet of 3x3x3) but 0 on U(3): checks the det fix
    assert close((tr**3).real, 1.0) and close((tr**3).imag, 0.0)


def test_geometry_exp_log_dist_proj(gen):
    x = M.random_uniform(64, gen, dtype=F64)
    v = 0.8 * M.random_tangent(x, gen)
    assert torch.allclose(M.proj(x, v), v, atol=1e-12)
    y = M.exp(x, v)
    assert M.belongs(y).all()
    assert torch.allclose(M.log(x, y), v, atol=1e-9)
    assert torch.allclose(M.dist(x, y), v.norm(dim=-1), atol=1e-9)  # Frobenius metric = Euclidean in R^18
    # the distance is symmetric and bi-invariant
    g = M.random_uniform(1, gen, dtype=F64)
    lmul = lambda a: M.from_matrix(M.as_matrix(g) @ M.as_matrix(a))  # noqa: E731
    assert torch.allclose(M.dist(y, x), M.dist(x, y), atol=1e-9)
    assert torch.allclose(M.dist(lmul(x), lmul(y)), M.dist(x, y), atol=1e-9)
    # wrap removes drift
    noisy = x + 1e-5 * torch.randn(x.shape, generator=gen, dtype=F64)
    assert M.belongs(M.wrap(noisy), atol=1e-12).all()


def test_off_manifold_points_get_a_clear_error():
    u = torch.zeros(2, 18)
    u[:, [0, 4, 8]] = 1.0
    u[1, 0] = 2.0
    with pytest.raises(ValueError, match="not on SU3"):
        M.check(u)
    with pytest.raises(ValueError, match=r"\[\.\.\., 18\]"):
        M.check(torch.zeros(2, 9))
    phase = torch.zeros(1, 18)
    phase[0, [9, 13, 17]] = 1.0  # i I: unitary, det = -i
    with pytest.raises(ValueError, match="det U = 1"):
        M.check(phase)


@pytest.mark.parametrize("sigma", [0.8, 1.0, 1.5, 2.5])
def test_images_agree_with_the_character_expansion(sigma, gen):
    """Both are exact where they converge; measured max |difference| <= 9e-12 at sigma >= 0.8."""
    x0 = M.random_uniform(1, gen, dtype=F64).expand(500, -1)
    pts = torch.cat([M.random_uniform(500, gen, dtype=F64), sample_heat_kernel(M, x0, sigma, gen)])
    th = angles(pts)
    diff = (su3_images_log_kernel(th, sigma) - su3_character_log_kernel(th, sigma)).abs()
    assert diff.max().item() < 1e-9


@pytest.mark.parametrize("kind,sigma", [("images", 0.8), ("images", 1.5), ("images", 2.5), ("switch", 1.2)])
def test_kernel_integrates_to_one_over_haar_samples(kind, sigma, gen):
    """|SU(3)| E_Haar p = 1. For the image sum (normalised by local Gaussians, not by the volume) this also
    checks log_volume; at sigma = 2.5 its standard error is ~1e-5."""
    th = angles(M.random_uniform(20000, gen, dtype=F64))
    lp = su3_images_log_kernel(th, sigma) if kind == "images" else su3_log_heat_kernel(th, sigma)
    assert close(torch.exp(lp + LOG_VOLUME), 1.0)


@pytest.mark.parametrize("sigma", [1e-3, 0.01, 0.1, 0.3, 0.6, 1.0, 2.0, 4.0])
def test_kernel_integrates_to_one_by_weyl_quadrature(sigma):
    """|SU(3)| E_Haar p = |SU(3)| / (3! (2 pi)^2) int int p(theta) |Delta(theta)|^2 (Weyl integration formula),
    by the trapezoid rule on a box of +-9 sigma (or the whole periodic torus): a deterministic check of the
    normalisation and the volume at every sigma, including grid points on the Weyl walls and the cut locus
    (measured error <= 2e-13)."""
    nodes = 201
    half = min(math.pi, 9 * sigma)
    if half < math.pi:
        a = torch.linspace(-half, half, nodes, dtype=F64)
    else:
        a = torch.arange(nodes, dtype=F64) * (2 * math.pi / nodes) - math.pi
    h = (a[1] - a[0]).item()
    t1, t2 = torch.meshgrid(a, a, indexing="ij")
    th = torch.stack([t1, t2, -t1 - t2], -1).reshape(-1, 3)
    vdm = (2 * torch.sin((th[:, [0, 0, 1]] - th[:, [1, 2, 2]]) / 2)).pow(2).prod(-1)
    lp = su3_log_heat_kernel(th, sigma)
    assert torch.isfinite(lp).all()
    total = (torch.exp(lp + LOG_VOLUME) * vdm).sum().item() * h * h / (6 * (2 * math.pi) ** 2)
    assert abs(total - 1) < 1e-9


def test_kernel_is_finite_everywhere_in_float32(gen):
    x0 = M.random_uniform(1, gen).expand(300, -1)
    ident = torch.zeros(1, 18)
    ident[0, [0, 4, 8]] = 1.0
    centre = torch.zeros(1, 18)  # exp(2 pi i / 3) I, on the cut locus of the identity
    centre[0, [0, 4, 8]], centre[0, [9, 13, 17]] = math.cos(2 * math.pi / 3), math.sin(2 * math.pi / 3)
    pts = torch.cat([M.random_uniform(200, gen), sample_heat_kernel(M, x0[:99], 0.01, gen), x0[:1]])
    pts_id = torch.cat([ident, centre, M.random_uniform(298, gen)])
    for s in (1e-3, 0.01, 0.1, 0.5, 0.99, 1.0, 2.0, 4.0):
        for a, b in ((x0, pts), (ident.expand(300, -1), pts_id)):
            lp, sc = heat_kernel_log_prob(M, b, a, s), heat_kernel_score(M, b, a, s)
            assert lp.dtype == sc.dtype == torch.float32
            assert torch.isfinite(lp).all() and torch.isfinite(sc).all()


def test_score_matches_finite_differences(gen):
    x0 = M.random_uniform(64, gen, dtype=F64)
    sigma = 0.05 + 2.5 * torch.rand(64, generator=gen, dtype=F64)
    x = sample_heat_kernel(M, x0, sigma, gen)
    score = heat_kernel_score(M, x, x0, sigma)
    assert torch.allclose(M.proj(x, score), score, atol=1e-10)
    y = M.random_tangent(x, gen)
    eps = 1e-5
    fd = (heat_kernel_log_prob(M, M.exp(x, eps * y), x0, sigma)
          - heat_kernel_log_prob(M, M.exp(x, -eps * y), x0, sigma)) / (2 * eps)
    got = (score * y).sum(-1)  # <score, y> in the Frobenius metric
    assert torch.allclose(got, fd, rtol=1e-5, atol=1e-5 * fd.abs().max().item())


@pytest.mark.parametrize("sigma", [0.05, 0.3, 0.6, 1.5, 2.5])
def test_forward_samples_match_the_casimir_moments(sigma, gen):
    """E tr(U0^dagger U) = 3 e^(-4 sigma^2/3), E |tr|^2 = 1 + 8 e^(-3 sigma^2) (module docstring)."""
    n = 3000
    x0 = M.random_uniform(1, gen).expand(n, -1)  # float32 in, float32 out
    x = sample_heat_kernel(M, x0, sigma, gen)
    assert x.dtype == torch.float32 and M.belongs(x).all()
    tr = traces(x0.double(), x.double())
    assert close(tr.real, 3 * math.exp(-4 * sigma**2 / 3)) and close(tr.imag, 0.0)
    assert close(tr.abs() ** 2, 1 + 8 * math.exp(-3 * sigma**2))


def test_per_point_sigmas(gen):
    n = 2000
    sigma = torch.where(torch.rand(n, generator=gen) < 0.5, 0.4, 1.4)  # Gaussian and Haar proposals
    x0 = M.random_uniform(n, gen)
    resid = traces(x0.double(), sample_heat_kernel(M, x0, sigma, gen).double()).real - 3 * torch.exp(
        -4 * sigma.double() ** 2 / 3)
    assert close(resid, 0.0)


@pytest.mark.parametrize("beta,coeffs", [(2.0, (1.0,)), (5.0, (0.17, -0.65, 1.22))])
def test_wilson_target_normalisation_and_samples(beta, coeffs, gen):
    t = WilsonTarget(beta, coeffs)
    w = torch.exp(t.log_prob(M.random_uniform(20000, gen, dtype=F64)) + LOG_VOLUME)
    assert close(w, 1.0)  # Z by the Weyl integration formula matches Monte Carlo over Haar
    x = t.sample(3000, gen)
    assert x.shape == (3000, 18) and M.belongs(x).all()
    tr = traces(torch.tensor([1.0, 0, 0, 0, 1, 0, 0, 0, 1] + [0.0] * 9, dtype=F64), x.double())
    assert close(tr.real, t.expectation(lambda th: torch.cos(th).sum(-1)))
    assert close(tr.abs() ** 2, t.expectation(lambda th: torch.exp(1j * th).sum(-1).abs() ** 2))


def _gell_mann() -> torch.Tensor:
    """The eight Gell-Mann matrices ``[8, 3, 3]`` (Hermitian, traceless, tr(l_a l_b) = 2 delta_ab)."""
    g = torch.zeros(8, 3, 3, dtype=torch.complex128)
    for a, (i, j) in enumerate([(0, 1), (0, 2), (1, 2)]):
        g[2 * a, i, j] = g[2 * a, j, i] = 1
        g[2 * a + 1, i, j], g[2 * a + 1, j, i] = -1j, 1j
    g[6] = torch.diag(torch.tensor([1, -1, 0], dtype=torch.complex128))
    g[7] = torch.diag(torch.tensor([1, 1, -2], dtype=torch.complex128)) / math.sqrt(3)
    return g


class FiniteDifferenceOracle(torch.nn.Module):
    """sigma * grad log p_sigma(x | x0) (data = the point x0) by central differences of heat_kernel_log_prob
    along the orthonormal tangent basis U (i l_a) / sqrt(2) (Gell-Mann l_a), steps 1e-4 sigma: an answer
    independent of heat_kernel_score, which the loss uses for its target."""

    def __init__(self, x0):
        super().__init__()
        self.x0 = x0.double()

    def forward(self, coords, x, sigma):
        xd = x.detach().double()
        s = sigma.double()[:, None].expand(xd.shape[:-1])
        x0, u, h = self.x0.expand_as(xd), M.as_matrix(xd), 1e-4 * s[..., None]
        grad = torch.zeros_like(xd)
        for lam in _gell_mann():
            e = M.from_matrix(u @ (1j * lam / math.sqrt(2)))
            up = heat_kernel_log_prob(M, M.exp(xd, h * e), x0, s)
            down = heat_kernel_log_prob(M, M.exp(xd, -h * e), x0, s)
            grad = grad + ((up - down)[..., None] / (2 * h)) * e
        return (sigma.double()[:, None, None] * grad).to(x.dtype)


def test_gell_mann_basis_is_orthonormal():
    g = _gell_mann()
    assert torch.allclose(g, g.mH)
    assert torch.allclose(g.diagonal(dim1=-2, dim2=-1).sum(-1), torch.zeros(8, dtype=g.dtype))
    assert torch.allclose(torch.einsum("aij,bji->ab", g, g).real, 2 * torch.eye(8, dtype=F64))


def test_riemannian_method_on_su3(gen):
    from tests.methods.test_riemannian import Zero

    x0 = M.random_uniform(1, gen)
    batch = PointSet(torch.zeros(32, 1, 1), x0.expand(32, -1)[:, None, :].contiguous())
    method = RiemannianDiffusion(M, sigma_min=1e-2, sigma_max=3.0)
    exact, _ = method.loss(FiniteDifferenceOracle(x0), batch, gen)
    zero, _ = method.loss(Zero(), batch, gen)
    assert exact.item() < 1e-11 * zero.item(), (exact.item(), zero.item())  # measured <= 1.4e-12 (40 seeds)
    assert 0.1 * M.dim < zero.item() < 2 * M.dim
    x = M.random_uniform(3, gen)
    ll = method.log_likelihood(Zero(), x, steps=2, divergence="hutchinson", generator=gen)
    assert torch.allclose(ll, torch.full_like(ll, -LOG_VOLUME), atol=1e-5)


def test_exact_score_sampler_reproduces_the_data_law_on_su3(gen):
    """Data ~ p_tau(. | x0): the reverse SDE with the exact score returns E tr(x0^dagger x) = 3 e^(-4 (tau^2 +
    sigma_min^2) / 3). Euler bias measured (3000 samples, SE 0.009): SDE -0.014 at 30 steps, +0.004 at 100; ODE
    +0.028 at 50 and -0.007 at 200 steps (first order); allowed at 50 SDE steps: 0.02."""
    from tests.methods.test_riemannian import HeatOracle

    tau, n = 0.6, 500
    x0 = M.random_uniform(1, gen)
    method = RiemannianDiffusion(M, sigma_min=1e-2, sigma_max=3.0, steps=50, sampler="sde")
    x = method.sample(HeatOracle(M, x0, tau), torch.zeros(n, 1, 1), 18, generator=gen)
    assert x.shape == (n, 1, 18) and M.belongs(x).all()
    tr = traces(x0.double(), x[:, 0].double()).real
    want = 3 * math.exp(-4 * (tau**2 + 1e-4) / 3)
    assert abs(tr.mean().item() - want) < 5 * tr.std().item() / math.sqrt(n) + 0.02
