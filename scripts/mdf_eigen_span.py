"""How many eigen-coordinates does MNIST on a sphere need? Held-out digits projected onto the span of the first k
Laplace-Beltrami eigenfunctions of the icosphere (least squares, with the constant), read back onto the digit's
chart and classified by the bench LeNet (the fraction called one digit with >= 0.99 confidence).

    FUNCGEN_DATA=../shared/data python scripts/mdf_eigen_span.py --ks 64 256 512 1024

A read-out linear in the eigen-coordinates (MDF's branch/trunk path) can only draw functions in this span.
"""

from __future__ import annotations

import argparse

import torch

from funcgen.data.mesh import MNISTSphereDataModule, chart_images, eigenbasis
from funcgen.metrics import get_lenet, lenet_confident_fraction


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ks", type=int, nargs="+", default=[64, 256, 512, 1024])
    p.add_argument("--num", type=int, default=256, help="held-out digits (images 8000..)")
    p.add_argument("--subdivisions", type=int, default=4)
    a = p.parse_args()
    dm = MNISTSphereDataModule(subdivisions=a.subdivisions, num_train=8, num_val=a.num, num_eigs=8)
    dm.setup("fit")
    net = get_lenet(dm.root)
    values = dm.denormalize(dm.val_set.values).double()  # [S, V, 1] intensities
    print(f"digits on the mesh: {lenet_confident_fraction(chart_images(values, dm.mesh).clamp(0, 1).float(), net):.3f}")
    for k in a.ks:
        phi = eigenbasis(dm.mesh, k).coords(torch.float64)
        basis = torch.cat([torch.ones(phi.shape[0], 1, dtype=torch.float64), phi], 1)
        coef = torch.linalg.lstsq(basis, values[..., 0].T).solution
        proj = (basis @ coef).T[..., None]
        frac = lenet_confident_fraction(chart_images(proj, dm.mesh).clamp(0, 1).float(), net)
        print(f"k = {k:5d}: projections recognisable {frac:.3f}", flush=True)


if __name__ == "__main__":
    main()
