"""FD_LeNet of real MNIST training images after infty-Diff's mollify -> Wiener-deconvolve round trip: what a model
that predicts ``T x0`` perfectly scores after decoding, against the images themselves (the bench's floor).

    OMP_NUM_THREADS=1 FUNCGEN_DATA=../shared/data python scripts/inftydiff_decode_floor.py [--num 500] [--eps E ...]

Three seeded subsets of the 8000 training images (the bench's floor subsets), mollified on the 28x28 grid with
the MNIST config's width (1 pixel), decoded with each Wiener ``eps``, scored against the 2000 test images.
"""

from __future__ import annotations

import argparse

import torch

from funcgen.bench.run import floor_subset
from funcgen.data.mnist import NUM_TRAIN_PROTOCOL, load_mnist_idx, resolve_data_root
from funcgen.metrics import feature_frechet_distance, get_lenet, lenet_confident_fraction, lenet_features
from funcgen.processes.mollify import mollify_grid, wiener_deconvolve_grid


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num", type=int, default=500)
    p.add_argument("--width", type=float, default=1 / 28, help="mollifier std in physical units")
    p.add_argument("--eps", type=float, nargs="+", default=[0.05, 0.02, 0.1])
    p.add_argument("--root", default=None, help="MNIST folder (default: $FUNCGEN_DATA)")
    ns = p.parse_args()
    net = get_lenet(ns.root)
    images = torch.from_numpy(load_mnist_idx(resolve_data_root(ns.root))[0]).float() / 255.0
    test = lenet_features(images[NUM_TRAIN_PROTOCOL:], net)
    for rep in range(3):
        idx = floor_subset(0, rep, ns.num)
        x = images[idx][:, None].double()
        row = {"raw": feature_frechet_distance(lenet_features(x[:, 0].float(), net), test)}
        t = mollify_grid(x, ns.width)
        row["T x"] = feature_frechet_distance(lenet_features(t[:, 0].float().clamp(0, 1), net), test)
        for eps in ns.eps:
            d = wiener_deconvolve_grid(t, ns.width, eps)[:, 0].float().clamp(0, 1)
            row[f"eps={eps} FD"] = feature_frechet_distance(lenet_features(d, net), test)
            row[f"eps={eps} recognisable"] = lenet_confident_fraction(d, net)
            row[f"eps={eps} RMSE"] = float((d - x[:, 0].float()).pow(2).mean().sqrt())
        print(f"subset {rep}: " + ", ".join(f"{k} {v:.3g}" for k, v in row.items()))


if __name__ == "__main__":
    main()
