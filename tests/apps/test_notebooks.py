"""Every notebooks/*.ipynb executes end to end (smoke settings), and the executor reports failures
with the notebook's name and the cell index."""

import json
import os
from pathlib import Path

import pytest

from funcgen.apps.notebook import SMOKE_ENV, NotebookError, code_cells, run_notebook

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_the_notebooks_are_there():
    assert {p.stem for p in NOTEBOOKS} >= {"quickstart", "arbitrary_resolution", "manifolds"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path):
    nb = json.loads(path.read_text())
    assert nb["nbformat"] == 4
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), \
        "commit notebooks with empty outputs"
    cwd = Path.cwd()
    ns = run_notebook(path, tmp_path, smoke=True)
    assert Path.cwd() == cwd and SMOKE_ENV not in os.environ
    assert ns["SMOKE"] is True  # the notebook read the smoke switch (its last cell holds the shape/finiteness checks)


def _write(path: Path, sources: list[str]) -> Path:
    cells = [{"cell_type": "markdown", "metadata": {}, "source": ["# title"]}]
    cells += [{"cell_type": "code", "metadata": {}, "source": s, "outputs": [], "execution_count": None}
              for s in sources]
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


def test_executor_shares_one_namespace_and_names_the_failing_cell(tmp_path):
    ok = _write(tmp_path / "ok.ipynb", ["x = 2", "open('out.txt', 'w').write(str(x * 3))\ny = x + 1"])
    ns = run_notebook(ok, tmp_path / "wd")
    assert ns["y"] == 3 and (tmp_path / "wd" / "out.txt").read_text() == "6"
    bad = _write(tmp_path / "bad.ipynb", ["x = 1", "assert x == 2, 'broken'"])
    with pytest.raises(NotebookError, match=r"bad\.ipynb: cell 2 failed: AssertionError: broken") as err:
        run_notebook(bad)
    assert err.value.cell == 2 and err.value.notebook == "bad.ipynb"


def test_executor_rejects_ipython_syntax_and_non_notebooks(tmp_path):
    with pytest.raises(ValueError, match="cell 1 uses IPython syntax"):
        code_cells(_write(tmp_path / "magic.ipynb", ["%matplotlib inline"]))
    (tmp_path / "x.ipynb").write_text("{}")
    with pytest.raises(ValueError, match="not an nbformat-4 notebook"):
        code_cells(tmp_path / "x.ipynb")
