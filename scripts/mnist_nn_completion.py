"""What a nearest-neighbour completion scores on the MNIST conditioning tasks: a reference for the LeNet-accuracy bars.

For each of the held-out digits of ``scripts/conditional_bench.py`` (same seed, same digits) the completion is the
training digit (images 0..7999) closest in what the task observes: for ``mnist-inpaint`` its right half joined to
the observed left half, for ``mnist-superres`` the whole training digit whose 7x7 area averages are closest. The
LeNet accuracy of those completions says how often the observations pin the class down for a sampler whose prior
is the training set itself.

    python scripts/mnist_nn_completion.py --num 500 --seed 0
"""

from __future__ import annotations

import argparse
import json

import torch

from funcgen.data.mnist import NUM_TRAIN_PROTOCOL, load_mnist_idx, resolve_data_root
from funcgen.metrics import get_lenet
from funcgen.metrics.lenet import lenet_accuracy


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    ns = p.parse_args()
    images, labels = load_mnist_idx(resolve_data_root(None))
    train = torch.from_numpy(images[:NUM_TRAIN_PROTOCOL]).float() / 255.0
    test = torch.from_numpy(images[NUM_TRAIN_PROTOCOL:]).float() / 255.0
    lab = torch.from_numpy(labels[NUM_TRAIN_PROTOCOL:]).long()
    idx = torch.randperm(len(test), generator=torch.Generator().manual_seed(ns.seed))[:ns.num]  # conditional_bench's
    truth, truth_lab = test[idx], lab[idx]
    net = get_lenet()
    nearest = torch.cdist(truth[:, :, :14].flatten(1), train[:, :, :14].flatten(1)).argmin(1)
    inpaint = train[nearest].clone()
    inpaint[:, :, :14] = truth[:, :, :14]

    def pooled(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool2d(x[:, None], 4).flatten(1)

    superres = train[torch.cdist(pooled(truth), pooled(train)).argmin(1)]
    print(json.dumps({"lenet_accuracy@task=mnist-inpaint": lenet_accuracy(net, inpaint, truth_lab),
                      "lenet_accuracy@task=mnist-superres": lenet_accuracy(net, superres, truth_lab),
                      "lenet_accuracy_of_truth": lenet_accuracy(net, truth, truth_lab)}))


if __name__ == "__main__":
    main()
