"""Idempotent Generative Networks: gradient routing of each loss term, the clamp, distances, sampling,
spectrum-matched noise, a tiny training run and a config-driven fit."""

import copy
import math
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from funcgen.apps.cli import make_cli
from funcgen.config import build
from funcgen.data import GRFDataModule
from funcgen.methods import IdempotentGenerative, Method
from funcgen.methods.ign import clamp_tight, distance
from funcgen.nets import GridAutoencoder, PerceiverNet
from funcgen.nets.base import Backbone
from funcgen.pointset import PointSet, grid_coords
from funcgen.processes.matched import SpectrumMatchedNoise, half_lattice
from funcgen.processes.noise import (
    GaussianRandomField,
    SpectralNoise,
    WhiteNoise,
)
from funcgen.train.module import GenerativeModule

REPO = Path(__file__).resolve().parents[2]


class LinearNet(Backbone):
    """Pointwise affine map ``f(v) = v W^T + b`` (ignores coords and t): gradients known in closed form."""

    def __init__(self, channels: int = 2) -> None:
        super().__init__(1, channels, channels)
        self.weight = nn.Parameter(torch.zeros(channels, channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, coords: Tensor, values: Tensor, t: Tensor) -> Tensor:
        self.check_inputs(coords, values, t)
        return values @ self.weight.T + self.bias


def linear_setup(gen, b=3, n=5, c=2):
    net = LinearNet(c)
    with torch.no_grad():
        net.weight.copy_(torch.eye(c) + 0.5 * torch.randn(c, c, generator=gen))
        net.bias.copy_(0.5 * torch.randn(c, generator=gen))
    coords = torch.rand(b, n, 1, generator=gen)
    x = torch.randn(b, n, c, generator=gen)
    seed = int(torch.randint(0, 2**31 - 1, (), generator=gen))
    z = WhiteNoise().sample(coords, c, torch.Generator().manual_seed(seed))
    return net, PointSet(coords, x), z, seed


def grads(net, method, batch, seed):
    net.zero_grad()
    loss, extras = method.loss(net, batch, torch.Generator().manual_seed(seed))
    loss.backward()
    return net.weight.grad.clone(), net.bias.grad.clone(), extras


def test_idempotence_gradient_flows_only_through_the_inner_application(gen):
    net, batch, z, seed = linear_setup(gen)
    method = IdempotentGenerative(WhiteNoise(), distance="l2", rec_weight=0.0, idem_weight=1.0, tight_weight=0.0)
    g_w, g_b, _ = grads(net, method, batch, seed)
    w, b = net.weight.detach(), net.bias.detach()
    m = z.numel()  # mean over functions, points and channels
    y = z @ w.T + b  # f(z)
    r = y @ (w - torch.eye(2)).T + b  # f'(f(z)) - f(z)
    dy = 2.0 * r @ (w - torch.eye(2)) / m  # through both occurrences of the inner f(z), f' frozen
    assert torch.allclose(g_w, dy.reshape(-1, 2).T @ z.reshape(-1, 2), atol=1e-6)
    assert torch.allclose(g_b, dy.reshape(-1, 2).sum(0), atol=1e-6)
    # the gradient through f' as well would differ: the test can tell the routings apart
    wrong_w = dy.reshape(-1, 2).T @ z.reshape(-1, 2) + 2.0 * r.reshape(-1, 2).T @ y.reshape(-1, 2) / m
    assert not torch.allclose(g_w, wrong_w, atol=1e-4)


@pytest.mark.parametrize("clamp,scale", [(None, "rec_z"), (1.5, "rec_z"), (1.5, "rec_x"), (1.5, "rec_x_mean")])
def test_tightness_gradient_flows_only_through_the_outer_application(clamp, scale, gen):
    net, batch, z, seed = linear_setup(gen)
    method = IdempotentGenerative(WhiteNoise(), distance="l2", rec_weight=0.0, idem_weight=0.0, tight_weight=1.0,
                                  tight_clamp=clamp, tight_scale=scale)
    g_w, g_b, extras = grads(net, method, batch, seed)
    w, b = net.weight.detach(), net.bias.detach()
    bsz, n, c = z.shape
    y = z @ w.T + b  # f(z), detached by construction
    r = y @ (w - torch.eye(c)).T + b  # f(y) - y, gradient only through the outer f
    tight = -(r**2).mean(dim=(1, 2))  # [B]
    slope = torch.ones(bsz)
    if clamp is not None:
        s = {"rec_z": ((y - z) ** 2).mean(dim=(1, 2)),  # eq. 9: L_rec(z) = D(f(z), z) per function
             "rec_x": ((batch.values @ w.T + b - batch.values) ** 2).mean(dim=(1, 2)),  # the i-th data function's
             "rec_x_mean": ((batch.values @ w.T + b - batch.values) ** 2).mean().expand(bsz)}[scale]
        slope = 1.0 - torch.tanh(tight / (clamp * s)) ** 2  # d/dl of tanh(l / (a s)) a s
        assert torch.allclose(extras["tight_scale"], s.mean())
    dr = -2.0 * r * slope[:, None, None] / (n * c * bsz)
    expect_w = dr.reshape(-1, c).T @ y.reshape(-1, c)
    assert expect_w.abs().max() > 1e-3  # a real, non-zero gradient (the f'-bug would give exactly 0)
    assert torch.allclose(g_w, expect_w, atol=1e-6)
    assert torch.allclose(g_b, dr.reshape(-1, c).sum(0), atol=1e-6)
    assert torch.allclose(extras["tight_raw"], tight.mean())


def test_tightness_through_the_frozen_copy_would_have_no_gradient(gen):
    """The known public-code bug, reproduced here to show what the previous test rules out."""
    net, batch, z, _ = linear_setup(gen)
    from torch.func import functional_call

    frozen = {k: p.detach() for k, p in net.named_parameters()}
    y = net(batch.coords, z, torch.zeros(3)).detach()
    bug = -(functional_call(net, frozen, (batch.coords, y, torch.zeros(3))) - y).square().mean()
    assert not bug.requires_grad


def test_clamp_formula_and_bounds(gen):
    tight = -torch.rand(200, generator=gen) * 10.0
    scale = torch.rand(200, generator=gen) + 0.01
    a = 1.5
    out = clamp_tight(tight, scale, a)
    expect = torch.tensor([math.tanh(t / (a * s)) * a * s for t, s in zip(tight.tolist(), scale.tolist())])
    assert torch.allclose(out, expect.float(), atol=1e-6)
    assert (out <= 0).all() and (out >= -a * scale).all() and (out >= tight).all()  # in [max(l, -a s), 0]
    # identity to second order: |tanh(u) - u| <= |u|^3 / 3, so |clamp(l) - l| <= |l| (l / a s)^2 / 3
    lt, sc = tight.double(), scale.double()
    assert ((clamp_tight(lt, sc, a) - lt).abs() <= lt.abs() * (lt / (a * sc)) ** 2 / 3 + 1e-12).all()


def test_l1_l2_on_hand_computed_inputs():
    a = torch.tensor([[[1.0], [2.0], [4.0]], [[0.0], [0.0], [0.0]]])
    b = torch.tensor([[[0.0], [4.0], [1.0]], [[1.0], [-1.0], [2.0]]])
    assert torch.allclose(distance(a, b, None, "l2"), torch.tensor([(1 + 4 + 9) / 3, (1 + 1 + 4) / 3]))
    assert torch.allclose(distance(a, b, None, "l1"), torch.tensor([(1 + 2 + 3) / 3, (1 + 1 + 2) / 3]))
    mask = torch.tensor([[True, False, True], [True, True, False]])
    assert torch.allclose(distance(a, b, mask, "l2"), torch.tensor([5.0, 1.0]))
    assert torch.allclose(distance(a, b, mask, "l1"), torch.tensor([2.0, 1.0]))
    with pytest.raises(ValueError, match="l2 or l1"):
        distance(a, b, None, "l3")  # type: ignore[arg-type]


def test_loss_value_combines_the_weighted_terms_with_the_papers_defaults(gen):
    net, batch, z, seed = linear_setup(gen)
    method = IdempotentGenerative(WhiteNoise())  # the paper's trained setting: L1, 20 / 20 / 2.5, a = 1.5
    assert (method.distance, method.rec_weight, method.idem_weight, method.tight_weight, method.tight_clamp,
            method.tight_scale, method.tight_warmup_steps) == ("l1", 20.0, 20.0, 2.5, 1.5, "rec_z", 0)
    loss, ex = method.loss(net, batch, torch.Generator().manual_seed(seed))
    w, b = net.weight.detach(), net.bias.detach()
    f = lambda v: v @ w.T + b  # noqa: E731
    rec = (f(batch.values) - batch.values).abs().mean(dim=(1, 2))
    idem = (f(f(z)) - f(z)).abs().mean(dim=(1, 2))
    moved = (f(z) - z).abs().mean(dim=(1, 2))  # L_rec(z) of eq. 9
    tight = clamp_tight(-idem, moved, 1.5)  # with f' = f the tight distance equals the idempotence one
    assert torch.allclose(loss, 20 * rec.mean() + 20 * idem.mean() + 2.5 * tight.mean(), rtol=1e-5)
    assert torch.allclose(ex["rec"], rec.mean()) and torch.allclose(ex["idem"], idem.mean())
    fz = f(z)
    assert torch.allclose(ex["diversity"], fz.std(0).mean() / batch.values.std(0).mean(), rtol=1e-5)
    assert torch.allclose(ex["identity_dist"], moved.mean())
    assert torch.allclose(ex["identity_gap"], moved.mean() / (batch.values - z).abs().mean(dim=(1, 2)).mean())


@pytest.mark.parametrize("kind", ["l1", "l2"])
def test_imle_term_adds_each_datums_distance_to_its_nearest_sample(kind, gen):
    """``imle_weight``: the loss grows by w * mean_i min_j D(f(z_j), x_i), the minimum found here by an explicit
    double loop over the batch; batches whose functions sit at different points are refused."""
    net, batch, _, seed = linear_setup(gen, b=5)
    coords = batch.coords[:1].expand_as(batch.coords)  # one shared point set
    batch = PointSet(coords, batch.values)
    z = WhiteNoise().sample(coords, 2, torch.Generator().manual_seed(seed))
    w = 7.0
    base = IdempotentGenerative(WhiteNoise(), distance=kind).loss(net, batch, torch.Generator().manual_seed(seed))[0]
    method = IdempotentGenerative(WhiteNoise(), distance=kind, imle_weight=w)
    loss, ex = method.loss(net, batch, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        fz = net(coords, z, torch.zeros(5))
        d = (lambda a, b: (a - b).abs().mean()) if kind == "l1" else (lambda a, b: (a - b).pow(2).mean())
        want = sum(min(float(d(fz[j], batch.values[i])) for j in range(5)) for i in range(5)) / 5
    assert abs(float(ex["imle"]) - want) < 1e-5 * max(1.0, want)
    assert abs(float(loss.detach() - base.detach()) - w * want) < 1e-4 * max(1.0, w * want)
    with pytest.raises(ValueError, match="shared grid"):
        method.loss(net, PointSet(torch.rand(5, 5, 1, generator=gen), batch.values), gen)


def term_grads(net, batch, seed):
    """Gradient norms of each loss term alone (the other weights 0)."""
    out = {}
    for name, w in (("rec", (1.0, 0.0, 0.0)), ("idem", (0.0, 1.0, 0.0)), ("tight", (0.0, 0.0, 1.0))):
        method = IdempotentGenerative(WhiteNoise(), rec_weight=w[0], idem_weight=w[1], tight_weight=w[2])
        net.zero_grad()
        method.loss(net, batch, torch.Generator().manual_seed(seed))[0].backward()
        out[name] = sum(float(p.grad.norm()) for p in net.parameters() if p.grad is not None)
    return out


def test_every_loss_term_has_a_gradient_at_initialisation(gen):
    coords = grid_coords((16,)).expand(6, -1, -1)
    batch = PointSet(coords, GaussianRandomField("se", 0.2).sample(coords, 1, gen))
    torch.manual_seed(0)
    g = term_grads(GridAutoencoder(1, 1, 1, grid=16, width=8, levels=2, latent_dim=4), batch, 1)
    assert min(g.values()) > 1e-3, g
    # the check can fail: a zero-initialised head (f = 0) leaves L_idem and L_tight without any gradient
    g0 = term_grads(small_net(), batch, 1)
    assert g0["rec"] > 1e-3 and g0["idem"] == 0.0 and g0["tight"] == 0.0, g0


def test_old_configs_rebuild_with_the_public_code_clamp_scale():
    method = IdempotentGenerative(WhiteNoise(), distance="l2")
    config = {**method.config, "init_args": {k: v for k, v in method.config["init_args"].items()
                                             if k != "tight_scale"}}
    assert build(config, Method).tight_scale == "rec_x"  # recorded before tight_scale existed
    assert build(method.config, Method).tight_scale == "rec_z"


class ConstantNet(LinearNet):
    """``f(v) = b`` for every input (weight fixed at 0): the mode-collapsed map."""

    def forward(self, coords: Tensor, values: Tensor, t: Tensor) -> Tensor:
        self.check_inputs(coords, values, t)
        return values * 0.0 + self.bias


class IdentityNet(LinearNet):
    def forward(self, coords: Tensor, values: Tensor, t: Tensor) -> Tensor:
        self.check_inputs(coords, values, t)
        return values + 0.0 * self.bias


@pytest.mark.parametrize("net,key", [(ConstantNet(1), "diversity"), (IdentityNet(1), "identity_gap")])
def test_collapse_monitor_warns_after_patience_and_can_ask_to_stop(net, key, gen):
    coords = grid_coords((8,)).expand(4, -1, -1)
    batch = PointSet(coords, torch.randn(4, 8, 1, generator=gen) + 3.0)
    for stop in (False, True):
        method = IdempotentGenerative(WhiteNoise(), collapse_patience=3, collapse_stop=stop)
        for step in range(2):
            _, ex = method.loss(net, batch, gen)
            assert float(ex[key]) < 1e-6 and method.stop_reason() is None
        with torch.no_grad():  # validation (no gradients) does not count
            method.loss(net, batch, gen)
        with pytest.warns(RuntimeWarning, match=f"IGN collapse: {key}"):
            method.loss(net, batch, gen)
        assert (method.stop_reason() is not None) == stop
    # a healthy map (an affine one moving and spreading the noise) never triggers it
    healthy = IdempotentGenerative(WhiteNoise(), collapse_patience=1, collapse_stop=True)
    lin = LinearNet(1)
    with torch.no_grad():
        lin.weight.fill_(0.5)
        lin.bias.fill_(3.0)
    _, ex = healthy.loss(lin, batch, gen)
    assert float(ex["diversity"]) > 0.1 and float(ex["identity_gap"]) > 0.05 and healthy.stop_reason() is None


def test_project_with_a_mask_keeps_the_observed_values_and_fills_the_rest_from_them(gen):
    torch.manual_seed(0)
    net = GridAutoencoder(2, 1, 1, grid=6, width=8, levels=1, latent_dim=5).eval()
    method = IdempotentGenerative(GaussianRandomField("se", 0.2))
    coords = grid_coords((6, 6)).expand(2, -1, -1)
    v = torch.randn(2, 36, 1, generator=gen)
    mask = torch.rand(2, 36, generator=gen) > 0.5
    holes = torch.where(mask.unsqueeze(-1), v, torch.full_like(v, float("nan")))  # missing values may be NaN
    out = method.project(net, coords, holes, k=1, mask=mask, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out[mask], v[mask])  # observed values restored exactly
    t = torch.zeros(2)
    for i in range(2):  # the rest: f read from the observed points only
        lat = net.encode(coords[i:i + 1, mask[i]], v[i:i + 1, mask[i]], t[:1])
        torch.testing.assert_close(out[i, ~mask[i]], net.decode(lat, coords[i:i + 1])[0, ~mask[i]])
    two = method.project(net, coords, holes, k=2, mask=mask, generator=torch.Generator().manual_seed(0))
    manual = torch.where(mask.unsqueeze(-1), v, net(coords, out, t))  # later applications see the completed function
    torch.testing.assert_close(two, manual)
    with pytest.raises(ValueError, match="NaN or inf"):
        method.project(net, coords, holes)  # missing values without a mask
    with pytest.raises(ValueError, match="mask must be bool"):
        method.project(net, coords, v, mask=mask.float())


def test_tightness_warmup_follows_the_training_step():
    method = IdempotentGenerative(WhiteNoise(), tight_warmup_steps=100)
    assert method.tight_ramp() == 1.0  # never told the step: full weight
    for step, ramp in ((0, 0.0), (25, 0.25), (100, 1.0), (5000, 1.0)):
        method.on_train_step(step)
        assert method.tight_ramp() == ramp


def small_net(dim=1, c=1):
    return PerceiverNet(dim, c, c, width=16, num_latents=4, depth=1, heads=2, num_bands=3)


def test_sample_and_project_shapes_at_any_query_set_and_reproducible(gen):
    net = small_net()
    with torch.no_grad():  # a non-trivial f (the head is zero-initialised)
        for p in net.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen))
    method = IdempotentGenerative(GaussianRandomField("se", 0.2), steps=1)
    for n in (16, 64):
        coords = grid_coords((n,)).expand(3, -1, -1)
        a = method.sample(net, coords, 1, generator=torch.Generator().manual_seed(5), steps=2)
        assert a.shape == (3, n, 1) and torch.isfinite(a).all()
        assert torch.equal(a, method.sample(net, coords, 1, generator=torch.Generator().manual_seed(5), steps=2))
        assert not torch.equal(a, method.sample(net, coords, 1, generator=torch.Generator().manual_seed(6), steps=2))
        one = method.sample(net, coords, 1, generator=torch.Generator().manual_seed(5))
        assert torch.allclose(method.project(net, coords, one), a)  # steps=2 is f applied to the steps=1 sample
    scattered = torch.rand(2, 37, 1, generator=gen)
    v = torch.randn(2, 37, 1, generator=gen)
    assert torch.equal(method.project(net, scattered, v, k=0), v)
    manual = v  # f applied three times by hand, at IGN's constant time input
    t = torch.full((2,), method.t_value)
    for _ in range(3):
        manual = net(scattered, manual, t)
    assert torch.allclose(method.project(net, scattered, v, k=3), manual, atol=1e-6)
    assert not torch.allclose(method.project(net, scattered, v, k=2), manual, atol=1e-3)
    with pytest.raises(ValueError, match="matching"):
        method.project(net, scattered, v[:, :5])
    with pytest.raises(ValueError, match="in_channels == out_channels"):
        method.project(PerceiverNet(1, 1, 2, width=8, num_latents=2, depth=0, heads=2, num_bands=1), scattered, v)


def test_data_points_become_fixed_points_after_training():
    torch.manual_seed(0)  # a fixed, tiny optimisation problem (seconds)
    dm = GRFDataModule(dim=1, resolution=16, num_train=3, num_val=1, batch_size=3)
    dm.setup("fit")
    coords, x = dm.train_set.coords.expand(3, -1, -1), dm.train_set.values
    # coordinate-only read-out queries: the data must be stored in the weights and latents, since without
    # the per-point skip path the identity (which also fixes the data) is out of easy reach
    net = PerceiverNet(1, 1, 1, width=32, num_latents=8, depth=1, heads=2, num_bands=4, query_values=False)
    ema = copy.deepcopy(net).requires_grad_(False)  # IGN's objective is oscillatory: judge averaged weights
    method = IdempotentGenerative(SpectralNoise(1, "fdp", modes=8), distance="l2", rec_weight=1.0, idem_weight=1.0,
                                  tight_weight=0.1, tight_scale="rec_x")  # the paper's L2 listing, 1 / 1 / 0.1
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.5, 0.999))  # the paper's betas

    def rel_err() -> float:
        with torch.no_grad():
            return float((ema(coords, x, torch.zeros(3)) - x).norm() / x.norm())

    before = rel_err()
    for step in range(400):
        method.on_train_step(step)
        loss, _ = method.loss(net, PointSet(coords, x))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            for e, p in zip(ema.parameters(), net.parameters()):
                e.lerp_(p, 0.05)
    after = rel_err()
    assert before > 0.9 and after < 0.1, (before, after)  # f = 0 at init (zero head); ~0.03 after training
    # and f is not the identity: source noise is moved (towards the data), not returned unchanged
    z = method.noise.sample(coords, 1, torch.Generator().manual_seed(1))
    with torch.no_grad():
        moved = float((ema(coords, z, torch.zeros(3)) - z).norm() / z.norm())
    assert moved > 0.5, moved


# ----------------------------------------------------------------- spectrum-matched noise
@pytest.mark.parametrize("shape", [(8,), (7,), (6, 5), (4, 4, 3)])
def test_matched_noise_basis_is_orthogonal_and_complete_on_the_grid(shape, gen):
    noise = SpectrumMatchedNoise(list(shape), channels=2)
    p = math.prod(shape)
    assert int(noise._observable.sum()) == p  # exactly prod(shape) real features are non-zero on the grid
    v = torch.randn(3, p, 2, generator=gen, dtype=torch.float64)
    coef = noise.coefficients(v)
    assert torch.allclose(torch.einsum("fpm,bfmc->bpc", noise._phi, coef), v, atol=1e-10)
    k = half_lattice(shape)
    assert k.shape[0] == len({tuple(r) for r in k.tolist()})  # no duplicate frequency


def test_matched_noise_reproduces_the_data_fft_statistics_on_the_grid(gen):
    shape, s = (8, 8), 3000
    grid = grid_coords(shape)
    mean_fn = torch.sin(2 * math.pi * grid[:, :1]) + grid[:, 1:] ** 2  # a non-stationary law
    amp = 0.3 + grid[:, :1]
    data = mean_fn + amp * GaussianRandomField("se", 0.15).sample(grid.expand(s, -1, -1), 1, gen)
    noise = SpectrumMatchedNoise(list(shape), fit_functions=s)
    for lo in range(0, s + 500, 700):  # uneven batches, and batches past fit_functions are ignored
        noise.observe(grid.expand(min(700, s + 500 - lo), -1, -1), torch.cat([data, data])[lo:lo + 700])
    assert noise.frozen and noise.count == s
    coef = noise.coefficients(data)
    assert torch.allclose(noise.coef_mean, coef.mean(0), atol=1e-10)
    assert torch.allclose(noise.coef_std, coef.std(0), atol=1e-10)
    z = noise.sample(grid.expand(s, -1, -1), 1, gen)
    fft = lambda v: torch.fft.fft2(v[..., 0].double().reshape(-1, *shape))  # noqa: E731
    fd, fz = fft(data), fft(z)
    var_d = (fd - fd.mean(0)).abs().square().sum(0) / (s - 1)  # per-frequency variance E|X - EX|^2
    var_z = (fz - fz.mean(0)).abs().square().sum(0) / (s - 1)
    se_mean = (var_d / s).sqrt()
    assert ((fz.mean(0) - fd.mean(0)).abs() <= 6 * se_mean + 1e-9).all()
    assert ((var_z / var_d - 1).abs() <= 6 * math.sqrt(2 / s)).all()


def test_matched_noise_is_one_function_at_any_resolution_and_rebuilds_from_its_config(gen):
    noise = SpectrumMatchedNoise([6, 6], fit_functions=64)
    grid = grid_coords((6, 6)).expand(64, -1, -1)
    noise.observe(grid, torch.randn(64, 36, 1, generator=gen) + grid[..., :1])
    a = torch.rand(2, 10, 2, generator=gen)
    both = torch.cat([a, torch.rand(2, 300, 2, generator=gen)], dim=1)
    za = noise.sample(a, 1, torch.Generator().manual_seed(3))
    zb = noise.sample(both, 1, torch.Generator().manual_seed(3))
    assert torch.allclose(za, zb[:, :10], atol=1e-5)  # values at a point never depend on the other points
    method = IdempotentGenerative(noise)
    rebuilt = build(method.config, Method)
    assert rebuilt.noise.count == 64
    assert torch.allclose(rebuilt.noise.sample(both, 1, torch.Generator().manual_seed(3)), zb, atol=1e-6)
    # the covariance method agrees with the empirical covariance of many draws
    pts = torch.rand(4, 2, generator=gen)
    draws = noise.sample(pts.expand(4000, -1, -1), 1, gen)[..., 0].double()
    cov = noise.covariance(pts.double(), pts.double())
    emp = torch.cov(draws.T)
    sd = cov.diagonal().sqrt()
    assert ((emp - cov).abs() <= 6 * torch.outer(sd, sd) * math.sqrt(2 / 4000)).all()
    mean = noise.mean_function(pts[None].double())[0, :, 0]
    assert torch.allclose(draws.mean(0), mean, atol=float(6 * sd.max() / math.sqrt(4000)))


def test_matched_noise_errors_are_clear():
    noise = SpectrumMatchedNoise([4, 4])
    with pytest.raises(RuntimeError, match="no data statistics"):
        noise.sample(torch.rand(1, 5, 2), 1)
    with pytest.raises(ValueError, match="cell-centre grid"):
        noise.observe(torch.rand(2, 16, 2), torch.randn(2, 16, 1))
    with pytest.raises(ValueError, match="recorded together"):
        SpectrumMatchedNoise([4, 4], mean=[[[0.0]]])


# ----------------------------------------------------------------- configs through GenerativeModule
def fit_config(config: Path, tmp_path, extra: list[str], run: str = "--trainer.fast_dev_run=2") -> GenerativeModule:
    args = ["--config", str(config), f"--trainer.default_root_dir={tmp_path}", "--trainer.logger=false",
            run, "--trainer.enable_progress_bar=false", "--trainer.callbacks=[]",
            "--model.net.init_args.width=8", "--model.net.init_args.latent_dim=8",
            "--model.val_num_samples=2", *extra]
    cli = make_cli(args, run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return cli.model


def test_grf1d_config_fits_and_samples_at_n_and_4n(tmp_path):
    module = fit_config(REPO / "configs/ign/grf1d.yaml", tmp_path,
                        ["--data.init_args.num_train=16", "--data.init_args.num_val=8",
                         "--data.init_args.batch_size=8"])
    assert isinstance(module.method, IdempotentGenerative) and module.method.tight_ramp() == 1.0  # no warm-up
    assert isinstance(module.net, GridAutoencoder)
    opt = module.optimizers().optimizer
    assert opt.param_groups[0]["betas"] == (0.5, 0.999)  # the paper's Adam betas, from the config
    gen = module.generator()
    for res in (64, 256):
        ps = gen.sample(3, res, seed=1)
        assert ps.values.shape == (3, res, 1) and torch.isfinite(ps.values).all()


def test_mnist_config_fits_with_spectrum_matched_noise(tmp_path, data_root):
    # training on random quarters of the points: the noise still sees the full grid batches (observe_batch)
    module = fit_config(REPO / "configs/ign/mnist.yaml", tmp_path,
                        ["--data.init_args.batch_size=4", "--data.init_args.num_train=16",
                         "--model.train_subsample=0.25"])
    noise = module.method.noise
    assert isinstance(noise, SpectrumMatchedNoise) and noise.count == 8  # two full training batches observed
    assert module.method.config["init_args"]["noise"]["init_args"]["count"] == 8  # recorded for checkpoints
    gen = module.generator()
    for res in (28, 56):
        ps = gen.sample(2, res, seed=0)
        assert ps.values.shape == (2, res * res, 1) and torch.isfinite(ps.values).all()


def test_a_collapse_stop_ends_training(tmp_path):
    module = fit_config(REPO / "configs/ign/grf1d.yaml", tmp_path,
                        ["--data.init_args.num_train=16", "--data.init_args.num_val=8", "--data.init_args.batch_size=8",
                         "--model.method.init_args.collapse_stop=true", "--model.method.init_args.collapse_patience=2",
                         "--model.method.init_args.collapse_diversity=1e9"],  # every step counts as collapsed
                        run="--trainer.max_steps=10")
    assert module.trainer.global_step == 2  # stopped by the monitor, not by max_steps


def _buffers(net: nn.Module) -> dict[str, Tensor]:
    return {k: v.clone() for k, v in net.named_buffers()}


def test_loss_updates_source_statistics_from_the_noise_pass_and_data_statistics_from_the_data_pass(gen):
    """f(z) updates only ``source``, f(x) only ``data``; the passes on f's own outputs update neither."""
    from funcgen.nets.norm import norm_stats

    net = GridAutoencoder(1, 1, 1, grid=8, width=4, levels=1, latent_dim=3, norm_sets=["source", "data"])
    method = IdempotentGenerative(GaussianRandomField("se", 0.2))
    coords = grid_coords((8,)).expand(4, -1, -1)
    x = 3.0 + 2.0 * torch.randn(4, 8, 1, generator=gen)  # a law far from the noise's
    ref = copy.deepcopy(net)
    z = method.noise.sample(coords, 1, torch.Generator().manual_seed(3))
    t = torch.zeros(4)
    with torch.no_grad():
        with norm_stats(ref, "data"):
            ref(coords, x, t)
        with norm_stats(ref, "source"):
            ref(coords, z, t)
    method.loss(net, PointSet(coords, x), torch.Generator().manual_seed(3))
    got, want = _buffers(net), _buffers(ref)
    assert got.keys() == want.keys()
    for k in got:
        torch.testing.assert_close(got[k], want[k], msg=k)
    assert not torch.allclose(net.head[0].running_mean_source, net.head[0].running_mean_data)


def test_sampling_applies_f_to_the_noise_with_source_statistics_and_later_with_the_data_statistics(gen):
    from funcgen.nets.norm import norm_stats

    net = GridAutoencoder(1, 1, 1, grid=8, width=4, levels=1, latent_dim=3, norm_sets=["source", "data"])
    with torch.no_grad():  # two different sets of running statistics
        for name, buf in net.named_buffers():
            if "running_mean_data" in name:
                buf.copy_(torch.randn(buf.shape, generator=gen))
    net.eval()
    method = IdempotentGenerative(GaussianRandomField("se", 0.2))
    coords = grid_coords((8,)).expand(3, -1, -1)
    z = method.noise.sample(coords, 1, torch.Generator().manual_seed(4))
    t = torch.zeros(3)
    with torch.no_grad(), norm_stats(net, "source"):
        f1 = net(coords, z, t)
    with torch.no_grad(), norm_stats(net, "data"):
        f2 = net(coords, f1, t)
        wrong = net(coords, z, t)
    torch.testing.assert_close(method.sample(net, coords, 1, generator=torch.Generator().manual_seed(4)), f1)
    torch.testing.assert_close(method.sample(net, coords, 1, generator=torch.Generator().manual_seed(4), steps=2), f2)
    torch.testing.assert_close(method.project(net, coords, f1), f2)
    assert not torch.allclose(f1, wrong, atol=1e-3)


def test_reconstruction_warmup_trains_l_rec_alone_then_all_terms(gen):
    net, batch, z, seed = linear_setup(gen)
    method = IdempotentGenerative(WhiteNoise(), rec_warmup_steps=10)
    rec_only = IdempotentGenerative(WhiteNoise(), idem_weight=0.0, tight_weight=0.0)
    full = IdempotentGenerative(WhiteNoise())
    method.on_train_step(9)
    gw, gb, ex = grads(net, method, batch, seed)
    rw, rb, _ = grads(net, rec_only, batch, seed)
    torch.testing.assert_close((gw, gb), (rw, rb))
    assert "idem" not in ex and float(ex["tight_weight"]) == 0.0
    method.on_train_step(10)
    gw, gb, ex = grads(net, method, batch, seed)
    fw, fb, _ = grads(net, full, batch, seed)
    torch.testing.assert_close((gw, gb), (fw, fb))
    assert not torch.allclose(gw, rw)
    assert not IdempotentGenerative(WhiteNoise(), rec_warmup_steps=10).rec_only()  # never told the step: no warm-up
    with pytest.raises(ValueError, match="rec_warmup_steps >= 0"):
        IdempotentGenerative(WhiteNoise(), rec_warmup_steps=-1)


def test_data_statistics_mode_makes_f_one_function_of_its_input(gen):
    """``stats="data"``: only f(x) normalises by its batch (updating ``data``); f(z) and the passes on f's own
    outputs use the data's running statistics in training, exactly as sampling does."""
    from funcgen.nets.norm import norm_stats

    net = GridAutoencoder(1, 1, 1, grid=8, width=4, levels=1, latent_dim=3, norm_sets=["source", "data"])
    method = IdempotentGenerative(GaussianRandomField("se", 0.2), stats="data")
    coords = grid_coords((8,)).expand(4, -1, -1)
    x = 3.0 + 2.0 * torch.randn(4, 8, 1, generator=gen)
    ref = copy.deepcopy(net)
    t = torch.zeros(4)
    with torch.no_grad(), norm_stats(ref, "data"):
        ref(coords, x, t)
    loss, ex = method.loss(net, PointSet(coords, x), torch.Generator().manual_seed(3))
    got, want = _buffers(net), _buffers(ref)
    for k in got:
        torch.testing.assert_close(got[k], want[k], msg=k)
    assert torch.equal(net.head[0].running_mean_source, torch.zeros(4))  # the noise never touched it
    # f(z) in training equals the eval-mode network with the data statistics (after the update above)
    z = method.noise.sample(coords, 1, torch.Generator().manual_seed(3))
    with torch.no_grad(), norm_stats(ref, "data", update=False, running=True):
        fz_train = ref(coords, z, t)
    ref.eval()
    with torch.no_grad(), norm_stats(ref, "data"):
        fz_eval = ref(coords, z, t)
        f2 = ref(coords, fz_eval, t)
    torch.testing.assert_close(fz_train, fz_eval)
    torch.testing.assert_close(method.sample(ref, coords, 1, generator=torch.Generator().manual_seed(3), steps=2), f2)
    with pytest.raises(ValueError, match="unknown stats"):
        IdempotentGenerative(WhiteNoise(), stats="batch")
