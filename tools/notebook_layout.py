"""Check, and fix, how the chapter notebooks look in the built book.

Three rules (issue 16, "the book as a reader sees it"), checked by
``tests/test_notebook_layout.py``:

1. **The Colab install cell is first and hidden in HTML.** Colab needs it as the
   notebook's first cell (``book/_colab_cell.py``); the book page must open on
   the chapter's title, so the cell carries the tag ``remove-cell``.
2. **Widget explorers are not shown in HTML.** An ipywidgets view needs a
   kernel (or CDN scripts the offline book does not load), so in the static
   page it would be an empty area. Every code cell that outputs a widget view
   carries ``remove-output``, and the next code cell shows a kernel-free
   stand-in (``slider_figure``, or a still image); the notebook's saved
   widget state, then unused, is dropped. ``apply`` tags the cells and drops
   the state; the stand-in cell is written by hand.
3. **Code lines are at most 79 characters** (a line holding a URL, and a cell
   tagged ``remove-cell``, are exempt), so that code fits the book's content
   column without scrolling.

Usage, at the root of the repository::

    python tools/notebook_layout.py check [NOTEBOOK ...]   # list what breaks the rules (exit 1 if any)
    python tools/notebook_layout.py apply [NOTEBOOK ...]   # fix rules 1 and 2 in place (idempotent)

Without NOTEBOOK, the chapter notebooks ``book/*.ipynb``. ``apply`` does
not touch code lines: rewrap those by hand (``check`` lists them with their
cell and line). Run ``apply`` after executing a notebook, since executing it
saves the widget state again.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
MAX_LINE = 79                                        # characters per code line (PEP 8)
COLAB_MARK = '"google.colab" in sys.modules'         # a line of book/_colab_cell.py
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
HIDDEN_OUTPUT = {"remove-output", "remove-cell"}
URL = re.compile(r"https?://")


def chapter_notebooks(repo: Path = REPO) -> list[Path]:
    """The chapter notebooks of the book: ``book/*.ipynb``."""
    return sorted((repo / "book").glob("*.ipynb"))


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _shows_widget(cell) -> bool:
    return cell.get("cell_type") == "code" and any(WIDGET_VIEW in out.get("data", {})
                                                   for out in cell.get("outputs", []))


def long_lines(nb, max_line: int = MAX_LINE) -> list[tuple[int, int, int, str]]:
    """Code lines longer than ``max_line`` that the book shows: ``(cell, line, length, text)``, 1-based.

    Lines holding a URL are exempt, and so are cells tagged ``remove-cell`` (not in the book).
    """
    found = []
    for i, cell in enumerate(nb.cells, start=1):
        if cell.cell_type != "code" or "remove-cell" in _tags(cell):
            continue
        for k, line in enumerate(cell.source.splitlines(), start=1):
            if len(line) > max_line and not URL.search(line):
                found.append((i, k, len(line), line))
    return found


def _static_stand_in(cell) -> bool:
    """Whether a code cell shows a kernel-free figure: a slider figure (a range input) or an image.

    A ``slider_figure`` cell not executed yet (no outputs, no execution count) counts
    too: its figure appears when the notebook is next executed.
    """
    if (not cell.get("outputs") and cell.get("execution_count") is None
            and "slider_figure(" in cell.get("source", "")):
        return True
    for out in cell.get("outputs", []):
        data = out.get("data", {})
        html = data.get("text/html", "")
        html = "".join(html) if isinstance(html, list) else html
        if 'type="range"' in html or any(m in data for m in ("image/png", "image/svg+xml", "image/jpeg")):
            return True
    return False


def missing_stand_ins(nb) -> list[int]:
    """Cells (1-based) that show a widget view with no kernel-free figure in the next code cell."""
    missing = []
    for i, cell in enumerate(nb.cells):
        if not _shows_widget(cell):
            continue
        following = next((c for c in nb.cells[i + 1:] if c.cell_type == "code"), None)
        if following is None or not _static_stand_in(following):
            missing.append(i + 1)
    return missing


def layout_problems(nb, max_line: int = MAX_LINE) -> list[str]:
    """Every way the notebook breaks the three rules, one line each (empty when it follows them)."""
    problems = []
    first = nb.cells[0] if nb.cells else None
    if first is None or first.cell_type != "code" or COLAB_MARK not in first.source:
        problems.append("cell 1: the Colab install cell (book/_colab_cell.py) is not the first cell")
    elif "remove-cell" not in _tags(first):
        problems.append(f"cell 1: the Colab install cell lacks the tag remove-cell (tags: {_tags(first)})")
    widgets_shown = False
    for i, cell in enumerate(nb.cells, start=1):
        if _shows_widget(cell) and not HIDDEN_OUTPUT & set(_tags(cell)):
            widgets_shown = True
            problems.append(f"cell {i}: shows an ipywidgets view, empty in the static book; tag it remove-output "
                            "and follow it with a kernel-free slider_figure cell")
    for i in missing_stand_ins(nb):
        problems.append(f"cell {i}: an ipywidgets explorer with no kernel-free stand-in after it: add a code cell "
                        "that shows the same views with slider_figure (or a still image)")
    if "widgets" in nb.metadata and not widgets_shown:
        problems.append("metadata: saved widget state that no shown cell uses (drop metadata.widgets)")
    for i, k, n, line in long_lines(nb, max_line):
        problems.append(f"cell {i} line {k}: {n} characters > {max_line}: {line.strip()[:70]}")
    return problems


def apply_layout(nb) -> list[str]:
    """Fix rules 1 and 2 in place: tag the Colab cell and the widget cells, drop unused widget state.

    Returns what was changed (empty when the notebook already followed them).
    """
    changed = []
    first = nb.cells[0] if nb.cells else None
    if first is not None and first.cell_type == "code" and COLAB_MARK in first.source:
        tags = [t for t in _tags(first) if t not in ("remove-output", "remove-input", "hide-cell", "hide-input")]
        if "remove-cell" not in tags:
            first.metadata["tags"] = tags + ["remove-cell"]
            changed.append("cell 1: tagged remove-cell (the Colab install cell)")
    for i, cell in enumerate(nb.cells, start=1):
        if _shows_widget(cell) and not HIDDEN_OUTPUT & set(_tags(cell)):
            cell.metadata["tags"] = _tags(cell) + ["remove-output"]
            changed.append(f"cell {i}: tagged remove-output (an ipywidgets view)")
    if "widgets" in nb.metadata and not any(_shows_widget(c) and not HIDDEN_OUTPUT & set(_tags(c))
                                            for c in nb.cells):
        del nb.metadata["widgets"]
        changed.append("metadata: dropped the saved widget state (no widget view is shown)")
    return changed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/notebook_layout.py",
                                     description="Check or fix how the chapter notebooks look in the built book.")
    parser.add_argument("command", choices=("check", "apply"))
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: book/*.ipynb")
    parser.add_argument("--max-line", type=int, default=MAX_LINE, help=f"longest code line (default {MAX_LINE})")
    args = parser.parse_args(argv)
    paths = args.notebooks or chapter_notebooks()
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        parser.error(f"no such notebook: {', '.join(missing)}")
    status = 0
    for path in paths:
        nb = nbformat.read(str(path), as_version=4)
        if args.command == "apply":
            changed = apply_layout(nb)
            if changed:
                nbformat.write(nb, str(path))
            for line in changed:
                print(f"{path}: {line}")
        else:
            for line in layout_problems(nb, args.max_line):
                print(f"{path}: {line}")
                status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
