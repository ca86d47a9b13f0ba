"""Pictures of conditional generation: shapes and content."""

import numpy as np
import torch

from funcgen.viz.conditional import completion_grid, posterior_band


def test_completion_grid_has_one_row_per_kind():
    obs = torch.rand(3, 16, 1)
    obs[:, :8] = float("nan")
    rgb = completion_grid(obs, torch.rand(3, 2, 16, 1), torch.rand(3, 16, 1), (4, 4))
    assert rgb.dtype == np.uint8 and rgb.shape == (2 + 4 * 6, 2 + 3 * 6, 3)  # 4 rows (obs, 2 samples, truth)
    coarse = completion_grid(torch.rand(3, 4, 1), torch.rand(3, 1, 16, 1), None, (4, 4))
    assert coarse.shape == (2 + 2 * 6, 2 + 3 * 6, 3)


def test_posterior_band_draws_an_image():
    q = torch.linspace(0, 1, 20)
    rgb = posterior_band(q, torch.randn(50, 20), torch.tensor([0.3, 0.6]), torch.tensor([1.0, -1.0]),
                         exact=(torch.zeros(20), torch.ones(20)), truth=torch.zeros(20), title="t")
    assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.std() > 0
