"""FD_LeNet: area downsampling, a tiny classifier trained above chance, the safetensors cache, FD sanity."""

import math
import os

import pytest
import torch

from funcgen.data.mnist import load_mnist_idx
from funcgen.metrics import (
    LeNet,
    area_downsample,
    fd_lenet,
    get_lenet,
    lenet_confident_fraction,
    lenet_features,
)
from funcgen.metrics.lenet import (
    lenet_accuracy,
    lenet_cache_path,
    load_lenet,
    save_lenet,
    train_lenet,
)


@pytest.fixture(scope="module")
def mnist():
    root = os.environ.get("FUNCGEN_DATA")
    if not root or not os.path.isdir(root):
        pytest.skip("reference data not found: set FUNCGEN_DATA to the folder holding mnist/ (../shared/data)")
    images, labels = load_mnist_idx(root)
    return torch.from_numpy(images).float() / 255.0, torch.from_numpy(labels).long()


@pytest.fixture(scope="module")
def tiny_net(mnist):
    x, y = mnist
    seed = int(torch.randint(0, 2**31 - 1, ()).item())
    print(f"lenet seed {seed}")
    return train_lenet(x[:600], y[:600], epochs=2, seed=seed)


class _MeanLogitNet(LeNet):
    """Logits ``[k * mean(image), 0, ..., 0]``: the top softmax probability is known in closed form."""

    def __init__(self, k: float) -> None:
        super().__init__()
        self.k = k

    def forward(self, x):
        return torch.nn.functional.pad(self.k * x.mean(dim=(1, 2, 3))[:, None], (0, 9))


def test_confident_fraction_counts_images_above_the_threshold(gen):
    n = int(torch.randint(20, 200, (), generator=gen))
    level = torch.rand(n, generator=gen)  # constant images at these intensities
    net = _MeanLogitNet(k=float(torch.empty(()).uniform_(3.0, 9.0, generator=gen)))
    top = 1.0 / (1.0 + 9.0 * torch.exp(-net.k * level.double()))  # softmax of [k*level, 0 x 9], class 0 on top
    threshold = float(torch.empty(()).uniform_(0.3, 0.8, generator=gen))
    images = level[:, None, None].expand(n, 56, 56).contiguous()  # at 2x: area averaging keeps the constant
    got = lenet_confident_fraction(images, net, threshold=threshold)
    assert got == pytest.approx(float((top >= threshold).double().mean()), abs=1e-12)
    assert lenet_confident_fraction(images, net, threshold=1e-3) == 1.0
    with pytest.raises(ValueError, match="threshold"):
        lenet_confident_fraction(images, net, threshold=1.0)


def test_area_downsample_is_block_mean(gen):
    x = torch.rand(3, 56, 56, generator=gen)
    down = area_downsample(x)
    assert down.shape == (3, 1, 28, 28)
    assert torch.allclose(down[:, 0], x.reshape(3, 28, 2, 28, 2).mean(dim=(2, 4)), atol=1e-6)
    assert torch.equal(area_downsample(x[:, :28, :28]), x[:, None, :28, :28])
    with pytest.raises(ValueError, match="at least 28x28"):
        area_downsample(torch.rand(2, 14, 14))
    with pytest.raises(ValueError, match="data range"):
        area_downsample(2 * x - 1 - 0.2)  # model-space images
    with pytest.raises(ValueError, match=r"\[n, H, W\]"):
        area_downsample(torch.rand(2, 3, 28, 28))


def test_tiny_lenet_beats_chance_on_held_out_digits(mnist, tiny_net):
    x, y = mnist
    n = 500
    acc = lenet_accuracy(tiny_net, x[8000:8000 + n], y[8000:8000 + n])
    chance_se = math.sqrt(0.1 * 0.9 / n)
    assert acc > 0.1 + 6 * chance_se, acc
    assert lenet_features(x[8000:8010], tiny_net).shape == (10, 84)


def test_training_is_deterministic(mnist):
    x, y = mnist
    a = train_lenet(x[:64], y[:64], epochs=1, seed=3)
    b = train_lenet(x[:64], y[:64], epochs=1, seed=3)
    c = train_lenet(x[:64], y[:64], epochs=1, seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_cache_round_trip_and_retraining(mnist, tiny_net, tmp_path, monkeypatch):
    path = save_lenet(tiny_net, tmp_path / "net.safetensors")
    loaded = load_lenet(path)
    ref = tiny_net.state_dict()
    assert all(torch.equal(ref[k], v) for k, v in loaded.state_dict().items())
    assert loaded.info == tiny_net.info
    # get_lenet: trains when absent, loads the file afterwards, retrains when the settings change
    monkeypatch.setenv("FUNCGEN_CACHE", str(tmp_path / "cache"))
    assert lenet_cache_path() == tmp_path / "cache" / "lenet_mnist.safetensors"
    root = os.environ["FUNCGEN_DATA"]
    first = get_lenet(root, num_train=64, epochs=1)
    stamp = lenet_cache_path().stat().st_mtime_ns
    assert 0.0 <= first.info["test_accuracy"] <= 1.0 and first.info["num_train"] == 64
    again = get_lenet(root, num_train=64, epochs=1)
    assert lenet_cache_path().stat().st_mtime_ns == stamp  # loaded, not retrained
    assert all(torch.equal(first.state_dict()[k], v) for k, v in again.state_dict().items())
    other = get_lenet(root, num_train=64, epochs=2)
    assert other.info["epochs"] == 2 and load_lenet(lenet_cache_path()).info["epochs"] == 2
    lenet_cache_path().write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="delete it"):
        get_lenet(root, num_train=64, epochs=1)


def test_fd_lenet_sanity(mnist, tiny_net, gen):
    x, _ = mnist
    test = x[8000:8600]
    assert fd_lenet(test, test, tiny_net) < 1e-6
    real = fd_lenet(x[6000:6600], test, tiny_net)
    noise = fd_lenet(torch.rand(600, 28, 28, generator=gen), test, tiny_net)
    assert noise > 10 * real, (noise, real)
    # 2x images whose 2x2 blocks are constant are area-averaged back to the same 28x28 images
    up = x[6000:6600].repeat_interleave(2, 1).repeat_interleave(2, 2)
    assert fd_lenet(up, test, tiny_net) == pytest.approx(real, rel=1e-9)
