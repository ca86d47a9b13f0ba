"""Manifold Diffusion Fields: query/context plumbing, forward marginals, the sampler with an exact
denoiser, and sampling on a refined mesh."""

import pytest
import torch
from torch import nn

from funcgen.geometry.mesh import eigenbasis, icosphere, sample_surface
from funcgen.methods import ManifoldDiffusionField
from funcgen.nets import PerceiverNet, SirenNet
from funcgen.pointset import PointSet

K = 9  # eigenfunction coordinates: degrees l <= 2 of the sphere


def surface_coords(subdivisions: int, n: int | None, batch: int, gen: torch.Generator) -> torch.Tensor:
    """``[batch, n, K]`` eigen-coordinates of random surface points (the vertices when ``n`` is None)."""
    mesh = icosphere(subdivisions)
    basis = eigenbasis(mesh, K)
    if n is None:
        return basis.coords().unsqueeze(0).expand(batch, -1, -1).contiguous()
    face, bary = sample_surface(mesh, n, gen, batch=batch)
    return basis.coords_at(face, bary)


def tiny_net() -> PerceiverNet:
    return PerceiverNet(K, 1, 1, width=16, num_latents=4, depth=1, heads=2, num_bands=0)


def test_loss_and_sampler_shapes_at_n_and_4n(gen):
    mdf = ManifoldDiffusionField(steps=3, num_context=20, num_queries=30)
    net = tiny_net()
    coords = surface_coords(2, None, 4, gen)  # 162 vertices
    ps = PointSet(coords, torch.randn(4, coords.shape[1], 1, generator=gen))
    loss, _ = mdf.loss(net, ps, gen)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    for n in (162, 648):
        q = surface_coords(2, n, 3, gen)
        x = mdf.sample(net.eval(), q, 1, generator=gen)
        assert x.shape == (3, n, 1) and torch.isfinite(x).all()


class Recorder(nn.Module):
    """Predicts zero noise and records every call's queries and context."""

    accepts_context = True

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, coords, values, t, context=None):
        self.calls.append((coords.clone(), values.clone(), context[0].clone(), context[1].clone()))
        return torch.zeros_like(values)


def _rows_of(sub: torch.Tensor, full: torch.Tensor) -> torch.Tensor:
    """For each function, does every row of ``sub`` [B, M, D] occur among the rows of ``full`` [B, N, D]?"""
    return (sub.unsqueeze(2) == full.unsqueeze(1)).all(-1).any(-1).all()


def test_training_draws_queries_and_a_context_subset_of_them(gen):
    mdf = ManifoldDiffusionField(num_context=7, num_queries=15, context="random")
    coords = torch.randn(3, 40, K, generator=gen)
    ps = PointSet(coords, torch.randn(3, 40, 1, generator=gen))
    net = Recorder()
    mdf.loss(net, ps, gen)
    (q, xq, c, xc), = net.calls
    assert q.shape == (3, 15, K) and c.shape == (3, 7, K) and xc.shape == (3, 7, 1)
    assert _rows_of(q, coords)  # queries are points of the function
    assert _rows_of(torch.cat([c, xc], -1), torch.cat([q, xq], -1))  # context = (coords, noisy value) of queries
    assert not torch.equal(q[0], q[1])  # each function has its own random subset


def test_sampler_draws_a_fresh_context_of_the_current_state_every_step(gen):
    steps, n, m = 5, 50, 8
    mdf = ManifoldDiffusionField(steps=steps, num_context=m, context="random")
    coords = torch.randn(2, n, K, generator=gen)
    net = Recorder()
    mdf.sample(net, coords, 1, generator=gen)
    assert len(net.calls) == steps
    seen = []
    for q, xq, c, xc in net.calls:
        assert torch.equal(q, coords) and c.shape == (2, m, K)
        assert _rows_of(torch.cat([c, xc], -1), torch.cat([q, xq], -1))  # pairs of the CURRENT state
        seen.append(c)
    assert all(not torch.equal(a, b) for a, b in zip(seen, seen[1:]))
    # a small set is its own context
    net = Recorder()
    mdf.sample(net, coords[:, :m], 1, generator=gen, steps=2)
    assert all(torch.equal(c, q) for q, _, c, _ in net.calls)


def test_full_context_is_every_query_in_training_and_the_whole_state_when_sampling(gen):
    mdf = ManifoldDiffusionField(steps=4, num_context=7, num_queries=15)
    assert mdf.context == "full"
    coords = torch.randn(3, 40, K, generator=gen)
    net = Recorder()
    mdf.loss(net, PointSet(coords, torch.randn(3, 40, 1, generator=gen)), gen)
    (q, xq, c, xc), = net.calls
    assert q.shape == (3, 15, K) and torch.equal(c, q) and torch.equal(xc, xq)
    net = Recorder()
    mdf.sample(net, coords, 1, generator=gen)
    assert len(net.calls) == 4
    assert all(torch.equal(q, coords) and torch.equal(c, coords) and torch.equal(xc, xq) for q, xq, c, xc in net.calls)


def test_exports_without_a_context_key_keep_the_random_subsets():
    from funcgen.config import build
    from funcgen.methods import Method

    old = {"class_path": "funcgen.methods.mdf.ManifoldDiffusionField",
           "init_args": {"schedule": "cosine", "steps": 4, "eta": 1.0, "num_context": 16, "num_queries": 256,
                         "clip_x0": None, "t_min": 0.001}}
    assert build(old, Method).context == "random"
    new = ManifoldDiffusionField(num_context=16)
    assert new.config["init_args"]["context"] == "full" and build(new.config, Method).context == "full"
    with pytest.raises(ValueError, match="context must be"):
        ManifoldDiffusionField(context="subset")


def test_forward_marginals_are_the_closed_form(gen):
    mdf = ManifoldDiffusionField()
    s_count, n = 20000, 6
    coords = torch.randn(1, n, K, generator=gen).expand(s_count, -1, -1)
    x0 = torch.randn(1, n, 1, generator=gen).expand(s_count, -1, -1)
    t = torch.full((s_count,), float(torch.rand((), generator=gen)) * 0.9 + 0.05)
    xt, eps = mdf.perturb(x0, coords, t, gen)
    a, s = (float(v.flatten()[0]) for v in mdf.marginal(t))
    assert torch.allclose(xt, a * x0 + s * eps)
    se = s / s_count**0.5
    assert ((xt.mean(0) - a * x0[0]).abs() < 5 * se).all()
    cov = torch.cov(xt[..., 0].T.double())
    # white noise: variance s^2 at every point, no correlation between points
    assert ((cov - s**2 * torch.eye(n, dtype=torch.float64)).abs() < 5 * s**2 * (2 / s_count) ** 0.5).all()


class ExactEps(nn.Module):
    """E[eps | y_t] for Gaussian data y_0 ~ N(0, Kmat) at fixed points (it conditions on all queries)."""

    accepts_context = True

    def __init__(self, method, kmat):
        super().__init__()
        self.method, self.kmat = method, kmat.double()

    def forward(self, coords, values, t, context=None):
        assert context is not None and context[0].shape[1] <= coords.shape[1]
        if (t == t[0]).all():  # one time for the whole batch (the sampler): one inverse
            t = t[:1]
        a, s = (v.double() for v in self.method.marginal(t))  # [B or 1, 1, 1]
        eye = torch.eye(self.kmat.shape[0], dtype=torch.float64)
        gain = s * torch.linalg.inv(a**2 * self.kmat + s**2 * eye)  # [B, N, N]
        return (gain @ values.double()).to(values.dtype)


@pytest.mark.parametrize("eta", [1.0, 0.0])
def test_sampler_with_exact_denoiser_reproduces_the_covariance(eta, gen):
    """A GRF on the sphere in its eigenbasis: DDPM / DDIM with the exact E[eps | y_t] recovers its law."""
    n, s_count = 10, 10000
    coords = surface_coords(2, n, 1, gen)[0].double()
    spec = torch.exp(-0.3 * torch.arange(K, dtype=torch.float64))
    kmat = coords @ torch.diag(spec / spec.sum()) @ coords.T
    mdf = ManifoldDiffusionField(steps=100, eta=eta, num_context=4)
    x = mdf.sample(ExactEps(mdf, kmat), coords.float().expand(s_count, -1, -1), 1, generator=gen)
    emp = torch.cov(x[..., 0].T.double())
    # sampling error of an empirical covariance: E|C_hat - K|_F^2 = ((tr K)^2 + |K|_F^2) / S
    se = ((kmat.trace() ** 2 + kmat.norm() ** 2) / s_count).sqrt()
    # plus the O(1/steps) bias of the discretised sampler: measured 0.034 (eta=1), 0.028 (eta=0) at 100 steps
    assert (emp - kmat).norm() < 4 * se + 0.05 * kmat.norm()
    assert (x.mean(0)[:, 0].double().abs() < 5 * (kmat.diagonal() / s_count).sqrt()).all()


def test_sampling_on_a_refined_mesh(gen):
    """Trained on the vertices of a coarse mesh, sampled at the vertices of its 4x refinement."""
    mdf = ManifoldDiffusionField(steps=2, num_context=32)
    net = tiny_net().eval()
    coarse, fine = surface_coords(2, None, 2, gen), surface_coords(3, None, 2, gen)
    assert fine.shape[1] == 4 * coarse.shape[1] - 6  # V = 10 * 4^s + 2
    mdf.loss(net.train(), PointSet(coarse, torch.randn(2, coarse.shape[1], 1, generator=gen)), gen)
    x = mdf.sample(net.eval(), fine, 1, generator=gen)
    assert x.shape == (2, fine.shape[1], 1) and torch.isfinite(x).all()


def test_bad_options_and_backbones(gen):
    with pytest.raises(ValueError, match="num_context"):
        ManifoldDiffusionField(num_context=0)
    mdf = ManifoldDiffusionField(num_context=4)
    ps = PointSet(torch.randn(2, 8, K, generator=gen), torch.randn(2, 8, 1, generator=gen))
    with pytest.raises(TypeError, match="context"):
        mdf.loss(SirenNet(K, 1, 1, width=8, depth=1), ps, gen)
    with pytest.raises(ValueError, match="context"):
        tiny_net()(ps.coords, ps.values, torch.rand(2), context=ps.coords)


def test_one_step_fit_logs_mesh_pictures_and_samples_at_4x(tmp_path):
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    from funcgen.data.mesh import SphereGRFDataModule
    from funcgen.train.module import GenerativeModule

    dm = SphereGRFDataModule(subdivisions=2, num_eigs=K, num_train=8, num_val=4, batch_size=4)
    module = GenerativeModule(ManifoldDiffusionField(steps=2, num_context=32, num_queries=64), tiny_net(),
                              warmup_steps=1, val_num_samples=2, val_steps=2)
    logger = CSVLogger(str(tmp_path), name="run")
    L.Trainer(max_steps=1, limit_train_batches=1, limit_val_batches=1, num_sanity_val_steps=0, logger=logger,
              enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
              default_root_dir=str(tmp_path)).fit(module, datamodule=dm)
    pngs = sorted(p.name for p in tmp_path.rglob("*.png"))
    assert any("res1x" in p for p in pngs) and any("res4x" in p for p in pngs), pngs
    ps = module.generator().sample(coords=dm.validation_coords(4, 3), seed=0, steps=2)
    assert ps.values.shape == (3, 4 * 162 - 6, 1) and torch.isfinite(ps.values).all()


def test_perceiver_context_none_is_self_context_and_queries_decode_independently(gen):
    net = tiny_net()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
    net.eval()
    coords, values, t = torch.randn(2, 12, K, generator=gen), torch.randn(2, 12, 1, generator=gen), torch.rand(2)
    out = net(coords, values, t)
    assert torch.allclose(out, net(coords, values, t, context=(coords, values)), atol=1e-6)
    ctx = (coords[:, :5], values[:, :5])
    part = net(coords[:, 7:], values[:, 7:], t, context=ctx)
    assert torch.allclose(part, net(coords, values, t, context=ctx)[:, 7:], atol=1e-6)
    assert not torch.allclose(part, out[:, 7:], atol=1e-4)  # the context matters


def test_mesh_models_sample_on_their_mesh_not_a_grid():
    from funcgen.data.mesh import SphereGRFDataModule
    from funcgen.generator import FunctionGenerator

    dm = SphereGRFDataModule(subdivisions=2, num_eigs=K)
    gen = FunctionGenerator(ManifoldDiffusionField(steps=1), tiny_net(), dm.data_config())
    with pytest.raises(ValueError, match="lives on a mesh"):
        gen.sample(2, 16)
    # no mesh tensors (an export written before they existed): the procedural mesh is rebuilt from the metadata
    assert gen.sample(2, steps=1).values.shape == (2, 162, 1)
    assert gen.sample(coords=dm.validation_coords(1, 2), steps=1).values.shape == (2, 162, 1)


def test_exact_oracle_sampler_reproduces_the_grf_at_1x_and_4x_with_eigen_noise():
    """The shared DDPM sampler with the exact Bayes denoiser (tests/methods/gaussian_oracle.py), full context
    and trace-class noise: covariance within 1.5x the exact-sample floor at the training mesh and its 4x
    subdivision, and the same sample variance at both (the posterior does not depend on the mesh)."""
    from funcgen.data.mesh import SphereGRFDataModule
    from funcgen.metrics.moments import covariance_error

    from .gaussian_oracle import GaussianEigenOracle

    dm = SphereGRFDataModule(subdivisions=2, num_eigs=16, lengthscale=0.5)
    num = 256
    variances = []
    for factor in (1, 4):
        coords = dm.validation_coords(factor, num).double()
        cov = dm.covariance(coords[0], coords[0])
        floor = sorted(covariance_error(dm.reference(coords, torch.Generator().manual_seed(10 + r))[..., 0], cov)
                       for r in range(3))[1]
        mdf = ManifoldDiffusionField(steps=50, noise_modes=16)
        x = mdf.sample(GaussianEigenOracle(mdf, dm.coef_std), coords, 1, generator=torch.Generator().manual_seed(0))
        assert covariance_error(x[..., 0], cov) < 1.5 * floor
        variances.append(x[..., 0].var(0).mean() / cov.diagonal().mean())
    # the same draws give the same eigen-coefficients at 1x and 4x: only the interpolation differs
    assert abs(float(variances[0] - variances[1])) < 0.02
    # white noise, the old default, loses variance on the finer mesh with the same grid (the bug this fixes)
    white = ManifoldDiffusionField(steps=50)
    v = [float(white.sample(GaussianEigenOracle(white, dm.coef_std), dm.validation_coords(f, num).double(), 1,
                            generator=torch.Generator().manual_seed(0))[..., 0].var(0).mean()) for f in (1, 4)]
    assert v[0] - v[1] > 0.05


def test_random_context_subsets_shrink_the_oracle_samples():
    """A posterior mean from a context subset is shrunk to the prior: the old rule loses most of the variance."""
    from funcgen.data.mesh import SphereGRFDataModule

    from .gaussian_oracle import GaussianEigenOracle

    dm = SphereGRFDataModule(subdivisions=2, num_eigs=16, lengthscale=0.5)
    coords = dm.validation_coords(1, 128).double()
    out = {}
    for context in ("full", "random"):
        mdf = ManifoldDiffusionField(steps=30, context=context, num_context=32)
        x = mdf.sample(GaussianEigenOracle(mdf, dm.coef_std), coords, 1, generator=torch.Generator().manual_seed(0))
        out[context] = float(x[..., 0].var(0).mean())
    assert out["full"] > 0.8 and out["random"] < 0.6, out


def test_export_carries_the_mesh_and_the_cli_samples_it_at_1x_and_refined(tmp_path):
    import numpy as np

    import funcgen
    from funcgen.apps.cli import main
    from funcgen.data.mesh import SphereGRFDataModule
    from funcgen.generator import FunctionGenerator

    dm = SphereGRFDataModule(subdivisions=2, num_eigs=K)
    gen = FunctionGenerator(ManifoldDiffusionField(steps=1, noise_modes=K), tiny_net(), dm.data_config(),
                            domain=dm.domain_tensors())
    path = gen.save(tmp_path / "mdf.safetensors")
    back = funcgen.load(path)
    assert torch.equal(back.mesh_domain.phi, dm.mesh_domain.phi)
    assert np.array_equal(back.mesh_domain.mesh.faces, dm.mesh.faces)
    ps = back.sample(2, seed=0)
    assert ps.values.shape == (2, 162, 1) and torch.equal(ps.coords[0], dm.phi)
    assert torch.allclose(back.sample(2, refine=1, seed=0).coords[0], dm.validation_coords(4, 1)[0])
    with pytest.raises(ValueError, match="lives on a mesh"):
        back.sample(2, resolution=16)
    assert main(["sample", "--ckpt", str(path), "--num", "2", "--steps", "1", "--refine", "1",
                 "--out", str(tmp_path / "out")]) == 0
    with np.load(tmp_path / "out" / "samples.npz") as f:
        assert f["values"].shape == (2, 642, 1)
    assert (tmp_path / "out" / "samples.png").is_file()


def test_user_mesh_and_vertex_fields(tmp_path):
    import numpy as np

    from funcgen.data.mesh_fields import MeshFieldsDataModule
    from funcgen.geometry.mesh import icosphere
    from funcgen.geometry.mesh_io import write_obj

    mesh = icosphere(1)
    write_obj(tmp_path / "m.obj", mesh.vertices, mesh.faces)
    vals = np.random.default_rng(0).normal(3.0, 2.0, (10, mesh.num_vertices, 1))
    np.savez(tmp_path / "f.npz", values=vals)
    dm = MeshFieldsDataModule(str(tmp_path / "m.obj"), str(tmp_path / "f.npz"), num_eigs=8, num_val=2, batch_size=4)
    dm.setup("fit")
    coords, values = next(iter(dm.train_dataloader()))
    assert coords.shape == (4, mesh.num_vertices, 8) and values.shape == (4, mesh.num_vertices, 1)
    assert len(dm.train_set) == 8 and abs(float(dm.train_set.values.mean())) < 1e-5
    assert dm.data_config()["kind"] == "mesh" and "domain.mesh.phi" in dm.domain_tensors()
    np.savez(tmp_path / "bad.npz", values=vals[:, :-1])
    with pytest.raises(ValueError, match="one value per mesh vertex"):
        MeshFieldsDataModule(str(tmp_path / "m.obj"), str(tmp_path / "bad.npz"), num_eigs=8)
    np.savez(tmp_path / "other.npz", fields=vals)
    with pytest.raises(ValueError, match="no array 'values'"):
        MeshFieldsDataModule(str(tmp_path / "m.obj"), str(tmp_path / "other.npz"), num_eigs=8)
    vals[1, 3, 0] = np.nan
    np.savez(tmp_path / "nan.npz", values=vals)
    with pytest.raises(ValueError, match="NaN"):
        MeshFieldsDataModule(str(tmp_path / "m.obj"), str(tmp_path / "nan.npz"), num_eigs=8)
    with pytest.raises(FileNotFoundError):
        MeshFieldsDataModule(str(tmp_path / "m.obj"), str(tmp_path / "missing.npz"), num_eigs=8)


def test_branch_trunk_starts_as_the_perceiver_and_its_linear_path_is_exact(gen):
    from funcgen.nets import BranchTrunkPerceiverNet

    torch.manual_seed(0)
    net = BranchTrunkPerceiverNet(K, 1, 1, width=16, num_latents=4, depth=1, heads=2)
    base = tiny_net()
    base.load_state_dict({k: v for k, v in net.state_dict().items() if k in base.state_dict()})
    coords, values, t = torch.randn(2, 30, K, generator=gen), torch.randn(2, 30, 1, generator=gen), torch.rand(2)
    with torch.no_grad():
        for p in list(base.parameters()):
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
        net.load_state_dict({**net.state_dict(), **base.state_dict()})
        assert torch.allclose(net(coords, values, t), base(coords, values, t), atol=1e-6)  # zero-initialised path
        net.proj_gain.bias.fill_(1.0)
        net.proj_channels.weight.fill_(1.0)
        # out - perceiver = phi(q) . P with P = mean_i phi(x_i) y(x_i) over the context
        proj = torch.einsum("bnr,bnc->brc", coords, values) / 30
        want = base(coords, values, t) + coords @ proj
        assert torch.allclose(net(coords, values, t), want, atol=1e-5)
