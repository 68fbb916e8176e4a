"""The report of one experiment folder (itercourse.experiment_report.write_report), on committed results.

Oracles: the page counts every result file of the folder and names the verdict section its grid calls
for (the arms tables for an arms grid, the previous grid's claims for a coupling x constraint grid);
a damaged file is listed and not counted; every figure it names is a PNG beside it.
"""
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import pytest  # noqa: E402

from itercourse.experiment_report import write_report  # noqa: E402

COMMITTED = Path(__file__).resolve().parents[1] / "results"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _pngs_named_in(text: str, folder: Path) -> None:
    for name in ("accuracy.png", "indices.png"):
        assert f"]({name})" in text and (folder / name).read_bytes().startswith(PNG_MAGIC)


def test_a_coupling_by_constraint_grid_gets_its_claims(tmp_path):
    n = len(list((COMMITTED / "digitclutter_grid").glob("*.json")))
    paths = write_report("digitclutter_grid", COMMITTED, tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert {p.name for p in paths} == {"report.md", "accuracy.png", "indices.png"}
    assert text.startswith("# digitclutter_grid\n") and f"{n} runs; dataset digitclutter" in text
    assert "## The paper's claims at this scale" in text and "## Arms" not in text
    assert "Code:" in text or text.count("warning:") == 1                 # provenance.code_line
    _pngs_named_in(text, tmp_path)


def test_an_arms_grid_gets_its_cells_figure_and_claims(tmp_path):
    paths = write_report("digitclutter_arms", COMMITTED, tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert {p.name for p in paths} == {"report.md", "accuracy.png", "indices.png", "arms.png"}
    assert "| removing batch norm (with zero init and its own rate) | conventional | norm-free |" in (tmp_path / "report.md").read_text()
    assert "## Arms x initialisation x coupling" in text and "verdict" in text
    assert (tmp_path / "arms.png").read_bytes().startswith(PNG_MAGIC)
    _pngs_named_in(text, tmp_path)


def test_a_damaged_file_is_listed_and_not_counted(tmp_path):
    shutil.copytree(COMMITTED / "digitclutter_grid", tmp_path / "r" / "digitclutter_grid")
    files = sorted((tmp_path / "r" / "digitclutter_grid").glob("*.json"))
    files[0].write_text(files[0].read_text()[:100])                      # truncated
    skipped = []
    with pytest.warns(RuntimeWarning, match="skipping"):
        write_report("digitclutter_grid", tmp_path / "r", tmp_path / "out", skipped)
    text = (tmp_path / "out" / "report.md").read_text()
    assert [Path(p).name for p, _ in skipped] == [files[0].name]
    assert f"{len(files) - 1} runs;" in text and "1 result file(s) skipped" in text and files[0].name in text


def test_an_empty_folder_says_how_to_fill_it(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no results in .*sweep --preset"):
        write_report("empty", tmp_path, tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="no results folder .*sweep --preset"):
        write_report("missing", tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
