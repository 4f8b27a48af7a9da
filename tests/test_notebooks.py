"""Every notebook in notebooks/ runs top to bottom on the real shared data; a cell that errors fails the test.

Notebooks are committed without outputs and write only to temporary folders, so running them here
changes nothing in the repository. Run one by hand with
``python -m pytest tests/test_notebooks.py -k quickstart -m ""``.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
# Notebooks that take more than 60 s on 2 cores; run by `make test-all`.
SLOW: set[str] = set()  # all four run in `make test` (02, the longest, takes ~40 s on 2 cores)
TIMEOUT_PER_CELL = 300


def _param(path: Path):
    marks = [pytest.mark.realdata] + ([pytest.mark.slow] if path.name in SLOW else [])
    return pytest.param(path, id=path.stem, marks=marks)


def test_notebooks_are_committed_without_outputs():
    import nbformat

    assert NOTEBOOKS, "no notebooks found in notebooks/"
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        dirty = [i for i, cell in enumerate(notebook.cells)
                 if cell.cell_type == "code" and (cell.outputs or cell.execution_count)]
        assert not dirty, f"{path.name}: cells {dirty} have outputs; clear them before committing"
        assert notebook.metadata.get("kernelspec", {}).get("name") == "python3", path.name


@pytest.mark.parametrize("path", [_param(p) for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path: Path, data_dir, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    monkeypatch.setenv("RADPIPE_DATA", str(data_dir))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebooks' tempfile folders land here
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, kernel_name="python3", timeout=TIMEOUT_PER_CELL,
                            resources={"metadata": {"path": str(tmp_path)}})
    started = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as exc:
        plain = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # the kernel colours its tracebacks
        pytest.fail(f"{path.name} failed:\n{plain}", pytrace=False)
    print(f"{path.name}: {time.perf_counter() - started:.1f} s")
