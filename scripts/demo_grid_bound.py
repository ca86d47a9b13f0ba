"""What the demo's grid allows: exact blobs read at the nodes of a G x G grid and read back at 32x32 and 128x128 by
the sparse neural operator's multilinear interpolation (``grid_gather``), scored by the demo's own statistics
(log-spectrum error against exact samples, over the exact-sets floor). A network whose output is that
interpolation (the SNO without local blocks, ``depth=0``) cannot do better than this bound.

    python scripts/demo_grid_bound.py --grids 16 24 32
"""

from __future__ import annotations

import argparse
import json

import torch

from funcgen.apps.demo import demo_statistics
from funcgen.data import ProceduralImageDataModule
from funcgen.nets.sno_ops import grid_gather
from funcgen.pointset import grid_coords


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grids", type=int, nargs="+", default=[16, 24, 32])
    p.add_argument("--num", type=int, default=64, help="functions per set (the demo's 64)")
    ns = p.parse_args()
    data = ProceduralImageDataModule(family="blobs", resolution=32, num_train=16, num_val=16, batch_size=16, seed=0)
    rows = []
    for g in ns.grids:
        nodes = grid_coords((g, g)).double()[None].expand(ns.num, -1, -1)
        at_nodes = data.reference(nodes, torch.Generator().manual_seed(0))  # [S, G^2, 1]
        for r in (32, 128):
            q = grid_coords((r, r)).double()[None].expand(ns.num, -1, -1)
            back = grid_gather(q, at_nodes, g)
            exact = [data.reference(q, torch.Generator().manual_seed(1 + k)) for k in range(4)]
            s = demo_statistics(back.float(), exact, (r, r))
            rows.append({"grid": g, "resolution": r, "spec_err": s["spec_err"], "floor": s["floor_spec_err"],
                         "ratio": s["spec_err"] / s["floor_spec_err"]})
            print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
