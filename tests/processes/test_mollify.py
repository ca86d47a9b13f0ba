"""Heat-kernel mollifier: DCT against the analytic multiplier and the reflected kernel, noise law across resolutions."""

import math

import pytest
import scipy.fft
import torch

from funcgen.pointset import grid_coords
from funcgen.processes.mollify import (
    MollifiedNoise,
    dct2,
    heat_multiplier,
    idct2,
    mollify,
    mollify_grid,
    neumann_heat_kernel,
    wiener_deconvolve,
    wiener_deconvolve_grid,
)
from funcgen.processes.noise import mollified_white_noise


def test_dct_pair_matches_scipy_and_inverts(gen):
    x = torch.randn(3, 2, 19, generator=gen, dtype=torch.float64)
    assert torch.allclose(2 * dct2(x), torch.from_numpy(scipy.fft.dct(x.numpy(), type=2)), atol=1e-12)
    assert torch.allclose(idct2(dct2(x)), x, atol=1e-12)


def test_blur_of_cosine_mode_is_the_analytic_multiplier(gen):
    """T cos(pi k1 x) cos(pi k2 y) = exp(-w^2 pi^2 (k1^2 + k2^2) / 2) cos(pi k1 x) cos(pi k2 y)."""
    h, w = 24, 40
    k1, k2 = (int(v) for v in torch.randint(0, 12, (2,), generator=gen))
    width = float(torch.empty(()).uniform_(0.01, 0.08, generator=gen))
    c = grid_coords((h, w), dtype=torch.float64)
    f = (torch.cos(math.pi * k1 * c[:, 0]) * torch.cos(math.pi * k2 * c[:, 1])).reshape(1, 1, h, w)
    expected = math.exp(-0.5 * width**2 * math.pi**2 * (k1**2 + k2**2)) * f
    assert torch.allclose(mollify_grid(f, width), expected, atol=1e-12)
    assert torch.allclose(heat_multiplier(h, width, dtype=torch.float64)[k1], torch.tensor(
        math.exp(-0.5 * (width * math.pi * k1) ** 2), dtype=torch.float64))


def test_blur_matches_direct_convolution_with_reflected_kernel(gen):
    """On a grid the DCT blur is the convolution with the Neumann heat kernel (method of images)."""
    n = 48
    c = grid_coords((n, n), dtype=torch.float64)
    centre = torch.rand(2, generator=gen, dtype=torch.float64) * 0.3  # near a corner: reflections matter
    f = torch.exp(-((c - centre) ** 2).sum(-1) / (2 * 0.05**2)) + torch.randn((), generator=gen, dtype=torch.float64)
    width = 0.04
    direct = neumann_heat_kernel(c, c, width) @ f / n**2  # midpoint rule for int p(x, y) f(y) dy
    out = mollify(f.reshape(1, -1, 1), c[None], width)[0, :, 0]
    assert (out - direct).abs().max() < 1e-6 * f.abs().max()
    # and the boundary matters: the free-space Gaussian convolution differs near the corner
    free = torch.exp(-0.5 * torch.cdist(c, c) ** 2 / width**2) / (2 * math.pi * width**2) @ f / n**2
    assert (out - free).abs().max() > 1e-2 * f.abs().max()


def _sampler_covariance(noise: MollifiedNoise, n: int) -> torch.Tensor:
    """Exact covariance of the grid sampler (1D): n B B^T with B the blur matrix."""
    blur = mollify_grid(torch.eye(n, dtype=torch.float64)[:, None, :], noise.width)[:, 0, :]
    return n * blur.T @ blur


@pytest.mark.parametrize("factor", [1, 4])
def test_mollified_noise_grid_sampler_has_the_kernel_covariance(factor):
    """The DCT of physical white noise reproduces the Neumann kernel at 1x and at 4x resolution."""
    n0 = 16
    noise = MollifiedNoise(width=1.0 / n0, dim=1)  # width = 1 pixel at 1x (the paper's choice)
    n = n0 * factor
    c = grid_coords((n,), dtype=torch.float64)
    k = noise.covariance(c, c)
    assert (_sampler_covariance(noise, n) - k).abs().max() < 1e-4 * k.max()


def test_mollified_noise_covariance_same_at_1x_and_3x_monte_carlo(gen):
    """Sample covariance at the 1x points, drawn on the 1x grid and on the 3x grid (which contains them)."""
    n, s = 8, 6000
    noise = MollifiedNoise(width=1.0 / 8, dim=1)
    c1 = grid_coords((n,)).expand(s, -1, -1)
    c3 = grid_coords((3 * n,)).expand(s, -1, -1)
    x1 = noise.sample(c1, 1, gen)[..., 0].double()
    x3 = noise.sample(c3, 1, gen)[:, 1::3, 0].double()  # cell 3j + 1 of the 3x grid is cell j of the 1x grid
    k = noise.covariance(c1[0].double(), c1[0].double())
    se = ((k**2 + torch.outer(k.diag(), k.diag())) / s).sqrt()  # std error of a sample covariance entry
    for x in (x1, x3):
        assert ((torch.cov(x.T) - k).abs() / se).max() < 5.0
    assert ((torch.cov(x1.T) - torch.cov(x3.T)).abs() / (se * math.sqrt(2))).max() < 5.0


def test_mollified_noise_scattered_points_and_free_space_limit(gen):
    noise = MollifiedNoise(width=0.03, dim=2)
    coords = 0.3 + 0.4 * torch.rand(2, 50, 2, generator=gen)  # interior: reflections negligible
    x = noise.sample(coords, 3, gen)
    assert x.shape == (2, 50, 3) and torch.isfinite(x).all()
    free = mollified_white_noise(0.03, 2)
    assert torch.allclose(noise.covariance(coords[0], coords[0]), free.covariance(coords[0], coords[0]), rtol=1e-4)
    with pytest.raises(ValueError, match="dim=2"):
        noise.sample(torch.rand(1, 5, 1, generator=gen))


def test_wiener_deconvolution_recovers_smooth_function(gen):
    n, width = 64, 1.0 / 32
    c = grid_coords((n, n), dtype=torch.float64)
    a = torch.randn(4, generator=gen, dtype=torch.float64)
    f = (a[0] + a[1] * torch.cos(math.pi * c[:, 0]) + a[2] * torch.cos(2 * math.pi * c[:, 1])
         + a[3] * torch.cos(math.pi * c[:, 0]) * torch.cos(3 * math.pi * c[:, 1])).reshape(1, -1, 1)
    blurred = mollify(f, c[None], width)
    rec = wiener_deconvolve(blurred, c[None], width, eps=0.01)
    err = float((rec - f).norm() / f.norm())
    assert err < 2e-3
    assert err < 0.1 * float((blurred - f).norm() / f.norm())
    with pytest.raises(ValueError, match="eps"):
        wiener_deconvolve_grid(f.reshape(1, 1, n, n), width, eps=0.0)


def test_mollify_rejects_non_grid(gen):
    with pytest.raises(ValueError, match="cell-centre grid"):
        mollify(torch.randn(1, 10, 1, generator=gen), torch.rand(1, 10, 2, generator=gen), 0.05)
