"""GridAutoencoder: the read-in / read-back against hand-computed interpolation, resolution-free decoding, the
mask, the bottleneck and a non-zero output at initialisation."""

import pytest
import torch

from funcgen.nets import GridAutoencoder
from funcgen.nets.autoencoder import gather, splat
from funcgen.pointset import grid_coords


@pytest.mark.parametrize("shape", [(9,), (6, 5), (4, 3, 5)])
def test_read_in_is_the_identity_on_the_grid_and_read_back_inverts_it(shape, gen):
    coords = grid_coords(shape).expand(2, -1, -1)
    v = torch.randn(2, coords.shape[1], 3, generator=gen)
    g = splat(coords, v, shape)
    assert g.shape == (2, 4, *shape)
    torch.testing.assert_close(g[:, :3].reshape(2, 3, -1).transpose(1, 2), v, atol=2e-5, rtol=0)
    torch.testing.assert_close(g[:, 3], torch.ones(2, *shape), atol=2e-5, rtol=0)  # full coverage
    torch.testing.assert_close(gather(g[:, :3], coords), v, atol=2e-5, rtol=0)


def test_read_back_is_exact_for_affine_functions_and_matches_hand_interpolation(gen):
    shape = (7, 4)
    nodes = grid_coords(shape)
    a, b = torch.randn(2, generator=gen), float(torch.randn((), generator=gen))
    grid = (nodes @ a + b).reshape(1, 1, *shape)
    lo, hi = 0.5 / torch.tensor(shape), 1 - 0.5 / torch.tensor(shape)  # inside the hull of the nodes
    q = lo + (hi - lo) * torch.rand(1, 50, 2, generator=gen)
    torch.testing.assert_close(gather(grid, q)[0, :, 0], q[0] @ a + b, atol=1e-5, rtol=0)
    # outside the hull the value is held constant (points read as on the boundary)
    edge = torch.tensor([[[0.0, 0.3], [1.0, 0.3]]])
    inner = torch.tensor([[[0.5 / 7, 0.3], [6.5 / 7, 0.3]]])
    torch.testing.assert_close(gather(grid, edge), gather(grid, inner))
    # one point between four nodes, by hand: bilinear weights of its offsets
    g = torch.arange(4.0).reshape(1, 1, 2, 2)  # nodes at 0.25 and 0.75 per axis
    p = torch.tensor([[[0.25 + 0.5 * 0.3, 0.25 + 0.5 * 0.8]]])
    expect = 0 * 0.7 * 0.2 + 1 * 0.7 * 0.8 + 2 * 0.3 * 0.2 + 3 * 0.3 * 0.8
    assert abs(float(gather(g, p)) - expect) < 1e-6


def test_read_in_of_a_finer_set_is_a_local_weighted_mean(gen):
    # points at 2x resolution: node j of 4 sees fine points at offsets -0.75, -0.25, 0.25, 0.75 cells
    fine = grid_coords((8,)).unsqueeze(0)
    v = torch.randn(1, 8, 1, generator=gen)
    g = splat(fine, v, (4,))[0]
    w = torch.tensor([0.25, 0.75, 0.75, 0.25])
    j = 1  # an interior node: fine points 1..4
    assert abs(float(g[0, j]) - float((w * v[0, 1:5, 0]).sum() / w.sum())) < 1e-6
    assert abs(float(g[1, j]) - 1.0) < 1e-6  # coverage capped at 1


def test_mask_removes_points_from_the_read_in(gen):
    net = GridAutoencoder(2, 1, 1, grid=8, width=8, levels=1, latent_dim=6).eval()  # BatchNorm: running statistics
    coords = torch.rand(2, 40, 2, generator=gen)
    v = torch.randn(2, 40, 1, generator=gen)
    mask = torch.rand(2, 40, generator=gen) > 0.4
    garbage = torch.where(mask.unsqueeze(-1), v, torch.full_like(v, float("nan")))
    t = torch.zeros(2)
    out = net(coords, garbage, t, mask=mask)
    assert out.shape == (2, 40, 1) and torch.isfinite(out).all()  # predicted at every point, masked ones too
    for i in range(2):  # the same as reading in only the observed points of each function
        keep = mask[i]
        lat = net.encode(coords[i:i + 1, keep], v[i:i + 1, keep], t[:1])
        torch.testing.assert_close(out[i:i + 1], net.decode(lat, coords[i:i + 1]), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out, net(coords, v, t), atol=1e-3)  # the unmasked read-in differs
    with pytest.raises(ValueError, match="mask must be"):
        net(coords, v, t, mask=mask.float())


def test_decoding_is_resolution_free(gen):
    net = GridAutoencoder(2, 1, 1, grid=6, width=8, levels=1, latent_dim=5, norm="group")
    lat = torch.randn(3, 5, generator=gen)
    grid = net.decode_grid(lat)
    for n in (6, 12, 24):
        c = grid_coords((n, n)).expand(3, -1, -1)
        out = net.decode(lat, c)
        assert out.shape == (3, n * n, 1)
        torch.testing.assert_close(out, gather(grid, c))
    torch.testing.assert_close(net.decode(lat, grid_coords((6, 6)).expand(3, -1, -1)),
                               grid.reshape(3, 1, -1).transpose(1, 2), atol=2e-5, rtol=0)


@pytest.mark.parametrize("norm", ["batch", "group"])
@pytest.mark.parametrize("dim,grid,levels", [(1, 16, 2), (2, 7, 2), (3, 4, 1)])
def test_any_point_count_odd_grids_and_non_zero_output(dim, grid, levels, norm, gen):
    net = GridAutoencoder(dim, 2, 2, grid=grid, width=8, levels=levels, latent_dim=4, blocks=1, norm=norm)
    for n in (1, 13, 200):
        out = net(torch.rand(3, n, dim, generator=gen), torch.randn(3, n, 2, generator=gen), torch.zeros(3))
        assert out.shape == (3, n, 2) and torch.isfinite(out).all()
    c = torch.rand(4, 30, dim, generator=gen)
    a, b = (net(c, torch.randn(4, 30, 2, generator=gen), torch.zeros(4)) for _ in range(2))
    assert a.abs().mean() > 1e-3 and (a - b).abs().mean() > 1e-4  # not zero, and it depends on the input


def test_bottleneck_and_errors():
    net = GridAutoencoder(2, 1, 1, grid=28, width=8, levels=2, latent_dim=100)
    assert net.to_latent.out_features == 100 < 28 * 28
    with pytest.raises(ValueError, match="dim must be 1, 2 or 3"):
        GridAutoencoder(4, 1, 1)
    with pytest.raises(ValueError, match="grid must be"):
        GridAutoencoder(2, 1, 1, grid=[4])
    with pytest.raises(ValueError, match="norm must be"):
        GridAutoencoder(2, 1, 1, norm="layer")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="coords must be"):
        net(torch.rand(1, 5, 3), torch.randn(1, 5, 1), torch.zeros(1))
