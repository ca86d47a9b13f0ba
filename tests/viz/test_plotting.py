"""Pictures that show: sphere points as a longitude/latitude map with the data beside, 2-D fields with a
colour bar and a title, validation pictures written to the run folder without a logger."""

import lightning as L
import numpy as np
import torch

from funcgen.data import ManifoldMixtureDataModule, ProceduralImageDataModule
from funcgen.data.manifold import latlon_to_sphere
from funcgen.geometry import Sphere
from funcgen.methods import RiemannianDiffusion
from funcgen.nets import ManifoldMLP
from funcgen.train.module import GenerativeModule
from funcgen.viz.plotting import image_grid, manifold_plot, sphere_lonlat
from tests.apps.test_module_cli import tiny_module

SPHERE = Sphere(2).config


def test_sphere_lonlat_inverts_the_data_modules_map(gen):
    lat = torch.rand(200, generator=gen, dtype=torch.float64) * 178 - 89
    lon = torch.rand(200, generator=gen, dtype=torch.float64) * 358 - 179
    got_lon, got_lat = sphere_lonlat(latlon_to_sphere(torch.stack([lat, lon], -1)))
    assert np.abs(got_lat - lat.numpy()).max() < 1e-9 and np.abs(got_lon - lon.numpy()).max() < 1e-9


def _cluster(lat: float, lon: float, n: int, gen: torch.Generator) -> torch.Tensor:
    pts = torch.tensor([[lat, lon]], dtype=torch.float64) + 3.0 * torch.randn(n, 2, generator=gen, dtype=torch.float64)
    return latlon_to_sphere(pts).float()


def _centroid(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    return xs.mean() / mask.shape[1], ys.mean() / mask.shape[0]


def test_sphere_samples_are_drawn_where_they_are_with_the_data_beside(gen):
    north_east, south_west = _cluster(45, 90, 400, gen), _cluster(-45, -90, 400, gen)
    # the same counts and titles, the clusters swapped: pixels differ only where points are drawn
    a = manifold_plot(north_east, SPHERE, data=south_west, title="t").astype(int)
    b = manifold_plot(south_west, SPHERE, data=north_east, title="t").astype(int)
    assert a.shape == b.shape
    darker_a = (b - a).sum(-1) > 60  # a point of picture a on the white background
    darker_b = (a - b).sum(-1) > 60
    assert darker_a.sum() > 200 and darker_b.sum() > 200  # not an empty picture
    half = a.shape[1] // 2  # generated on the left, data on the right
    gx, gy = _centroid(darker_a[:, :half])  # generated: north-east = right and up in its panel
    dx, dy = _centroid(darker_a[:, half:])  # data: south-west = left and down in its panel
    assert gx > 0.55 and gy < 0.5 and dx < 0.45 and dy > 0.5, (gx, gy, dx, dy)


def _has_colour(rgb: np.ndarray, hexcol: str, tol: int = 12) -> bool:
    ref = np.array([int(hexcol[i:i + 2], 16) for i in (1, 3, 5)])
    return bool((np.abs(rgb.astype(int) - ref).max(-1) <= tol).any())


def test_fields_have_a_colour_bar_and_a_title():
    flat = torch.zeros(4, 64, 1)  # every tile the middle of the range
    rgb = image_grid(flat, (8, 8), value_range=(-1.0, 1.0))
    # the tiles alone show only viridis' middle; both ends of the scale are there: a colour bar
    assert _has_colour(rgb, "#21918c") and _has_colour(rgb, "#440154") and _has_colour(rgb, "#fde725")
    titled = image_grid(flat, (8, 8), value_range=(-1.0, 1.0), title="four samples at 8x8")
    assert titled.shape == rgb.shape

    def dark_top(x):  # dark pixels in the top strip over the tiles (where a title goes; the bar is right)
        return int((x[:14, : int(0.8 * x.shape[1])].astype(int).sum(-1) < 300).sum())

    assert dark_top(rgb) == 0 and dark_top(titled) > 20


def test_validation_pictures_are_written_without_a_logger(tmp_path):
    dm = ProceduralImageDataModule("blobs", resolution=8, num_train=8, num_val=4, batch_size=4)
    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=1, check_val_every_n_epoch=1,
                        num_sanity_val_steps=0, default_root_dir=str(tmp_path))
    trainer.fit(tiny_module(2), datamodule=dm)
    pngs = sorted(p.name for p in (tmp_path / "samples").glob("*.png"))
    assert any("res1x" in p for p in pngs) and any("res4x" in p for p in pngs), pngs


def test_sphere_validation_picture_is_a_map_beside_the_data(tmp_path):
    dm = ManifoldMixtureDataModule("sphere", num_components=2, sigma=0.2, num_train=64, num_val=16, batch_size=32)
    module = GenerativeModule(RiemannianDiffusion(Sphere(2), sigma_min=1e-2, sigma_max=3.0, steps=4),
                              ManifoldMLP(1, 3, 3, width=16, depth=2), warmup_steps=1, val_num_samples=64,
                              val_steps=4, val_upsample=4)
    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=1, check_val_every_n_epoch=1,
                        num_sanity_val_steps=0, default_root_dir=str(tmp_path))
    trainer.fit(module, datamodule=dm)
    pngs = sorted((tmp_path / "samples").glob("*.png"))
    assert [p.name.split("_step")[0] for p in pngs] == ["samples_res1x"]  # one map, no resolutions
    from PIL import Image

    rgb = np.asarray(Image.open(pngs[0]).convert("RGB"))
    assert rgb.shape[1] > 1.6 * rgb.shape[0]  # two panels side by side
    ink = (rgb.astype(int).sum(-1) < 600).mean()
    assert ink > 0.01  # points, axes and labels, not a blank picture


def test_funcgen_sample_draws_sphere_points_as_a_map_beside_the_training_data(tmp_path):
    from PIL import Image

    from funcgen.apps.cli import main
    from funcgen.generator import FunctionGenerator

    dm = ManifoldMixtureDataModule("sphere", num_components=2, sigma=0.2, num_train=200, num_val=16)
    gen = FunctionGenerator(RiemannianDiffusion(Sphere(2), sigma_min=1e-2, sigma_max=3.0, steps=2),
                            ManifoldMLP(1, 3, 3, width=16, depth=2), dm.data_config())
    ckpt = gen.save(tmp_path / "m.safetensors")
    assert main(["sample", "--ckpt", str(ckpt), "--num", "50", "--steps", "2", "--out", str(tmp_path / "o")]) == 0
    rgb = np.asarray(Image.open(tmp_path / "o" / "samples.png").convert("RGB")).astype(int)
    assert rgb.shape[1] > 1.6 * rgb.shape[0]  # samples and the rebuilt training data side by side
    left, right = int(0.45 * rgb.shape[1]), int(0.55 * rgb.shape[1])  # the panels, not where they meet
    red = (rgb[..., 0] - rgb[..., 1] > 40) & (rgb[..., 0] - rgb[..., 2] > 30)  # SAMPLE_COLOR points
    assert red[:, :left].sum() > 20 and red[:, right:].sum() == 0
