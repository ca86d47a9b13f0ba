"""Execute a Jupyter notebook's code cells in plain Python (no Jupyter needed): the notebook tests.

    python -m funcgen.apps.notebook notebooks/*.ipynb [--smoke]

The code cells run in order in ONE fresh namespace (as a kernel would), with matplotlib's Agg
backend, in a working directory of the caller's choice (default: a fresh temporary one, so the
notebook's files never land in the repository). The first failing cell raises
:class:`NotebookError` naming the notebook and the cell index (0-based, counting all cells).

Convention for small settings: notebooks read ``FUNCGEN_NOTEBOOK_SMOKE`` (``"1"`` = smallest
settings, what the tests use) in their first code cell; ``smoke=True`` sets it during the run.
IPython magics and shell escapes (lines starting with ``%`` or ``!``) are not supported: notebooks
meant to be executed here must be plain Python.

``--write`` stores what each cell printed, the value of its last expression and the figures it left
open (PNG at a low resolution, so the files stay small) as the cells' outputs, in place:

    OMP_NUM_THREADS=1 python -m funcgen.apps.notebook notebooks/*.ipynb --write
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

__all__ = ["NotebookError", "code_cells", "run_notebook", "write_outputs", "SMOKE_ENV"]

SMOKE_ENV = "FUNCGEN_NOTEBOOK_SMOKE"


class NotebookError(RuntimeError):
    """A cell of a notebook raised; ``notebook`` and ``cell`` say where (the cause is chained)."""

    def __init__(self, notebook: str, cell: int, error: BaseException) -> None:
        super().__init__(f"{notebook}: cell {cell} failed: {type(error).__name__}: {error}")
        self.notebook, self.cell = notebook, cell


def code_cells(path: str | os.PathLike) -> list[tuple[int, str]]:
    """``(cell index, source)`` of the code cells of an nbformat-4 notebook, in order."""
    path = Path(path)
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable notebook (nbformat-4 JSON expected): {e}") from e
    if not isinstance(nb, dict) or nb.get("nbformat") != 4 or not isinstance(nb.get("cells"), list):
        raise ValueError(f"{path}: not an nbformat-4 notebook (needs nbformat: 4 and a cells list)")
    out = []
    for i, cell in enumerate(nb["cells"]):
        if cell.get("cell_type") != "code":
            continue
        src = cell.get("source", "")
        src = "".join(src) if isinstance(src, list) else str(src)
        bad = [ln for ln in src.splitlines() if ln.lstrip().startswith(("%", "!"))]
        if bad:
            raise ValueError(f"{path}: cell {i} uses IPython syntax ({bad[0].strip()!r}); write plain Python")
        out.append((i, src))
    return out


@contextlib.contextmanager
def _environment(workdir: Path, env: dict[str, str]) -> Iterator[None]:
    old_cwd, old_env = Path.cwd(), {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    os.chdir(workdir)
    try:
        yield
    finally:
        os.chdir(old_cwd)
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_notebook(path: str | os.PathLike, workdir: str | os.PathLike | None = None, *, smoke: bool = False,
                 env: dict[str, str] | None = None, outputs: dict[int, list[dict[str, Any]]] | None = None,
                 dpi: int = 50) -> dict[str, Any]:
    """Run the code cells of ``path`` in one fresh namespace; returns that namespace.

    Args:
        path: the ``.ipynb`` file.
        workdir: working directory during the run (None: a fresh temporary directory, removed after).
        smoke: set ``FUNCGEN_NOTEBOOK_SMOKE=1`` (the notebooks' smallest settings).
        env: further environment variables for the run (restored after).
        outputs: if given, filled with each code cell's nbformat outputs (printed text, the last
            expression's value, open figures as PNG at ``dpi``), keyed by cell index.
        dpi: resolution of the figures stored in ``outputs``.

    Raises:
        NotebookError: a cell raised (its index and the notebook's name in the message).
        ValueError: the file is not an nbformat-4 notebook or uses IPython-only syntax.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    path = Path(path).resolve()
    cells = code_cells(path)
    variables = {"MPLBACKEND": "Agg", **({SMOKE_ENV: "1"} if smoke else {}), **(env or {})}
    ns: dict[str, Any] = {"__name__": "__main__", "__file__": str(path)}
    with contextlib.ExitStack() as stack:
        wd = (Path(workdir) if workdir is not None
              else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="nb-"))))
        wd.mkdir(parents=True, exist_ok=True)
        stack.enter_context(_environment(wd, variables))
        try:
            for i, src in cells:
                try:
                    if outputs is None:
                        exec(compile(src, f"{path.name}:cell{i}", "exec"), ns)
                    else:
                        outputs[i] = _run_recording(src, f"{path.name}:cell{i}", ns, dpi)
                except Exception as e:
                    raise NotebookError(path.name, i, e) from e
        finally:
            plt.close("all")
    return ns


def _run_recording(src: str, name: str, ns: dict[str, Any], dpi: int) -> list[dict[str, Any]]:
    """Run one cell, returning its nbformat outputs: stdout, the last expression's repr, open figures."""
    import ast
    import base64
    import io

    import matplotlib.pyplot as plt

    tree = ast.parse(src, name)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    buf = io.StringIO()
    result = None
    with contextlib.redirect_stdout(buf):
        exec(compile(tree, name, "exec"), ns)
        if last is not None:
            result = eval(compile(ast.Expression(last.value), name, "eval"), ns)
    out: list[dict[str, Any]] = []
    if buf.getvalue():
        out.append({"output_type": "stream", "name": "stdout", "text": buf.getvalue().splitlines(keepends=True)})
    if result is not None and not hasattr(result, "savefig") and type(result).__module__.split(".")[0] != "matplotlib":
        out.append({"output_type": "execute_result", "metadata": {}, "execution_count": None,
                    "data": {"text/plain": repr(result)[:2000].splitlines(keepends=True)}})
    for num in plt.get_fignums():
        png = io.BytesIO()
        plt.figure(num).savefig(png, format="png", dpi=dpi, bbox_inches="tight")
        out.append({"output_type": "display_data", "metadata": {},
                    "data": {"image/png": base64.b64encode(png.getvalue()).decode("ascii"),
                             "text/plain": ["<Figure>"]}})
    plt.close("all")
    return out


def write_outputs(path: str | os.PathLike, *, smoke: bool = False, dpi: int = 50) -> Path:
    """Execute ``path`` (as :func:`run_notebook`) and store each code cell's outputs and execution
    count in the file; cells that produced nothing get empty outputs."""
    path = Path(path)
    outputs: dict[int, list[dict[str, Any]]] = {}
    run_notebook(path, smoke=smoke, outputs=outputs, dpi=dpi)
    nb = json.loads(path.read_text(encoding="utf-8"))
    count = 0
    for i, cell in enumerate(nb["cells"]):
        if cell.get("cell_type") != "code":
            continue
        count += 1
        cell["execution_count"] = count
        cell["outputs"] = outputs.get(i, [])
        for o in cell["outputs"]:
            if o["output_type"] == "execute_result":
                o["execution_count"] = count
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m funcgen.apps.notebook", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("notebooks", nargs="+")
    p.add_argument("--smoke", action="store_true", help=f"set {SMOKE_ENV}=1 (smallest settings)")
    p.add_argument("--write", action="store_true", help="store the cells' outputs in the notebook files")
    ns = p.parse_args(argv)
    failed = 0
    for nb in ns.notebooks:
        try:
            if ns.write:
                write_outputs(nb, smoke=ns.smoke)
            else:
                run_notebook(nb, smoke=ns.smoke)
            print(f"ok      {nb}")
        except (NotebookError, ValueError) as e:
            failed += 1
            print(f"FAILED  {e}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
