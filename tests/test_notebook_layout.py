"""The chapter notebooks as the book shows them: Colab cell hidden, no empty explorer, code that fits.

Code lines are held to 79 characters (``layout.MAX_LINE``), which fit the
book's code column on a laptop without wrapping or scrolling.

The rules and the fixer live in ``tools/notebook_layout.py`` (``check`` lists
what breaks them, ``apply`` tags the cells); these tests hold every chapter
notebook to them, and check the tool itself on small notebooks made here.
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import notebook_layout as layout  # noqa: E402  (tools/notebook_layout.py)

NOTEBOOKS = layout.chapter_notebooks(REPO)
COLAB_CELL = (REPO / "book" / "_colab_cell.py").read_text().rstrip("\n")


def _problems(path: Path, kind: str) -> list[str]:
    nb = nbformat.read(str(path), as_version=4)
    return [p for p in layout.layout_problems(nb) if kind in p]


def test_there_are_chapter_notebooks():
    assert NOTEBOOKS, "no book/*.ipynb found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_colab_cell_is_first_and_hidden_in_html(path):
    problems = _problems(path, "Colab install cell")
    assert not problems, f"{path.name}: " + "; ".join(problems) + " (fix: python tools/notebook_layout.py apply)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_widget_view_is_left_empty_in_html(path):
    problems = [p for p in _problems(path, "widget") if "stand-in" not in p]
    assert not problems, f"{path.name}: " + "; ".join(problems) + " (fix: python tools/notebook_layout.py apply)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_widget_explorer_has_a_kernel_free_stand_in(path):
    problems = _problems(path, "no kernel-free stand-in")
    assert not problems, f"{path.name}: " + "; ".join(problems)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_code_lines_fit_the_page(path):
    problems = _problems(path, "characters >")
    assert not problems, (f"{path.name}: {len(problems)} code lines longer than {layout.MAX_LINE} characters "
                          "(list them: python tools/notebook_layout.py check):\n" + "\n".join(problems[:20]))


# ------------------------------------------------------------------ the tool itself

def _slider_cell():
    cell = nbformat.v4.new_code_cell("slider_figure(frames)")
    cell.outputs = [nbformat.v4.new_output("display_data", data={
        "text/html": '<input type="range" min="0" max="2">', "text/plain": "<HTML>"})]
    return cell


def _notebook(first_tags=("remove-output",), widget_tags=(), long_line="x = 1", with_state=True, stand_in=True):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(COLAB_CELL, metadata={"tags": list(first_tags)}),
                nbformat.v4.new_markdown_cell("# 1 · A chapter"),
                nbformat.v4.new_code_cell(long_line),
                nbformat.v4.new_code_cell("explorer()", metadata={"tags": list(widget_tags)} if widget_tags else {})]
    nb.cells[3].outputs = [nbformat.v4.new_output("display_data", data={
        layout.WIDGET_VIEW: {"model_id": "abc", "version_major": 2, "version_minor": 0}, "text/plain": "VBox()"})]
    if stand_in:
        nb.cells.append(_slider_cell())
    if with_state:
        nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {"abc": {}}}}
    return nb


def test_tool_asks_for_a_stand_in_after_each_widget_cell():
    nb = _notebook(first_tags=["remove-cell"], stand_in=False)
    assert layout.missing_stand_ins(nb) == [4]
    assert any("no kernel-free stand-in" in p for p in layout.layout_problems(nb))
    nb.cells.append(nbformat.v4.new_markdown_cell("Without a kernel: the figure below."))
    nb.cells.append(_slider_cell())
    assert layout.missing_stand_ins(nb) == []


def test_tool_reports_each_rule():
    nb = _notebook(long_line="y = " + "1 + " * 30 + "1")
    problems = layout.layout_problems(nb)
    assert any("lacks the tag remove-cell" in p for p in problems), problems
    assert any(p.startswith("cell 4: shows an ipywidgets view") for p in problems), problems
    assert any(p.startswith("cell 3 line 1: 125 characters") for p in problems), problems
    nb.cells.insert(0, nbformat.v4.new_markdown_cell("# title first"))
    assert any("not the first cell" in p for p in layout.layout_problems(nb))


def test_tool_exempts_urls_short_lines_and_removed_cells():
    url = "# see https://example.org/" + "a" * 100
    assert layout.long_lines(_notebook(first_tags=["remove-cell"], long_line=url)) == []
    assert layout.long_lines(_notebook(first_tags=["remove-cell"], long_line="z" * layout.MAX_LINE)) == []
    assert len(layout.long_lines(_notebook(first_tags=["remove-cell"], long_line="z" * (layout.MAX_LINE + 1)))) == 1
    # the Colab cell, even shown, keeps within the limit (book/_colab_cell.py)
    assert layout.long_lines(_notebook(first_tags=[], long_line="z")) == []
    assert max(map(len, COLAB_CELL.splitlines())) <= layout.MAX_LINE


def test_tool_applies_the_tags_once(tmp_path):
    nb = _notebook()
    changed = layout.apply_layout(nb)
    assert len(changed) == 3, changed
    assert nb.cells[0].metadata["tags"] == ["remove-cell"]
    assert "remove-output" in nb.cells[3].metadata["tags"]
    assert "widgets" not in nb.metadata
    assert layout.layout_problems(nb) == []
    assert layout.apply_layout(nb) == []                    # idempotent
    path = tmp_path / "ch.ipynb"
    nbformat.write(_notebook(), str(path))
    assert layout.main(["check", str(path)]) == 1
    assert layout.main(["apply", str(path)]) == 0
    assert layout.main(["check", str(path)]) == 0


def test_tool_tags_every_widget_cell_then_drops_the_state():
    nb = _notebook(first_tags=("remove-cell",))
    nb.cells.append(nbformat.v4.new_code_cell("another_explorer()"))
    nb.cells[-1].outputs = list(nb.cells[3].outputs)
    nb.cells[-1].metadata["tags"] = ["remove-input"]        # output shown: apply tags it remove-output too
    layout.apply_layout(nb)
    assert all("remove-output" in c.metadata.get("tags", []) for c in nb.cells if layout._shows_widget(c))
    assert "widgets" not in nb.metadata


def test_a_stand_in_written_but_not_yet_executed_counts():
    nb = _notebook(widget_tags=("remove-output",), with_state=False, stand_in=False)
    nb.cells.append(nbformat.v4.new_code_cell("slider_figure(frames)"))      # not executed yet
    assert layout.missing_stand_ins(nb) == []
    nb.cells[-1].execution_count = 3                                         # executed, showed nothing
    assert layout.missing_stand_ins(nb) == [4]
