"""Linear-cost SNO kernels: cell-grid neighbours and FFT integrals equal the brute-force sums; chunking changes
nothing."""

import math

import pytest
import torch

from funcgen.methods import InftyDiff
from funcgen.nets.sno import LocalIntegral, SparseNeuralOperator, idw_interpolate
from funcgen.nets.sno_ops import knn, radius_pairs
from funcgen.pointset import grid_coords


def brute_integral(q, s, h, coef, r, mask=None):
    """Eq. (1) by the dense [B, Q, N] sum (the original O(N^2) definition), float64; ``mask [B, N]``: sources used."""
    u = (q[:, :, None] - s[:, None]) / r  # [B, Q, N, d]
    w = (1 - (u * u).sum(-1)).clamp_min(0) ** 2
    if mask is not None:
        w = w * mask[:, None]
    d = q.shape[-1]
    k = coef[0] + torch.einsum("bqnd,dc->bqnc", u, coef[1:1 + d]) + torch.einsum("bqnd,dc->bqnc", u * u, coef[1 + d:])
    num = torch.einsum("bqn,bqnc,bnc->bqc", w, k, h)
    return num / w.sum(-1, keepdim=True).clamp_min(1e-12)


def scattered(b, n, d, gen):
    """Half uniform, half in a few tight clusters (very uneven neighbour counts), plus one isolated point."""
    x = torch.rand(b, n, d, generator=gen, dtype=torch.float64)
    centres = torch.rand(b, 3, d, generator=gen, dtype=torch.float64)
    pick = torch.randint(0, 3, (b, n // 2), generator=gen)
    x[:, : n // 2] = torch.gather(centres, 1, pick[..., None].expand(-1, -1, d)) + 0.01 * torch.randn(
        b, n // 2, d, generator=gen, dtype=torch.float64)
    x[:, -1] = 5.0  # far from everything: no neighbour but itself
    return x


@pytest.mark.parametrize("d", [1, 2, 3])
def test_radius_pairs_are_exactly_the_brute_force_pairs(gen, d):
    b, nq, ns = 2, 90, 130
    q, s = scattered(b, nq, d, gen), scattered(b, ns, d, gen)
    r = float(torch.empty(()).uniform_(0.05, 0.4, generator=gen))
    u = (q[:, :, None] - s[:, None]) / r
    bi, qi, si = torch.nonzero((u * u).sum(-1) < 1, as_tuple=True)
    want = set(zip((bi * nq + qi).tolist(), (bi * ns + si).tolist()))
    got: list = []
    for a, c in radius_pairs(q, s, r, chunk=17, max_pairs=40):  # many pieces, some split inside a chunk
        got += list(zip(a.tolist(), c.tolist()))
    assert len(got) == len(set(got)) and set(got) == want
    assert (b * nq - 1, b * ns - 1) in want  # the isolated points only see each other


def test_radius_pairs_rejects_nan(gen):
    q = torch.rand(1, 5, 2, generator=gen)
    q[0, 2, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        next(radius_pairs(q, q, 0.1))


def test_cell_integral_equals_brute_force_on_scattered_points(gen):
    layer = LocalIntegral(2, 3, radius=float(torch.empty(()).uniform_(0.05, 0.3, generator=gen)), chunk=13,
                          max_pairs=64).double()
    with torch.no_grad():
        layer.coef.normal_(generator=gen)
    q, s = scattered(2, 60, 2, gen), scattered(2, 150, 2, gen)
    h = torch.randn(2, 150, 3, generator=gen, dtype=torch.float64)
    want = brute_integral(q, s, h, layer.coef.detach(), layer.radius)
    assert torch.allclose(layer(q, s, h).detach(), want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape", [(37,), (9, 14), (5, 6, 7)])
def test_grid_fft_integral_equals_brute_force(gen, shape):
    """On a full cell-centre grid the FFT convolution is the same sum (radius below, near and above the domain size)."""
    coords = grid_coords(shape, dtype=torch.float64).expand(2, -1, -1)
    h = torch.randn(2, coords.shape[1], 4, generator=gen, dtype=torch.float64)
    for r in (float(torch.empty(()).uniform_(0.05, 0.3, generator=gen)), 1.3):
        layer = LocalIntegral(len(shape), 4, radius=r, max_pairs=7).double()  # tiny groups: one channel at a time
        with torch.no_grad():
            layer.coef.normal_(generator=gen)
        want = brute_integral(coords, coords, h, layer.coef.detach(), r)
        assert torch.allclose(layer(coords, coords, h, shape).detach(), want, rtol=1e-9, atol=1e-11)
        layer.max_pairs = 2**18
        assert torch.allclose(layer(coords, coords, h).detach(), want, rtol=1e-10, atol=1e-12)


def test_same_physical_support_at_every_resolution(gen):
    """The response to one source is nonzero exactly on the ball of radius r (physical units) at 12^2 and 48^2."""
    r = float(torch.empty(()).uniform_(0.1, 0.25, generator=gen))
    layer = LocalIntegral(2, 1, radius=r).double()
    with torch.no_grad():
        layer.coef.zero_()
        layer.coef[0] = 1.0
    for n in (12, 48):
        coords = grid_coords((n, n), dtype=torch.float64)[None]
        j = int(torch.randint(0, n * n, (), generator=gen))
        h = torch.zeros(1, n * n, 1, dtype=torch.float64)
        h[0, j] = 1.0
        dist = (coords[0] - coords[0, j]).norm(dim=-1)
        for shape in ((n, n), None):
            out = layer(coords, coords, h, shape).detach()[0, :, 0]
            ring = (dist - r).abs() < 1e-9  # exactly on the sphere the weight is 0 (none on a random r)
            assert torch.equal((out.abs() > 1e-12)[~ring], (dist < r)[~ring])


def test_knn_exact_and_independent_of_chunking(gen):
    """Coarse-grid nodes against a finer grid: many exact ties; the result is the (distance, index) order."""
    fine = grid_coords((32, 32))[None]
    fine = fine[:, torch.randperm(1024, generator=gen)]
    nodes = torch.cat([grid_coords((4, 4)), torch.rand(10, 2, generator=gen)])[None]
    d_a, i_a = knn(nodes, fine, 3)
    d_b, i_b = knn(nodes, fine, 3, chunk=3)
    assert torch.equal(i_a, i_b) and torch.equal(d_a, d_b)
    dist = (nodes[0, :, None] - fine[0, None]).norm(dim=-1)
    for row, idx, di in zip(dist, i_a[0], d_a[0]):  # brute force: sort by distance, then by index
        order = sorted(range(1024), key=lambda j: (float(row[j]), j))[:3]
        assert idx.tolist() == order and torch.equal(di, row[order])
    # the other direction (many queries, few sources), batched, scattered
    q, s = scattered(3, 200, 2, gen), scattered(3, 40, 2, gen)
    dq, iq = knn(q, s, 3)
    ref = (q[:, :, None] - s[:, None]).norm(dim=-1).topk(3, dim=-1, largest=False)
    assert torch.allclose(dq, ref.values, rtol=1e-12)
    h = torch.randn(1, 1024, 2, generator=gen)
    assert torch.allclose(idw_interpolate(fine[:, :50], fine, h), h[:, :50], atol=1e-5)


def make_net(gen, chunk, max_pairs, operator_pairs=2**21):
    torch.manual_seed(int(torch.randint(0, 2**31, (), generator=gen)))
    net = SparseNeuralOperator(2, 1, 1, width=8, radius=0.2, grid_size=4, depth=1, grid_depth=1, chunk=chunk,
                               max_pairs=max_pairs, operator_pairs=operator_pairs).double()
    with torch.no_grad():
        net.head[-1].weight.normal_(generator=gen)
    return net


def test_sno_chunked_equals_unchunked_and_grid_path_equals_scattered_path(gen):
    net = make_net(gen, 10**6, 2**18)  # scattered points: the shared sparse operator
    small = make_net(gen, 16, 100, operator_pairs=0)  # scattered points: chunked neighbour search per block
    small.load_state_dict(net.state_dict())
    t = torch.rand(2, generator=gen, dtype=torch.float64)
    coords = grid_coords((12, 10), dtype=torch.float64).expand(2, -1, -1)
    x = torch.randn(2, 120, 1, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        ref = net(coords, x, t)
        assert torch.allclose(small(coords, x, t), ref, rtol=1e-10, atol=1e-12)
        # function 1 on a permuted grid: not one shared grid, so function 0 takes the cell-grid pairs path
        mixed = torch.stack([coords[0], coords[1, torch.randperm(120, generator=gen)]])
        assert torch.allclose(small(mixed, x, t)[0], ref[0], rtol=1e-9, atol=1e-11)
        sc = torch.rand(2, 90, 2, generator=gen, dtype=torch.float64)
        xs = torch.randn(2, 90, 1, generator=gen, dtype=torch.float64)
        ref_sc = net(sc, xs, t)
        assert torch.allclose(small(sc, xs, t), ref_sc, rtol=1e-10, atol=1e-12)
    # with autograd (no in-place buffer reuse): the same values, and gradients flow
    assert torch.allclose(small(coords, x, t), ref, rtol=1e-10, atol=1e-12)
    out = small(sc, xs, t)
    assert torch.allclose(out, ref_sc, rtol=1e-10, atol=1e-12)
    (out * xs.cos()).sum().backward()
    assert all(p.grad is not None for p in small.parameters())
    # the operator's backward (its transpose) gives the search path's gradients
    (net(sc, xs, t) * xs.cos()).sum().backward()
    for (name, p), q in zip(net.named_parameters(), small.parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-9, atol=1e-11), name


@pytest.mark.parametrize("d", [1, 2, 3])
def test_local_operator_equals_brute_force_values_and_gradients(gen, d):
    """The sparse operator of eq. (1) (masked sources, clusters, an isolated point) gives the dense sum and its
    gradients in h and in the kernel coefficients; over its pair budget it declines."""
    layer = LocalIntegral(d, 3, radius=float(torch.empty(()).uniform_(0.1, 0.4, generator=gen)), chunk=11,
                          max_pairs=50).double()
    with torch.no_grad():
        layer.coef.normal_(generator=gen)
    x = scattered(2, 70, d, gen)
    mask = torch.rand(2, 70, generator=gen) > 0.2
    mask[:, -1] = True
    h = torch.randn(2, 70, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(2, 70, 3, generator=gen, dtype=torch.float64)
    op = layer.operator(x, mask)
    assert op is not None
    got = layer(x, x, h, mask=mask, operator=op)
    gh, gc = torch.autograd.grad((got * weight).sum(), (h, layer.coef))
    coef = layer.coef.detach().clone().requires_grad_(True)
    want = brute_integral(x, x, h, coef, layer.radius, mask)
    wh, wc = torch.autograd.grad((want * weight).sum(), (h, coef))
    assert torch.allclose(got, want, rtol=1e-10, atol=1e-12)
    assert torch.allclose(gh, wh, rtol=1e-10, atol=1e-12) and torch.allclose(gc, wc, rtol=1e-10, atol=1e-12)
    assert torch.allclose(got, layer(x, x, h, mask=mask), rtol=1e-10, atol=1e-12)  # the search path
    layer.operator_pairs = 10
    assert layer.operator(x, mask) is None
    with pytest.raises(ValueError, match="operator"):
        layer(x[:1], x[:1], h[:1], operator=op)


def test_sampler_chunked_equals_unchunked(gen):
    """The sampler's law does not change with chunking: the same seed gives the same sample."""
    method = InftyDiff(width=1 / 16, dim=2, steps=3, eta=1.0)
    # float64: the untrained net's samples reach |x| ~ 500, where float32 summation-order differences
    # between the chunkings (~1e-4 absolute) would exceed any tolerance that still tests the law
    coords = grid_coords((16, 16)).expand(2, -1, -1).double()
    seed = int(torch.randint(0, 2**31, (), generator=gen))
    outs = []
    for chunk, pairs in ((10**6, 2**18), (19, 50)):
        net = make_net(torch.Generator().manual_seed(seed), chunk, pairs).double()
        outs.append(method.sample(net, coords, 1, generator=torch.Generator().manual_seed(seed)))
    assert outs[0].shape == (2, 256, 1) and outs[0].dtype == torch.float64 and torch.isfinite(outs[0]).all()
    assert torch.allclose(outs[0], outs[1], rtol=1e-9, atol=1e-9)
    assert not math.isclose(float(outs[0].std()), 0.0)


def test_sample_scaling_task_reports_every_size(gen):
    """The bench task's evaluation: one fresh process per size, keys per N, peak >= memory before sampling."""
    from funcgen.bench.run import TASKS
    from funcgen.bench.sample_scaling import eval_sample_scaling
    from funcgen.generator import FunctionGenerator

    assert not TASKS["sample-scaling"].train
    net = make_net(gen, 64, 1000).float()
    g = FunctionGenerator(InftyDiff(width=1 / 16, dim=2, steps=2), net,
                          {"dim": 2, "channels": 1, "train_shape": [16, 16]})
    metrics, reference, total = eval_sample_scaling(g, seed=0, resolutions=(8, 16), steps=1, device="cpu")
    for n in (64, 256):
        assert metrics[f"sample_seconds@N={n}"] > 0
        assert metrics[f"peak_rss_mb@N={n}"] >= reference[f"rss_before_sample_mb@N={n}"] > 0
    assert reference["sampler_steps"] == 1 and "time_exponent" in metrics
    assert total >= metrics["sample_seconds@N=64"]
