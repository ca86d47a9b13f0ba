"""Mesh datamodules: deterministic exact GRFs at eigen-coordinates, the sphere's known angular power
spectrum, reference/covariance hooks, validation points on refined meshes and their pictures."""

import math

import numpy as np
import pytest
import torch

from funcgen.data.mesh import (
    MeshGRFDataModule,
    MNISTSphereDataModule,
    SphereGRFDataModule,
    texture_hemisphere,
)


def small(**kw):
    opts = dict(mesh="deformed_sphere", subdivisions=2, num_eigs=16, num_train=12, num_val=4, batch_size=4)
    opts.update(kw)
    return MeshGRFDataModule(**opts)


def test_items_batches_and_determinism():
    a, b, c = small(seed=3), small(seed=3), small(seed=4)
    for dm in (a, b, c):
        dm.setup()
    coords, values = a.train_set[0]
    assert coords.shape == (162, 16) and values.shape == (162, 1)
    assert torch.equal(coords, a.phi)
    assert all(torch.equal(a.train_set[i][1], b.train_set[i][1]) for i in range(12))
    assert not torch.equal(a.train_set[0][1], c.train_set[0][1])
    assert not torch.equal(a.train_set[0][1], a.val_set[0][1])  # disjoint streams
    batch = next(iter(a.train_dataloader()))
    assert batch[0].shape == (4, 162, 16) and batch[1].shape == (4, 162, 1)
    cfg = a.data_config()
    assert cfg["dim"] == 16 and cfg["kind"] == "mesh" and cfg["mesh_sha256"] == a.mesh.key


def test_surface_points_are_fresh_and_consistent_with_the_field(gen):
    dm = small(points="surface", num_points=50)
    dm.setup()
    torch.manual_seed(int(torch.randint(0, 2**31, (), generator=gen)))
    (c1, v1), (c2, v2) = dm.train_set[0], dm.train_set[0]
    assert c1.shape == (50, 16) and not torch.equal(c1, c2)
    # the same function: values are the linear read-out of the (interpolated) coordinates
    w = dm.train_set.weights[0]
    assert torch.allclose(v1, c1 @ w) and torch.allclose(v2, c2 @ w)


def test_reference_draws_have_the_exact_covariance(gen):
    dm = small(spectrum="heat", lengthscale=0.4)
    s_count = 20000
    x = dm.phi[torch.randperm(dm.phi.shape[0], generator=gen)[:6]]
    ref = dm.reference(x.unsqueeze(0).expand(s_count, -1, -1), gen)[..., 0].double()
    k = dm.covariance(x, x)
    se = ((k.diagonal()[:, None] * k.diagonal()[None, :] + k**2) / s_count).sqrt()
    assert ((torch.cov(ref.T) - k).abs() < 5 * se).all()
    # surface-averaged variance is `variance` (mean square of every phi_i is 1)
    from funcgen.geometry.mesh import mass_matrix

    mass = torch.as_tensor(mass_matrix(dm.mesh).diagonal())
    var = dm.covariance(dm.phi, dm.phi).diagonal()
    assert math.isclose(float((mass * var).sum() / dm.mesh.area), 1.0, rel_tol=1e-5)
    # training functions follow the same law: coefficients have the spectral standard deviations
    dm2 = small(spectrum="heat", lengthscale=0.4, num_train=4000, seed=int(torch.randint(0, 10**6, (), generator=gen)))
    dm2.setup()
    w = dm2.train_set.weights[..., 0]
    assert ((w.std(0) / dm2.coef_std - 1).abs() < 5 / math.sqrt(2 * 4000)).all()


def test_sphere_field_has_the_known_angular_power_spectrum(gen):
    errs = []
    for s in (2, 3):
        dm = SphereGRFDataModule(subdivisions=s, num_eigs=16, lengthscale=0.5)
        pos = torch.tensor(dm.mesh.vertices)
        pos = pos / pos.norm(dim=-1, keepdim=True)
        k_sphere = dm.sphere_covariance(pos, pos)
        errs.append(float((dm.covariance(dm.phi, dm.phi) - k_sphere).norm() / k_sphere.norm()))
    assert errs[1] < 0.35 * errs[0] and errs[1] < 0.005  # the mesh law converges to the sphere's
    # Matern spectrum: C_l proportional to (2 nu / l^2 + l(l+1))^-(nu+1), and the variance is 1
    c = dm.angular_power_spectrum()
    ell = torch.arange(4, dtype=torch.float64)
    ratio = c / (3.0 / 0.25 + ell * (ell + 1)) ** -2.5
    assert torch.allclose(ratio, ratio[0].expand(4))
    assert math.isclose(float(((2 * ell + 1) * c).sum() / (4 * math.pi)), 1.0, rel_tol=1e-5)
    # estimator from exact samples at the vertices: each C_l is a mean of S (2l+1) scaled chi-squares
    s_count = 500
    ref = dm.reference(dm.phi.unsqueeze(0).expand(s_count, -1, -1), gen)
    est = dm.estimate_power_spectrum(ref)
    assert ((est / c - 1).abs() < 5 * (2 / (s_count * (2 * ell + 1))).sqrt()).all()


def test_validation_points_on_refined_meshes_and_pictures():
    dm = small()
    c1, c4 = dm.validation_coords(1, 2), dm.validation_coords(4, 2)
    assert c1.shape == (2, 162, 16) and c4.shape == (2, 4 * 162 - 6, 16)
    assert torch.allclose(c4[:, :162], c1, atol=1e-6)  # the coarse vertices keep their coordinates
    values = dm.reference(c4, torch.Generator().manual_seed(0))
    rgb = dm.render(c4, values, title="t")
    assert rgb.ndim == 3 and rgb.shape[-1] == 3 and rgb.dtype == np.uint8 and rgb.std() > 0
    with pytest.raises(ValueError, match="not the vertices"):
        dm.render(c4[:, :100], values[:, :100])


def test_bad_options():
    with pytest.raises(ValueError, match="does not resolve degree"):
        SphereGRFDataModule(subdivisions=1, num_eigs=36)
    with pytest.raises(ValueError, match="unknown spectrum"):
        small(spectrum="rbf")
    with pytest.raises(ValueError, match="points"):
        small(points="grid")
    with pytest.raises(ValueError, match="path="):
        MeshGRFDataModule(mesh="file")
    with pytest.raises(FileNotFoundError, match="nothere.off"):
        MeshGRFDataModule(mesh="file", path="/nonexistent/nothere.off")
    with pytest.raises(ValueError, match="eigen-coordinates"):
        small().reference(torch.zeros(1, 3, 3))


def test_texture_projection_reads_the_right_pixels(gen):
    img = torch.rand(2, 1, 28, 28, generator=gen)
    r, c = (int(v) for v in torch.randint(0, 28, (2,), generator=gen))
    # the point on the front hemisphere whose projection is the centre of pixel (r, c)
    y, z = (c + 0.5) / 14 - 1, 1 - (r + 0.5) / 14
    pos = torch.tensor([[math.sqrt(max(1 - y * y - z * z, 0.0)) + 1e-6, y, z], [-0.5, y, z]])
    vals = texture_hemisphere(img, pos)
    assert vals.shape == (2, 2, 1)
    # float32 grid coordinates put the bilinear sample ~1e-6 pixel off the centre: measured |error| <= 1.1e-6
    # over 3000 seeds (torch.allclose's relative 1e-5 failed 1 run in 20 on dark pixels); a neighbouring pixel
    # would be off by ~0.3
    torch.testing.assert_close(vals[:, 0, 0], img[:, 0, r, c], rtol=0, atol=5e-6)
    assert (vals[:, 1] == 0).all()


def test_mnist_sphere_reads_the_protocol_split(data_root):
    dm = MNISTSphereDataModule(root=str(data_root), subdivisions=3, num_eigs=16, num_train=5, num_val=3)
    dm.setup()
    coords, values = dm.train_set[0]
    assert coords.shape == (642, 16) and values.shape == (642, 1)
    assert values.min() >= -1 and values.max() <= 1 and (values > 0).sum() > 10  # ink on the sphere
    assert len(dm.val_set) == 3
    with pytest.raises(FileNotFoundError, match="MNIST"):
        MNISTSphereDataModule(root=str(data_root / "nothing"), subdivisions=1, num_eigs=4).setup()
