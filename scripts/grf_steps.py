"""Evaluate a trained grf1d model (checkpoint or export) at several sampler step counts.

    PYTHONPATH=. python scripts/grf_steps.py CKPT [--steps 1 2 3]

Same protocol as `funcgen bench grf1d` (2000 samples at 64 and 256 points, seed 0, floors from exact
samples); for IGN, steps = number of applications of f.
"""

import argparse
import json

from funcgen.bench import _eval_grf
from funcgen.data import GRFDataModule
from funcgen.generator import load

p = argparse.ArgumentParser()
p.add_argument("ckpt")
p.add_argument("--steps", type=int, nargs="+", default=[1, 2, 3])
ns = p.parse_args()
gen = load(ns.ckpt)
dm = GRFDataModule(dim=1, resolution=64, kernel="se", lengthscale=0.1, num_train=16, num_val=16)
dm.setup("fit")
for k in ns.steps:
    metrics, reference, _ = _eval_grf(gen, dm, 0, (64, 256), steps=k)
    print(json.dumps({"steps": k, "metrics": metrics}))
print(json.dumps({"reference": reference}))
