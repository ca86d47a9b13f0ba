"""Exports written before the package layout changed still load and sample the same numbers.

``tests/fixtures/v0_1_layout`` holds small untrained models, one per method, exported by funcgen at the
commit named in ``expected_samples.safetensors``'s metadata (the flat layout: ``funcgen.noise.SpectralNoise``,
``funcgen.mollify.MollifiedNoise``, ...), and the samples that code drew from them with a fixed seed.
Loading goes through the alias table of old class paths (:data:`funcgen.config.MOVED`), sampling through
today's samplers: both must reproduce the old numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import funcgen

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "v0_1_layout"


def _expected() -> tuple[dict[str, torch.Tensor], dict]:
    with safe_open(str(FIXTURES / "expected_samples.safetensors"), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        cases = json.loads(f.metadata()["cases"])
    return tensors, cases


EXPECTED, CASES = _expected()


@pytest.mark.parametrize("name", sorted(CASES))
def test_old_export_samples_identically(name: str) -> None:
    gen = funcgen.load(FIXTURES / f"{name}.safetensors")
    kwargs = CASES[name]
    if kwargs is None:  # mesh models sample at given eigen-coordinates
        ps = gen.sample(coords=EXPECTED[f"{name}.coords"], seed=3)
    else:
        ps = gen.sample(seed=3, **kwargs)
    want = EXPECTED[name]
    assert ps.values.shape == want.shape
    # same arithmetic up to float32 round-off of reordered operations
    torch.testing.assert_close(ps.values, want, rtol=1e-4, atol=1e-5 * float(want.abs().max()))


def test_old_export_samples_differ_with_seed() -> None:
    """The comparison above can fail: another seed gives other numbers."""
    gen = funcgen.load(FIXTURES / "fdp_grf1d.safetensors")
    ps = gen.sample(seed=4, **CASES["fdp_grf1d"])
    assert (ps.values - EXPECTED["fdp_grf1d"]).abs().max() > 1e-2
