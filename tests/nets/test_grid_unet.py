"""The grid U-Net stage of the sparse neural operator, and the shared-points neighbour search."""

import pytest
import torch

from funcgen.nets.grid_unet import GridUNet
from funcgen.nets.sno import SparseNeuralOperator, idw_interpolate
from funcgen.pointset import grid_coords


def _randomise(net: torch.nn.Module, gen: torch.Generator) -> None:
    """Replace every parameter by noise: the zero-initialised layers would hide the paths under test."""
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=gen))


@pytest.mark.parametrize("dim,size", [(1, 13), (2, 7), (2, 28), (3, 5)])
def test_unet_keeps_any_grid_shape_and_trains_every_parameter(gen, dim, size):
    torch.manual_seed(int(torch.randint(0, 2**31, (), generator=gen)))
    net = GridUNet(dim, 8, 16, mults=(1, 2, 2), blocks=1, attention=True, heads=2)
    x = torch.randn(2, 8, *(size,) * dim, generator=gen)
    out = net(x, torch.randn(2, 16, generator=gen))
    assert out.shape == x.shape and torch.isfinite(out).all()
    _randomise(net, gen)  # with the zero-initialised convolutions, the layers before them get no gradient
    net(x, torch.randn(2, 16, generator=gen)).square().mean().backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in net.parameters())


def test_unet_sees_the_whole_grid_and_the_batch_items_stay_independent(gen):
    """Receptive field: the output at one corner depends on the input at the opposite corner (three
    levels and attention on the coarsest grid); batch items never mix (per-item norms and attention)."""
    net = GridUNet(2, 4, 8, mults=(1, 2, 2), blocks=1, attention=False, heads=1)
    _randomise(net, gen)
    net = net.double()
    x = torch.randn(3, 4, 28, 28, generator=gen, dtype=torch.float64, requires_grad=True)
    temb = torch.randn(3, 8, generator=gen, dtype=torch.float64)
    out = net(x, temb)
    (grad,) = torch.autograd.grad(out[1, :, 0, 0].sum(), x)
    assert grad[1, :, 27, 27].abs().sum() > 0  # the far corner reaches the near one
    assert grad[0].abs().max() == 0 and grad[2].abs().max() == 0  # other items do not
    alone = net(x[1:2].detach(), temb[1:2])
    assert torch.allclose(alone, out[1:2], atol=1e-12)
    # the time embedding conditions every output
    assert not torch.allclose(net(x[1:2].detach(), -temb[1:2]), alone)


def _brute_force_idw(q: torch.Tensor, s: torch.Tensor, h: torch.Tensor, k: int = 3) -> torch.Tensor:
    d = torch.cdist(q, s)
    dk, idx = d.topk(k, dim=-1, largest=False)
    w = 1.0 / (dk + 1e-8)
    w = w / w.sum(-1, keepdim=True)
    picked = torch.gather(h[:, None].expand(-1, q.shape[1], -1, -1), 2,
                          idx[..., None].expand(-1, -1, -1, h.shape[-1]))
    return (picked * w[..., None]).sum(2)


@pytest.mark.parametrize("shared", [True, False])
def test_idw_matches_brute_force_with_shared_or_own_points(gen, shared):
    """One neighbour search for a batch that shares its points gives the same interpolation as one
    search per function (and as a brute-force k-nearest-neighbour average)."""
    b, n, q = 3, int(torch.randint(20, 80, (), generator=gen)), 50
    if shared:
        src = torch.rand(1, n, 2, generator=gen, dtype=torch.float64).expand(b, -1, -1)
        qry = torch.rand(1, q, 2, generator=gen, dtype=torch.float64).expand(b, -1, -1)
    else:
        src = torch.rand(b, n, 2, generator=gen, dtype=torch.float64)
        qry = torch.rand(b, q, 2, generator=gen, dtype=torch.float64)
    h = torch.randn(b, n, 4, generator=gen, dtype=torch.float64)
    out = idw_interpolate(qry, src, h, chunk=17)
    assert torch.allclose(out, _brute_force_idw(qry, src, h), atol=1e-10)


@pytest.mark.parametrize("size", [28, 9])
def test_sno_with_unet_any_resolution_and_scattered_points(gen, size):
    torch.manual_seed(int(torch.randint(0, 2**31, (), generator=gen)))
    net = SparseNeuralOperator(2, 1, 1, width=8, radius=0.1, grid_size=size, depth=1, grid_net="unet",
                               grid_mults=(1, 2), grid_blocks=1, grid_attention=True, chunk=50)
    with torch.no_grad():
        net.head[-1].weight.normal_()
    t = torch.rand(2, generator=gen)
    for coords in (grid_coords((size, size)).expand(2, -1, -1), grid_coords((2 * size, 2 * size)).expand(2, -1, -1),
                   torch.rand(2, 61, 2, generator=gen)):
        x = torch.randn(*coords.shape[:2], 1, generator=gen)
        out = net(coords, x, t)
        assert out.shape == (2, coords.shape[1], 1) and torch.isfinite(out).all()
    # each function's prediction depends on its own values only
    x2 = x.clone()
    x2[1] = torch.randn(61, 1, generator=gen)
    out2 = net(coords, x2, t)
    assert torch.allclose(out2[0], out[0], atol=1e-5) and not torch.allclose(out2[1], out[1], atol=1e-5)


def test_bad_grid_net_arguments_are_refused():
    with pytest.raises(ValueError, match="grid_net"):
        SparseNeuralOperator(2, 1, 1, grid_net="fno")
    with pytest.raises(ValueError, match="heads"):
        GridUNet(2, 6, 8, mults=(1,), heads=4)
    with pytest.raises(ValueError, match="mults"):
        GridUNet(2, 8, 8, mults=(), heads=4)
