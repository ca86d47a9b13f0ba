import math

import pytest
import torch

from funcgen.pointset import grid_coords
from funcgen.processes.noise import (
    GaussianRandomField,
    SpectralNoise,
    WhiteNoise,
    kernel_matrix,
    mollified_white_noise,
)

S = 6000  # samples for covariance estimates; relative Frobenius error ~ sqrt(N_eff / S)


def emp_cov(x):
    x = x[..., 0].double()
    return x.T @ x / x.shape[0]


def rel_err(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("noise,d", [
    (GaussianRandomField("se", 0.1), 1),
    (GaussianRandomField("matern32", 0.2, variance=2.0), 2),
    (SpectralNoise(1, "fdp", modes=32), 1),
    (SpectralNoise(2, "matern", modes=8, lengthscale=0.15), 2),
    (mollified_white_noise(0.05, 1), 1),
])
def test_covariance_matches_kernel(noise, d, gen):
    coords = torch.rand(1, 40, d, generator=gen)  # scattered points
    x = noise.sample(coords.expand(S, -1, -1), 1, gen)
    k = noise.covariance(coords[0], coords[0]).double()
    assert rel_err(emp_cov(x), k) < 0.08


@pytest.mark.parametrize("noise", [GaussianRandomField("se", 0.1), SpectralNoise(1, "fdp", modes=32)])
def test_law_is_resolution_invariant(noise, gen):
    """The same field observed at N and at 4N points has the same covariance at the shared points."""
    n = 16
    coarse = grid_coords((n,))
    fine = grid_coords((4 * n,))
    # the coarse points observed alone, and embedded among 3N random extra points
    extra = torch.rand(3 * n, 1, generator=gen)
    mixed = torch.cat([coarse, extra])
    x_coarse = noise.sample(coarse.expand(S, -1, -1), 1, gen)
    x_mixed = noise.sample(mixed.expand(S, -1, -1), 1, gen)[:, :n]
    c1, c2 = emp_cov(x_coarse), emp_cov(x_mixed)
    k = noise.covariance(coarse, coarse).double()
    assert rel_err(c1, k) < 0.08 and rel_err(c2, k) < 0.08
    assert rel_err(c1, c2) < 0.12
    # and on a 4N grid the marginal variance stays the same (no per-pixel rescaling)
    x_fine = noise.sample(fine.expand(S, -1, -1), 1, gen)
    assert abs(float(x_fine.var()) - float(x_coarse.var())) < 0.08 * float(k.diagonal().mean())


def test_grid_kronecker_sampler_matches_kernel(gen):
    noise = GaussianRandomField("se", 0.15, variance=1.5)
    shape = (9, 12)
    coords = grid_coords(shape)
    x = noise.sample_grid(shape, S, 1, gen)
    assert rel_err(emp_cov(x), noise.covariance(coords, coords).double()) < 0.08
    # sample() detects the grid and uses the same exact sampler for large grids
    big = grid_coords((40, 40)).unsqueeze(0).expand(2, -1, -1)
    assert noise.sample(big, 3, gen).shape == (2, 1600, 3)


def test_mollified_noise_is_blurred_white_noise(gen):
    """T xi on a fine 1D grid by explicit discrete convolution has the analytic covariance."""
    width, n = 0.05, 400
    x = grid_coords((n,))
    h = 1.0 / n
    white = torch.randn(S, n, generator=gen, dtype=torch.float64) / math.sqrt(h)  # cell-averaged white noise
    kern = torch.exp(-0.5 * (x - x.T).double() ** 2 / width**2) / math.sqrt(2 * math.pi * width**2)
    blurred = white @ (kern * h).T
    mid = slice(150, 250)  # away from the boundary where the blur is truncated
    c = blurred[:, mid].T @ blurred[:, mid] / S
    k = mollified_white_noise(width, 1).covariance(x[mid], x[mid]).double()
    assert rel_err(c, k) < 0.08


def test_white_noise_scaling(gen):
    c = torch.rand(1, 50, 2, generator=gen).expand(4000, -1, -1)
    assert abs(float(WhiteNoise().sample(c, 1, gen).var()) - 1) < 0.05
    assert abs(float(WhiteNoise(physical=True).sample(c, 1, gen).var()) / 50 - 1) < 0.05


def test_kernel_values_and_errors():
    x = torch.tensor([[0.0], [0.1]])
    k = kernel_matrix(x, x, "se", 0.1, 2.0)
    assert torch.allclose(k[0, 1], torch.tensor(2.0 * math.exp(-0.5)))
    assert torch.allclose(kernel_matrix(x, x, "matern12", 0.1)[0, 1], torch.tensor(math.exp(-1.0)))
    with pytest.raises(ValueError, match="unknown kernel"):
        GaussianRandomField("rbf")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shape"):
        GaussianRandomField().sample(torch.rand(5, 1))
    with pytest.raises(ValueError, match="max_dense_points"):
        GaussianRandomField(max_dense_points=10).sample(torch.rand(1, 20, 2))


def test_spectral_noise_is_a_function_of_coords(gen):
    """One draw evaluated in chunks equals one draw evaluated at once (a fixed random function)."""
    noise = SpectralNoise(2, "fdp", modes=6, chunk_size=7)
    whole = SpectralNoise(2, "fdp", modes=6)
    c = torch.rand(2, 50, 2, generator=gen)
    s = int(torch.randint(0, 10**6, (1,), generator=gen))
    a = noise.sample(c, 2, torch.Generator().manual_seed(s))
    b = whole.sample(c, 2, torch.Generator().manual_seed(s))
    assert torch.allclose(a, b, atol=1e-5)
    assert abs(float(noise.covariance(c[0, :1], c[0, :1])) - 1.0) < 1e-6


def test_fdp_spectrum_period_changes_only_the_wrap_around(gen):
    """The ``fdp`` spectrum is in cycles per unit length: a box of period 2 with twice the modes has the
    local covariance of the unit box, but no longer ties x = 0 to x = 1 (non-periodic data); its
    draws have that covariance."""
    unit, wide = SpectralNoise(1, "fdp", modes=32), SpectralNoise(1, "fdp", modes=64, period=2.0)
    x = torch.rand(200, 1, generator=gen, dtype=torch.float64)
    lag = (x - x.T).abs()
    cu, cw = unit.covariance(x, x), wide.covariance(x, x)
    near = lag < 0.3
    assert float((cu - cw)[near].abs().max()) < 0.03
    ends = torch.tensor([[0.0], [0.99]], dtype=torch.float64)
    assert float(unit.covariance(ends, ends)[0, 1]) > 0.9 and abs(float(wide.covariance(ends, ends)[0, 1])) < 0.05
    coords = grid_coords((40,)).double().expand(4000, -1, -1)
    v = wide.sample(coords, 1, gen)[..., 0]
    k = wide.covariance(coords[0], coords[0])
    assert float((torch.cov(v.T) - k).norm() / k.norm()) < 0.08
