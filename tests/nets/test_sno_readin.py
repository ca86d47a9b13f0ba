"""The SNO's grid read-in (normalised tent average) and read-back (multilinear) are resolution-consistent,
and a point mask removes padding from every sum."""

from __future__ import annotations

import math

import pytest
import torch

from funcgen.config import build
from funcgen.nets import SparseNeuralOperator
from funcgen.nets.base import Backbone
from funcgen.nets.sno_ops import grid_gather, grid_splat
from funcgen.pointset import grid_coords


def smooth(x: torch.Tensor) -> torch.Tensor:
    """A smooth test function on [0, 1]^2 ``[..., 2] -> [..., 1]`` (two channels of features)."""
    a, b = x[..., 0], x[..., 1]
    return torch.stack([torch.sin(2 * math.pi * a) * torch.cos(3 * math.pi * b), (a - 0.3) ** 2 + 0.5 * b], -1)


def at(res: int, batch: int = 2) -> torch.Tensor:
    return grid_coords((res, res)).expand(batch, -1, -1)


def relerr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_splat_is_density_independent_and_the_unnormalised_sum_is_not() -> None:
    feats = {r: grid_splat(at(r), smooth(at(r)), 28, 1.5) for r in (28, 56, 112)}
    # 1x (the grid's own nodes) and 2x against 4x: measured 1.3e-3 and 1.1e-3
    assert relerr(feats[28], feats[112]) < 0.005
    assert relerr(feats[56], feats[112]) < 0.004
    # the plausible bug, weights not normalised per node: the scale grows with the density
    ones = {r: grid_splat(at(r), torch.ones(2, r * r, 1), 28, 1.5) for r in (28, 112)}
    assert torch.allclose(ones[28], torch.ones_like(ones[28])) and torch.allclose(ones[112], ones[28])
    unnorm = {r: grid_splat(at(r), smooth(at(r)), 28, 1.5) * _den(r) for r in (28, 112)}
    assert relerr(unnorm[28], unnorm[112]) > 0.5


def _den(res: int) -> torch.Tensor:
    """The per-node weight sum ``sum_i T(c - x_i)`` of :func:`grid_splat` by brute force ``[1, 784, 1]``."""
    x, c = at(res, 1)[0], grid_coords((28, 28))
    u = (c[:, None] - x[None]).abs() * 28 / 1.5
    return (1 - u).clamp_min(0).prod(-1).sum(1)[None, :, None]


def test_splat_equals_the_brute_force_normalised_tent_average() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 300, 2, generator=gen)
    h = torch.randn(2, 300, 3, generator=gen)
    size, s = 7, 1.5
    c = grid_coords((size, size))
    w = (1 - (c[None, :, None] - x[:, None]).abs() * size / s).clamp_min(0).prod(-1)  # [B, G, N]
    want = (w @ h) / w.sum(-1, keepdim=True)
    torch.testing.assert_close(grid_splat(x, h, size, s, chunk=37), want, rtol=1e-5, atol=1e-6)
    mask = torch.rand(2, 300, generator=gen) > 0.3
    wm = w * mask[:, None]
    torch.testing.assert_close(grid_splat(x, h, size, s, mask, chunk=37), (wm @ h) / wm.sum(-1, keepdim=True),
                               rtol=1e-5, atol=1e-6)


def test_gather_is_exact_at_nodes_and_for_linear_functions() -> None:
    size = 9
    nodes = at(size)
    g = torch.randn(2, size * size, 3, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(grid_gather(nodes, g, size), g)
    lin = lambda x: (0.3 + 2.0 * x[..., :1] - 1.5 * x[..., 1:])  # noqa: E731
    q = 0.5 / size + (1 - 1 / size) * torch.rand(2, 500, 2, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(grid_gather(q, lin(nodes), size, chunk=64), lin(q), rtol=1e-5, atol=1e-5)


def _grid_input_hook(net: SparseNeuralOperator) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    net.grid_net.register_forward_hook(lambda m, args, out: seen.append(args[0].detach()))
    return seen


def test_sno_grid_features_agree_at_1x_2x_4x_density() -> None:
    torch.manual_seed(0)
    net = SparseNeuralOperator(2, 2, 1, width=16, radius=0.08, grid_size=14, depth=1, grid_net="unet")
    seen = _grid_input_hook(net)
    with torch.no_grad():
        for r in (14, 28, 56):
            net(at(r), smooth(at(r)), torch.full((2,), 0.3))
    # measured 3.0e-3 (1x) and 1.7e-3 (2x) against 4x; with readin="idw" 1.2e-2 and 2.2e-2
    assert relerr(seen[0], seen[2]) < 0.009
    assert relerr(seen[1], seen[2]) < 0.005


def _padded(coords, values, extra: int, gen):
    b = coords.shape[0]
    junk_c = torch.rand(b, extra, 2, generator=gen) * 1.4 - 0.2
    junk_c[0, 0] = float("nan")
    junk_v = 10 * torch.randn(b, extra, values.shape[-1], generator=gen)
    perm = torch.randperm(coords.shape[1] + extra, generator=gen)  # junk interleaved with the real points
    c = torch.cat([coords, junk_c], 1)[:, perm]
    v = torch.cat([values, junk_v], 1)[:, perm]
    mask = torch.cat([torch.ones(b, coords.shape[1], dtype=torch.bool), torch.zeros(b, extra, dtype=torch.bool)],
                     1)[:, perm]
    return c, v, mask, torch.argsort(perm)[:coords.shape[1]]  # where the real points went


@pytest.mark.parametrize("scattered", [False, True])
def test_sno_masked_padding_leaves_real_outputs_unchanged(scattered: bool) -> None:
    gen = torch.Generator().manual_seed(3)
    torch.manual_seed(0)
    net = SparseNeuralOperator(2, 1, 1, width=16, radius=0.15, grid_size=8, depth=1, grid_net="unet")
    torch.nn.init.normal_(net.head[-1].weight)  # the zero-initialised head would hide every difference
    coords = torch.rand(2, 150, 2, generator=gen) if scattered else at(12)
    values = torch.randn(2, coords.shape[1], 1, generator=gen)
    t = torch.tensor([0.2, 0.7])
    with torch.no_grad():
        want = net(coords, values, t)
        c, v, mask, real = _padded(coords, values, 40, gen)
        got = net(c, v, t, mask=mask)
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got[:, real], want, rtol=1e-4, atol=1e-5)
        # the check can fail: without the mask the junk changes the real outputs
        c_clean = torch.where(mask[..., None], c, 0.5)
        assert (net(c_clean, v, t)[:, real] - want).abs().max() > 1e-2


def test_sno_mask_checks() -> None:
    net = SparseNeuralOperator(2, 1, 1, width=8, grid_size=4)
    x, v, t = at(4), torch.zeros(2, 16, 1), torch.zeros(2)
    with pytest.raises(ValueError, match="mask must be a bool"):
        net(x, v, t, mask=torch.ones(2, 15, dtype=torch.bool))
    with pytest.raises(ValueError, match="at least one real point"):
        net(x, v, t, mask=torch.zeros(2, 16, dtype=torch.bool))


def test_configs_written_before_the_kernel_readin_rebuild_the_idw_readin() -> None:
    net = SparseNeuralOperator(2, 1, 1, width=8, grid_size=4)
    assert net.readin == "kernel" and net.config["init_args"]["readin"] == "kernel"
    old = {"class_path": net.config["class_path"],
           "init_args": {k: v for k, v in net.config["init_args"].items() if k not in ("readin", "readin_width")}}
    assert build(old, Backbone).readin == "idw"
    assert build(net.config, Backbone).readin == "kernel"
