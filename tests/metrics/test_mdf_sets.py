"""COV / MMD (Achlioptas et al. 2018 protocol) against brute force and known answers."""

import pytest
import torch

from funcgen.metrics.mdf_sets import (
    cov_mmd,
    coverage,
    minimum_matching_distance,
    pairwise_l2,
)


def test_distances_match_a_brute_force_loop(gen):
    a, b = torch.randn(5, 7, 2, generator=gen), torch.randn(4, 7, 2, generator=gen)
    w = torch.rand(7, generator=gen) + 0.1
    d = pairwise_l2(a, b, w, chunk=2)
    for i in range(5):
        for j in range(4):
            ref = ((w[:, None] * (a[i] - b[j]) ** 2).sum() / (2 * w.sum())).sqrt()
            assert torch.isclose(d[i, j], ref.double(), rtol=1e-6)
    mmd = sum(min(float(d[i, j]) for i in range(5)) for j in range(4)) / 4
    assert abs(minimum_matching_distance(a, b, w) - mmd) < 1e-9


def test_known_answers(gen):
    s = 12
    levels = torch.randperm(s, generator=gen).double()  # well separated constant functions
    ref = levels[:, None, None].expand(s, 30, 1).clone()
    assert cov_mmd(ref, ref) == {"cov": 1.0, "mmd": 0.0}
    shift = float(torch.rand((), generator=gen)) * 0.4
    out = cov_mmd(ref + shift, ref, suffix="@x")
    assert out["cov@x"] == 1.0 and abs(out["mmd@x"] - shift) < 1e-9
    collapsed = ref[:1].expand(s, -1, -1)  # a mode-collapsed generator
    assert coverage(collapsed, ref) == pytest.approx(1 / s)
    # MMD of the collapsed set: mean distance of every level to the one generated level
    assert minimum_matching_distance(collapsed, ref) == pytest.approx(float((levels - levels[0]).abs().mean()))


def test_bad_inputs():
    with pytest.raises(ValueError, match="same points"):
        pairwise_l2(torch.zeros(2, 3, 1), torch.zeros(2, 4, 1))
    with pytest.raises(ValueError, match="weights"):
        pairwise_l2(torch.zeros(2, 3, 1), torch.zeros(2, 3, 1), torch.tensor([1.0, -1.0, 1.0]))
