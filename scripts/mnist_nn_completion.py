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
import sys
from pathlib import Path

import torch

from funcgen.metrics import get_lenet
from funcgen.metrics.lenet import lenet_accuracy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conditional_bench import heldout_index, mnist_observed, mnist_split  # noqa: E402  (the bench's digits)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    ns = p.parse_args()
    train, test, lab = mnist_split()
    idx = heldout_index(ns.seed, ns.num, len(test))
    truth, truth_lab = test[idx], lab[idx]
    net = get_lenet()
    result = {}
    for task in ("mnist-inpaint", "mnist-superres"):
        seen = mnist_observed(truth, task).values.flatten(1)  # what the task observes, as conditional_bench
        nearest = train[torch.cdist(seen, mnist_observed(train, task).values.flatten(1)).argmin(1)]
        if task == "mnist-inpaint":  # the observed left half kept, the neighbour's right half
            nearest = nearest.clone()
            nearest[:, :, :14] = truth[:, :, :14]
        result[f"lenet_accuracy@task={task}"] = lenet_accuracy(net, nearest, truth_lab)
    result["lenet_accuracy_of_truth"] = lenet_accuracy(net, truth, truth_lab)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
