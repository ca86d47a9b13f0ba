import math

import pytest
import torch

from funcgen.pointset import grid_coords
from funcgen.processes.noise import (
    GaussianRandomField,
    SpectralNoise,
    WhiteNoise,
    kernel_matrix,
    lattice_series,
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


@pytest.mark.parametrize("d,reach", [(2, 5), (3, 3)])
def test_lattice_series_equals_the_direct_fourier_series(gen, d, reach):
    """The per-axis contraction evaluates the same trigonometric sum as the direct phase evaluation (float64),
    on a random set of lattice wavenumbers, in chunks; a sign slip in either coefficient would not."""
    box = torch.cartesian_prod(*[torch.arange(-reach, reach + 1)] * d)
    lattice = box[torch.randperm(box.shape[0], generator=gen)[:40]]
    base = 2 * math.pi / float(torch.empty(()).uniform_(1.0, 2.0, generator=gen))
    x = torch.rand(3, 57, d, generator=gen, dtype=torch.float64)
    a = torch.randn(3, 40, 2, generator=gen, dtype=torch.float64)
    s = torch.randn(3, 40, 2, generator=gen, dtype=torch.float64)
    phase = x @ (base * lattice.double()).T  # [3, 57, 40]
    want = torch.einsum("bnm,bmc->bnc", phase.cos(), a) + torch.einsum("bnm,bmc->bnc", phase.sin(), s)
    got = lattice_series(x, lattice, base, a, s, chunk_size=10)
    assert torch.allclose(got, want, rtol=1e-11, atol=1e-11)
    assert not torch.allclose(lattice_series(x, lattice, base, a, -s), want, atol=1e-3)


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



def _periodised(kernel, diff: torch.Tensor, images: int = 3) -> torch.Tensor:
    """``sum_n kernel(|diff + n|)`` over integer image vectors ``n`` with ``|n_i| <= images`` (period 1)."""
    d = diff.shape[-1]
    shifts = torch.cartesian_prod(*[torch.arange(-images, images + 1, dtype=diff.dtype)] * d).reshape(-1, d)
    return kernel((diff[..., None, :] + shifts).norm(dim=-1)).sum(-1)


def _spectral_noise_oracle(spectrum: str, d: int, ls: float, x: torch.Tensor, nu: float = 1.5) -> torch.Tensor:
    """Covariance of SpectralNoise(d, spectrum) on the unit box without mode truncation, in closed form.

    Keeping one of each pair +-k (and k = 0) with weight S_k gives sum_half S_k cos = (S_0 + F) / 2 with
    F(r) = sum_(all k) S(2 pi k) cos(2 pi k . r) = sum_n g(r + n) by Poisson summation, g the Fourier transform
    of S in cycles: for S(w) = (1 + |w|^2 l^2)^-(nu + d/2), g = (2 pi)^-d Gamma(nu) pi^(d/2) / (Gamma(nu + d/2)
    l^d) (1 + r/l) e^(-r/l) (nu = 3/2); for S(w) = exp(-|w|^2 l^2 / 2), g = (2 pi)^(-d/2) l^-d exp(-r^2 / (2 l^2)).
    S_0 = 1; normalised to unit variance.
    """
    if spectrum == "matern":
        assert nu == 1.5

        def kern(r):
            return (1 + r / ls) * torch.exp(-r / ls)

        a = (2 * math.pi) ** -d * math.gamma(nu) * math.pi ** (d / 2) / (math.gamma(nu + d / 2) * ls**d)
    else:

        def kern(r):
            return torch.exp(-0.5 * (r / ls) ** 2)

        a = (2 * math.pi) ** (-d / 2) / ls**d
    f = a * _periodised(kern, x[:, None] - x[None])
    return (1 + f) / (1 + a * _periodised(kern, torch.zeros(1, d, dtype=x.dtype)))


@pytest.mark.parametrize("spectrum,d,modes,ls,tol", [
    # max |error| measured over 30 draws of the points (mode truncation): 6e-5, 1.2e-3, 8e-16, 1.8e-7
    ("matern", 1, 32, 0.1, 2e-4),
    ("matern", 2, 8, 0.15, 4e-3),
    ("se", 1, 16, 0.1, 1e-12),
    ("se", 2, 8, 0.1, 1e-6),
])
def test_spectral_noise_covariance_is_the_closed_form_kernel(spectrum, d, modes, ls, tol, gen):
    """SpectralNoise's covariance against the Poisson-summed Matern-3/2 / Gaussian kernels (the sampler's law is
    tied to covariance() by test_covariance_matches_kernel)."""
    noise = SpectralNoise(d, spectrum, modes=modes, lengthscale=ls, smoothness=1.5)
    x = torch.rand(40, d, generator=gen, dtype=torch.float64)
    err = (noise.covariance(x, x) - _spectral_noise_oracle(spectrum, d, ls, x)).abs().max().item()
    assert err < tol, err


def test_fdp_spectral_noise_covariance_follows_the_documented_spectrum(gen):
    """``fdp``: ``S = r / b``, ``b = 1/(k^2 + 0.3) + ((k^2 + 2)/33^2)^(1/4)``, ``r = 1/(k^2 + 2)`` (``k`` in cycles per
    unit length), written out here over the modes ``k = 0..32`` (one of each pair +-k, as documented)."""
    noise = SpectralNoise(1, "fdp", modes=32)
    k = torch.arange(0, 33, dtype=torch.float64)
    s = (1 / (k**2 + 2)) / (1 / (k**2 + 0.3) + ((k**2 + 2) / 33**2) ** 0.25)
    x = torch.rand(40, 1, generator=gen, dtype=torch.float64)
    want = (s * torch.cos(2 * math.pi * k * (x - x.T)[..., None])).sum(-1) / s.sum()
    assert torch.allclose(noise.covariance(x, x), want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("points", ["scattered", "grid"])
def test_gaussian_field_log_prob_is_the_density_of_its_own_samples(points, gen):
    """A smooth field at 64 points is (nearly) singular: only the sampler's jitter gives its law a density, so
    ``log_prob`` must use the covariance the samples are drawn with. Whitened by that covariance the draws are
    standard normal (mean squared whitened value 1); whitened by the kernel alone (the jitter left out) the
    directions that hold only jitter blow up."""
    from funcgen.processes.density import mahalanobis_logdet

    noise = GaussianRandomField("se", 0.07, jitter=1e-6)
    n = 64 if points == "scattered" else 128  # 128 grid points take the Kronecker grid sampler
    coords = (torch.rand(n, 1, generator=gen) if points == "scattered" else grid_coords((n,))).double()
    x = noise.sample(coords.unsqueeze(0).expand(2000, -1, -1), 1, gen).double()
    law = noise.sampled_covariance(coords)
    maha, _ = mahalanobis_logdet(x, law, jitter=0.0)
    assert abs(float(maha.mean()) / n - 1.0) < 0.05  # chi^2_n / n over 2000 draws: std ~ 0.004
    # log_prob is exactly the Gaussian density of that covariance (closed form, independent code path)
    want = torch.distributions.MultivariateNormal(torch.zeros(n, dtype=torch.float64), law).log_prob(x[..., 0])
    got = noise.log_prob(x, coords.unsqueeze(0).expand(2000, -1, -1), jitter=0.0)
    assert torch.allclose(got, want, rtol=1e-8, atol=1e-6)
    # the kernel without the jitter is not the samples' law
    k = noise.covariance(coords, coords) + 1e-9 * torch.eye(n, dtype=torch.float64)
    assert float(mahalanobis_logdet(x[:200], k, jitter=0.0)[0].mean()) / n > 10.0
