"""FD_LeNet: Frechet distance between features of a small LeNet-style MNIST classifier.

The classifier is trained by the project itself (no downloaded weights) on the benchmark's MNIST
training images 0..7999 (``funcgen.data.mnist``), deterministically from a seed, and cached as a
safetensors file (no pickles) under the user cache folder: ``$FUNCGEN_CACHE`` or
``~/.cache/funcgen``. When the file is absent (or was trained with other settings) it is retrained.
Its test accuracy on images 8000..9999 is stored in the file's metadata (``net.info["test_accuracy"]``).

Images are taken in the DATA range ``[0, 1]`` (pixel intensity / 255, what
``FunctionGenerator.sample(..., denormalize=True)`` returns for MNIST), as ``[n, H, W]`` or
``[n, 1, H, W]``. Images larger than 28x28 are first area-averaged down to 28x28 (exact block
means when ``H`` and ``W`` are multiples of 28), which makes FD_LeNet at 2x resolution a
resolution-consistency metric. Features are the 84 activations of the penultimate layer
(after its ReLU), as FD_LeNet is used in the Functional Diffusion Processes paper.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .frechet import feature_frechet_distance

__all__ = ["LeNet", "train_lenet", "lenet_accuracy", "save_lenet", "load_lenet", "get_lenet", "lenet_cache_path",
           "area_downsample", "lenet_features", "lenet_confident_fraction", "fd_lenet"]

LENET_VERSION = 1  # bump when the architecture or training recipe changes: cached files are then retrained
_META_KEY = "funcgen_lenet"
SIZE = 28


class LeNet(nn.Module):
    """LeNet-5-style classifier for 28x28 images in ``[0, 1]``.

    conv 5x5 (1->6, pad 2) -> ReLU -> max-pool 2 -> conv 5x5 (6->16) -> ReLU -> max-pool 2 ->
    linear 400->120 -> ReLU -> linear 120->84 -> ReLU (the features) -> linear 84->10 (logits).

    Args:
        generator: random generator of the weight initialisation (None: torch's default generator).
    """

    num_features = 84

    def __init__(self, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(400, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)
        self.info: dict[str, Any] = {}
        for m in (self.conv1, self.conv2, self.fc1, self.fc2, self.fc3):  # PyTorch's default init, seeded
            fan_in = m.weight[0].numel()
            nn.init.kaiming_uniform_(m.weight, a=5**0.5, generator=generator)
            nn.init.uniform_(m.bias, -fan_in**-0.5, fan_in**-0.5, generator=generator)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate activations ``[B, 84]`` of images ``[B, 1, 28, 28]`` in ``[0, 1]``."""
        h = F.max_pool2d(F.relu(self.conv1(2.0 * x - 1.0)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        return F.relu(self.fc2(F.relu(self.fc1(h.flatten(1)))))

    def forward(self, x: Tensor) -> Tensor:
        """Class logits ``[B, 10]``."""
        return self.fc3(self.features(x))


def area_downsample(images: Tensor, size: int = SIZE) -> Tensor:
    """``[n, H, W]`` or ``[n, 1, H, W]`` images -> float ``[n, 1, size, size]`` by area averaging.

    Raises:
        ValueError: wrong shape, NaN/inf, an image smaller than ``size``, or values far outside
            the data range ``[0, 1]`` (e.g. model-space ``[-1, 1]`` images: denormalise them first).
    """
    if not isinstance(images, Tensor) or images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[1] != 1):
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be [n, H, W] or [n, 1, H, W] (one channel); got {shape}")
    x = images if images.ndim == 4 else images.unsqueeze(1)
    if x.shape[0] == 0 or x.shape[-2] < size or x.shape[-1] < size:
        raise ValueError(f"need at least one image of at least {size}x{size} pixels; got {tuple(images.shape)}")
    x = x.detach().float()
    if not torch.isfinite(x).all():
        raise ValueError(f"images hold {int((~torch.isfinite(x)).sum())} NaN/inf values")
    lo, hi = float(x.min()), float(x.max())
    if lo < -0.5 or hi > 1.5:
        raise ValueError(f"images must be in the data range [0, 1] (pixel / 255); these span [{lo:.3g}, {hi:.3g}]. "
                         "Samples in model space [-1, 1] need values * 0.5 + 0.5 (sample(..., denormalize=True))")
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="area")
    return x


@torch.no_grad()
def _logits(net: LeNet, images: Tensor, batch_size: int) -> Tensor:
    """Class logits ``[n, 10]`` of ``images`` ``[n, H, W]`` in ``[0, 1]`` (downsampled to 28x28), in eval
    mode, batched; the net's training mode is restored."""
    x = area_downsample(images)
    was = net.training
    net.eval()
    out = torch.cat([net(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)])
    net.train(was)
    return out


def lenet_accuracy(net: LeNet, images: Tensor, labels: Tensor, batch_size: int = 1000) -> float:
    """Fraction of ``images`` ``[n, 28, 28]`` in ``[0, 1]`` classified as ``labels`` ``[n]``."""
    pred = _logits(net, images, batch_size).argmax(1)
    return float((pred == labels.long()).double().mean())


def train_lenet(images: Tensor, labels: Tensor, *, epochs: int = 6, batch_size: int = 64, lr: float = 2e-3,
                seed: int = 0) -> LeNet:
    """Train a :class:`LeNet` with Adam and cross-entropy, deterministically from ``seed``.

    Args:
        images: ``[n, 28, 28]`` in ``[0, 1]`` (float) or uint8 ``0..255``.
        labels: ``[n]`` digits ``0..9``.
        epochs: passes over the data (learning rate decays linearly to 0).
        batch_size: images per step.
        lr: Adam's initial learning rate.
        seed: seed of the initialisation and the shuffles.
    """
    if images.dtype == torch.uint8:
        images = images.float() / 255.0
    x = area_downsample(images)
    y = labels.long()
    if y.shape != (x.shape[0],) or (y < 0).any() or (y > 9).any():
        raise ValueError(f"labels must be [{x.shape[0]}] digits 0..9; got shape {tuple(labels.shape)}")
    gen = torch.Generator().manual_seed(int(seed))
    net = LeNet(generator=gen)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    total = epochs * ((x.shape[0] + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 - step / max(1, total))
    net.train()
    for _ in range(epochs):
        order = torch.randperm(x.shape[0], generator=gen)
        for i in range(0, x.shape[0], batch_size):
            idx = order[i:i + batch_size]
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    net.info = {"version": LENET_VERSION, "epochs": int(epochs), "batch_size": int(batch_size), "lr": float(lr),
                "seed": int(seed), "num_train": int(x.shape[0])}
    return net.eval()


def lenet_cache_path(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir`` (else ``$FUNCGEN_CACHE``, else ``~/.cache/funcgen``) / ``lenet_mnist.safetensors``."""
    root = cache_dir if cache_dir not in (None, "") else os.environ.get("FUNCGEN_CACHE") or "~/.cache/funcgen"
    return Path(root).expanduser() / "lenet_mnist.safetensors"


def save_lenet(net: LeNet, path: str | os.PathLike) -> Path:
    """Write the weights and ``net.info`` (JSON metadata) to a safetensors file, atomically."""
    from safetensors.torch import save_file

    from ..io import atomic_write

    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    meta = {_META_KEY: json.dumps(net.info)}
    return atomic_write(path, lambda tmp: save_file(state, tmp, metadata=meta))


def load_lenet(path: str | os.PathLike) -> LeNet:
    """Load a :class:`LeNet` written by :func:`save_lenet` (safetensors: no code is unpickled)."""
    from ..io import read_safetensors

    path = Path(path)
    state, meta = read_safetensors(path, "delete it to retrain the LeNet")
    if _META_KEY not in meta:
        raise ValueError(f"{path}: safetensors file without {_META_KEY!r} metadata; delete it to retrain the LeNet")
    net = LeNet(generator=torch.Generator())  # weights are overwritten; leave the global RNG alone
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"{path}: weights do not fit the LeNet architecture ({e}); delete it to retrain") from e
    net.info = json.loads(meta[_META_KEY])
    return net.eval()


def get_lenet(data_root: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None, *,
              num_train: int = 8000, epochs: int = 6, seed: int = 0) -> LeNet:
    """The FD_LeNet classifier: loaded from the cache, or trained on MNIST images ``0..num_train-1`` and cached.

    A cached file trained with other settings (version, ``num_train``, ``epochs``, ``seed``) is
    retrained and replaced. After training, the accuracy on the held-out images 8000..9999 is
    stored in ``info["test_accuracy"]``.

    Args:
        data_root: folder holding ``mnist/`` (None: ``$FUNCGEN_DATA``); only read when training.
        cache_dir: cache folder (None: ``$FUNCGEN_CACHE`` or ``~/.cache/funcgen``).
        num_train: number of training images (1..8000, taken from the start of the protocol split).
        epochs, seed: training settings (see :func:`train_lenet`).
    """
    from ..data.mnist import NUM_TRAIN_PROTOCOL, load_mnist_idx, resolve_data_root

    if not 1 <= num_train <= NUM_TRAIN_PROTOCOL:
        raise ValueError(
            f"num_train must lie in 1..{NUM_TRAIN_PROTOCOL} (the protocol's training images); got {num_train}")
    path = lenet_cache_path(cache_dir)
    want = {"version": LENET_VERSION, "num_train": int(num_train), "epochs": int(epochs), "seed": int(seed)}
    if path.is_file():
        net = load_lenet(path)
        if all(net.info.get(k) == v for k, v in want.items()):
            return net
    images, labels = load_mnist_idx(resolve_data_root(data_root))
    x, y = torch.from_numpy(images).float() / 255.0, torch.from_numpy(labels).long()
    net = train_lenet(x[:num_train], y[:num_train], epochs=epochs, seed=seed)
    net.info["test_accuracy"] = lenet_accuracy(net, x[NUM_TRAIN_PROTOCOL:], y[NUM_TRAIN_PROTOCOL:])
    net.info["test_split"] = [NUM_TRAIN_PROTOCOL, int(x.shape[0])]
    save_lenet(net, path)
    return net


@torch.no_grad()
def lenet_features(images: Tensor, net: LeNet, batch_size: int = 500) -> Tensor:
    """Penultimate LeNet features ``[n, 84]`` of images ``[n, H, W]`` in ``[0, 1]`` (downsampled to 28x28)."""
    x = area_downsample(images)
    net.eval()
    return torch.cat([net.features(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)])


def lenet_confident_fraction(images: Tensor, net: LeNet, threshold: float = 0.99, batch_size: int = 500) -> float:
    """Fraction of ``images`` ``[n, H, W]`` in ``[0, 1]`` (downsampled to 28x28) to which ``net`` gives one
    class a softmax probability of at least ``threshold``: a proxy for "recognisable digits", to be read
    next to the same fraction on real test images (FD_LeNet measures the distribution, not the digits).
    The strict default 0.99 keeps noise images near 0 (the scores of real, noise and blurred images are in
    docs/results/extra.md, "Numerical checks of the metrics")."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
    top = _logits(net, images, batch_size).softmax(1).amax(1)
    return float((top >= threshold).double().mean())


def fd_lenet(images: Tensor, reference: Tensor, net: LeNet | None = None, *,
             data_root: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None) -> float:
    """FD_LeNet between two image sets ``[n, H, W]`` and ``[m, H', W']`` in the data range ``[0, 1]``.

    Both sets are area-averaged to 28x28, mapped to LeNet features, and the Frechet distance of
    Gaussians fit to the features is returned (:func:`funcgen.metrics.frechet.frechet_distance`).
    ``net`` defaults to :func:`get_lenet` (``data_root``, ``cache_dir``).
    """
    net = get_lenet(data_root, cache_dir) if net is None else net
    return feature_frechet_distance(lenet_features(images, net), lenet_features(reference, net))
