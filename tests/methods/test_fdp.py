"""Functional diffusion: forward marginals in closed form, and the sampler with an exact denoiser."""

import math

import pytest
import torch
from torch import nn

from funcgen.methods import FunctionalDiffusion
from funcgen.methods.base import stratified_times
from funcgen.pointset import PointSet, grid_coords
from funcgen.processes.noise import GaussianRandomField, SpectralNoise
from funcgen.samplers import euler_maruyama

S = 4000


def rel_err(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_forward_sde_marginal_matches_closed_form(schedule, gen):
    """Euler-Maruyama on dX = -1/2 beta X dt + sqrt(beta) C^1/2 dW reaches N(alpha x0, sigma^2 C)."""
    noise = SpectralNoise(1, "fdp", modes=16)
    fdp = FunctionalDiffusion(noise, schedule=schedule)
    coords = grid_coords((24,)).expand(S, -1, -1)
    x0 = torch.sin(2 * torch.pi * coords) + 0.5
    t_end = float(torch.empty(()).uniform_(0.3, 0.8, generator=gen))
    ts = torch.linspace(0.0, t_end, 200)
    beta = fdp.schedule.beta
    x = euler_maruyama(x0.clone(), ts, drift=lambda x, t: -0.5 * beta(t) * x,
                       diffusion=lambda t: beta(t).sqrt(), increment=lambda: noise.sample(coords, 1, gen))
    t = torch.full((S,), t_end)
    a, s = fdp.marginal(t)
    exact = s[0, 0, 0].double() ** 2 * noise.covariance(coords[0], coords[0]).double()
    se = exact.diagonal().sqrt().float()[:, None] / S**0.5  # standard error of each point's mean
    assert ((x.mean(0) - a[0] * x0[0]).abs() < 5 * se + 1e-3).all()  # + a small Euler bias allowance
    assert rel_err(torch.cov(x[..., 0].T.double()), exact) < 0.1
    # perturb() draws from the same closed form
    xt, _ = fdp.perturb(x0, coords, t, gen)
    assert ((xt.mean(0) - a[0] * x0[0]).abs() < 5 * se).all()
    assert rel_err(torch.cov(xt[..., 0].T.double()), exact) < 0.1


class ExactDenoiser(nn.Module):
    """E[x0 | x_t] for Gaussian data x0 ~ GP(0, K) and noise GP(0, C), in the method's parametrisation."""

    def __init__(self, method: FunctionalDiffusion, data: GaussianRandomField):
        super().__init__()
        self.method, self.data = method, data
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, coords, values, t):
        c = coords[0].double()
        k = self.data.covariance(c, c).double()
        cn = self.method.noise.covariance(c, c).double()
        if bool((t == t[0]).all()):  # the sampler's batches share one time: one gain for all
            t = t[:1]
        a, s = (v.double() for v in self.method.marginal(t))  # [B, 1, 1]: one time per function
        eye = torch.eye(len(c), dtype=torch.float64)
        gain = a * k @ torch.linalg.inv(a**2 * k + s**2 * cn + 1e-9 * eye)  # [B, N, N]
        x0 = gain @ values.double()
        xt = values.double()
        out = {"x0": x0, "eps": (xt - a * x0) / s, "v": (a * xt - x0) / s}[self.method.prediction]
        return out.to(values.dtype)


class ScriptedNoise:
    """Stand-in for a sampler's noise that makes its output covariance exact (no Monte Carlo).

    Draw number j (0: the prior, then one per stochastic step) is ``L e_i`` for batch element ``j N + i`` and 0
    for every other element, ``L`` ``[N, N]`` a factor of the covariance ``L L^T`` of ``base``'s draws at the
    ``N`` query points. With a linear denoiser the sampler is linear in its draws, so output ``j N + i`` is its
    response to one direction of draw j, and ``sum_b x_b x_b^T`` is the exact covariance of the sampler's output.
    Noise the sampler drew by other means than ``noise.sample`` would be missed (the Monte Carlo check with the
    real noise catches it)."""

    def __init__(self, base, factor: torch.Tensor):
        self.base, self.chol, self.calls = base, factor.double(), 0

    def covariance(self, x, y):
        return self.base.covariance(x, y)

    def sample(self, coords, channels, generator=None):
        b, n = coords.shape[:2]
        out = torch.zeros(b, n, channels, dtype=coords.dtype)
        j, self.calls = self.calls, self.calls + 1
        assert (j + 1) * n <= b, "more draws than the batch was sized for"
        out[j * n:(j + 1) * n, :, 0] = self.chol.T.to(coords.dtype)  # row i: L e_i
        return out


def exact_sampler_covariance(method, net_for, points: torch.Tensor, factor: torch.Tensor, draws: int) -> torch.Tensor:
    """The exact covariance ``[N, N]`` of ``method.sample`` at ``points`` ``[N, d]`` (float64), for a linear
    ``net_for(method)``, noise draws of covariance ``factor factor^T`` and at most ``draws`` of them per sample,
    by :class:`ScriptedNoise`."""
    real = method.noise
    method.noise = ScriptedNoise(real, factor)
    try:
        coords = points[None].expand(draws * len(points), -1, -1)
        x = method.sample(net_for(method), coords, 1)[..., 0]
    finally:
        method.noise = real
    return x.T @ x


def covariance_z(x: torch.Tensor, cov: torch.Tensor) -> tuple[float, float]:
    """Largest |sample covariance - cov| and |sample mean| of centred Gaussian draws ``x`` ``[S, N, 1]``, in
    standard errors (entrywise: ``sqrt((cov_ij^2 + cov_ii cov_jj) / S)``)."""
    v, s = x[..., 0].double(), x.shape[0]
    emp = v.T @ v / s
    se = ((cov**2 + torch.outer(cov.diagonal(), cov.diagonal())) / s).sqrt()
    mean_se = (cov.diagonal() / s).sqrt()
    return float(((emp - cov).abs() / se).max()), float((v.mean(0).abs() / mean_se).max())


@pytest.mark.parametrize("prediction,eta", [("v", 0.0), ("eps", 1.0), ("x0", 0.5)])
def test_sampler_with_exact_denoiser_reaches_data_law(prediction, eta, gen):
    """Gaussian data: with the exact denoiser the sampler must return GP(0, K) at the query points.

    The exact covariance of the 200-step sampler (:class:`ScriptedNoise`) is compared with K: measured over 30
    random sets of 12 points, relative Frobenius error <= 0.024 and trace ratio 0.975..0.987 (first-order
    discretisation: -2.5% for eps / eta = 1); allowed 0.04 and 0.96..1.03. An 8% covariance bias (outputs
    scaled by sqrt(1.08) or 1 / sqrt(1.08)) gives ratios >= 1.053 or <= 0.914. Then 3000 draws with the real
    noise have that covariance and mean 0 within 5 standard errors per entry."""
    data = GaussianRandomField("se", 0.2)
    fdp = FunctionalDiffusion(SpectralNoise(1, "fdp", modes=16), prediction=prediction, eta=eta, steps=200)
    points = torch.rand(12, 1, generator=gen, dtype=torch.float64)  # scattered query points
    k = data.covariance(points, points).double()
    factor = torch.linalg.cholesky(fdp.noise.covariance(points, points).double())
    cov = exact_sampler_covariance(fdp, lambda m: ExactDenoiser(m, data), points, factor, draws=200)
    assert rel_err(cov, k) < 0.04, rel_err(cov, k)
    ratio = float(torch.trace(cov) / torch.trace(k))
    assert 0.96 < ratio < 1.03, ratio
    x = fdp.sample(ExactDenoiser(fdp, data), points[None].float().expand(3000, -1, -1), 1, generator=gen)
    assert torch.isfinite(x).all()
    cov_z, mean_z = covariance_z(x, cov)
    assert cov_z < 5.0 and mean_z < 5.0, (cov_z, mean_z)


class Identity(nn.Module):
    """A pointwise 'network': its prediction at a point does not depend on the other points."""

    def forward(self, coords, values, t):
        return values


def test_loss_is_a_resolution_free_l2_estimate(gen):
    """For a pointwise prediction the loss estimates an L2 norm over the domain: the same at N and 4N."""
    data = GaussianRandomField("se", 0.2)
    fdp = FunctionalDiffusion(SpectralNoise(1, "fdp", modes=16), prediction="x0")

    def mean_loss(n, model):
        c = grid_coords((n,)).expand(1024, -1, -1)
        ps = PointSet(c, data.sample(c, 1, gen))
        return sum(float(fdp.loss(model, ps, gen)[0]) for _ in range(4)) / 4

    l16, l64 = mean_loss(16, Identity()), mean_loss(64, Identity())
    assert abs(l16 - l64) / l64 < 0.05
    # and the exact posterior mean does much better than the pointwise guess
    assert mean_loss(16, ExactDenoiser(fdp, data)) < 0.8 * l16


def test_invalid_options():
    with pytest.raises(ValueError, match="prediction"):
        FunctionalDiffusion(SpectralNoise(1), prediction="score")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="schedule"):
        FunctionalDiffusion(SpectralNoise(1), schedule="quadratic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="steps"):
        FunctionalDiffusion(SpectralNoise(1), steps=0)
    with pytest.raises(ValueError, match="solver"):
        FunctionalDiffusion(SpectralNoise(1), solver="euler")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="eta=0"):
        FunctionalDiffusion(SpectralNoise(1), solver="dpm2m", eta=1.0)


def test_dpm2m_is_a_second_order_solver_of_the_ddim_ode(gen):
    """With the exact Gaussian denoiser both solvers integrate the same probability-flow ODE from the same
    noise: halving the step size cuts DDIM's error to the converged endpoint by about 2 and DPM-Solver++(2M)'s
    by about 4 (3.2 at 20 -> 40 steps), and 2M is far closer at equal cost. The data field has the noise's
    spectrum times 3, so every Fourier mode is a smooth scalar problem; smooth data such as an SE field make
    the ODE stiff near t = 0 and both solvers look first order at these step counts."""
    data = SpectralNoise(1, "fdp", modes=16, variance=3.0)
    coords = torch.rand(1, 12, 1, generator=gen).expand(64, -1, -1).double()
    seed = int(torch.randint(0, 2**31, (1,), generator=gen))

    def run(solver: str, steps: int) -> torch.Tensor:
        fdp = FunctionalDiffusion(SpectralNoise(1, "fdp", modes=16), prediction="v", solver=solver)
        return fdp.sample(ExactDenoiser(fdp, data), coords, 1, steps=steps,
                          generator=torch.Generator().manual_seed(seed))

    ref = run("dpm2m", 2000)
    assert rel_err(run("ddim", 2000), ref) < 2e-3  # the same ODE
    e_ddim = [rel_err(run("ddim", n), ref) for n in (20, 40)]
    e_2m = [rel_err(run("dpm2m", n), ref) for n in (20, 40)]
    assert 1.7 < e_ddim[0] / e_ddim[1] < 2.3
    assert e_2m[0] / e_2m[1] > 2.8
    assert e_2m[1] < e_ddim[1] / 5


def test_x0_loss_space_is_sigma2_weighted_v_loss(gen):
    """With prediction='v', the x0-space loss equals sigma(t)^2 times the v-loss, function by function."""
    noise = SpectralNoise(1, "fdp", modes=8)
    coords = torch.rand(6, 20, 1, generator=gen)
    ps = PointSet(coords, torch.randn(6, 20, 1, generator=gen))

    class Random(nn.Module):
        def forward(self, coords, values, t):
            return torch.sin(3 * values + t[:, None, None])

    seed = int(torch.randint(0, 10**6, (), generator=gen))
    lx = FunctionalDiffusion(noise, prediction="v", loss_space="x0")
    lt = FunctionalDiffusion(noise, prediction="v", loss_space="target")
    # recompute both by hand from the same draws
    g1 = torch.Generator().manual_seed(seed)
    loss_x0, _ = lx.loss(Random(), ps, g1)
    g2 = torch.Generator().manual_seed(seed)
    t = stratified_times(6, g2).float()
    t = lt.t_min + (1 - lt.t_min) * t
    x_t, xi = lt.perturb(ps.values, coords, t, g2)
    a, s = lt.marginal(t)
    v = a * xi - s * ps.values
    per_fn = ((Random()(coords, x_t, t) - v) ** 2).mean(dim=(1, 2))
    assert torch.allclose(loss_x0, (s.flatten() ** 2 * per_fn).mean(), rtol=1e-5)


def test_stratified_times_fill_every_stratum(gen):
    """One time per stratum [i/B, (i+1)/B) after sorting, all sharing one offset, in random order."""
    b = int(torch.randint(2, 40, (), generator=gen))
    t = stratified_times(b, gen)
    assert t.shape == (b,) and t.dtype == torch.float64 and ((t >= 0) & (t < 1)).all()
    offsets = (t * b) % 1.0  # frac(u * B): the same for every time
    torch.testing.assert_close(offsets, offsets[:1].expand(b), rtol=0, atol=1e-9)
    assert torch.equal(torch.sort((t * b).floor()).values, torch.arange(b, dtype=torch.float64))


@pytest.mark.parametrize("offset", [0.0, 1.0])
def test_min_snr_weighting_integrates_to_its_closed_form(gen, offset):
    """Min-SNR-gamma: a net predicting x0 = 0 on constant data x0 = 1 has per-function x0 error 1, so the loss
    is the batch mean of the weight min(SNR(t) + offset, gamma) / gamma. Over 4096 stratified times it equals the
    time integral of that weight, computed here independently from the cosine schedule's closed form
    alpha^2 = cos^2(pi/2 u) / cos^2(pi/2 u(0)), u = (0.9946 t + s) / (1 + s), s = 0.008 (Nichol & Dhariwal),
    sigma^2 = 1 - alpha^2; the eps-space form min(1, gamma / SNR), the weight left out, or the other offset miss
    it by far more than the tolerance."""
    gamma, b = 5.0, 4096
    fdp = FunctionalDiffusion(SpectralNoise(1, "fdp", modes=8), prediction="x0", snr_gamma=gamma, snr_offset=offset)
    ps = PointSet(torch.rand(b, 3, 1, generator=gen, dtype=torch.float64), torch.ones(b, 3, 1, dtype=torch.float64))

    class Zero(nn.Module):
        def forward(self, coords, values, t):
            return torch.zeros_like(values)

    loss = float(fdp.loss(Zero(), ps, gen)[0])
    t = torch.linspace(fdp.t_min, 1.0, 200001, dtype=torch.float64)
    a2 = (torch.cos(torch.pi / 2 * (0.9946 * t + 0.008) / 1.008) / math.cos(math.pi / 2 * 0.008 / 1.008)) ** 2
    snr = a2 / (1 - a2)

    def integral(w: torch.Tensor) -> float:
        return float(torch.trapezoid(w, t) / (1 - fdp.t_min))

    want = integral((snr + offset).clamp(max=gamma) / gamma)
    assert abs(loss - want) < 5e-4, (loss, want)  # measured: about 1e-4
    others = [integral((gamma / snr).clamp(max=1.0)), 1.0, integral((snr + 1.0 - offset).clamp(max=gamma) / gamma)]
    assert all(abs(o - want) > 0.05 for o in others), (others, want)
    with pytest.raises(ValueError, match="snr_gamma"):
        FunctionalDiffusion(SpectralNoise(1), snr_gamma=5.0, loss_space="target")
    for bad in ({"snr_offset": 1.0}, {"snr_offset": -1.0, "snr_gamma": 5.0}):
        with pytest.raises(ValueError, match="snr_offset"):
            FunctionalDiffusion(SpectralNoise(1), **bad)
