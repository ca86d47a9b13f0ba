"""Benchmark evaluations run with stand-in generators: keys, floors and known answers."""

import math
import os

import pytest
import torch
import torch.nn.functional as F

from funcgen.bench.run import TASKS, _eval_grf, _eval_mnist
from funcgen.data import GRFDataModule
from funcgen.data.mnist import load_mnist_idx
from funcgen.metrics.lenet import train_lenet
from funcgen.pointset import PointSet, grid_coords, grid_to_pointset, query_coords


class _GRFStandIn:
    """Returns ``factor`` times the exact set that _eval_grf draws first (seed + 2 = sampler seed + 1)."""

    dim = 1

    def __init__(self, dm, factor):
        self.dm, self.factor = dm, factor

    def sample(self, num, resolution, *, seed, steps, batch_size, denormalize, progress):
        coords = query_coords(resolution, 1, num)
        return PointSet(coords, self.factor * self.dm.reference(coords, torch.Generator().manual_seed(seed + 1)))


def test_grf_evaluation_reports_set_distances():
    dm = GRFDataModule(dim=1, resolution=16, lengthscale=0.1)
    same, _, _ = _eval_grf(_GRFStandIn(dm, 1.0), dm, 0, (16, 32), num=150, floor_repeats=3)
    scaled, reference, _ = _eval_grf(_GRFStandIn(dm, 2.0), dm, 0, (16, 32), num=150, floor_repeats=3)
    for n in (16, 32):
        for key in ("cov_err", "mmd2", "energy", "spec_err"):
            assert f"{key}@N={n}" in scaled
        for key in ("floor", "floor_mmd2", "floor_energy", "floor_spec_err", "mmd_bandwidth"):
            assert f"{key}@N={n}" in reference
        assert same[f"spec_err@N={n}"] == pytest.approx(0.0, abs=1e-12)  # the very same functions
        assert scaled[f"spec_err@N={n}"] == pytest.approx(3.0, rel=1e-9)  # power scales by 2^2
        assert scaled[f"mmd2@N={n}"] > 10 * abs(reference[f"floor_mmd2@N={n}"])
        assert scaled[f"energy@N={n}"] > 10 * abs(reference[f"floor_energy@N={n}"])


def test_task_evaluations_take_the_cli_overrides():
    """``funcgen bench --eval-num/--eval-res`` reach the evaluation (and set what the floor uses)."""
    dm = GRFDataModule(dim=1, resolution=16, lengthscale=0.1)
    metrics, reference, _ = TASKS["grf1d"].evaluate(_GRFStandIn(dm, 1.0), dm, 0, num=120, resolutions=(24,),
                                                    floor_repeats=3)
    assert {k.split("@")[1] for k in metrics} == {"N=24"} and "floor@N=24" in reference
    with pytest.raises(TypeError):
        TASKS["grf1d"].evaluate(_GRFStandIn(dm, 1.0), dm, 0, bogus=1)


class _ImageStandIn:
    """An MNIST 'generator' that returns given images (nearest-upsampled to the asked resolution): ``images``
    for the default sampler steps, ``by_steps[k]`` when asked for ``k`` steps; it records what it was asked."""

    dim = 2

    def __init__(self, images, by_steps=None, continuous=False):
        self.images, self.by_steps, self.calls, self.continuous = images, by_steps or {}, [], continuous

    def sample(self, num, resolution, *, seed, steps, batch_size, denormalize, progress):
        assert denormalize  # FD_LeNet reads the data range [0, 1]
        self.calls.append((resolution, steps))
        x = (self.images if steps is None else self.by_steps[steps])[:num]
        if self.continuous:  # the images as the data module's continuous functions, read at the resolution
            up = F.grid_sample(x[:, None], (grid_coords((resolution,) * 2).flip(-1) * 2 - 1)[None, None].expand(
                len(x), -1, -1, -1), mode="bilinear", padding_mode="border", align_corners=False)
            return grid_to_pointset(up.reshape(len(x), 1, resolution, resolution))
        f = resolution // 28
        return grid_to_pointset(x.repeat_interleave(f, 1).repeat_interleave(f, 2).unsqueeze(1))


class _DM:
    root = None  # FUNCGEN_DATA


@pytest.fixture(scope="module")
def mnist_and_net():
    root = os.environ.get("FUNCGEN_DATA")
    if not root or not os.path.isdir(root):
        pytest.skip("reference data not found: set FUNCGEN_DATA to the folder holding mnist/ (../shared/data)")
    images, labels = load_mnist_idx(root)
    x, y = torch.from_numpy(images).float() / 255.0, torch.from_numpy(labels).long()
    return x, train_lenet(x[:400], y[:400], epochs=1, seed=int(torch.randint(0, 2**31 - 1, ()).item()))


def test_mnist_evaluation_runs_with_stand_in_generators(mnist_and_net, gen):
    x, net = mnist_and_net
    assert "mnist" in TASKS
    real = x[torch.randperm(8000, generator=gen)[:300]]
    noise_images = torch.rand(300, 28, 28, generator=gen)
    stand_in = _ImageStandIn(real, {2: noise_images})  # 2 sampler steps give noise, the default real images
    metrics, reference, seconds = _eval_mnist(stand_in, _DM(), 0, num=300, lenet=net, floor_repeats=2,
                                              refine=(2,))
    assert stand_in.calls == [(28, None), (56, None), (112, None), (28, 2)]
    keys = {"fd_lenet@res=28", "fd_lenet@res=56", "fd_lenet@res=112", "fd_lenet@res=28,steps=2"}
    assert set(metrics) == (keys | {k.replace("fd_lenet", "recognisable") for k in keys}
                            | {"fd_lenet_matched@res=56", "fd_lenet_matched@res=112"})
    # a fresh net has no test accuracy
    assert set(reference) == {"floor_fd_lenet@res=28", "floor_fd_lenet@res=56", "floor_fd_lenet@res=112",
                              "real_recognisable", "floor_fd_lenet_matched@res=56", "floor_fd_lenet_matched@res=112",
                              "reading_fd_lenet@res=56", "reading_fd_lenet@res=112"}
    assert seconds >= 0 and all(math.isfinite(v) and v >= 0 for v in (*metrics.values(), *reference.values()))
    assert all(0.0 <= metrics[k] <= 1.0 for k in metrics if k.startswith("recognisable"))
    assert reference["real_recognisable"] <= 1
    # constant 2x2 blocks are averaged back to the same images: resolution-consistent by construction
    assert metrics["fd_lenet@res=56"] == pytest.approx(metrics["fd_lenet@res=28"], rel=1e-9)
    assert metrics["fd_lenet@res=112"] == pytest.approx(metrics["fd_lenet@res=28"], rel=1e-6)  # 4x4 sums round
    assert metrics["recognisable@res=56"] == pytest.approx(metrics["recognisable@res=28"], abs=1e-12)
    noise, _, _ = _eval_mnist(_ImageStandIn(noise_images), _DM(), 0, num=300, resolutions=(28,), lenet=net,
                              floor_repeats=2)
    assert noise["fd_lenet@res=28"] > 10 * reference["floor_fd_lenet@res=28"]
    # the steps=2 keys hold the evaluation of what the generator gave for 2 steps
    for key in ("fd_lenet", "recognisable"):
        assert metrics[f"{key}@res=28,steps=2"] == pytest.approx(noise[f"{key}@res=28"], rel=1e-9, abs=1e-12)


def test_continuous_reading_is_the_jittered_training_reading(gen):
    """The bench's reading of an image at r px equals the MNIST data module's training reading
    (JitteredImageDataset: grid_sample between pixel centres) at the r-grid's points: two implementations."""
    from funcgen.bench.run import continuous_reading
    from funcgen.data.base import JitteredImageDataset

    img = torch.rand(2, 28, 28, generator=gen)
    ds = JitteredImageDataset(img[:, None])
    for r in (28, 56, 84):
        pts = grid_coords((r, r))
        want = F.grid_sample(ds.images, (pts.flip(-1) * 2 - 1)[None, None].expand(2, -1, -1, -1), mode="bilinear",
                             padding_mode="border", align_corners=False).reshape(2, r, r)
        assert torch.allclose(continuous_reading(img, r), want, atol=1e-6), r
    assert torch.equal(continuous_reading(img, 28), img)


def test_matched_fd_scores_a_model_of_the_continuous_data_like_at_28_px(mnist_and_net, gen):
    """Real digits drawn as the data module's continuous functions score far worse on the plain FD at 56 px
    than at 28 (their 56-px cell averages are blurred digits: ``reading_fd_lenet``), but on the matched FD at
    56 as at 28 (each within 2x of its floor); digits drawn as pixel blocks, right only at 28 px, fail it."""
    x, net = mnist_and_net
    real = x[torch.randperm(8000, generator=gen)[:300]]
    m, ref, _ = _eval_mnist(_ImageStandIn(real, continuous=True), _DM(), 0, num=300, resolutions=(28, 56),
                            lenet=net, floor_repeats=2, refine=())
    assert m["fd_lenet@res=28"] < 2 * ref["floor_fd_lenet@res=28"]
    assert m["fd_lenet_matched@res=56"] < 2 * ref["floor_fd_lenet_matched@res=56"]
    assert m["fd_lenet@res=56"] > 2 * m["fd_lenet@res=28"]
    assert m["fd_lenet@res=56"] == pytest.approx(ref["reading_fd_lenet@res=56"], rel=0.5)
    blocks, _, _ = _eval_mnist(_ImageStandIn(real), _DM(), 0, num=300, resolutions=(28, 56), lenet=net,
                               floor_repeats=2, refine=())
    assert blocks["fd_lenet_matched@res=56"] > 2 * m["fd_lenet_matched@res=56"]
