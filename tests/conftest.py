import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
# One intra-op thread: the tests run many small ops, which two threads slow down (several times on
# a loaded 2-core machine); every test module shares this setting.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def gen() -> torch.Generator:
    """A freshly seeded generator: a new random seed every run (printed on failure)."""
    seed = int(torch.randint(0, 2**31 - 1, ()).item())
    print(f"generator seed {seed}")
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def data_root(monkeypatch: pytest.MonkeyPatch) -> Path:
    """The reference data folder, made absolute (also in ``FUNCGEN_DATA``), so tests that change the
    working directory still find it when the variable holds a relative path such as ``../shared/data``."""
    root = os.environ.get("FUNCGEN_DATA")
    if not root or not Path(root).is_dir():
        pytest.skip("reference data not found: set FUNCGEN_DATA to the folder holding mnist/ (../shared/data)")
    path = Path(root).resolve()
    monkeypatch.setenv("FUNCGEN_DATA", str(path))
    return path
