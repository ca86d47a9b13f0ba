"""BranchTrunkNet (DeepONet on basis coordinates): its one-matrix path for a shared point set, its context, and
its linear read-out against the closed form."""

from __future__ import annotations

import pytest
import torch

from funcgen.data.base import PointDataset, pad_collate
from funcgen.nets import BranchTrunkNet

K, C = 6, 2


def _net(**kw) -> BranchTrunkNet:
    torch.manual_seed(0)
    net = BranchTrunkNet(K, C, C, width=16, depth=2, **kw).double()
    with torch.no_grad():  # noise on every parameter: the zero-initialised heads would make every output 0
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return net


def test_shared_points_path_equals_per_function_points() -> None:
    """The batch on one shared point set (a broadcast view: the [N, r] matrix path) against the same functions
    with each one's points in its own order (the per-function einsum path): outputs are the same per point."""
    gen = torch.Generator().manual_seed(1)
    b, n = 3, 20
    net = _net()
    phi = torch.randn(n, K, generator=gen, dtype=torch.float64)
    values = torch.randn(b, n, C, generator=gen, dtype=torch.float64)
    t = torch.rand(b, generator=gen, dtype=torch.float64)
    shared = net(phi.expand(b, -1, -1), values, t)
    perm = torch.stack([torch.randperm(n, generator=gen) for _ in range(b)])
    coords_p = phi[perm]  # [B, N, K]: function i's points in its own order
    values_p = torch.gather(values, 1, perm[..., None].expand(-1, -1, C))
    own = net(coords_p, values_p, t)
    assert torch.allclose(own, torch.gather(shared, 1, perm[..., None].expand(-1, -1, C)), atol=1e-12)
    # a batch mix-up (function i read out with function j's coefficients) would break it
    assert not torch.allclose(shared[0], shared[1], atol=1e-3)


def test_context_is_where_the_projection_comes_from() -> None:
    gen = torch.Generator().manual_seed(2)
    net = _net()
    coords = torch.randn(2, 15, K, generator=gen, dtype=torch.float64)
    values = torch.randn(2, 15, C, generator=gen, dtype=torch.float64)
    t = torch.rand(2, generator=gen, dtype=torch.float64)
    assert torch.allclose(net(coords, values, t, context=(coords, values)), net(coords, values, t))
    other = net(coords, values, t, context=(coords[:, :7], values[:, :7]))
    assert not torch.allclose(other, net(coords, values, t), atol=1e-4)


def test_linear_path_is_phi_times_the_projection() -> None:
    """With the MLP head and value skip silenced and unit gains: out(q) = phi(q) . P, P = mean_i phi(x_i) y(x_i)."""
    gen = torch.Generator().manual_seed(3)
    net = _net(value_skip=False)
    with torch.no_grad():
        net.head.weight.zero_(), net.head.bias.zero_()
        net.proj_gain.weight.zero_(), net.proj_gain.bias.fill_(1.0)
        net.proj_channels.weight.copy_(torch.eye(C))
    coords = torch.randn(2, 15, K, generator=gen, dtype=torch.float64)
    values = torch.randn(2, 15, C, generator=gen, dtype=torch.float64)
    want = torch.stack([coords[i] @ (coords[i].T @ values[i]) / 15 for i in range(2)])
    assert torch.allclose(net(coords, values, torch.rand(2, dtype=torch.float64)), want, atol=1e-12)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="trunk_modes"):
        BranchTrunkNet(K, 1, 1, trunk_modes=K + 1)
    net = BranchTrunkNet(K, 1, 1, width=8, depth=1)
    with pytest.raises(ValueError, match="coords must be"):
        net(torch.randn(2, 5, K + 1), torch.randn(2, 5, 1), torch.rand(2))
    with pytest.raises(ValueError, match="context batch"):
        net(torch.randn(2, 5, K), torch.randn(2, 5, 1), torch.rand(2), context=(torch.randn(3, 5, K),
                                                                                 torch.randn(3, 5, 1)))


def test_collate_of_shared_coords_is_a_view_equal_to_the_stack() -> None:
    coords = torch.rand(9, 2)
    data = PointDataset(coords, torch.randn(4, 9, 1))
    items = [data[i] for i in range(4)]
    c, v = pad_collate(items)
    assert c.stride(0) == 0 and c.data_ptr() == coords.data_ptr()  # no copies
    assert torch.equal(c, torch.stack([it[0] for it in items])) and torch.equal(v, data.values)
    own = PointDataset(torch.rand(4, 9, 2), torch.randn(4, 9, 1))  # per-function coords: stacked as before
    c2, _ = pad_collate([own[i] for i in range(4)])
    assert c2.stride(0) != 0 and torch.equal(c2, own.coords)
