"""Set distances between functions: closed forms for Gaussian laws, exact identities, bad input."""

import math

import pytest
import torch

from funcgen.metrics import (
    coverage,
    coverage_mmd,
    energy_distance,
    median_bandwidth,
    min_matching_distance,
    mmd2,
    pairwise_sq_distances,
)

Z = 4.5  # standard errors allowed for Monte Carlo checks


def _mean_se(values: list[float]) -> tuple[float, float]:
    t = torch.tensor(values, dtype=torch.float64)
    return float(t.mean()), float(t.std() / math.sqrt(len(values)))


def test_distance_is_mean_reduced_over_points():
    # d(sin(2 pi t), 0)^2 = mean of sin^2 over a uniform grid = 1/2 exactly, for every N >= 3
    for n in (8, 64, 512):
        t = (torch.arange(n, dtype=torch.float64) + 0.5) / n
        f = torch.sin(2 * math.pi * t).unsqueeze(0)
        d2 = pairwise_sq_distances(f, torch.zeros_like(f))
        assert d2.shape == (1, 1)
        assert abs(float(d2) - 0.5) < 1e-12
    # channels are summed: two channels of the same signal double the squared distance
    f2 = torch.stack([f, f], dim=-1)
    assert abs(float(pairwise_sq_distances(f2, torch.zeros_like(f2))) - 1.0) < 1e-12


def _white(gen, n, points, channels, mean, std):
    return mean + std * torch.randn(n, points, channels, generator=gen, dtype=torch.float64)


def _rbf_cross(h, points, channels, mean_gap, var_sum):
    """E exp(-d(X,Y)^2/(2h^2)) for white-noise functions: X - Y ~ N(gap, var_sum) i.i.d. at every point."""
    big_h2 = points * h * h  # d^2 = |X - Y|^2 / N, so the kernel is Gaussian with variance N h^2 per coordinate
    dims = points * channels
    return (big_h2 / (big_h2 + var_sum)) ** (dims / 2) * math.exp(-dims * mean_gap**2 / (2 * (big_h2 + var_sum)))


def test_unbiased_mmd2_matches_closed_form_for_gaussians(gen):
    points, channels, h = 3, 2, 0.8
    mx, sx, my, sy = 0.0, 1.0, 0.3, 1.3
    exact = (_rbf_cross(h, points, channels, 0.0, 2 * sx**2) + _rbf_cross(h, points, channels, 0.0, 2 * sy**2)
             - 2 * _rbf_cross(h, points, channels, mx - my, sx**2 + sy**2))
    vals = [mmd2(_white(gen, 60, points, channels, mx, sx), _white(gen, 80, points, channels, my, sy), bandwidth=h)
            for _ in range(60)]
    mean, se = _mean_se(vals)
    assert exact > 10 * se  # the test can tell the two laws apart
    assert abs(mean - exact) < Z * se, (mean, exact, se)


def test_unbiased_mmd2_and_energy_have_mean_zero_for_equal_laws(gen):
    m_vals, e_vals = [], []
    for _ in range(60):
        x, y = _white(gen, 50, 4, 1, 0.5, 2.0), _white(gen, 70, 4, 1, 0.5, 2.0)
        m_vals.append(mmd2(x, y, bandwidth=2.0))
        e_vals.append(energy_distance(x, y))
    for vals in (m_vals, e_vals):
        mean, se = _mean_se(vals)
        assert abs(mean) < Z * se, (mean, se)
    assert min(m_vals) < 0 or min(e_vals) < 0  # unbiased estimators are not clamped at 0


def test_biased_estimators_vanish_on_identical_sets(gen):
    x = torch.randn(40, 16, 3, generator=gen)
    assert abs(mmd2(x, x, unbiased=False)) < 1e-12
    assert abs(mmd2(x, x, bandwidth=[0.3, 1.0], scales=(0.5, 2.0), unbiased=False)) < 1e-12
    assert abs(energy_distance(x, x, unbiased=False)) < 1e-6  # sqrt of ~1e-16 round-off on the diagonal
    assert mmd2(x, x + 1.0, unbiased=False) > 0.1


def _abs_normal_mean(m, s):
    """E|Z| for Z ~ N(m, s^2)."""
    return s * math.sqrt(2 / math.pi) * math.exp(-m * m / (2 * s * s)) + m * math.erf(m / (s * math.sqrt(2)))


def test_energy_distance_closed_form_constant_functions(gen):
    # constant functions f(t) = a, a ~ N(0, 1) vs g(t) = b, b ~ N(mu, 1): d(f, g) = |a - b| for every N
    mu = 0.7
    exact = 2 * _abs_normal_mean(mu, math.sqrt(2)) - 2 * _abs_normal_mean(0.0, math.sqrt(2))
    vals = []
    for _ in range(40):
        a = torch.randn(80, 1, generator=gen, dtype=torch.float64)
        b = mu + torch.randn(90, 1, generator=gen, dtype=torch.float64)
        e5 = energy_distance(a.expand(-1, 5), b.expand(-1, 5))
        e50 = energy_distance(a.expand(-1, 50), b.expand(-1, 50))
        assert abs(e5 - e50) < 1e-9  # no dependence on the number of points
        vals.append(e5)
    mean, se = _mean_se(vals)
    assert exact > 10 * se
    assert abs(mean - exact) < Z * se, (mean, exact, se)


def test_median_bandwidth_and_multi_bandwidth(gen):
    x = torch.randn(9, 7, generator=gen, dtype=torch.float64)
    y = 2 + torch.randn(6, 7, generator=gen, dtype=torch.float64)
    pooled = torch.cat([x, y]).double()
    dists = [math.sqrt(float(((pooled[i] - pooled[j]) ** 2).mean())) for i in range(15) for j in range(i + 1, 15)]
    expected = float(torch.tensor(dists, dtype=torch.float64).median())  # torch's median: the lower middle value
    assert abs(median_bandwidth(x, y) - expected) < 1e-9
    # the median heuristic makes MMD invariant to rescaling both sets
    assert abs(mmd2(3.0 * x, 3.0 * y) - mmd2(x, y)) < 1e-10
    # a sum of kernels gives the sum of the single-kernel MMDs; scales multiply the bandwidth
    h = median_bandwidth(x, y)
    total = mmd2(x, y, scales=(0.5, 1.0, 2.0))
    assert abs(total - sum(mmd2(x, y, bandwidth=s * h) for s in (0.5, 1.0, 2.0))) < 1e-10
    assert abs(mmd2(x, y, bandwidth=[0.5, 2.0]) - mmd2(x, y, bandwidth=0.5) - mmd2(x, y, bandwidth=2.0)) < 1e-10


def test_cov_and_matching_distance(gen):
    ref = torch.randn(30, 20, 2, generator=gen)
    assert coverage(ref, ref) == 1.0
    assert min_matching_distance(ref, ref) < 1e-6
    # collapsed generator: every sample is reference function k
    k = int(torch.randint(0, 30, (), generator=gen))
    collapsed = ref[k].expand(50, -1, -1)
    assert coverage(collapsed, ref) == pytest.approx(1 / 30)
    direct = sum(math.sqrt(float(((ref[i] - ref[k]).double() ** 2).sum() / 20)) for i in range(30)) / 30
    assert min_matching_distance(collapsed, ref) == pytest.approx(direct, abs=1e-6)
    # a generator that copies half the references (with a small perturbation) covers exactly half
    half = ref[:15] + 1e-3 * torch.randn(15, 20, 2, generator=gen)
    res = coverage_mmd(half, ref)
    assert res["cov"] == 0.5
    assert res["mmd_match"] == pytest.approx(min_matching_distance(half, ref))


def test_distance_input_errors():
    x = torch.randn(5, 8)
    with pytest.raises(ValueError, match="same points"):
        mmd2(x, torch.randn(5, 9))
    with pytest.raises(ValueError, match=r"\[n, N\]"):
        energy_distance(torch.randn(5), torch.randn(5))
    bad = x.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        coverage(bad, x)
    with pytest.raises(ValueError, match="bandwidth"):
        mmd2(x, x, bandwidth="mean")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive"):
        mmd2(x, x, bandwidth=-1.0)
    with pytest.raises(ValueError, match="at least 2"):
        mmd2(x[:1], x)
    with pytest.raises(ValueError, match="median"):
        mmd2(torch.zeros(4, 3), torch.zeros(4, 3))
