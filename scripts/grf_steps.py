"""Evaluate a trained grf1d model (checkpoint or export) at several sampler step counts.

    PYTHONPATH=. python scripts/grf_steps.py CKPT [--steps 1 2 3] [--solver ddim|dpm2m] [--eta E] [--res 64 256]

Same protocol as `funcgen bench grf1d` (2000 samples at 64 and 256 points, seed 0, floors from exact
samples); for IGN, steps = number of applications of f. `--solver` / `--eta` override a functional
diffusion model's sampler (e.g. to re-evaluate a model trained before DPM-Solver++(2M) existed).
"""

import argparse
import json

from funcgen.bench import _eval_grf
from funcgen.data import GRFDataModule
from funcgen.generator import load

p = argparse.ArgumentParser()
p.add_argument("ckpt")
p.add_argument("--steps", type=int, nargs="+", default=[1, 2, 3])
p.add_argument("--solver", choices=["ddim", "dpm2m"], help="FDP sampler (default: the model's)")
p.add_argument("--eta", type=float, help="FDP DDIM stochasticity (default: the model's)")
p.add_argument("--res", type=int, nargs="+", default=[64, 256], help="resolutions evaluated")
ns = p.parse_args()
gen = load(ns.ckpt)
for name in ("solver", "eta"):
    if getattr(ns, name) is not None:
        if not hasattr(gen.method, name):
            p.error(f"--{name} applies to functional diffusion models; this one is {type(gen.method).__name__}")
        setattr(gen.method, name, getattr(ns, name))
dm = GRFDataModule(dim=1, resolution=64, kernel="se", lengthscale=0.1, num_train=16, num_val=16)
dm.setup("fit")
for k in ns.steps:
    metrics, reference, _ = _eval_grf(gen, dm, 0, tuple(ns.res), steps=k)
    print(json.dumps({"steps": k, "metrics": metrics}))
print(json.dumps({"reference": reference}))
