"""Sparse neural operator: density-independent local integrals, interpolation, any-N backbone."""

import math

import torch

from funcgen.nets.sno import LocalIntegral, SparseNeuralOperator, idw_interpolate
from funcgen.pointset import grid_coords


def smooth(x, phase):
    return (torch.sin(2 * math.pi * x[..., :1] + phase) * torch.cos(math.pi * x[..., 1:]) + 0.5).expand(
        *x.shape[:-1], 3) * torch.tensor([1.0, -2.0, 0.5], dtype=x.dtype)


def test_local_integral_is_density_independent(gen):
    """The same smooth input observed at N, 4N and 64N points gives nearly the same local integral."""
    layer = LocalIntegral(2, 3, radius=0.15).double()
    with torch.no_grad():
        layer.coef.normal_(generator=gen)
    q = 0.1 + 0.8 * torch.rand(1, 40, 2, generator=gen, dtype=torch.float64)
    phase = float(torch.rand((), generator=gen)) * 6.0

    def out(n):
        src = grid_coords((n, n), dtype=torch.float64)[None]
        return layer(q, src, smooth(src, phase)).detach()

    o16, o32, fine = out(16), out(32), out(128)
    # the natural scale of the output: |sum_m a_m phi_m| <= sum_m |a_m| on the ball, times max |h|
    scale = float((layer.coef.detach().abs().sum(0) * torch.tensor([1.5, 3.0, 0.75])).max())
    err16, err32 = float((o16 - fine).abs().max()) / scale, float((o32 - fine).abs().max()) / scale
    assert err32 < 2e-3 and err16 < 1e-2 and err32 < err16
    # uniformly scattered sources: an unbiased Monte Carlo estimate of the same integral
    src = torch.rand(1, 20000, 2, generator=gen, dtype=torch.float64)
    assert float((layer(q, src, smooth(src, phase)).detach() - fine).abs().max()) / scale < 0.05


def test_local_average_reproduces_linear_functions(gen):
    """With only the constant basis, (1) is a symmetric weighted average: exact for linear f in the continuum."""
    layer = LocalIntegral(2, 1, radius=0.1).double()
    with torch.no_grad():
        layer.coef.zero_()
        layer.coef[0] = 1.0
    a = torch.randn(2, 1, generator=gen, dtype=torch.float64)
    q = 0.2 + 0.6 * torch.rand(1, 30, 2, generator=gen, dtype=torch.float64)
    src = grid_coords((64, 64), dtype=torch.float64)[None]
    out = layer(q, src, src @ a + 1.0).detach()
    assert (out - (q @ a + 1.0)).abs().max() < 1e-3 * (a.abs().sum() + 1.0)


def test_idw_interpolation_exact_at_sources_and_for_constants(gen):
    src = torch.rand(2, 50, 2, generator=gen)
    h = torch.randn(2, 50, 4, generator=gen)
    assert torch.allclose(idw_interpolate(src, src, h), h, atol=1e-4)
    q = torch.rand(2, 20, 2, generator=gen)
    assert torch.allclose(idw_interpolate(q, src, torch.full((2, 50, 1), 3.0)), torch.full((2, 20, 1), 3.0))


def test_sparse_neural_operator_any_n_and_chunking(gen):
    torch.manual_seed(int(torch.randint(0, 2**31, (), generator=gen)))
    net = SparseNeuralOperator(2, 1, 2, width=16, radius=0.2, grid_size=4, depth=1, grid_depth=1, chunk=7)
    with torch.no_grad():
        net.head[-1].weight.normal_()  # the zero-initialised head would hide everything
    t = torch.rand(2, generator=gen)
    for coords in (grid_coords((6, 6)).expand(2, -1, -1), grid_coords((12, 12)).expand(2, -1, -1),
                   torch.rand(2, 37, 2, generator=gen)):
        x = torch.randn(*coords.shape[:2], 1, generator=gen)
        out = net(coords, x, t)
        assert out.shape == (2, coords.shape[1], 2) and torch.isfinite(out).all()
    for m in net.modules():  # chunked == unchunked
        if isinstance(m, LocalIntegral):
            m.chunk = 10**6
    assert torch.allclose(net(coords, x, t), out, atol=1e-5)
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())
