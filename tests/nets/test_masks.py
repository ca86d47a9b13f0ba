"""Ragged batches: padding a function with masked junk points changes nothing at its real points, in every
backbone (attention, pooling, adaptation) and in every method's loss."""

from __future__ import annotations

from typing import Callable

import pytest
import torch

from funcgen.methods import PFGMPP, FunctionalDiffusion, FunctionalFlowMatching, IdempotentGenerative
from funcgen.nets import (
    AdaptiveINR,
    Backbone,
    BranchTrunkNet,
    GridAutoencoder,
    ManifoldMLP,
    PerceiverNet,
    SirenNet,
    SparseNeuralOperator,
)
from funcgen.pointset import PointSet
from funcgen.processes.noise import SpectralNoise, WhiteNoise

D, C = 2, 2

BACKBONES: dict[str, Callable[[], Backbone]] = {
    "perceiver": lambda: PerceiverNet(D, C, C, width=32, num_latents=8, depth=1, heads=4, num_bands=3),
    # query_chunk below N: the streaming log-sum-exp pooling path, chunks of padding included
    "perceiver_streamed": lambda: PerceiverNet(D, C, C, width=32, num_latents=8, depth=1, heads=4, num_bands=3,
                                               query_chunk=5),
    "siren": lambda: SirenNet(D, C, C, width=32, depth=2),
    "adaptive_inr": lambda: AdaptiveINR(D, C, C, width=32, depth=2, latent_dim=8, inner_steps=2, num_bands=3),
    "manifold_mlp": lambda: ManifoldMLP(D, C, C, width=32, depth=2),
    "sno": lambda: SparseNeuralOperator(D, C, C, width=16, radius=0.2, grid_size=4, depth=1),
    "grid_autoencoder": lambda: GridAutoencoder(D, C, C, grid=6, width=8, levels=1, latent_dim=6),
    "branch_trunk": lambda: BranchTrunkNet(D, C, C, width=16, depth=1),
}
#: backbones whose points interact: ignoring the mask must change their output (the test can fail)
INTERACTING = {"branch_trunk", "perceiver", "perceiver_streamed", "adaptive_inr", "sno", "grid_autoencoder"}


def _perturb_(net: torch.nn.Module) -> torch.nn.Module:
    """Noise on every parameter, so zero-initialised heads do not make every output 0."""
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return net


def _padded(coords: torch.Tensor, values: torch.Tensor, extra: int, gen: torch.Generator):
    """The functions with ``extra`` junk points inserted at random positions: ``(coords, values, mask, index)``,
    ``index [B, N]`` the positions of the real points in the padded set."""
    b, n, _ = coords.shape
    total = n + extra
    pc = torch.rand(b, total, coords.shape[-1], generator=gen).to(coords.dtype)
    pv = 100.0 * torch.randn(b, total, values.shape[-1], generator=gen).to(values.dtype)
    mask = torch.zeros(b, total, dtype=torch.bool)
    index = torch.stack([torch.randperm(total, generator=gen)[:n].sort().values for _ in range(b)])
    for i in range(b):
        pc[i, index[i]], pv[i, index[i]], mask[i, index[i]] = coords[i], values[i], True
    return pc, pv, mask, index


@pytest.mark.parametrize("name", sorted(BACKBONES))
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_padding_with_masked_junk_leaves_real_outputs_unchanged(name: str, mode: str) -> None:
    torch.manual_seed(0)
    net = _perturb_(BACKBONES[name]()).double()  # float64: rounding (amplified by SIREN's w0) stays far below tol
    net.train(mode == "train")
    gen = torch.Generator().manual_seed(1)
    b, n = 3, 12
    coords, values = torch.rand(b, n, D, generator=gen).double(), torch.randn(b, n, C, generator=gen).double()
    t = torch.rand(b).double()
    if name == "manifold_mlp":
        t = t + 0.1  # a noise level sigma > 0
    ref = net(coords, values, t)
    pc, pv, mask, index = _padded(coords, values, 9, gen)
    out = net(pc, pv, t, mask=mask)
    got = torch.stack([out[i, index[i]] for i in range(b)])
    assert torch.allclose(got, ref, atol=1e-9, rtol=0), float((got - ref).abs().max())
    if name in INTERACTING:  # the junk would leak without the mask
        leak = net(pc, pv, t)
        assert not torch.allclose(torch.stack([leak[i, index[i]] for i in range(b)]), ref, atol=1e-3)


def test_perceiver_context_mask() -> None:
    """A context triple ``(coords, values, mask)`` ignores the context's padding."""
    torch.manual_seed(0)
    net = _perturb_(BACKBONES["perceiver"]()).eval()
    gen = torch.Generator().manual_seed(2)
    q, qv = torch.rand(2, 5, D, generator=gen), torch.randn(2, 5, C, generator=gen)
    cc, cv, t = torch.rand(2, 8, D, generator=gen), torch.randn(2, 8, C, generator=gen), torch.rand(2)
    pc, pv, mask, _ = _padded(cc, cv, 6, gen)
    ref = net(q, qv, t, context=(cc, cv))
    assert torch.allclose(net(q, qv, t, context=(pc, pv, mask)), ref, atol=2e-5)
    assert not torch.allclose(net(q, qv, t, context=(pc, pv)), ref, atol=1e-3)


def test_mask_errors_name_the_problem() -> None:
    net = BACKBONES["perceiver"]()
    coords, values, t = torch.rand(2, 4, D), torch.randn(2, 4, C), torch.rand(2)
    with pytest.raises(ValueError, match=r"mask must be a bool tensor \[B, N\] = \[2, 4\]"):
        net(coords, values, t, mask=torch.ones(2, 4))
    with pytest.raises(ValueError, match=r"mask rows \[1\] are all False"):
        net(coords, values, t, mask=torch.tensor([[True, False, True, True], [False] * 4]))


METHODS = {
    "fdp": lambda: FunctionalDiffusion(SpectralNoise(D, modes=4)),
    "ffm": lambda: FunctionalFlowMatching(SpectralNoise(D, modes=4)),
    "pfgmpp": lambda: PFGMPP(WhiteNoise(), D=8.0),
    "ign": lambda: IdempotentGenerative(SpectralNoise(D, modes=4)),
}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_losses_average_over_real_points_only(name: str) -> None:
    """The same ragged batch with different junk at its padded points gives the same loss: the junk reaches
    neither the network (mask) nor the average (masked mean). Noise draws depend only on the coordinates and
    the generator, which both calls share."""
    torch.manual_seed(0)
    net = _perturb_(BACKBONES["perceiver"]())
    gen = torch.Generator().manual_seed(3)
    coords, values = torch.rand(3, 10, D, generator=gen), torch.randn(3, 10, C, generator=gen)
    pc, pv, mask, _ = _padded(coords, values, 6, gen)
    junk = pv.clone()
    junk[~mask] = -junk[~mask] + 50.0
    losses = []
    for v in (pv, junk):
        method = METHODS[name]()
        losses.append(method.loss(net, PointSet(pc, v, mask), torch.Generator().manual_seed(4))[0])
    assert torch.isfinite(losses[0])
    assert torch.allclose(losses[0], losses[1], rtol=1e-5, atol=1e-6), [float(x) for x in losses]
    # the test can fail: without the mask the junk changes the loss
    plain = [METHODS[name]().loss(net, PointSet(pc, v), torch.Generator().manual_seed(4))[0] for v in (pv, junk)]
    assert not torch.allclose(plain[0], plain[1], rtol=1e-3)
