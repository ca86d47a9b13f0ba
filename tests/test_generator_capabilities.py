"""FunctionGenerator offers what its method declares (capability protocols), and refuses the rest clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import funcgen
from funcgen.methods import SupportsLikelihood, SupportsProjection, SupportsRefinement

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "v0_1_layout"


def test_capabilities_are_declared_by_the_methods_that_have_them():
    fdp, ign, rd = (funcgen.load(FIXTURES / f"{n}.safetensors").method
                    for n in ("fdp_grf1d", "ign_grf1d", "riemannian_sphere"))
    assert isinstance(rd, SupportsLikelihood) and not isinstance(fdp, SupportsLikelihood)
    assert isinstance(ign, SupportsProjection) and isinstance(ign, SupportsRefinement)
    assert not isinstance(fdp, SupportsProjection) and not isinstance(fdp, SupportsRefinement)


def test_projection_applies_f_in_model_space_and_returns_data_units():
    gen = funcgen.load(FIXTURES / "ign_grf1d.safetensors")
    gen.data["normalization"] = {"shift": 0.5, "scale": 2.0}
    ps = gen.sample(3, 32, seed=1)  # data units
    out = gen.project(ps, k=2)
    t = torch.zeros(3, dtype=ps.coords.dtype)
    x = (ps.values - 0.5) / 2.0
    for _ in range(2):
        x = gen.net(ps.coords, x, t)
    torch.testing.assert_close(out.values, x * 2.0 + 0.5)


def test_likelihood_goes_through_the_method_and_is_seeded():
    gen = funcgen.load(FIXTURES / "riemannian_sphere.safetensors")
    pts = torch.nn.functional.normalize(torch.randn(5, 3, generator=torch.Generator().manual_seed(0)), dim=-1)
    ll = gen.log_likelihood(pts, steps=4, seed=2)
    want = gen.method.log_likelihood(gen.net, pts, steps=4, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(ll, want)
    assert ll.shape == (5,) and torch.isfinite(ll).all()


def test_methods_without_a_capability_say_so():
    gen = funcgen.load(FIXTURES / "fdp_grf1d.safetensors")
    with pytest.raises(TypeError, match="offers no likelihood"):
        gen.log_likelihood(torch.zeros(2, 1))
    with pytest.raises(TypeError, match="offers no projection"):
        gen.project(gen.sample(1, 8))
