"""Tests of the backbones in funcgen.nets (contract, equivariance, chunking, adaptation, configs)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from funcgen.config import build
from funcgen.nets import (
    AdaptiveINR,
    Backbone,
    FourierFeatures,
    PerceiverNet,
    SirenNet,
    TimeEmbedding,
)
from funcgen.pointset import query_coords

C_IN, C_OUT = 2, 3

FACTORIES = {
    "perceiver": lambda d: PerceiverNet(d, C_IN, C_OUT, width=32, num_latents=8, depth=2, heads=4, num_bands=4),
    "siren": lambda d: SirenNet(d, C_IN, C_OUT, width=32, depth=3),
    "adaptive_inr": lambda d: AdaptiveINR(d, C_IN, C_OUT, width=32, depth=3, latent_dim=8, inner_steps=2,
                                          num_bands=4),
}


def _inputs(b: int, n: int, d: int, c: int = C_IN) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.rand(b, n, d), torch.randn(b, n, c), torch.rand(b)


def _perturb_(net: torch.nn.Module, std: float = 0.05) -> torch.nn.Module:
    """Add noise to every parameter, so zero-initialised heads/modulations do not make outputs trivial."""
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * std)
    return net


def _smooth_functions(b: int, n: int, d: int, c: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random low-frequency sinusoids at random points: ``coords [b, n, d]``, ``values [b, n, c]``."""
    x = torch.rand(b, n, d)
    k = torch.randint(1, 3, (b, 1, d, c)).float()
    phase, amp = torch.rand(b, 1, c) * 2 * math.pi, 0.5 + torch.rand(b, 1, c)
    return x, amp * torch.sin(2 * math.pi * (x.unsqueeze(-1) * k).sum(2) + phase)


@pytest.mark.parametrize("name", sorted(FACTORIES))
@pytest.mark.parametrize("d", [1, 2])
@pytest.mark.parametrize("n", [7, 64, 300])
def test_shape_and_finite(name: str, d: int, n: int) -> None:
    torch.manual_seed(0)
    net = FACTORIES[name](d)
    out = net(*_inputs(2, n, d))
    assert out.shape == (2, n, C_OUT)
    assert torch.isfinite(out).all()
    assert isinstance(net, Backbone) and (net.dim, net.in_channels, net.out_channels) == (d, C_IN, C_OUT)


@pytest.mark.parametrize("name", sorted(FACTORIES))
@pytest.mark.parametrize("d", [1, 2])
def test_backward_reaches_every_parameter(name: str, d: int) -> None:
    torch.manual_seed(1)
    net = FACTORIES[name](d).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    coords, values, t = _inputs(3, 50, d)
    target = torch.randn(3, 50, C_OUT)
    # one real optimiser step first: a zero-initialised head blocks gradients to everything before it
    for _ in range(2):
        opt.zero_grad()
        loss = (net(coords, values, t) - target).square().mean()
        loss.backward()
        opt.step()
    missing = [k for k, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()
               or p.grad.abs().max() == 0]
    assert not missing, f"no (or zero / non-finite) gradient for {missing}"


def test_perceiver_permutation_equivariance() -> None:
    torch.manual_seed(2)
    net = _perturb_(FACTORIES["perceiver"](2)).eval()
    coords, values, t = _inputs(2, 97, 2)
    perm = torch.randperm(97)
    out = net(coords, values, t)
    out_perm = net(coords[:, perm], values[:, perm], t)
    assert out.abs().max() > 1e-3  # not trivially zero
    torch.testing.assert_close(out_perm, out[:, perm], atol=1e-5, rtol=0)


def test_perceiver_query_values_false_reads_out_through_the_latents_only() -> None:
    """``query_values=False``: the value at a query reaches its output only through the latents, so the
    outputs equal a read-out whose query values are replaced by anything, with the latents pooled from
    the true values; and they still depend on the values (through the pooling)."""
    seed = torch.seed()
    net = _perturb_(PerceiverNet(2, C_IN, C_IN, width=32, num_latents=8, depth=2, heads=4, num_bands=4,
                                 query_values=False))
    coords, values, t = _inputs(3, 50, 2)
    out = net(coords, values, t)
    garbage = torch.randn_like(values) * 10
    torch.testing.assert_close(net(coords, garbage, t, context=(coords, values)), out, atol=1e-5, rtol=0)
    assert (net(coords, garbage, t) - out).abs().max() > 1e-3, f"outputs ignore the values (seed {seed})"
    # the default keeps the per-point path: replacing only the query values changes the output
    skip = PerceiverNet(**{**net.config["init_args"], "query_values": True})
    skip.load_state_dict(net.state_dict())
    assert (skip(coords, garbage, t, context=(coords, values)) - skip(coords, values, t)).abs().max() > 1e-3


def test_perceiver_chunked_equals_unchunked() -> None:
    torch.manual_seed(3)
    big = _perturb_(FACTORIES["perceiver"](2))
    small = PerceiverNet(**{**big.config["init_args"], "query_chunk": 16})
    small.load_state_dict(big.state_dict())
    coords, values, t = _inputs(2, 101, 2)  # 101 > 16: streaming encode and chunked decode, ragged last chunk
    with torch.no_grad():
        ref = big.train()(coords, values, t)  # training mode: one fused attention over all points
        chunked = small.eval()(coords, values, t)
        lat_ref, _ = big.encode(coords, values, t)
        lat_chunked, _ = small.encode(coords, values, t)
    assert ref.abs().max() > 1e-3
    torch.testing.assert_close(lat_chunked, lat_ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(chunked, ref, atol=1e-5, rtol=0)
    # chunking in eval mode also keeps gradients exact
    c = coords.clone().requires_grad_(True)
    small(c, values, t).sum().backward()
    c2 = coords.clone().requires_grad_(True)
    big.train()(c2, values, t).sum().backward()
    torch.testing.assert_close(c.grad, c2.grad, atol=1e-4, rtol=1e-4)


def test_perceiver_latents_are_resolution_robust() -> None:
    """Softmax attention pooling is a quadrature of an integral: N and 4N grid points give nearly the
    same latents, much closer than two different functions do (needs 2^num_bands < N, i.e. the grid
    must resolve the highest coordinate Fourier band)."""
    torch.manual_seed(4)
    net = PerceiverNet(1, 1, 1, width=64, num_latents=16, depth=2, num_bands=4).eval()
    t = torch.full((1,), 0.3)
    coarse, fine = query_coords(32, 1), query_coords(128, 1)
    f = lambda x: torch.sin(2 * math.pi * x)  # noqa: E731
    g = lambda x: 0.5 * torch.cos(2 * math.pi * x) + x  # noqa: E731
    with torch.no_grad():
        lat_coarse, _ = net.encode(coarse, f(coarse), t)
        lat_fine, _ = net.encode(fine, f(fine), t)
        lat_other, _ = net.encode(fine, g(fine), t)
    assert (lat_coarse - lat_fine).norm() < 0.05 * (lat_fine - lat_other).norm()


def test_adaptive_inr_inner_loop_decreases_inner_loss() -> None:
    torch.manual_seed(5)
    for d in (1, 2):
        net = AdaptiveINR(d, C_IN, C_OUT, width=64, depth=3, latent_dim=16, inner_steps=3, num_bands=4,
                          inner_lr=1.0).eval()
        coords, values = _smooth_functions(4, 200, d, C_IN)
        t = torch.rand(4)
        phi = net.adapt(coords, values, t)
        assert not phi.requires_grad  # eval mode: no graph through the inner loop
        with torch.no_grad():
            before = net.inner_loss(coords, values, t, torch.zeros_like(phi))
            after = net.inner_loss(coords, values, t, phi)
        assert (after < before).all(), (before, after)
        assert after.mean() < 0.97 * before.mean()  # typically 0.6 (d=1) to 0.9 (d=2) at initialisation


def test_adaptive_inr_under_no_grad_and_eval() -> None:
    torch.manual_seed(6)
    net = _perturb_(FACTORIES["adaptive_inr"](2), std=0.01)
    coords, values, t = _inputs(2, 40, 2)
    for mode in (True, False):
        net.train(mode)
        with torch.no_grad():
            out = net(coords, values, t)
        assert out.shape == (2, 40, C_OUT) and torch.isfinite(out).all() and out.grad_fn is None
        torch.testing.assert_close(out, net(coords, values, t).detach(), atol=1e-5, rtol=1e-5)


def test_adaptive_inr_inner_loss_is_a_mean_over_points() -> None:
    torch.manual_seed(7)
    net = FACTORIES["adaptive_inr"](1).eval()
    coords, values, t = _inputs(2, 30, 1)
    phi = net.adapt(coords, values, t)
    phi2 = net.adapt(coords.repeat(1, 3, 1), values.repeat(1, 3, 1), t)  # same function, 3x the points
    torch.testing.assert_close(phi2, phi, atol=1e-5, rtol=1e-4)


def test_adaptive_inr_gradients_reach_inner_learning_rates() -> None:
    torch.manual_seed(8)
    net = FACTORIES["adaptive_inr"](1).train()
    coords, values = _smooth_functions(3, 50, 1, C_IN)
    net(coords, values, torch.rand(3)).square().mean().backward()
    assert net.inner_lr.grad is not None and (net.inner_lr.grad.abs() > 0).all()
    # eval mode: the inner loop is not differentiated through
    net.zero_grad(set_to_none=True)
    net.eval()(coords, values, torch.rand(3)).square().mean().backward()
    assert net.inner_lr.grad is None or (net.inner_lr.grad == 0).all()


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_config_rebuild_roundtrip(name: str) -> None:
    torch.manual_seed(9)
    net = _perturb_(FACTORIES[name](2), std=0.01).eval()
    config = json.loads(json.dumps(net.config))  # JSON-primitive arguments only
    assert config["class_path"] == f"{type(net).__module__}.{type(net).__name__}"
    rebuilt = build(config, Backbone)
    assert type(rebuilt) is type(net) and rebuilt.config == net.config
    rebuilt.load_state_dict(net.state_dict())
    rebuilt.eval()
    coords, values, t = _inputs(2, 33, 2)
    with torch.no_grad():
        assert torch.equal(rebuilt(coords, values, t), net(coords, values, t))


def test_contract_checks_and_shared_modules() -> None:
    with pytest.raises(TypeError):
        Backbone(1, 1, 1)  # abstract
    net = FACTORIES["siren"](2)
    with pytest.raises(ValueError, match="coords"):
        net(torch.rand(1, 5, 3), torch.rand(1, 5, C_IN), torch.rand(1))
    with pytest.raises(ValueError, match="t must be"):
        net(torch.rand(1, 5, 2), torch.rand(1, 5, C_IN), torch.rand(2))
    ff = FourierFeatures(2, 3)
    x = torch.rand(4, 2)
    feats = ff(x)
    assert feats.shape == (4, ff.out_dim) == (4, 14)
    torch.testing.assert_close(feats[:, :2], x)
    torch.testing.assert_close(feats[:, 2 + 1 * 3 + 2], torch.sin(4 * math.pi * x[:, 1]))  # axis 1, band 2
    assert TimeEmbedding(16)(torch.rand(5)).shape == (5, 16)
