"""Every notebooks/*.ipynb executes end to end (smoke settings), and the executor reports failures
with the notebook's name and the cell index."""

import json
import os
from pathlib import Path

import pytest

from funcgen.apps.notebook import SMOKE_ENV, NotebookError, code_cells, run_notebook, write_outputs

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_the_notebooks_are_there():
    assert {p.stem for p in NOTEBOOKS} >= {"quickstart", "arbitrary_resolution", "manifolds"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path):
    nb = json.loads(path.read_text())
    assert nb["nbformat"] == 4
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    # committed executed (python -m funcgen.apps.notebook notebooks/*.ipynb --write), and small
    assert any(c.get("outputs") for c in code), "commit notebooks with their outputs (--write)"
    assert [c.get("execution_count") for c in code] == list(range(1, len(code) + 1))
    assert path.stat().st_size < 400_000, "keep the stored figures small (low dpi, few figures)"
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


def test_write_outputs_stores_printed_text_values_and_figures(tmp_path):
    import base64

    nb = _write(tmp_path / "w.ipynb", ["import matplotlib.pyplot as plt\nx = 6", "print('x is', x)\nx * 7",
                                        "plt.plot([0, 1], [1, 0])\nNone", "y = 1"])
    write_outputs(nb)
    cells = [c for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"]
    assert [c["execution_count"] for c in cells] == [1, 2, 3, 4]
    assert cells[0]["outputs"] == [] and cells[3]["outputs"] == []
    out = cells[1]["outputs"]
    assert "".join(out[0]["text"]) == "x is 6\n" and out[1]["data"]["text/plain"] == ["42"]
    png = base64.b64decode(cells[2]["outputs"][0]["data"]["image/png"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
