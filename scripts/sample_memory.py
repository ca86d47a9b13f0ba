"""Peak resident memory of sampling N query points from a 1-D PerceiverNet model (fresh process per N).

    python scripts/sample_memory.py 10000 100000 1000000
"""

import json
import subprocess
import sys

CHILD = """
import resource, sys, time, torch
torch.set_num_threads(1)
from funcgen import FunctionGenerator
from funcgen.methods import FunctionalDiffusion
from funcgen.nets import PerceiverNet
from funcgen.processes.noise import SpectralNoise
net = PerceiverNet(1, 1, 1, width=96, num_latents=32, depth=3, heads=4, num_bands=6)
gen = FunctionGenerator(FunctionalDiffusion(SpectralNoise(1, "fdp", modes=32), steps=2), net,
                        {"dim": 1, "channels": 1, "train_shape": [64]})
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.time()
ps = gen.sample(1, int(sys.argv[1]), steps=2, seed=0)
print(base, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.time() - t, bool(torch.isfinite(ps.values).all()))
"""

rows = []
for n in map(int, sys.argv[1:]):
    cmd = [sys.executable, "-c", CHILD, str(n)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()
    base, peak, secs, finite = int(out[0]), int(out[1]), float(out[2]), out[3] == "True"
    rows.append({"points": n, "rss_before_MiB": round(base / 1024, 1), "peak_rss_MiB": round(peak / 1024, 1),
                 "growth_MiB": round((peak - base) / 1024, 1), "seconds": round(secs, 2), "finite": finite})
print(json.dumps(rows, indent=1))
