"""Functional flow matching: the conditional path in closed form, the loss, the exact flow of Gaussian data,
argument checks, and sampling at any resolution."""

from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from funcgen.methods import FunctionalFlowMatching
from funcgen.methods.base import stratified_times
from funcgen.pointset import PointSet, grid_coords
from funcgen.processes.noise import FunctionNoise, GaussianRandomField, SpectralNoise

REPO = Path(__file__).resolve().parents[2]


def rel_err(a: Tensor, b: Tensor) -> float:
    return float((a - b).norm() / b.norm())


class Recorder(nn.Module):
    """A stand-in network: a fixed nonlinear function of the state and time, recording its inputs."""

    def forward(self, coords: Tensor, values: Tensor, t: Tensor, mask: Tensor | None = None) -> Tensor:
        self.seen = (values, t)
        return torch.sin(3 * values) + t[:, None, None] * coords.sum(-1, keepdim=True)


def test_path_and_velocity_match_the_closed_form(gen):
    """x_t = t x1 + (1 - (1 - s) t) x0 with x_0 = source, x_1 = data + s source; u_t = x1 - (1 - s) x0 is
    d x_t / dt (central difference of the path); and the loss feeds the net that x_t for the source
    drawn from the generator after the training times."""
    s = 0.1
    noise = SpectralNoise(1, "fdp", modes=16)
    ffm = FunctionalFlowMatching(noise, sigma_min=s)
    coords = torch.rand(5, 30, 1, generator=gen, dtype=torch.float64)
    x1 = torch.randn(5, 30, 2, generator=gen, dtype=torch.float64)
    x0 = noise.sample(coords, 2, gen)
    xt0, u = ffm.path(x0, x1, torch.zeros(5, dtype=torch.float64))
    assert torch.equal(xt0, x0)
    assert torch.allclose(ffm.path(x0, x1, torch.ones(5, dtype=torch.float64))[0], x1 + s * x0, atol=1e-14)
    assert torch.allclose(u, x1 - (1 - s) * x0, atol=1e-14)
    t = torch.rand(5, generator=gen, dtype=torch.float64)
    h = 1e-4
    dxdt = (ffm.path(x0, x1, t + h)[0] - ffm.path(x0, x1, t - h)[0]) / (2 * h)
    assert torch.allclose(ffm.path(x0, x1, t)[1], dxdt, atol=1e-9)

    seed = int(torch.randint(0, 2**31, (), generator=gen))
    net = Recorder()
    ffm.loss(net, PointSet(coords, x1), torch.Generator().manual_seed(seed))
    g = torch.Generator().manual_seed(seed)
    t = stratified_times(5, g)
    x0 = noise.sample(coords, 2, g)
    assert torch.equal(net.seen[1], t)
    assert torch.allclose(net.seen[0], t[:, None, None] * x1 + (1 - (1 - s) * t[:, None, None]) * x0, atol=1e-14)


@pytest.mark.parametrize("time_sampling", ["stratified", "uniform"])
def test_loss_is_the_masked_mse_of_the_conditional_velocity(time_sampling, gen):
    """loss = mean over functions of the mean over PRESENT points and channels of (v - u_t)^2."""
    s = 0.05
    noise = SpectralNoise(1, "fdp", modes=16)
    ffm = FunctionalFlowMatching(noise, sigma_min=s, time_sampling=time_sampling)
    b, n, c = 4, 25, 2
    coords = torch.rand(b, n, 1, generator=gen, dtype=torch.float64)
    x1 = torch.randn(b, n, c, generator=gen, dtype=torch.float64)
    mask = torch.arange(n)[None, :] < torch.tensor([25, 7, 18, 1])[:, None]
    seed = int(torch.randint(0, 2**31, (), generator=gen))
    net = Recorder()
    loss, logs = ffm.loss(net, PointSet(coords, x1, mask), torch.Generator().manual_seed(seed))
    t = net.seen[1]
    assert t.shape == (b,) and ((0 <= t) & (t < 1)).all()
    if time_sampling == "stratified":  # one offset, the strata i / B
        frac = torch.sort((t * b) % 1.0).values
        assert torch.allclose(frac, frac[:1].expand(b), atol=1e-12)
    g = torch.Generator().manual_seed(seed)
    if time_sampling == "stratified":
        t_hand = stratified_times(b, g)
    else:
        t_hand = torch.rand(b, generator=g, dtype=torch.float64)
    x0 = noise.sample(coords, c, g)
    assert torch.equal(t, t_hand)
    expected = 0.0
    for i in range(b):
        ti = float(t_hand[i])
        xt = ti * x1[i] + (1 - (1 - s) * ti) * x0[i]
        v = torch.sin(3 * xt) + ti * coords[i]
        u = x1[i] - (1 - s) * x0[i]
        sq = (v - u)[mask[i]] ** 2
        expected += float(sq.sum()) / sq.numel() / b
    assert abs(float(loss) - expected) < 1e-12 * expected
    assert logs == {}


class ExactVelocity(nn.Module):
    """The marginal velocity E[u_t | x_t] = Cov(u_t, x_t) Sigma_t^-1 x_t for x1 ~ N(0, K1) independent of
    x0 ~ N(0, K0) on one shared point set, with x_t = a x1 + b x0, u_t = a' x1 + b' x0 and the scalars
    a, b, a', b' read off the method's own path (it is linear in x0 and x1):
    Cov(u_t, x_t) = a' a K1 + b' b K0, Sigma_t = a^2 K1 + b^2 K0 (the minimiser of the method's loss)."""

    def __init__(self, method: FunctionalFlowMatching, k1: Tensor, k0: Tensor) -> None:
        super().__init__()
        self.method, self.k1, self.k0 = method, k1, k0

    def forward(self, coords: Tensor, values: Tensor, t: Tensor) -> Tensor:
        one, zero = torch.ones(len(t), 1, 1, dtype=torch.float64), torch.zeros(len(t), 1, 1, dtype=torch.float64)
        a, da = self.method.path(zero, one, t.double())  # [B, 1, 1]
        b, db = self.method.path(one, zero, t.double())
        sigma = a**2 * self.k1 + b**2 * self.k0
        cross = da * a * self.k1 + db * b * self.k0
        return (cross @ torch.linalg.solve(sigma, values.double())).to(values.dtype)


class Columns(FunctionNoise):
    """A deterministic stand-in for the source: function j is column j of a factor L (L L^T = K0), so
    the sum of y_j y_j^T over the outputs of a linear flow y = M x is exactly M K0 M^T."""

    chol: Tensor  # set after construction (a tensor is no constructor argument a config can record)

    def sample(self, coords: Tensor, channels: int = 1, generator: torch.Generator | None = None) -> Tensor:
        return self.chol.T[:, :, None].to(coords.dtype)

    def covariance(self, x: Tensor, y: Tensor) -> Tensor:
        return self.chol @ self.chol.T


def gaussian_case(gen: torch.Generator, n: int = 8) -> tuple[Tensor, Tensor, Tensor, SpectralNoise]:
    coords = torch.sort(torch.rand(n, 1, generator=gen, dtype=torch.float64), dim=0).values
    source = SpectralNoise(1, "fdp", modes=16)
    k1 = GaussianRandomField("se", 0.3).covariance(coords, coords).double()
    return coords, k1, source.covariance(coords, coords).double(), source


@pytest.mark.parametrize("solver", ["heun", "midpoint", "euler"])
def test_exact_velocity_transports_source_to_data_plus_sigma_min_source(solver, gen):
    """Gaussian data: the method's sampler with the exact marginal velocity of its own path returns
    N(0, K1 + sigma_min^2 K0). Monte Carlo: the empirical covariance of S samples, within 3 times its
    standard error sqrt((|C|_F^2 + tr(C)^2) / S); transport of the exact covariance: M K0 M^T through
    the flow, within the solver's discretisation error."""
    s = 0.1
    coords, k1, k0, source = gaussian_case(gen)
    target = k1 + s**2 * k0
    steps = {"heun": 40, "midpoint": 40, "euler": 400}[solver]
    ffm = FunctionalFlowMatching(source, sigma_min=s, steps=steps, solver=solver)
    net = ExactVelocity(ffm, k1, k0)
    S = 4000
    x = ffm.sample(net, coords.expand(S, -1, -1), 1, generator=gen)
    tol = 3 * float(((target.norm() ** 2 + target.trace() ** 2) / S).sqrt() / target.norm())
    assert rel_err(torch.cov(x[..., 0].T), target) < tol
    chol = torch.linalg.cholesky(k0 + 1e-12 * torch.eye(len(k0), dtype=torch.float64))
    columns = Columns()
    columns.chol = chol
    exact = FunctionalFlowMatching(columns, sigma_min=s, steps=steps, solver=solver)
    y = exact.sample(ExactVelocity(exact, k1, k0), coords.expand(len(k0), -1, -1), 1)[..., 0]
    assert rel_err(y.T @ y, target) < {"heun": 2e-3, "midpoint": 2e-5, "euler": 2e-2}[solver]


class ExactData(nn.Module):
    """The denoiser E[x1 | x_t] = a K1 Sigma_t^-1 x_t of the same Gaussian case (the minimiser of the loss with
    ``prediction="data"``), with a, b read off the method's path as in :class:`ExactVelocity`."""

    def __init__(self, method: FunctionalFlowMatching, k1: Tensor, k0: Tensor) -> None:
        super().__init__()
        self.method, self.k1, self.k0 = method, k1, k0

    def forward(self, coords: Tensor, values: Tensor, t: Tensor) -> Tensor:
        one, zero = torch.ones(len(t), 1, 1, dtype=torch.float64), torch.zeros(len(t), 1, 1, dtype=torch.float64)
        a = self.method.path(zero, one, t.double())[0]
        b = self.method.path(one, zero, t.double())[0]
        sigma = a**2 * self.k1 + b**2 * self.k0
        return (a * self.k1 @ torch.linalg.solve(sigma, values.double())).to(values.dtype)


@pytest.mark.parametrize("solver", ["midpoint", "euler", "ddim"])
def test_data_prediction_integrates_the_exact_flow(solver, gen):
    """Gaussian data: a data-predicting method with the exact denoiser draws, from the same seed, the samples of
    the velocity-predicting method with the exact marginal velocity (an independent formula, Cov(u_t, x_t)
    Sigma_t^-1 x_t): its velocity (D - (1 - s) x) / b(t) and its denoiser are the exact ones. Dropping the
    (1 - s) factor, or rebuilding the denoiser from a data output as if it were a velocity, fails it."""
    s = 0.1
    coords, k1, k0, source = gaussian_case(gen)
    velocity = FunctionalFlowMatching(source, sigma_min=s, steps=12, solver=solver)
    data = FunctionalFlowMatching(source, sigma_min=s, steps=12, solver=solver, prediction="data")
    seed = int(torch.randint(0, 2**31, (), generator=gen))
    pts = coords.expand(64, -1, -1)
    xv = velocity.sample(ExactVelocity(velocity, k1, k0), pts, 1, generator=torch.Generator().manual_seed(seed))
    xd = data.sample(ExactData(data, k1, k0), pts, 1, generator=torch.Generator().manual_seed(seed))
    assert xd.dtype == torch.float64 and xv.std() > 0.1
    assert torch.allclose(xd, xv, atol=1e-9)


def test_data_prediction_loss_is_the_min_snr_weighted_mse_of_the_data(gen):
    """prediction="data": loss = mean over functions of min(SNR + offset, gamma) / gamma, SNR = t^2 / (1 - (1 - s) t)^2,
    times the mean over PRESENT points and channels of (D - x1)^2; without snr_gamma the weight is 1."""
    s, gamma = 0.05, 2.0
    noise = SpectralNoise(1, "fdp", modes=16)
    b, n, c = 6, 25, 2
    coords = torch.rand(b, n, 1, generator=gen, dtype=torch.float64)
    x1 = torch.randn(b, n, c, generator=gen, dtype=torch.float64)
    mask = torch.arange(n)[None, :] < torch.tensor([25, 7, 18, 1, 25, 3])[:, None]
    seed = int(torch.randint(0, 2**31, (), generator=gen))
    for snr_gamma, offset in ((gamma, 0.0), (gamma, 1.0), (None, 0.0)):
        ffm = FunctionalFlowMatching(noise, sigma_min=s, solver="ddim", prediction="data", snr_gamma=snr_gamma,
                                     snr_offset=offset)
        loss, _ = ffm.loss(Recorder(), PointSet(coords, x1, mask), torch.Generator().manual_seed(seed))
        g = torch.Generator().manual_seed(seed)
        t = stratified_times(b, g)
        x0 = noise.sample(coords, c, g)
        expected, weights = 0.0, []
        for i in range(b):
            ti = float(t[i])
            xt = ti * x1[i] + (1 - (1 - s) * ti) * x0[i]
            out = torch.sin(3 * xt) + ti * coords[i]
            sq = (out - x1[i])[mask[i]] ** 2
            w = 1.0 if snr_gamma is None else min((ti / (1 - (1 - s) * ti)) ** 2 + offset, gamma) / gamma
            weights.append(w)
            expected += w * float(sq.sum()) / sq.numel() / b
        assert abs(float(loss) - expected) < 1e-12 * expected
        if snr_gamma is not None:
            assert min(weights) < 1.0 and max(weights) == 1.0  # both sides of the cap are exercised


def test_invalid_arguments():
    noise = SpectralNoise(1)
    for kwargs, match in [({"sigma_min": -0.1}, "sigma_min"), ({"sigma_min": 1.0}, "sigma_min"),
                          ({"steps": 0}, "steps"), ({"solver": "rk4"}, "solver"),
                          ({"time_sampling": "sobol"}, "time_sampling"), ({"prediction": "eps"}, "prediction"),
                          ({"prediction": "data"}, "heun"), ({"snr_gamma": 5.0}, "snr_gamma"),
                          ({"prediction": "data", "solver": "ddim", "snr_gamma": 0.0}, "snr_gamma"),
                          ({"prediction": "data", "solver": "ddim", "snr_offset": 1.0}, "snr_offset"),
                          ({"prediction": "data", "solver": "ddim", "snr_gamma": 5.0, "snr_offset": -1.0},
                           "snr_offset")]:
        with pytest.raises(ValueError, match=match):
            FunctionalFlowMatching(noise, **kwargs)
    with pytest.raises(TypeError, match="FunctionNoise"):
        FunctionalFlowMatching("SpectralNoise")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="steps"):
        FunctionalFlowMatching(noise).sample(Recorder(), torch.rand(1, 4, 1), 1, steps=0)


class Pointwise(nn.Module):
    """A stand-in network whose output at a point depends only on that point's state, time and position."""

    def forward(self, coords: Tensor, values: Tensor, t: Tensor) -> Tensor:
        return torch.tanh(values) * torch.cos(3 * coords) - t[:, None, None] * values


@pytest.mark.parametrize("solver", ["heun", "midpoint", "euler"])
def test_sampling_is_resolution_free(solver, gen):
    """The source is one random function whatever the points (SpectralNoise draws the same Fourier
    coefficients from the same seed), so with a pointwise net a 256-point sample restricted to 64 of its
    points equals the 64-point sample: nothing in the method depends on N."""
    ffm = FunctionalFlowMatching(SpectralNoise(1, "fdp", modes=32, period=2.0), steps=6, solver=solver)
    coarse = grid_coords((64,)).expand(3, -1, -1)
    fine = torch.cat([coarse, torch.rand(3, 192, 1, generator=gen)], dim=1)
    seed = int(torch.randint(0, 2**31, (), generator=gen))
    x64 = ffm.sample(Pointwise(), coarse, 1, generator=torch.Generator().manual_seed(seed))
    x256 = ffm.sample(Pointwise(), fine, 1, generator=torch.Generator().manual_seed(seed))
    assert x64.shape == (3, 64, 1) and x256.shape == (3, 256, 1) and torch.isfinite(x256).all()
    assert torch.allclose(x256[:, :64], x64, atol=1e-5)
    assert ffm.nfe() == (6 if solver == "euler" else 12)


@pytest.mark.parametrize("name", ["grf1d", "mnist"])
def test_configs_instantiate_train_and_sample_at_two_resolutions(name, tmp_path, monkeypatch):
    from funcgen.train.fit import prepare

    monkeypatch.setenv("FUNCGEN_DATA", str(tmp_path))  # building the run must not need the data
    run = prepare([REPO / "configs" / "base" / "trainer.yaml", REPO / "configs" / "ffm" / f"{name}.yaml"],
                  settings={"trainer.logger": False, "trainer.default_root_dir": str(tmp_path)})
    method, net = run.module.method, run.module.net
    assert isinstance(method, FunctionalFlowMatching)
    assert method.config["init_args"]["noise"]["class_path"].endswith("SpectralNoise")
    dim = net.dim
    side = {1: (64, 256), 2: (8, 16)}[dim]  # 2D: 8x8 and 16x16 grids
    ps = PointSet(grid_coords((side[0],) * dim).expand(2, -1, -1), torch.randn(2, side[0] ** dim, 1))
    loss, _ = method.loss(net, ps)
    loss.backward()
    assert torch.isfinite(loss) and any(p.grad is not None for p in net.parameters())
    for n in side:
        x = method.sample(net, grid_coords((n,) * dim).expand(2, -1, -1), 1, steps=2)
        assert x.shape == (2, n**dim, 1) and torch.isfinite(x).all()
