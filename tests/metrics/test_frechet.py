"""Frechet distance between Gaussians: closed forms, an independent sqrtm formula, identities."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from funcgen.metrics import feature_frechet_distance, fit_gaussian, frechet_distance


def _spd(gen, p):
    a = torch.randn(p, p, generator=gen, dtype=torch.float64)
    return a @ a.T / p + 0.1 * torch.eye(p, dtype=torch.float64)


def test_one_dimensional_closed_form(gen):
    m1, m2 = torch.randn(2, generator=gen, dtype=torch.float64)
    s1, s2 = 0.2 + torch.rand(2, generator=gen, dtype=torch.float64) * 3
    d = frechet_distance(m1.reshape(1), (s1**2).reshape(1, 1), m2.reshape(1), (s2**2).reshape(1, 1))
    assert d == pytest.approx(float((m1 - m2) ** 2 + (s1 - s2) ** 2), rel=1e-10, abs=1e-12)


def test_shared_eigenbasis_closed_form(gen):
    p = 6
    q, _ = torch.linalg.qr(torch.randn(p, p, generator=gen, dtype=torch.float64))
    a = 0.1 + torch.rand(p, generator=gen, dtype=torch.float64) * 4
    b = 0.1 + torch.rand(p, generator=gen, dtype=torch.float64) * 4
    mu1, mu2 = torch.randn(p, generator=gen, dtype=torch.float64), torch.randn(p, generator=gen, dtype=torch.float64)
    d = frechet_distance(mu1, q @ torch.diag(a) @ q.T, mu2, q @ torch.diag(b) @ q.T)
    exact = float(((mu1 - mu2) ** 2).sum() + ((a.sqrt() - b.sqrt()) ** 2).sum())
    assert d == pytest.approx(exact, rel=1e-9)


def test_general_covariances_match_scipy_sqrtm_form_and_are_symmetric(gen):
    p = 8
    c1, c2 = _spd(gen, p), _spd(gen, p)
    mu1, mu2 = torch.randn(p, generator=gen, dtype=torch.float64), torch.randn(p, generator=gen, dtype=torch.float64)
    covmean = scipy.linalg.sqrtm(c1.numpy() @ c2.numpy())  # the pytorch-fid formula, computed independently
    exact = float(((mu1 - mu2) ** 2).sum()) + float(c1.trace() + c2.trace()) - 2 * float(np.trace(covmean).real)
    d12, d21 = frechet_distance(mu1, c1, mu2, c2), frechet_distance(mu2, c2, mu1, c1)
    assert d12 == pytest.approx(exact, rel=1e-8)
    assert d12 == pytest.approx(d21, rel=1e-10)


def test_identical_sets_and_fit(gen):
    z = torch.randn(500, 10, generator=gen, dtype=torch.float64)
    f = z @ torch.randn(10, 10, generator=gen, dtype=torch.float64)
    mu, cov = fit_gaussian(f)
    assert torch.allclose(mu, f.mean(0))
    assert np.allclose(cov.numpy(), np.cov(f.numpy(), rowvar=False))
    assert feature_frechet_distance(f, f) < 1e-8 * float(cov.trace())
    # fewer items than features: singular covariances, still ~0 against itself
    g = torch.randn(5, 20, generator=gen)
    assert feature_frechet_distance(g, g) < 1e-6
    assert feature_frechet_distance(f, f + 1.0) == pytest.approx(10.0, rel=1e-6)  # pure mean shift of 1 per feature


def test_frechet_input_errors():
    with pytest.raises(ValueError, match=r"\[n, p\]"):
        fit_gaussian(torch.randn(1, 3))
    with pytest.raises(ValueError, match="different widths"):
        feature_frechet_distance(torch.randn(5, 3), torch.randn(5, 4))
    with pytest.raises(ValueError, match="cov2"):
        frechet_distance(torch.zeros(3), torch.eye(3), torch.zeros(3), torch.eye(2))
    bad = torch.randn(6, 3)
    bad[2, 1] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        fit_gaussian(bad)
