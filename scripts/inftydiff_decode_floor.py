"""What infty-Diff's mollify-then-Wiener-decode pipeline costs on MNIST's FD_LeNet, with no model in the loop.

Real training digits (the bench's floor subset: 500 of images 0..7999, seed 0) are mollified by the Gaussian blur of
std ``width`` on the 28x28 grid, decoded by :func:`funcgen.processes.mollify.wiener_deconvolve` with regulariser
``eps`` and scored against the held-out reference as ``funcgen bench mnist`` scores samples. With ``--ckpt`` (an
infty-Diff export) the model's undecoded samples (``decode=False``, 500 at 28 px, seed 1 as the bench) are decoded
with each ``eps`` instead.

    python scripts/inftydiff_decode_floor.py --widths 0.03571428571428571 0.017857142857142856
    python scripts/inftydiff_decode_floor.py --ckpt mnist_inftydiff_minsnr.safetensors
"""

from __future__ import annotations

import argparse
import json

import torch

from funcgen.bench.run import floor_subset
from funcgen.data.mnist import NUM_TRAIN_PROTOCOL, load_mnist_idx, resolve_data_root
from funcgen.generator import load
from funcgen.metrics import feature_frechet_distance, get_lenet, lenet_features
from funcgen.pointset import grid_to_pointset, pointset_to_grid
from funcgen.processes.mollify import mollify, wiener_deconvolve


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--widths", type=float, nargs="+", default=[1 / 28, 1 / 56], help="mollifier stds (real digits)")
    p.add_argument("--eps", type=float, nargs="+", default=[0.01, 0.02, 0.05, 0.1], help="Wiener regularisers")
    p.add_argument("--ckpt", default=None, help="an infty-Diff export: decode its samples instead of real digits")
    p.add_argument("--num", type=int, default=500)
    ns = p.parse_args()
    net = get_lenet()
    images = torch.from_numpy(load_mnist_idx(resolve_data_root(None))[0]).float() / 255.0
    reference = lenet_features(images[NUM_TRAIN_PROTOCOL:], net)

    def fd(values: torch.Tensor) -> float:
        return feature_frechet_distance(lenet_features(pointset_to_grid(values, (28, 28))[:, 0].clamp(0, 1), net),
                                        reference)

    out: dict[str, float] = {}
    if ns.ckpt is None:
        real = grid_to_pointset(images[floor_subset(0, 0, ns.num)][:, None])
        out["real"] = fd(real.values)
        for w in ns.widths:
            blurred = mollify(real.values, real.coords, w)
            out[f"mollified@width={w:.4g}"] = fd(blurred)
            for e in ns.eps:
                out[f"decoded@width={w:.4g},eps={e:g}"] = fd(wiener_deconvolve(blurred, real.coords, w, e))
    else:
        gen = load(ns.ckpt)
        ps = gen.sample(ns.num, 28, seed=1, batch_size=250, decode=False)  # data units: the filter is linear
        for e in ns.eps:
            out[f"decoded@eps={e:g}"] = fd(wiener_deconvolve(ps.values, ps.coords, gen.method.width, e))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
