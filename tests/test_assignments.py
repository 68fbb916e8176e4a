"""The graded assignments: student versions leak no solution, solutions pass, untouched versions fail cleanly.

For every master notebook in book/assignments/<name>/master/ this generates the
student and autograder versions with ``otter assign`` (into tmp_path, no
kernel), then:

- the student notebook and its tests hold no solution line, no otter marker
  and no hidden test, and the committed ``student/`` folder is what
  ``python -m itercourse.assignments generate`` produces from the master today;
- the solutions notebook, executed in this process, passes every public and
  hidden test (otter's own test runner on otter's own test files);
- the untouched student notebook runs without an error and every one of its
  questions scores 0, each test failing inside its own code (an assertion
  about ``None`` or ``...``), never by crashing the grader;
- one assignment goes end to end through otter's non-containerised grader
  (``python -m itercourse.assignments grade``), one kernel per notebook.
"""
from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import warnings
from pathlib import Path

import nbformat
import pytest
import torch
import yaml

with warnings.catch_warnings():   # otter 7.0's traitlets declarations warn at import (DeprecationWarning); not ours
    warnings.simplefilter("ignore", DeprecationWarning)
    import otter  # noqa: F401
    from otter.nbmeta_config import NBMetadataConfig
    from otter.test_files import create_test_file

from itercourse import assignments as A

torch.set_num_threads(1)
# otter 7.0's grader calls DataFrame.drop(inplace=True), which pandas 3 deprecates; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword:DeprecationWarning")
ROOT = Path(__file__).resolve().parents[1] / "book" / "assignments"
# The repository the Colab cells install from and fetch tests from: the book's own (a fork changes both).
REPO = yaml.safe_load((ROOT.parents[1] / "_config.yml").read_text())["repository"]["url"].rstrip("/")
NAMES = list(A.ASSIGNMENTS)
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "# SOLUTION", "BEGIN QUESTION", "BEGIN TESTS", "TEST CONFIG",
           "ASSIGNMENT CONFIG", "BEGIN PROMPT")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    """name -> folder with otter assign's autograder/ and student/ for that master (no kernel run)."""
    out = {}
    for name in NAMES:
        with contextlib.redirect_stdout(io.StringIO()):
            out[name] = A.assign(A.master_path(name, ROOT), tmp_path_factory.mktemp(name) / "dist")
    return out


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)


def master_questions(nb) -> dict:
    """{question name: points} from the master's ``# BEGIN QUESTION`` raw cells."""
    out = {}
    for cell in nb.cells:
        if cell.cell_type == "raw" and cell.source.lstrip().upper().startswith("# BEGIN QUESTION"):
            cfg = yaml.safe_load(cell.source.split("\n", 1)[1])
            out[cfg["name"]] = cfg["points"]
    return out


def solution_lines(nb) -> list[str]:
    """Every substantial line a master marks as solution: inside BEGIN/END SOLUTION, or ending in # SOLUTION."""
    lines = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        inside = False
        for line in cell.source.splitlines():
            text = line.strip()
            if text.startswith("# BEGIN SOLUTION"):
                inside = True
            elif text.startswith("# END SOLUTION"):
                inside = False
            elif inside or text.endswith("# SOLUTION"):
                text = text.removesuffix("# SOLUTION").strip()
                if len(text) >= 12:
                    lines.append(text)
    return lines


def without_ids(path: Path) -> dict:
    """A notebook's JSON without cell ids (otter draws them at random for the cells it adds)."""
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        cell.pop("id", None)
    return nb


def load_tests(tests_dir: Path) -> dict:
    """{question: otter TestFile} for every test file of a tests/ folder."""
    return {p.stem: create_test_file(str(p), NBMetadataConfig()) for p in sorted(tests_dir.glob("q*.py"))}


def execute(nb) -> tuple[dict, list]:
    """Run a notebook's code cells in this process, as a kernel would, minus otter's own cells.

    Skips the Colab cell (tag otter_ignore) and the cells that talk to
    otter (``grader = otter.Notebook()``, ``grader.check(...)``): the tests
    are run on the resulting namespace by :func:`grade_in_process`. Returns
    the namespace and the errors ``[(cell index, exception)]``; like otter's
    grader, a failing cell does not stop the later ones.
    """
    ns, errors = {"__name__": "__main__"}, []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or "otter_ignore" in cell.metadata.get("tags", []):
            continue
        if "grader" in cell.source or "otter" in cell.source:
            continue
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                exec(compile(cell.source, f"<cell {i}>", "exec"), ns)
        except Exception as e:  # noqa: BLE001
            errors.append((i, e))
    return ns, errors


def grade_in_process(nb, tests_dir: Path) -> dict:
    """{question: TestFile with results} of every test in ``tests_dir`` run on the executed notebook."""
    with torch.random.fork_rng(devices=[]):
        ns, errors = execute(nb)
        results = load_tests(tests_dir)
        for tf in results.values():
            tf.run(dict(ns))                     # each question sees a fresh copy, as in otter
    return {"errors": errors, "results": results}


# ---------------------------------------------------------------- structure

@pytest.mark.parametrize("name", NAMES)
def test_registry_and_colab_cell_match_the_master(name):
    nb = read(A.master_path(name, ROOT))
    a = A.ASSIGNMENTS[name]
    questions = master_questions(nb)
    assert tuple(questions) == a.questions, f"{name}: master questions {list(questions)} vs registry {a.questions}"
    assert sum(questions.values()) == a.points
    intro = next(c.source for c in nb.cells if c.cell_type == "markdown")
    assert f"About {a.minutes[0]}-{a.minutes[1]} minutes" in intro, "the notebook states the registry's expected time"
    config = yaml.safe_load(next(c.source for c in nb.cells if c.cell_type == "raw"
                                 and c.source.startswith("# ASSIGNMENT CONFIG")).split("\n", 1)[1])
    assert config["name"] == name and config["tests"]["files"] is True   # Colab needs tests as files
    colab = next(c for c in nb.cells if "otter_ignore" in c.metadata.get("tags", []))
    assert f"/main/book/assignments/{name}/student/tests/" in colab.source
    listed = re.search(r"for q in \(([^)]*)\)", colab.source).group(1)
    assert tuple(re.findall(r'"(q\d+)"', listed)) == a.questions, "the Colab cell must fetch every public test file"
    assert "otter-grader" in colab.source and f'"{REPO}"' in colab.source and f"git+{REPO}" in colab.source


@pytest.mark.parametrize("name", NAMES)
def test_student_version_holds_no_solution_and_no_hidden_test(name, built):
    master = read(A.master_path(name, ROOT))
    student_dir = built[name] / "student"
    student = read(student_dir / f"{name}.ipynb")
    code = "\n".join(c.source for c in student.cells if c.cell_type == "code")
    every_text = "\n".join(c.source for c in student.cells)
    for marker in MARKERS:
        assert marker not in every_text, f"{name}: otter marker {marker!r} left in the student notebook"
    lines = solution_lines(master)
    assert len(lines) >= 5, f"{name}: found only {len(lines)} solution lines in the master; is the marker syntax right?"
    leaked = [line for line in lines if line in code]
    assert not leaked, f"{name}: solution lines in the student notebook: {leaked}"
    assert all(c.cell_type != "code" or not c.outputs for c in student.cells), "the student notebook has no outputs"
    assert "tests" not in student.metadata.get("otter", {}), "tests belong in tests/ files (Colab), not in metadata"

    public, every = load_tests(student_dir / "tests"), load_tests(built[name] / "autograder" / "tests")
    assert set(public) == set(every) == set(A.ASSIGNMENTS[name].questions)
    student_tests = "\n".join(p.read_text() for p in (student_dir / "tests").glob("*.py"))
    for q, tf in every.items():
        hidden = [tc for tc in tf.test_cases if tc.hidden]
        assert hidden, f"{name} {q}: every question has at least one hidden test"
        assert any(not tc.hidden for tc in tf.test_cases), f"{name} {q}: every question has a public test"
        assert all(not tc.hidden for tc in public[q].test_cases)
        for tc in hidden:
            assert tc.body not in student_tests, f"{name} {q}: a hidden test reached the student's tests/"
    for line in lines:
        assert line not in student_tests, f"{name}: solution line in the student tests: {line!r}"


@pytest.mark.parametrize("name", NAMES)
def test_committed_student_version_is_current(name, built, tmp_path):
    """book/assignments/<name>/student/ equals a fresh `generate`, cell ids aside."""
    committed = A.student_dir(name, ROOT)
    fresh = tmp_path / "student"
    shutil.copytree(built[name] / "student", fresh)
    def files(d: Path) -> list[str]:   # skip .OTTER_LOG, .ipynb_checkpoints/ and the like from local runs
        return sorted(p.relative_to(d).as_posix() for p in d.rglob("*")
                      if p.is_file() and not any(part.startswith(".") for part in p.relative_to(d).parts))
    assert files(committed) == files(fresh), \
        f"{committed} is out of date: run `python -m itercourse.assignments generate {name}`"
    for rel in files(fresh):
        if rel.endswith(".ipynb"):
            same = without_ids(committed / rel) == without_ids(fresh / rel)
        else:
            same = (committed / rel).read_bytes() == (fresh / rel).read_bytes()
        assert same, f"{committed / rel} is out of date: run `python -m itercourse.assignments generate {name}`"


# ---------------------------------------------------------------- behaviour

@pytest.mark.parametrize("name", NAMES)
def test_solutions_pass_every_public_and_hidden_test(name, built):
    graded = grade_in_process(read(built[name] / "autograder" / f"{name}.ipynb"), built[name] / "autograder" / "tests")
    assert not graded["errors"], f"{name}: the solutions notebook raised {graded['errors']}"
    for q, tf in graded["results"].items():
        assert tf.passed_all, f"{name} {q} fails on the solutions:\n{tf.summary()}"
    total = sum(tf.score for tf in graded["results"].values())
    assert total == A.ASSIGNMENTS[name].points


@pytest.mark.parametrize("name", NAMES)
def test_untouched_student_version_fails_every_question_cleanly(name, built):
    graded = grade_in_process(read(built[name] / "student" / f"{name}.ipynb"), built[name] / "autograder" / "tests")
    assert not graded["errors"], f"{name}: the untouched student notebook should run to the end, got {graded['errors']}"
    for q, tf in graded["results"].items():
        assert tf.score == 0, f"{name} {q}: the unanswered question scores {tf.score}, not 0"
        for result in tf.test_case_results:
            assert not result.passed
            # the test ran and one of its own examples failed (doctest's report), e.g. an assertion about None
            assert "Failed example" in result.message, f"{name} {q}: unexpected failure:\n{result.message}"
            assert re.search(r"(AssertionError|TypeError|AttributeError|NameError)", result.message)


@pytest.mark.parametrize("name", NAMES)
def test_student_notebook_works_on_colab_alone(name, built, tmp_path, monkeypatch):
    """On Colab (simulated): a lone notebook, its first cell fetches tests/, grader.check runs them.

    Colab keeps the notebook file out of the kernel's folder, so otter refuses
    tests stored in notebook metadata there; hence tests are files, fetched
    from the committed student/ folder. The download is replaced by a copy
    of that folder (no network here), otter is told it runs on Colab, and the
    student's answers are taken from the solutions notebook.
    """
    import types
    import urllib.request

    import otter
    import otter.check.utils

    raw = REPO.replace("https://github.com/", "https://raw.githubusercontent.com/")
    prefix = f"{raw}/main/book/assignments/{name}/student/tests/"
    fetched = []

    def fake_urlretrieve(url, dest):
        assert url.startswith(prefix), url
        fetched.append(url)
        shutil.copy(A.student_dir(name, ROOT) / "tests" / url[len(prefix):], dest)

    monkeypatch.chdir(tmp_path)                                   # an empty folder, like Colab's /content
    monkeypatch.setitem(__import__("sys").modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(urllib.request, "urlretrieve", fake_urlretrieve)
    monkeypatch.setattr(otter.check.utils, "get_ipython", lambda: "<google.colab._shell.Shell object>")
    monkeypatch.setattr(otter.Notebook, "_grading_mode", False)
    monkeypatch.setattr(otter.Notebook, "_tests_dir_override", None)

    student = read(built[name] / "student" / f"{name}.ipynb")
    ns = {"__name__": "__main__"}
    exec(student.cells[0].source, ns)                             # the Colab cell
    exec(student.cells[1].source, ns)                             # grader = otter.Notebook(tests_dir="tests")
    grader = ns["grader"]
    assert grader.interpreter is otter.check.utils.IPythonInterpreter.COLAB
    assert len(fetched) == len(A.ASSIGNMENTS[name].questions)
    with torch.random.fork_rng(devices=[]):
        answers, errors = execute(read(built[name] / "autograder" / f"{name}.ipynb"))
        assert not errors
        for q in A.ASSIGNMENTS[name].questions:
            result = grader.check(q, answers)
            assert result.passed_all, f"{name} {q} on Colab:\n{result.summary()}"


def test_grading_without_docker_end_to_end(built, tmp_path):
    """`grade` (otter run, a kernel per notebook): solutions get full marks, the untouched version 0."""
    name = "a3_convergence_index"
    subs = tmp_path / "submissions"
    subs.mkdir()
    shutil.copy(built[name] / "autograder" / f"{name}.ipynb", subs / "solutions.ipynb")
    shutil.copy(built[name] / "student" / f"{name}.ipynb", subs / "untouched.ipynb")
    zip_path = next((built[name] / "autograder").glob("*.zip"))
    rows = A.grade(name, subs, autograder=zip_path, out=tmp_path / "grades.csv")
    by_name = {r["submission"]: r for r in rows}
    assert by_name["solutions.ipynb"]["total"] == A.ASSIGNMENTS[name].points, by_name["solutions.ipynb"]
    assert by_name["untouched.ipynb"]["total"] == 0.0 and not by_name["untouched.ipynb"]["error"]
    header = (tmp_path / "grades.csv").read_text().splitlines()[0]
    assert header == "submission," + ",".join(A.ASSIGNMENTS[name].questions) + ",total,possible,error"


def test_command_line_lists_and_rejects_unknown_names(capsys):
    assert A.main(["--root", str(ROOT), "list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in NAMES)
    with pytest.raises(SystemExit) as e:
        A.main(["--root", str(ROOT), "generate", "a9_nothing"])
    assert e.value.code == 2 and "a9_nothing" in capsys.readouterr().err
    with pytest.raises(ValueError, match="name='a9_nothing'"):
        A.master_path("a9_nothing", ROOT)


def test_grading_the_master_names_the_reference_submission(tmp_path, capsys):
    """The master is not a submission: grade refuses it in one line that names dist/autograder/<name>.ipynb."""
    name = "a1_preact_alignment"
    master = A.master_path(name, ROOT)
    assert A.is_master(master)
    assert not A.is_master(ROOT / name / "student" / f"{name}.ipynb")
    reference = f"{name}/dist/autograder/{name}.ipynb"
    with pytest.raises(ValueError, match=re.escape(reference)):
        A.grade(name, master, root=ROOT)
    with pytest.raises(SystemExit) as e:               # the command line: exit 2 and a one-line error
        A.main(["--root", str(ROOT), "grade", name, str(master)])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and reference in err[-1] and "master notebook" in err[-1], err
    # in a folder of submissions, the master gets a row with the same error and nobody else is affected
    subs = tmp_path / "subs"
    subs.mkdir()
    shutil.copy(master, subs / "handed_in_master.ipynb")
    shutil.copy(master, subs / "another_master.ipynb")
    rows = A.grade(name, subs, root=ROOT, autograder=tmp_path / "unused.zip")
    assert [r["submission"] for r in rows] == ["another_master.ipynb", "handed_in_master.ipynb"]
    assert all(r["error"].startswith("MasterNotebookError") and reference in r["error"] and r["total"] == 0.0
               for r in rows), rows
    assert A.reference_submission(name, ROOT) == ROOT / name / "dist" / "autograder" / f"{name}.ipynb"
