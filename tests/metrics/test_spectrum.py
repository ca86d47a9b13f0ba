"""Power spectra: white noise, a periodic GRF with a known spectral density, a cosine, Parseval."""

import math

import pytest
import torch

from funcgen.metrics import power_spectrum, radial_power_spectrum, spectrum_error

Z = 4.5  # standard errors allowed per radial bin


def _freqs(n):
    return [k if k < (n + 1) // 2 else k - n for k in range(n)]  # FFT order, integer cycles per unit


def _radial_mean(expected, shape):
    """Average a 2D/1D array of expected power (FFT order) over bins round(|k|), by explicit loops."""
    kmax = min(shape) // 2
    sums, counts = [0.0] * (kmax + 1), [0] * (kmax + 1)
    grids = [_freqs(n) for n in shape]
    idx = ([(i,) for i in range(shape[0])] if len(shape) == 1
           else [(i, j) for i in range(shape[0]) for j in range(shape[1])])
    for ij in idx:
        r = round(math.sqrt(sum(grids[a][ij[a]] ** 2 for a in range(len(shape)))))
        if r <= kmax:
            sums[r] += float(expected[ij])
            counts[r] += 1
    return torch.tensor([s / c for s, c in zip(sums, counts)], dtype=torch.float64), counts


def _check_bins(per_sample, expected):
    mean = per_sample.mean(0)
    se = per_sample.std(0) / math.sqrt(per_sample.shape[0])
    assert torch.all((mean - expected).abs() < Z * se), ((mean - expected) / se)


@pytest.mark.parametrize("shape", [(12, 16), (48,)])
def test_white_noise_spectrum_is_flat_at_its_variance(gen, shape):
    std = 1.7
    x = std * torch.randn(300, *shape, generator=gen, dtype=torch.float64)
    k, spec = radial_power_spectrum(x, per_sample=True)
    assert torch.equal(k, torch.arange(min(shape) // 2 + 1, dtype=torch.float64))
    _check_bins(spec, torch.full_like(k, std**2))
    # density = variance / number of cells
    _, dens = radial_power_spectrum(x, normalization="density")
    assert torch.allclose(dens * math.prod(shape), spec.mean(0))


def _wrapped_se_factor(n, lengthscale):
    """Square root of the covariance of the SE kernel wrapped on the unit circle, at n cell centres."""
    t = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    r = t[:, None] - t[None, :]
    c = sum(torch.exp(-(r + m) ** 2 / (2 * lengthscale**2)) for m in range(-3, 4))
    lam, vec = torch.linalg.eigh(c)
    return vec * lam.clamp_min(0).sqrt()


def _se_density_1d(k, lengthscale):
    """Fourier transform of exp(-r^2 / (2 l^2)) at k cycles per unit length."""
    return math.sqrt(2 * math.pi) * lengthscale * math.exp(-2 * math.pi**2 * lengthscale**2 * k * k)


@pytest.mark.parametrize("shape,lengthscale", [((16, 12), 0.08), ((64,), 0.025)])
def test_periodic_grf_has_its_aliased_spectral_density(gen, shape, lengthscale):
    variance, num = 2.0, 400
    factors = [_wrapped_se_factor(n, lengthscale) for n in shape]
    z = torch.randn(num, *shape, generator=gen, dtype=torch.float64)
    x = math.sqrt(variance) * torch.einsum("ia,na->ni", factors[0], z) if len(shape) == 1 else \
        math.sqrt(variance) * torch.einsum("ia,jb,nab->nij", factors[0], factors[1], z)
    # E P(k) = variance * prod_axes sum_m S_1(k_i + m n_i)  (Poisson summation over aliases)
    per_axis = [torch.tensor([sum(_se_density_1d(k + m * n, lengthscale) for m in range(-3, 4)) for k in _freqs(n)],
                             dtype=torch.float64) for n in shape]
    expected = variance * (per_axis[0] if len(shape) == 1 else per_axis[0][:, None] * per_axis[1][None, :])
    radial, counts = _radial_mean(expected, shape)
    _, spec = radial_power_spectrum(x, normalization="density", per_sample=True)
    assert spec.shape == (num, min(shape) // 2 + 1)
    assert radial[0] > 50 * radial[-1]  # a strongly coloured spectrum, not white
    _check_bins(spec, radial)


def test_cosine_puts_its_power_in_one_radial_bin():
    h, w, freq, amp = 16, 16, 3, 1.5
    tx = (torch.arange(w, dtype=torch.float64) + 0.5) / w
    x = (amp * torch.cos(2 * math.pi * freq * tx)).expand(h, w).unsqueeze(0)
    _, spec = radial_power_spectrum(x)
    # |F| = amp * h * w / 2 at (0, +-freq); P = |F|^2 / (h w); the bin averages over its wavevectors
    _, counts = _radial_mean(torch.zeros(h, w), (h, w))
    expected = torch.zeros(h // 2 + 1, dtype=torch.float64)
    expected[freq] = 2 * (amp * h * w / 2) ** 2 / (h * w) / counts[freq]
    assert torch.allclose(spec, expected, atol=1e-10)


def test_parseval_and_spectrum_error(gen):
    x = torch.randn(20, 10, 14, generator=gen, dtype=torch.float64) + 0.3
    p = power_spectrum(x)
    assert torch.allclose(p.mean(dim=(1, 2)), (x**2).mean(dim=(1, 2)))
    assert spectrum_error(x, x) == 0.0
    a = 1.3
    assert spectrum_error(a * x, x) == pytest.approx(a * a - 1, rel=1e-9)
    assert spectrum_error(a * x, x, kind="log") == pytest.approx(2 * math.log(a), rel=1e-9)


def test_spectrum_input_errors():
    with pytest.raises(ValueError, match=r"\[n, H, W\]"):
        radial_power_spectrum(torch.randn(2, 3, 4, 5))
    bad = torch.randn(2, 8, 8)
    bad[0, 1, 1] = float("inf")
    with pytest.raises(ValueError, match="NaN/inf"):
        power_spectrum(bad)
    with pytest.raises(ValueError, match="same grid"):
        spectrum_error(torch.randn(2, 8, 8), torch.randn(2, 16, 16))
    with pytest.raises(ValueError, match="kind"):
        spectrum_error(torch.randn(2, 8, 8), torch.randn(2, 8, 8), kind="l1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="normalization"):
        power_spectrum(torch.randn(2, 8, 8), normalization="unit")  # type: ignore[arg-type]
