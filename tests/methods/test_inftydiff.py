"""infty-Diff: mollified forward marginals, unbiased subset loss, sampler law and resolution freedom."""

import math

import pytest
import torch
from torch import nn

from funcgen.methods import InftyDiff
from funcgen.nets import PerceiverNet
from funcgen.pointset import PointSet, grid_coords
from funcgen.processes.mollify import mollify, mollify_grid
from funcgen.processes.noise import GaussianRandomField
from tests.methods.test_fdp import covariance_z, exact_sampler_covariance


def rel_err(a, b):
    return float((a - b).norm() / b.norm())


def blur_matrix(n: int, width: float) -> torch.Tensor:
    """``B`` with ``T f = B f`` on the 1D cell-centre grid of ``n`` cells (float64)."""
    return mollify_grid(torch.eye(n, dtype=torch.float64)[:, None, :], width)[:, 0, :].T


def test_forward_marginal_closed_form(gen):
    """x_t | x0 ~ N(alpha T x0, sigma^2 C), C the mollified-noise covariance, from perturb (mollified on the grid)."""
    n, s = 12, 4000
    m = InftyDiff(width=0.05, dim=1)
    coords = grid_coords((n,)).expand(s, -1, -1)
    x0 = (torch.cos(3 * math.pi * coords) + torch.randn((), generator=gen)).expand(s, -1, -1)
    t = torch.full((s,), float(torch.empty(()).uniform_(0.2, 0.9, generator=gen)))
    x_t, xi = m.perturb(x0, coords, t, gen)
    a, sig = (float(v[0]) for v in m.marginal(t[:1]))
    mean = a * mollify(x0[:1].double(), coords[:1].double(), 0.05)[0, :, 0]
    cov = sig**2 * m.noise.covariance(coords[0].double(), coords[0].double())
    sd = cov.diag().sqrt()
    assert ((x_t[..., 0].double().mean(0) - mean).abs() / (sd / math.sqrt(s))).max() < 5.0
    se = ((cov**2 + torch.outer(cov.diag(), cov.diag())) / s).sqrt()
    assert ((torch.cov(x_t[..., 0].double().T) - cov).abs() / se).max() < 5.0
    # the target is the mollified noise itself: x_t - alpha T x0 = sigma T xi
    assert torch.allclose(x_t.double() - mean[None, :, None], sig * xi.double(), atol=1e-4)


class Pointwise(nn.Module):
    """Prediction at a point depends only on that point: the subset loss is then unbiased."""

    def forward(self, coords, values, t):
        return torch.sin(3 * values + coords.sum(-1, keepdim=True) + t[:, None, None])


def test_subset_loss_is_unbiased(gen):
    """Rate-1/4 loss minus rate-1 loss on the same (t, xi) draw has mean zero, within standard errors.

    Both losses are computed from generators with the same seed, so they share the times and the
    mollified noise (drawn first) and differ only by the random subset: a paired comparison.
    """
    data = GaussianRandomField("se", 0.2)
    coords = grid_coords((8, 8)).expand(8, -1, -1)
    batch = PointSet(coords, data.sample(coords, 1, gen))
    full, quarter = InftyDiff(width=1 / 8, dim=2, subsample=1.0), InftyDiff(width=1 / 8, dim=2, subsample=0.25)
    draws = 150
    diffs, fulls = [], []
    for seed in torch.randint(0, 2**62, (draws,), generator=gen).tolist():
        lf = float(full.loss(Pointwise(), batch, torch.Generator().manual_seed(seed))[0])
        lq = float(quarter.loss(Pointwise(), batch, torch.Generator().manual_seed(seed))[0])
        diffs.append(lq - lf)
        fulls.append(lf)
    d = torch.tensor(diffs, dtype=torch.float64)
    se = float(d.std() / math.sqrt(draws))
    assert abs(float(d.mean())) < 5 * se
    assert float(d.std()) > 0  # the subsets really vary
    # and the test can see a bias: a loss off by 10% would fail it
    assert 0.1 * sum(fulls) / draws > 5 * se


class ExactEpsDenoiser(nn.Module):
    """E[T xi | x_t] for mollified Gaussian data y = T x0 ~ N(0, Ky) and noise N(0, C), on a 1D grid."""

    def __init__(self, method: InftyDiff, ky: torch.Tensor, c: torch.Tensor):
        super().__init__()
        self.method, self.ky, self.c = method, ky, c

    def forward(self, coords, values, t):
        assert bool((t == t[0]).all())  # the sampler uses one time for the whole batch: one gain
        a, s = (v[:1].double() for v in self.method.marginal(t))
        eye = torch.eye(len(self.c), dtype=torch.float64)
        gain = s * self.c @ torch.linalg.inv(a**2 * self.ky + s**2 * self.c + 1e-10 * eye)
        return (gain @ values.double()).to(values.dtype)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_sampler_with_exact_denoiser_reaches_mollified_data_law(eta, gen):
    """With the exact denoiser the draws have the mollified data covariance B K B^T, and decoding them (the
    linear Wiener filter W) gives about K.

    The exact covariance of the 400-step sampler (tests.methods.test_fdp.ScriptedNoise; the grid noise has
    covariance N cell B B^T) against B K B^T: relative Frobenius error 0.007 (eta 0) and 0.017 (eta 1), trace ratio
    0.992 and 0.982 (first-order discretisation: 0.935 at 100 steps with eta = 1, where an 8% excess passed
    unseen); allowed 0.035 and 0.965..1.03, so an 8% covariance bias (outputs scaled by sqrt(1.08) or
    1 / sqrt(1.08): ratios >= 1.06 or <= 0.92) fails. Decoded: W cov W^T against K, measured 0.017 and 0.025
    (the Wiener regulariser alone gives 0.011), allowed 0.04. Then 2000 draws with the real noise, and their
    decoding, have those covariances within 5 standard errors."""
    n, width = 12, 0.1  # a wide blur, so that mollified and unmollified laws differ clearly
    m = InftyDiff(width=width, dim=1, eta=eta, steps=400)
    c = grid_coords((n,), dtype=torch.float64)
    b = blur_matrix(n, width)
    k = GaussianRandomField("se", 0.2).covariance(c, c).double()
    ky = b @ k @ b.T
    cell = width  # the default noise cell: unit-variance white noise per cell of side `width`
    cn = n * cell * b @ b.T  # exact covariance of the grid noise sampler (d = 1)
    cov = exact_sampler_covariance(m, lambda m: ExactEpsDenoiser(m, ky, cn), c, math.sqrt(n * cell) * b, draws=400)
    err, ratio = rel_err(cov, ky), float(torch.trace(cov) / torch.trace(ky))
    assert err < 0.035 and 0.965 < ratio < 1.03, (err, ratio)
    w = m.decode(torch.eye(n, dtype=torch.float64)[:, :, None], c.expand(n, -1, -1))[..., 0].T  # column j = W e_j
    assert rel_err(w @ cov @ w.T, k) < 0.04, rel_err(w @ cov @ w.T, k)
    coords = c[None].float().expand(2000, -1, -1)
    x = m.sample(ExactEpsDenoiser(m, ky, cn), coords, 1, generator=gen)
    assert torch.isfinite(x).all()
    for draws, want in ((x, cov), (m.decode(x, coords), w @ cov @ w.T)):
        cov_z, mean_z = covariance_z(draws, want)
        assert cov_z < 5.0 and mean_z < 5.0, (cov_z, mean_z)


def test_decode_maps_the_mollified_law_back_to_the_data_law():
    """W (B K B^T) W^T = K up to the Wiener regulariser, W the decode matrix: exact covariance algebra."""
    n, width = 12, 0.1
    m = InftyDiff(width=width, dim=1)
    c = grid_coords((n,), dtype=torch.float64)
    b = blur_matrix(n, width)
    k = GaussianRandomField("se", 0.2).covariance(c, c).double()
    w = m.decode(torch.eye(n, dtype=torch.float64)[:, :, None], c.expand(n, -1, -1))[..., 0].T  # column j = W e_j
    assert rel_err(b @ k @ b.T, k) > 0.15  # the blur changes the law a lot at this width
    assert rel_err(w @ b @ k @ b.T @ w.T, k) < 0.02


@pytest.mark.parametrize("res", [8, 16])
def test_sampling_at_n_and_4n_points(res, gen):
    net = PerceiverNet(dim=2, in_channels=1, out_channels=1, width=16, num_latents=4, depth=1, heads=2, num_bands=2)
    m = InftyDiff(width=1 / 8, dim=2, steps=3)
    coords = grid_coords((res, res)).expand(2, -1, -1)
    x = m.sample(net, coords, 1, generator=gen)
    assert x.shape == (2, res * res, 1) and torch.isfinite(x).all()
    assert m.deconvolve(x, coords).shape == x.shape
    scattered = m.sample(net, torch.rand(2, 30, 2, generator=gen), 1, generator=gen)  # Cholesky prior
    assert scattered.shape == (2, 30, 1) and torch.isfinite(scattered).all()


def test_loss_trains_a_backbone_and_rejects_non_grids(gen):
    net = PerceiverNet(dim=2, in_channels=1, out_channels=1, width=16, num_latents=4, depth=1, heads=2, num_bands=2)
    m = InftyDiff(width=1 / 8, dim=2, subsample=0.125)
    coords = grid_coords((8, 8)).expand(3, -1, -1)
    loss, _ = m.loss(net, PointSet(coords, torch.randn(3, 64, 1, generator=gen)), gen)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in net.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="full cell-centre grid"):
        m.loss(net, PointSet(torch.rand(3, 64, 2, generator=gen), torch.randn(3, 64, 1)), gen)
    with pytest.raises(ValueError, match="subsample"):
        InftyDiff(subsample=0.0)


def test_fast_dev_run_fit_and_sample_above_training_resolution(tmp_path):
    """Through the shared GenerativeModule: a grid datamodule trains, then samples at 1x and 4x."""
    import lightning as L

    from funcgen.data import GRFDataModule
    from funcgen.train.module import GenerativeModule

    dm = GRFDataModule(dim=2, resolution=8, num_train=8, num_val=4, batch_size=4, coords="grid")
    net = PerceiverNet(dim=2, in_channels=1, out_channels=1, width=16, num_latents=4, depth=1, heads=2, num_bands=2)
    module = GenerativeModule(InftyDiff(width=1 / 8, dim=2, subsample=0.5, steps=2), net, warmup_steps=1,
                              val_num_samples=2, val_steps=2)
    L.Trainer(fast_dev_run=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, default_root_dir=str(tmp_path)).fit(module, datamodule=dm)
    gen = module.generator()
    for res in (8, 32):
        ps = gen.sample(2, res, seed=1, steps=2)
        assert ps.values.shape == (2, res * res, 1) and torch.isfinite(ps.values).all()
    # on grids the generator returns Wiener-deconvolved samples; decode=False gives the raw T x0
    raw = gen.sample(2, 16, seed=3, steps=2, decode=False, denormalize=False)
    dec = gen.sample(2, 16, seed=3, steps=2, denormalize=False)
    assert torch.allclose(dec.values, module.method.deconvolve(raw.values, raw.coords), atol=1e-5)
    scattered = torch.rand(2, 20, 2)
    assert torch.allclose(gen.sample(coords=scattered, seed=4, steps=2, denormalize=False).values,
                          gen.sample(coords=scattered, seed=4, steps=2, denormalize=False, decode=False).values)


def test_driving_noise_has_the_papers_pixel_scale_at_every_resolution(gen):
    """The paper blurs unit-variance pixel noise (``randn``) of the training grid by one pixel. Recomputed
    here without funcgen: a 28x28 grid of N(0, 1) pixels convolved with a normalised 2-D Gaussian of std 1
    pixel (truncated at 8 px) has interior per-pixel variance sum(w^2) ~ 1/(4 pi) = 0.0796. InftyDiff's
    noise at 28x28 (the training grid) and at 56x56 (a finer query grid, same physical law) must match it
    within 5 standard errors of 4000 draws at the centre. The physical white noise of funcgen <= 0.1
    (variance ~62 at 28x28, the ~800x bug) and a noise rescaled per resolution both fail."""
    n = 28
    ax = torch.arange(-8, 9, dtype=torch.float64)
    w1 = torch.exp(-0.5 * ax**2)
    w1 = w1 / w1.sum()
    want = float((torch.outer(w1, w1) ** 2).sum())
    assert abs(want - 1 / (4 * math.pi)) < 2e-3  # the continuum value, as a check of the recipe
    m = InftyDiff(width=1.0 / n, dim=2)
    draws = 4000
    for res in (n, 2 * n):
        coords = grid_coords((res, res))[None].expand(draws, -1, -1)
        x = m.noise.sample(coords, 1, generator=gen)[..., 0].reshape(draws, res, res)
        centre = x[:, res // 2, res // 2].double()
        var = float(centre.var())
        se = want * math.sqrt(2.0 / (draws - 1))
        assert abs(var - want) < 5 * se, (res, var, want)


def test_old_exports_keep_the_noise_they_were_trained_with():
    """A config recorded before ``noise_cell`` existed rebuilds with physical white noise (cell 1)."""
    from funcgen.config import build
    from funcgen.methods.base import Method

    new = InftyDiff(width=1.0 / 28, dim=2)
    old_args = {k: v for k, v in new.config["init_args"].items() if k != "noise_cell"}
    old = build({"class_path": new.config["class_path"], "init_args": old_args}, Method)
    assert new.noise_cell == pytest.approx(1 / 28) and old.noise_cell == 1.0
    c = grid_coords((4, 4), dtype=torch.float64)
    ratio = old.noise.covariance(c, c) / new.noise.covariance(c, c)
    assert torch.allclose(ratio, torch.full_like(ratio, 28.0**2))


class ExactX0Denoiser(ExactEpsDenoiser):
    """E[T x0 | x_t] = (x_t - sigma E[T xi | x_t]) / alpha (x0-parametrised), or the matching v."""

    def __init__(self, method: InftyDiff, ky: torch.Tensor, c: torch.Tensor, kind: str):
        super().__init__(method, ky, c)
        self.kind = kind

    def forward(self, coords, values, t):
        eps = super().forward(coords, values, t)
        a, s = (v[:1] for v in self.method.marginal(t))
        x0 = (values - s * eps) / a
        return x0 if self.kind == "x0" else a * eps - s * x0


@pytest.mark.parametrize("prediction", ["x0", "v"])
def test_x0_and_v_parametrisations_sample_what_the_exact_eps_model_samples(prediction, gen):
    """The same exact posterior mean, handed over as T x0 or v, drives the sampler to the same draws as the
    paper's eps model (whose law the test above checks); a wrong conversion changes them."""
    n, width = 12, 0.1
    c = grid_coords((n,), dtype=torch.float64)
    b = blur_matrix(n, width)
    ky = b @ GaussianRandomField("se", 0.2).covariance(c, c).double() @ b.T
    cn = n * width * b @ b.T
    coords = c[None].float().expand(64, -1, -1)
    eps_m = InftyDiff(width=width, dim=1, steps=30)
    other = InftyDiff(width=width, dim=1, steps=30, prediction=prediction)
    want = eps_m.sample(ExactEpsDenoiser(eps_m, ky, cn), coords, 1, generator=torch.Generator().manual_seed(1))
    got = other.sample(ExactX0Denoiser(other, ky, cn, prediction), coords, 1,
                       generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(got, want, atol=2e-4, rtol=1e-3)
    wrong = other.sample(ExactX0Denoiser(other, ky, cn, "v" if prediction == "x0" else "x0"), coords, 1,
                         generator=torch.Generator().manual_seed(1))
    assert (wrong - want).abs().max() > 0.05


@pytest.mark.parametrize("prediction, loss_space", [("eps", "target"), ("x0", "target"), ("v", "x0")])
def test_loss_regresses_the_chosen_target_on_the_mollified_data(prediction, loss_space, gen):
    """A network that outputs 0 at rate 1: the loss is the mean square of the target it should have predicted,
    T xi (eps), T x0 (x0), or, for v scored in x0 space, of alpha x_t - T x0 (x0_hat = alpha x_t)."""
    coords = grid_coords((8, 8)).expand(4, -1, -1)
    x0 = GaussianRandomField("se", 0.2).sample(coords, 1, gen)
    m = InftyDiff(width=1 / 8, dim=2, subsample=1.0, prediction=prediction, loss_space=loss_space)
    zero = lambda coords, values, t: torch.zeros_like(values)  # noqa: E731
    loss = m.loss(zero, PointSet(coords, x0), torch.Generator().manual_seed(3))[0]
    g = torch.Generator().manual_seed(3)
    t = m.train_times(4, x0, g)
    tx0 = mollify(x0, coords, 1 / 8)
    xi = m.noise.sample(coords, 1, g)
    a, s = m.marginal(t)
    want = {"eps": xi, "x0": tx0, "v": a * (a * tx0 + s * xi) - tx0}[prediction]
    torch.testing.assert_close(loss, want.square().mean(), rtol=1e-5, atol=1e-7)
