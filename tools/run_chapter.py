"""Execute chapter notebooks in place at full scale, as `jupyter nbconvert --execute --inplace` does.

    python tools/run_chapter.py book/ch4_soft_coupling.ipynb [more notebooks ...]

One difference: a live ipywidgets explorer cell (tagged ``remove-output``, calling ``*_explorer(``)
gets a short reply timeout. Under nbclient such a cell sometimes never receives its reply although
the kernel has finished it (jupyter/nbclient#312), and the whole run then waits until its timeout;
the explorer's view is removed from the book anyway (tools/notebook_layout.py). Every other cell may
run for up to two hours (chapter 1's training cell takes about one).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError

CELL_TIMEOUT_S = 7200       # the longest cell (chapter 1's training) takes about an hour on 2 cores
EXPLORER_TIMEOUT_S = 300    # a live explorer draws in seconds; past this its reply is taken as lost


def is_live_explorer(cell) -> bool:
    """A cell that builds an ipywidgets explorer whose view the book removes."""
    return "remove-output" in cell.metadata.get("tags", []) and "explorer(" in cell.source


def run(path: Path) -> float:
    """Execute the notebook at ``path`` in its own folder and write it back; returns the seconds taken."""
    nb = nbformat.read(str(path), as_version=4)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            if not is_live_explorer(cell):
                client.execute_cell(cell, index)
                continue
            client.timeout = EXPLORER_TIMEOUT_S
            try:
                client.execute_cell(cell, index)
            except CellTimeoutError:
                print(f"{path.name}: cell {index}: explorer reply lost after {EXPLORER_TIMEOUT_S} s; "
                      "going on (its view is not in the book)", file=sys.stderr)
            finally:
                client.timeout = CELL_TIMEOUT_S
    nbformat.write(nb, str(path))
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args(argv)
    if os.environ.get("ITERCOURSE_SMOKE"):
        parser.error("ITERCOURSE_SMOKE is set: the committed outputs are full scale; unset it first")
    for path in args.notebooks:
        print(f"{path.name}: {run(path.resolve()):.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
