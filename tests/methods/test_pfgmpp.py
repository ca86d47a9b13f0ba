"""PFGM++: the Student-t process perturbation, EDM equivalence at D = inf, the sigma-ODE sampler."""

import math

import lightning as L
import pytest
import torch
from scipy import stats

import funcgen
from funcgen.data import GRFDataModule
from funcgen.methods import PFGMPP
from funcgen.nets import PerceiverNet
from funcgen.pointset import PointSet
from funcgen.processes.noise import (
    GaussianRandomField,
    StudentTProcess,
    WhiteNoise,
    kernel_matrix,
    sample_chi2_over_dof,
)
from funcgen.processes.schedules import karras_sigmas
from funcgen.samplers import sigma_ode
from funcgen.train.module import GenerativeModule

# KS critical value at significance 1e-4 is about 2.2 / sqrt(n): a correct sampler fails 1 run in 10^4
KS_C = 2.2


def _block_se(x: torch.Tensor, stat, blocks: int = 20) -> tuple[float, float]:
    """A statistic of ``x`` and its standard error from ``blocks`` independent blocks."""
    vals = torch.stack([stat(b) for b in x.chunk(blocks)])
    return float(stat(x)), float(vals.std() / math.sqrt(blocks))


@pytest.mark.parametrize("dof", [0.7, 3.0, 8.0, 200.0])
def test_chi2_over_dof_matches_its_law(dof, gen):
    n = 20000
    w = sample_chi2_over_dof(n, dof, gen, dtype=torch.float64)
    assert w.shape == (n,) and (w > 0).all()
    ks = stats.kstest(w.numpy() * dof, stats.chi2(dof).cdf).statistic
    assert ks < KS_C / math.sqrt(n), f"KS {ks} for D={dof}"
    assert abs(float(w.mean()) - 1.0) < 5 * math.sqrt(2.0 / dof / n)


def test_chi2_over_dof_rejects_bad_dof_and_inf_is_one(gen):
    assert torch.equal(sample_chi2_over_dof(4, math.inf, gen), torch.ones(4))
    with pytest.raises(ValueError, match="positive"):
        sample_chi2_over_dof(4, 0.0, gen)


@pytest.mark.parametrize("dof", [12.0, 30.0])
def test_student_t_variance_and_excess_kurtosis(dof, gen):
    """Per-coordinate variance sigma^2 D/(D-2) and excess kurtosis 6/(D-4) (within 5 block standard errors)."""
    sigma, b = 1.7, 100000
    method = PFGMPP(WhiteNoise(), D=dof)
    coords = torch.rand(b, 3, 1, generator=gen)
    n = method.perturb(torch.zeros(b, 3, 1), coords, torch.full((b,), sigma), gen)[..., 0].double()
    x = n[:, 0]  # one coordinate per function (coordinates of one function share w)
    var, var_se = _block_se(x, lambda v: (v * v).mean())
    kurt, kurt_se = _block_se(x, lambda v: (v**4).mean() / (v * v).mean() ** 2 - 3.0)
    assert abs(var - sigma**2 * dof / (dof - 2)) < 5 * var_se
    assert abs(kurt - 6.0 / (dof - 4)) < 5 * kurt_se
    # coordinates of one function share w: the cross-moment E[x1^2 x2^2] exceeds E[x1^2] E[x2^2] for white eps
    cross = float((n[:, 0] ** 2 * n[:, 1] ** 2).mean() / ((n[:, 0] ** 2).mean() * (n[:, 1] ** 2).mean()))
    assert cross > 1.0 + 0.5 * 2.0 / (dof - 4)  # exact ratio (D-2)/(D-4) = 1 + 2/(D-4)


def _mahalanobis_f(x: torch.Tensor, cov: torch.Tensor, scale2: float) -> torch.Tensor:
    """``x^T (scale2 cov)^-1 x / N`` per row: F(N, D)-distributed for a Student-t process draw."""
    chol = torch.linalg.cholesky(cov * scale2)
    z = torch.linalg.solve_triangular(chol, x.T, upper=False)
    return (z * z).sum(0) / x.shape[1]


def test_student_t_process_subset_has_the_law_of_a_direct_draw(gen):
    """Any subset of a perturbation's points has the law of a perturbation drawn there directly:
    x^T K^-1 x / N ~ F(N, D) (one w per function; a w per point would give a different law).

    10^5 draws: the KS distance from F(12, 10) to F(12, 9) is 0.0118 and a process with D - 1 degrees of
    freedom fails (in 100 of 100 simulated runs; with 6000 draws it passed nearly always)."""
    dof, b, n = 10.0, 100_000, 12
    base = GaussianRandomField("se", lengthscale=0.2)
    proc = StudentTProcess(base, dof)
    big = torch.rand(1, 2 * n, 1, generator=gen).double().expand(b, -1, -1)
    idx = torch.randperm(2 * n, generator=gen)[:n]
    sub = proc.sample(big, 1, gen)[:, idx, 0]
    direct = proc.sample(big[:, idx], 1, gen)[..., 0]
    cov = base.covariance(big[0, idx], big[0, idx]) + 1e-6 * torch.eye(n, dtype=torch.float64)
    law = stats.f(n, dof).cdf
    for x in (sub, direct):
        q = _mahalanobis_f(x, cov, 1.0)
        assert stats.kstest(q.numpy(), law).statistic < KS_C / math.sqrt(b)
    # the per-point-w process (wrong) is rejected by the same test: the test has power
    w = sample_chi2_over_dof(b * n, dof, gen, dtype=torch.float64).reshape(b, n)
    wrong = proc.base.sample(big[:, idx], 1, gen)[..., 0] / w.sqrt()
    assert stats.kstest(_mahalanobis_f(wrong, cov, 1.0).numpy(), law).statistic > KS_C / math.sqrt(b)


def test_prior_matches_the_kernel_at_sigma_max(gen):
    """x^T (sigma_max^2 K)^-1 x / N ~ F(N, D) for prior draws; 10^5 of them tell D = 8 from D - 1 = 7
    (KS distance 0.016; 100 of 100 simulated runs)."""
    dof, b, n = 8.0, 100_000, 10
    base = GaussianRandomField("se", lengthscale=0.15)
    method = PFGMPP(base, D=dof, sigma_max=80.0)
    coords = torch.rand(1, n, 1, generator=gen).double().expand(b, -1, -1)
    x = method.prior(coords, 1, gen)[..., 0]
    cov = base.covariance(coords[0], coords[0]) + 1e-6 * torch.eye(n, dtype=torch.float64)
    q = _mahalanobis_f(x, cov, 80.0**2)
    assert stats.kstest(q.numpy(), stats.f(n, dof).cdf).statistic < KS_C / math.sqrt(b)


class LinearNet(torch.nn.Module):
    """A tiny deterministic 'backbone' ``F(c, x, t) = a x + tanh(t) + c``."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(0.3))

    def forward(self, coords, values, t):
        return self.a * values + torch.tanh(t)[:, None, None] + coords.sum(-1, keepdim=True)


def test_d_inf_is_exactly_edm_loss_and_sampler(gen):
    """D = inf reproduces EDM's preconditioned loss and Heun sampler under a fixed seed."""
    seed = int(torch.randint(0, 2**31 - 1, (), generator=gen))
    b, n, sd = 5, 7, 0.5
    coords, y = torch.rand(b, n, 1, generator=gen), torch.randn(b, n, 1, generator=gen)
    net = LinearNet()
    method = PFGMPP(WhiteNoise(), D=math.inf, sigma_data=sd, steps=6)
    got, _ = method.loss(net, PointSet(coords, y), torch.Generator().manual_seed(seed))

    def edm_d(x, sigma):  # EDM eq. 7, Table 1
        s = sigma.reshape(-1, 1, 1)
        return (sd**2 / (s**2 + sd**2)) * x + s * sd / (s**2 + sd**2).sqrt() * net(
            coords, x / (s**2 + sd**2).sqrt(), sigma.log() / 4)

    g = torch.Generator().manual_seed(seed)
    sigma = (-1.2 + 1.2 * torch.randn(b, generator=g)).exp()
    x = y + sigma.reshape(-1, 1, 1) * torch.randn(b, n, 1, generator=g)
    lam = (sigma**2 + sd**2) / (sigma * sd) ** 2
    want = (lam * ((edm_d(x, sigma) - y) ** 2).mean(dim=(1, 2))).mean()
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)  # same draws; float rounding only

    # Heun sampler, EDM Algorithm 1 with S_churn = 0
    got_x = method.sample(net, coords, 1, generator=torch.Generator().manual_seed(seed))
    g = torch.Generator().manual_seed(seed)
    t = karras_sigmas(6, 0.002, 80.0, 7.0)
    x = 80.0 * torch.randn(b, n, 1, generator=g)
    for i in range(6):
        t0, t1 = float(t[i]), float(t[i + 1])
        d = (x - edm_d(x, torch.full((b,), t0))) / t0
        xn = x + (t1 - t0) * d
        if t1 > 0:
            xn = x + (t1 - t0) * 0.5 * (d + (xn - edm_d(xn, torch.full((b,), t1))) / t1)
        x = xn
    torch.testing.assert_close(got_x, x, rtol=1e-6, atol=1e-6)  # same draws; float rounding only


def test_karras_sigmas_endpoints():
    s = karras_sigmas(18, 0.002, 80.0, 7.0)
    assert s.shape == (19,) and float(s[0]) == pytest.approx(80.0) and float(s[-2]) == pytest.approx(0.002)
    assert float(s[-1]) == 0.0 and (s[:-1] > s[1:]).all()


def _gaussian_data(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.sort(torch.rand(n, 1, generator=gen, dtype=torch.float64), dim=0).values
    return x, kernel_matrix(x, x, "se", 0.3) + 1e-3 * torch.eye(n, dtype=torch.float64)


def test_heun_ode_with_exact_gaussian_denoiser_recovers_the_data_law_d_inf(gen):
    """Gaussian data y ~ N(0, K), white eps: E[y | x] = K (K + s^2 I)^-1 x is linear, so the ODE's
    end map A is linear and the sampled covariance A (K + s_max^2 I) A^T must equal K."""
    n, smax = 6, 80.0
    _, k = _gaussian_data(n, gen)
    eye = torch.eye(n, dtype=torch.float64)

    def denoise(x, s):  # x: [M, n]
        return x @ torch.linalg.solve(k + s * s * eye, k)  # symmetric matrices

    def rel_err(steps: int, solver: str) -> float:
        # rows: images of e_i
        a = sigma_ode(denoise, eye.clone(), karras_sigmas(steps, 0.002, smax, 7.0), solver=solver)
        cov = a.T @ (k + smax**2 * eye) @ a
        return float(torch.linalg.matrix_norm(cov - k) / torch.linalg.matrix_norm(k))

    heun = [rel_err(s, "heun") for s in (40, 80, 160)]
    assert heun[-1] < 2e-3
    assert 3.0 < heun[0] / heun[1] < 5.0 and 3.0 < heun[1] / heun[2] < 5.0  # second order: error / 4 per halving
    euler = [rel_err(s, "euler") for s in (200, 400)]
    assert euler[1] < 3e-2 and 1.6 < euler[0] / euler[1] < 2.5  # first order


def test_heun_ode_with_exact_student_t_denoiser_recovers_the_data_law_d8(gen):
    """Finite D: E[y | x] mixes Gaussian posteriors over w (exact by quadrature on w). Integrating
    dx/dsigma = (x - E[y|x]) / sigma from the Student-t prior must give samples with covariance K."""
    n, dof, smax, b, m = 4, 8.0, 80.0, 6000, 300
    _, k = _gaussian_data(n, gen)
    w = torch.tensor(stats.chi2(dof).ppf((torch.arange(m) + 0.5).numpy() / m) / dof)  # equal-mass nodes

    lam, u = torch.linalg.eigh(k)

    def denoise(x, s):  # x: [b, n]; in K's eigenbasis every Gaussian posterior is diagonal
        z = x @ u
        var = lam[None, :] + (s * s / w)[:, None]  # [m, n]: eigenvalues of K + s^2 / w I
        logp = -0.5 * (z * z) @ (1.0 / var).T - 0.5 * torch.log(var).sum(1)[None, :]  # [b, m]
        post = torch.softmax(logp, dim=1)  # posterior of w given x
        return (z * (post @ (lam[None, :] / var))) @ u.T

    method = PFGMPP(WhiteNoise(), D=dof, sigma_max=smax)
    x = method.prior(torch.zeros(b, n, 1, dtype=torch.float64), 1, gen)[..., 0]
    y = sigma_ode(denoise, x, karras_sigmas(40, 0.002, smax, 7.0))
    emp = y.T @ y / b
    se = torch.sqrt((torch.diag(k)[:, None] * torch.diag(k)[None] + k * k) / b)  # per-entry standard error
    assert ((emp - k).abs() < 5 * se).all(), f"max z {float(((emp - k).abs() / se).max()):.2f}"
    # and the samples are Gaussian again (no heavy tails left; the prior's excess kurtosis is 6 / (D - 4) = 1.5):
    # the sample excess kurtosis per coordinate (normalised by the sample variance: with the known variance the
    # standard error of mean(z^4) - 3 is sqrt(96 / b), not sqrt(24 / b), and that bound failed 1 run in 20),
    # averaged over the correlated coordinates, with a block standard error
    kurt, kurt_se = _block_se(y, lambda v: ((v**4).mean(0) / (v * v).mean(0) ** 2 - 3.0).mean())
    assert abs(kurt) < 5 * kurt_se, (kurt, kurt_se)
    assert kurt_se < 0.12  # about sqrt(24 / b) = 0.063: the prior's 1.5 would be > 10 standard errors


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="D must be positive"):
        PFGMPP(D=0.0)
    with pytest.raises(ValueError, match="sigma_min"):
        PFGMPP(sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(ValueError, match="decreasing"):
        sigma_ode(lambda x, s: x, torch.zeros(2), torch.tensor([1.0, 2.0]))


def test_pfgmpp_trains_and_samples_at_n_and_4n_and_roundtrips(tmp_path, gen):
    dm = GRFDataModule(dim=1, resolution=16, num_train=32, num_val=8, batch_size=8)
    net = PerceiverNet(1, 1, 1, width=16, num_latents=4, depth=1, heads=2, num_bands=3)
    module = GenerativeModule(PFGMPP(GaussianRandomField("se", 0.1), D=8.0, sigma_data=1.0, steps=3), net,
                              warmup_steps=1, val_num_samples=2, val_steps=2)
    L.Trainer(max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, default_root_dir=str(tmp_path)).fit(module, datamodule=dm)
    g = module.generator()
    for res in (16, 64):
        ps = g.sample(3, res, seed=2)
        assert ps.values.shape == (3, res, 1) and torch.isfinite(ps.values).all()
    loaded = funcgen.load(g.save(tmp_path / "p.safetensors"))
    assert loaded.method.D == 8.0
    torch.testing.assert_close(loaded.sample(2, 20, seed=5).values, g.sample(2, 20, seed=5).values)


def test_quantize_weights_levels_and_error(gen):
    from funcgen.bench.robustness import quantize_weights

    net = PerceiverNet(1, 1, 1, width=16, num_latents=4, depth=1, heads=2, num_bands=3)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    before = [p.detach().clone() for p in net.parameters()]
    for bits in (5, 9):
        q = quantize_weights(net, bits)
        for p0, p, pq in zip(before, net.parameters(), q.parameters()):
            assert torch.equal(p0, p)  # the original is untouched
            scale = float(p0.abs().max()) / (2 ** (bits - 1) - 1)
            assert float((pq - p0).abs().max()) <= scale / 2 + 1e-6
            assert torch.unique(pq).numel() <= 2**bits - 1
            ratio = pq / scale
            torch.testing.assert_close(ratio, ratio.round(), rtol=0, atol=1e-3)
    with pytest.raises(ValueError, match="bits"):
        quantize_weights(net, 1)


def test_noise_injection_option_and_robustness_eval(tmp_path):
    from funcgen.bench.run import _eval_robustness

    dm = GRFDataModule(dim=1, resolution=16, num_train=32, num_val=8, batch_size=8)
    net = PerceiverNet(1, 1, 1, width=16, num_latents=4, depth=1, heads=2, num_bands=3)
    module = GenerativeModule(PFGMPP(D=8.0, sigma_data=1.0, steps=3), net, warmup_steps=1)
    L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, limit_val_batches=0).fit(module, datamodule=dm)
    g = module.generator()
    base = g.sample(2, 16, seed=3).values
    torch.testing.assert_close(g.with_method_args(inject_alpha=0.0).sample(2, 16, seed=3).values, base)
    assert not torch.allclose(g.with_method_args(inject_alpha=0.2).sample(2, 16, seed=3).values, base)
    assert g.method.inject_alpha == 0.0  # the original method is untouched
    with pytest.raises(ValueError, match="takes no argument 'churn'"):
        g.with_method_args(churn=1.0)
    with pytest.raises(ValueError, match="inject_alpha >= 0"):  # the constructor's checks apply
        g.with_method_args(inject_alpha=-0.1)
    metrics, reference, _ = _eval_robustness(g, dm, 0, num=16, quality_num=16, steps=(2, 3), bits=(6,), alphas=(0.1,))
    assert set(metrics) >= {"cov_err@N=64", "cov_err@N=256", "cov_err@N=64,alpha=0.1", "cov_err@N=64,bits=6",
                            "cov_err@N=64,nfe=3", "cov_err@N=64,nfe=5"}
    assert all(math.isfinite(v) for v in metrics.values()) and "floor@N=64" in reference


class _Recorder(torch.nn.Module):
    """A 'backbone' that records its inputs and returns F = 1."""

    def forward(self, coords, values, t):
        self.values, self.t = values, t
        return torch.ones_like(values)


@pytest.mark.parametrize("dof", [8.0, 3.0, 2.0, math.inf])
def test_variance_correction_scales_the_input_by_the_student_t_variance(dof, gen):
    """c_in = 1 / sqrt(sigma^2 D / (D - 2) + s_d^2) with ``variance_correction`` (D > 2), else
    1 / sqrt(sigma^2 + s_d^2); c_skip, c_out and c_noise as EDM; and with the correction the input of the
    network has unit variance for data of variance s_d^2 perturbed by the Student-t process."""
    sd, b, n = 0.5, 40_000, 4
    coords = torch.rand(b, n, 1, generator=gen, dtype=torch.float64)
    sigma = torch.exp(torch.randn(b, generator=gen, dtype=torch.float64) * 1.2 - 1.2)
    s = sigma[:, None, None]
    factor = dof / (dof - 2) if 2 < dof < math.inf else 1.0
    for corrected in (False, True):
        method = PFGMPP(WhiteNoise(), D=dof, sigma_data=sd, variance_correction=corrected)
        y = sd * torch.randn(b, n, 1, generator=gen, dtype=torch.float64)
        x = method.perturb(y, coords, sigma, gen)
        net = _Recorder()
        out = method.denoise(net, coords, x, sigma)
        c_in = 1 / (s * s * (factor if corrected else 1.0) + sd**2).sqrt()
        torch.testing.assert_close(net.values, c_in * x, rtol=1e-12, atol=0)
        torch.testing.assert_close(net.t, sigma.log() / 4, rtol=1e-12, atol=0)
        want = sd**2 / (s * s + sd**2) * x + s * sd / (s * s + sd**2).sqrt()
        torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)
        if corrected and dof > 4:  # finite kurtosis: the unit-variance claim has a standard error
            m2 = (net.values**2).mean(dim=(1, 2))  # per function (its points share w)
            assert abs(float(m2.mean()) - 1.0) < 5 * float(m2.std()) / math.sqrt(b)
    if 2 < dof < math.inf:  # without the correction the input variance is visibly above 1 (closed form)
        plain = ((s * s * factor + sd**2) / (s * s + sd**2)).mean()
        assert float(plain) > 1.05


class _Zero(torch.nn.Module):
    def forward(self, coords, values, t):
        return torch.zeros_like(values)


@pytest.mark.parametrize("dof", [math.inf, 8.0])
@pytest.mark.parametrize("alpha", [0.0, 0.3])
def test_noise_injection_adds_the_closed_form_variance(dof, alpha, gen):
    """F = 0 makes D(x, sigma) = s_d^2 / (sigma^2 + s_d^2) x (the exact denoiser of N(0, s_d^2) data), so an
    Euler step is x <- m_i (x + alpha sigma_i eps_i), m_i = 1 + (sigma_(i+1) - sigma_i) sigma_i / (sigma_i^2 +
    s_d^2), with Gaussian eps_i injected before each step: the output variance per point is
    sigma_max^2 D / (D - 2) prod_i m_i^2 + alpha^2 sum_i sigma_i^2 prod_(j >= i) m_j^2."""
    sd, steps, b, n = 0.5, 6, 40_000, 4
    method = PFGMPP(WhiteNoise(), D=dof, sigma_data=sd, steps=steps, solver="euler", inject_alpha=alpha)
    sig = [float(v) for v in method.sigmas()]
    m = [1 + (sig[i + 1] - sig[i]) * sig[i] / (sig[i] ** 2 + sd**2) for i in range(steps)]
    tail = [math.prod(v * v for v in m[i:]) for i in range(steps)]
    prior = method.sigma_max**2 * (dof / (dof - 2) if math.isfinite(dof) else 1.0)
    want = prior * tail[0] + alpha**2 * sum(sig[i] ** 2 * tail[i] for i in range(steps))
    coords = torch.rand(b, n, 1, generator=gen, dtype=torch.float64)
    x = method.sample(_Zero(), coords, 1, generator=gen)
    m2 = (x**2).mean(dim=(1, 2))  # per function (its points share the prior's w)
    assert abs(float(m2.mean()) - want) < 5 * float(m2.std()) / math.sqrt(b), (float(m2.mean()), want)


def test_cosine_sigma_sampling_has_the_law_of_uniform_times_on_the_cosine_schedule(gen):
    """``sigma_sampling="cosine"`` draws the variance-exploding noise levels ``sigma_t / alpha_t`` of uniform times on
    FunctionalDiffusion's cosine schedule (the schedule's own alpha/sigma, not the tangent formula), restricted to
    ``[sigma_min, sigma_max]``; a lognormal draw (the EDM default) fails the same two-sample test."""
    from funcgen.processes.schedules import CosineSchedule

    method = PFGMPP(sigma_min=0.1, sigma_max=50.0, sigma_sampling="cosine")
    got = method.training_sigmas(20000, gen).double()
    assert float(got.min()) >= 0.1 * (1 - 1e-5) and float(got.max()) <= 50.0 * (1 + 1e-5)
    sched = CosineSchedule()
    t = torch.rand(200000, generator=gen, dtype=torch.float64).clamp(1e-6, 1 - 1e-6)
    ref = sched.sigma(t) / sched.alpha(t)
    ref = ref[(ref >= 0.1) & (ref <= 50.0)]
    assert stats.ks_2samp(got.numpy(), ref.numpy()).pvalue > 1e-4
    edm = PFGMPP().training_sigmas(20000, gen).double()
    assert stats.ks_2samp(edm.numpy(), ref.numpy()).pvalue < 1e-10


@pytest.mark.parametrize("D", [8.0, math.inf])
def test_min_snr_weight_replaces_edm_lambda_in_the_loss(D, gen):
    """With ``snr_gamma`` each function's x0 error is weighted by ``min(1 / sigma^2, gamma) / gamma``, recomputed here
    from the same draws (the sigmas, then the perturbation) and the EDM denoiser; EDM's lambda gives another value."""
    seed = int(torch.randint(0, 2**31 - 1, (), generator=gen))
    b, n, gamma = 64, 7, 5.0
    coords, y = torch.rand(b, n, 1, generator=gen), torch.randn(b, n, 1, generator=gen)
    net = LinearNet()
    method = PFGMPP(WhiteNoise(), D=D, sigma_sampling="cosine", snr_gamma=gamma)
    got, _ = method.loss(net, PointSet(coords, y), torch.Generator().manual_seed(seed))

    g = torch.Generator().manual_seed(seed)
    sigma = method.training_sigmas(b, g)
    x = method.perturb(y, coords, sigma, g)
    err = ((method.denoise(net, coords, x, sigma) - y) ** 2).mean(dim=(1, 2))
    w = torch.where(sigma**2 < 1 / gamma, torch.full_like(sigma, gamma), 1 / sigma**2) / gamma
    torch.testing.assert_close(got, (w * err).mean(), rtol=1e-6, atol=1e-7)  # same draws; float rounding only
    lam = (sigma**2 + 0.25) / (sigma * 0.5) ** 2
    assert not torch.allclose(got, (lam * err).mean(), rtol=1e-2)


def test_sigma_sampling_and_snr_gamma_reject_bad_values():
    with pytest.raises(ValueError, match="sigma_sampling"):
        PFGMPP(sigma_sampling="uniform")
    with pytest.raises(ValueError, match="snr_gamma"):
        PFGMPP(snr_gamma=0.0)
