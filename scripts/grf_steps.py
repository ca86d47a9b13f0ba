"""Evaluate a trained grf1d or MNIST model (checkpoint or export) at several sampler step counts.

    PYTHONPATH=. python scripts/grf_steps.py CKPT [--steps 1 2 3] [--solver ddim|dpm2m] [--eta E] [--res 64 256]
    FUNCGEN_DATA=../shared/data PYTHONPATH=. python scripts/grf_steps.py CKPT --task mnist --num 500 --steps 25

Same protocol as `funcgen bench grf1d` (2000 samples at 64 and 256 points, seed 0, floors from exact
samples) or `funcgen bench mnist` (FD_LeNet at 28x28 by default, `--num` samples, seed 0); for IGN,
steps = number of applications of f. `--solver` / `--eta` override a functional
diffusion model's sampler (e.g. to re-evaluate a model trained before DPM-Solver++(2M) existed).
"""

import argparse
import json

from funcgen.bench.run import _eval_grf, _eval_mnist
from funcgen.data import GRFDataModule, MNISTDataModule
from funcgen.generator import load

p = argparse.ArgumentParser()
p.add_argument("ckpt")
p.add_argument("--task", choices=["grf1d", "mnist"], default="grf1d")
p.add_argument("--num", type=int, default=2000, help="generated functions per evaluation")
p.add_argument("--steps", type=int, nargs="+", default=[1, 2, 3])
p.add_argument("--solver", choices=["ddim", "dpm2m"], help="FDP sampler (default: the model's)")
p.add_argument("--eta", type=float, help="FDP DDIM stochasticity (default: the model's)")
p.add_argument("--res", type=int, nargs="+", help="resolutions evaluated (default: 64 256 / 28)")
ns = p.parse_args()
gen = load(ns.ckpt)
overrides = {name: getattr(ns, name) for name in ("solver", "eta") if getattr(ns, name) is not None}
if overrides:
    try:  # the method's own checks apply (dpm2m needs eta = 0; other methods take neither)
        gen = gen.with_method_args(**overrides)
    except ValueError as e:
        p.error(str(e))
if ns.task == "grf1d":
    evaluate, dm, res = _eval_grf, GRFDataModule(dim=1, resolution=64, kernel="se", lengthscale=0.1,
                                                 num_train=16, num_val=16), tuple(ns.res or (64, 256))
    dm.setup("fit")
else:
    evaluate, dm, res = _eval_mnist, MNISTDataModule(), tuple(ns.res or (28,))
for k in ns.steps:
    metrics, reference, _ = evaluate(gen, dm, 0, res, num=ns.num, steps=k)
    print(json.dumps({"steps": k, "metrics": metrics}))
print(json.dumps({"reference": reference}))
