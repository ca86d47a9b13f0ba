import pytest
import torch

from funcgen.pointset import (
    PointSet,
    collate_pointsets,
    grid_coords,
    grid_to_pointset,
    pointset_to_grid,
    query_coords,
    random_subset,
)


def test_valid_pointset_properties():
    ps = PointSet(torch.rand(3, 10, 2), torch.randn(3, 10, 4))
    assert (ps.batch_size, ps.num_points, ps.dim, ps.channels) == (3, 10, 2, 4)


@pytest.mark.parametrize("coords,values,match", [
    (torch.rand(10, 2), torch.randn(3, 10, 1), "coords must have shape"),
    (torch.rand(3, 10, 2), torch.randn(3, 10), "values must have shape"),
    (torch.rand(3, 10, 2), torch.randn(2, 10, 1), "disagree"),
    (torch.rand(3, 10, 2), torch.randn(3, 9, 1), "disagree"),
    (torch.rand(3, 0, 2), torch.randn(3, 0, 1), "at least one point"),
])
def test_shape_errors(coords, values, match):
    with pytest.raises(ValueError, match=match):
        PointSet(coords, values)


def test_nonfinite_rejected_with_location():
    v = torch.randn(2, 5, 1)
    v[1, 3, 0] = float("nan")
    with pytest.raises(ValueError, match=r"non-finite.*\(1, 3, 0\)"):
        PointSet(torch.rand(2, 5, 1), v)
    c = torch.rand(2, 5, 1)
    c[0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="coords"):
        PointSet(c, torch.randn(2, 5, 1))


def test_integer_and_mask_errors():
    with pytest.raises(TypeError):
        PointSet(torch.zeros(1, 4, 1, dtype=torch.long), torch.randn(1, 4, 1))
    with pytest.raises(ValueError, match="mask"):
        PointSet(torch.rand(1, 4, 1), torch.randn(1, 4, 1), torch.ones(1, 3, dtype=torch.bool))


def test_grid_roundtrip_and_cell_centres():
    img = torch.randn(2, 3, 5, 7)
    ps = grid_to_pointset(img)
    assert ps.coords.shape == (2, 35, 2) and ps.values.shape == (2, 35, 3)
    assert torch.equal(pointset_to_grid(ps, (5, 7)), img)
    # pixel (i, j) sits at ((i + .5)/H, (j + .5)/W) and holds img[..., i, j]
    i, j = 3, 6
    k = i * 7 + j
    assert torch.allclose(ps.coords[0, k], torch.tensor([(i + 0.5) / 5, (j + 0.5) / 7]))
    assert torch.equal(ps.values[1, k], img[1, :, i, j])


def test_grids_of_every_resolution_cover_the_same_domain():
    for n in (4, 16, 64):
        g = grid_coords((n,))
        assert torch.allclose(g.mean(), torch.tensor(0.5)) and g.min() > 0 and g.max() < 1
    # the 3x grid contains the 1x grid (odd refinement keeps the centres)
    assert torch.isin(grid_coords((5,)).flatten(), grid_coords((15,)).flatten()).all()


def test_query_coords_errors_and_shape():
    q = query_coords(8, 2, batch_size=3)
    assert q.shape == (3, 64, 2)
    with pytest.raises(ValueError, match="positive"):
        query_coords(0, 2)
    with pytest.raises(ValueError, match="axes"):
        query_coords((4, 4, 4), 2)


def test_random_subset_without_replacement(gen):
    n = 100
    ps = PointSet(torch.rand(4, n, 2), torch.arange(n).float().view(1, n, 1).repeat(4, 1, 1))
    sub = random_subset(ps, 0.25, gen)
    assert sub.num_points == 25
    for b in range(4):
        ids = sub.values[b, :, 0].long()
        assert ids.unique().numel() == 25  # no repeats
        assert torch.equal(sub.coords[b], ps.coords[b, ids])  # coords follow values
    assert not torch.equal(sub.values[0], sub.values[1])  # each function its own subset
    with pytest.raises(ValueError):
        random_subset(ps, 0.0)
    with pytest.raises(ValueError):
        random_subset(ps, 1.5)


def test_random_subset_of_a_ragged_batch_keeps_real_points():
    mask = torch.arange(10)[None, :] < torch.tensor([10, 2, 5])[:, None]
    ps = PointSet(torch.rand(3, 10, 1), torch.arange(30.0).reshape(3, 10, 1), mask)
    gen = torch.Generator().manual_seed(0)
    counts = torch.zeros(10)
    for _ in range(200):
        sub = random_subset(ps, 0.4, gen)
        assert sub.mask.sum(1).tolist() == [4, 2, 4]  # min(4, real points): padding only fills up
        counts += torch.bincount(sub.values[2, :, 0].long() - 20, minlength=10)
    assert counts[5:].sum() == 0 and (counts[:5] - 160).abs().max() < 40  # uniform over the real points


def test_collate():
    a = PointSet(torch.rand(2, 5, 1), torch.randn(2, 5, 1))
    b = PointSet(torch.rand(1, 5, 1), torch.randn(1, 5, 1))
    assert collate_pointsets([a, b]).batch_size == 3
    c = PointSet(torch.rand(1, 7, 1), torch.randn(1, 7, 1))
    out = collate_pointsets([a, c])  # ragged: padded to 7 points and masked
    assert out.values.shape == (3, 7, 1) and out.mask.sum(1).tolist() == [5, 5, 7]
    assert torch.equal(out.values[:2, :5], a.values) and torch.equal(out.values[2], c.values[0])
    assert (out.values[:2, 5:] == 0).all()
    # padded points repeat the function's own points, so they stay on its domain
    assert all(any(torch.equal(p, q) for q in a.coords[0]) for p in out.coords[0, 5:])


def test_a_broadcast_batch_is_checked_once_and_nan_still_caught() -> None:
    from funcgen.pointset import unbroadcast

    coords = torch.rand(7, 2)
    batch = coords.unsqueeze(0).expand(5, -1, -1)
    assert unbroadcast(batch).shape == (1, 7, 2) and torch.equal(unbroadcast(batch)[0], coords)
    assert unbroadcast(torch.rand(5, 7, 2)).shape == (5, 7, 2)  # real copies are all read
    coords[3, 1] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        PointSet(batch, torch.zeros(5, 7, 1))


def test_cell_average_matrix_is_area_averaging_on_a_fine_grid(gen):
    """On a 28x28 grid the averages over 7x7 cells are 4x4 average pooling (an independent implementation), rows
    in grid order; scattered points average within their cells; a cell without points is refused."""
    import torch.nn.functional as F

    from funcgen.pointset import cell_average_matrix

    img = torch.rand(3, 1, 28, 28, generator=gen, dtype=torch.float64)
    fine = grid_to_pointset(img)
    a = cell_average_matrix(fine.coords[0], (7, 7))
    want = F.avg_pool2d(img, 4).reshape(3, 49)
    assert torch.allclose(torch.einsum("mn,bn->bm", a, fine.values[..., 0]), want, atol=1e-12)
    pts = torch.rand(200, 2, generator=gen, dtype=torch.float64)
    a = cell_average_matrix(pts, (2, 2))
    cell = (pts[:, 0] >= 0.5).long() * 2 + (pts[:, 1] >= 0.5).long()
    for m in range(4):
        assert torch.allclose(a[m] @ pts[:, 0], pts[cell == m, 0].mean())
    with pytest.raises(ValueError, match="holds none"):
        cell_average_matrix(pts[:3], (4, 4))
