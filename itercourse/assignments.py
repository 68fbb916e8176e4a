"""The course assignments: student versions generated from otter-grader masters, and grading without Docker.

Each assignment lives in ``book/assignments/<name>/``::

    master/<name>.ipynb   the master notebook (otter-grader's assign format): questions, solutions,
                          public tests and hidden tests; only instructors should open it
    student/              the student version, generated from the master: the notebook with every
                          solution replaced by ``...`` and tests/ with the public tests only.
                          Committed, so that Colab links open it and its first cell can fetch tests/
    dist/                 everything ``otter assign`` writes (git-ignored): dist/autograder/ holds the
                          solutions notebook, all tests and the autograder zip used for grading

Command line (run at the root of a clone; ``--root`` points elsewhere)::

    python -m itercourse.assignments list
    python -m itercourse.assignments generate [NAME ...]          # all assignments when no NAME
    python -m itercourse.assignments grade NAME SUBMISSIONS [--out grades.csv]

The reference submission of an assignment is ``dist/autograder/<name>.ipynb``
(the solutions, as a student would hand them in): grading it must give full
marks. The master notebook is not a submission, and ``grade`` says so.

``generate`` runs ``otter assign`` on each master (which also executes the
solutions against every public and hidden test and stops if one fails), then
refreshes ``student/``. ``grade`` runs otter's non-containerised grader
(``otter run``) on each submitted notebook and writes one CSV row per
submission. It executes the submissions' code in the current environment: run
it in a throwaway container or virtual machine for code you do not trust.

otter-grader (https://otter-grader.readthedocs.io) is imported only when a
command needs it, so the rest of the package does not depend on it.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

from .errors import check_choice
from .io import atomic_write_bytes

PROG = "python -m itercourse.assignments"


@dataclass(frozen=True)
class Assignment:
    """One graded assignment of the course."""

    name: str            # folder and notebook name under book/assignments/
    title: str           # what the student builds
    chapters: tuple      # the chapters it follows (book file names)
    minutes: tuple       # expected time for a student who has read those chapters, (low, high)
    questions: tuple     # autograded questions, in order (otter names: q1, q2, ...)
    points: int          # total points


ASSIGNMENTS = {a.name: a for a in (
    Assignment("a1_preact_alignment", "The pre-activation residual unit and the gradient-alignment metric",
               ("ch1_identity_mappings", "ch2_gradient_steps"), (60, 90), ("q1", "q2", "q3"), 10),
    Assignment("a2_gradient_coupling", "Soft gradient coupling by hand, checked against GradientCoupling",
               ("ch3_weight_sharing", "ch4_soft_coupling"), (45, 75), ("q1", "q2", "q3"), 10),
    Assignment("a3_convergence_index", "A convergence index, tested on contracting and expanding maps",
               ("ch5_lipschitz", "ch6_indices"), (45, 75), ("q1", "q2", "q3", "q4", "q5"), 14),
)}


# ---------------------------------------------------------------- where things are

def default_root() -> Path:
    """``book/assignments`` of the clone this package was installed from (editable install), else of the cwd."""
    for base in (Path(__file__).resolve().parents[1], Path.cwd()):
        if (base / "book" / "assignments").is_dir():
            return base / "book" / "assignments"
    return Path.cwd() / "book" / "assignments"


def _root(root) -> Path:
    root = default_root() if root is None else Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"root={str(root)!r} is not a folder; pass the book/assignments folder of a clone "
                                "of the course repository (--root)")
    return root


def master_path(name: str, root=None) -> Path:
    """The master notebook of assignment ``name``: ``<root>/<name>/master/<name>.ipynb``."""
    check_choice("name", name, ASSIGNMENTS)
    path = _root(root) / name / "master" / f"{name}.ipynb"
    if not path.is_file():
        raise FileNotFoundError(f"no master notebook at {path}; is root={str(_root(root))!r} the book/assignments "
                                "folder of the course repository?")
    return path


def student_dir(name: str, root=None) -> Path:
    """The committed student version: ``<root>/<name>/student/`` (notebook and public tests)."""
    check_choice("name", name, ASSIGNMENTS)
    return _root(root) / name / "student"


def dist_dir(name: str, root=None) -> Path:
    """The git-ignored output of ``otter assign``: ``<root>/<name>/dist/``."""
    check_choice("name", name, ASSIGNMENTS)
    return _root(root) / name / "dist"


def _otter():
    try:
        import otter  # noqa: F401
    except ImportError as e:
        raise ImportError("the assignments need otter-grader: pip install 'otter-grader>=7,<8' "
                          "(it is in the course's requirements.txt)") from e


# ---------------------------------------------------------------- generate

def assign(master, out, *, run_tests: bool = False) -> Path:
    """Run ``otter assign`` on one master notebook into a fresh folder ``out``; returns ``out``.

    ``out`` gets ``autograder/`` (solutions, all tests, autograder zip) and
    ``student/`` (no solutions, public tests). With ``run_tests`` otter also
    executes the solutions in a fresh kernel and raises ``RuntimeError``
    unless every public and hidden test passes.
    """
    _otter()
    from otter.assign import main as otter_assign
    out = Path(out).resolve()
    if out.exists():
        shutil.rmtree(out)              # a stale autograder zip must never be picked up by grade()
    otter_assign(str(Path(master).resolve()), str(out), no_run_tests=not run_tests, no_pdfs=True)
    return out


def generate(name: str, root=None, *, run_tests: bool = True, publish: bool = True) -> Path:
    """Build assignment ``name``: ``otter assign`` into ``dist/``, then copy ``dist/student`` to ``student/``.

    With ``run_tests`` (the default) the solutions must pass every public and
    hidden test in a fresh kernel, or ``RuntimeError`` is raised and nothing
    is published. Returns the ``dist/`` folder.
    """
    dist = assign(master_path(name, root), dist_dir(name, root), run_tests=run_tests)
    if publish:
        target = student_dir(name, root)
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(dist / "student", target)
        stable_cell_ids(target / f"{name}.ipynb")
    return dist


def stable_cell_ids(path) -> Path:
    """Give every cell of a notebook an id derived from its position and content, in place.

    otter draws fresh random ids for the cells it adds, so without this every
    ``generate`` would rewrite the committed student notebook even when
    nothing changed.
    """
    nb = nbformat.read(str(path), as_version=4)
    for i, cell in enumerate(nb.cells):
        digest = hashlib.sha1(f"{i}\0{cell.cell_type}\0{cell.source}".encode()).hexdigest()
        cell["id"] = digest[:12]
    nbformat.write(nb, str(path))
    return Path(path)


# ---------------------------------------------------------------- grade

class MasterNotebookError(ValueError):
    """A master notebook was handed in for grading (grade the reference submission instead)."""


def autograder_zip(name: str, root=None) -> Path:
    """The autograder zip that ``generate`` wrote to ``dist/autograder/`` (the newest, if several)."""
    zips = sorted((dist_dir(name, root) / "autograder").glob(f"{name}-autograder_*.zip"))
    if not zips:
        raise FileNotFoundError(f"no autograder zip for {name!r} in {dist_dir(name, root) / 'autograder'}; run "
                                f"`{PROG} generate {name}` first")
    return zips[-1]


def reference_submission(name: str, root=None) -> Path:
    """The solutions notebook ``generate`` writes, ``dist/autograder/<name>.ipynb``: it must score full marks."""
    return dist_dir(name, root) / "autograder" / f"{name}.ipynb"


def is_master(path) -> bool:
    """Whether a notebook is an otter-assign master (a raw ``# ASSIGNMENT CONFIG`` cell), not a submission."""
    try:
        cells = json.loads(Path(path).read_text(encoding="utf-8")).get("cells", [])
    except (OSError, ValueError):
        return False                    # unreadable: let the grader report it
    return any(c.get("cell_type") == "raw"
               and "".join(c.get("source", "")).lstrip().upper().startswith("# ASSIGNMENT CONFIG") for c in cells)


def _master_error(nb: Path, name: str, root=None) -> str:
    ref = reference_submission(name, root)
    try:
        ref = ref.relative_to(Path.cwd())
    except ValueError:
        pass
    return (f"{nb.name} is a master notebook (otter's assign format), not a submission; to check the autograder, "
            f"grade the reference submission {ref.as_posix()} (written by `{PROG} generate {name}`)")


def _submissions(path) -> list[Path]:
    path = Path(path)
    if path.is_file() and path.suffix == ".ipynb":
        return [path]
    if path.is_dir():
        found = sorted(p for p in path.glob("*.ipynb") if not p.name.startswith("."))
        if found:
            return found
    raise FileNotFoundError(f"submissions={str(path)!r} is neither a .ipynb file nor a folder holding .ipynb files")


def grade(name: str, submissions, *, root=None, autograder=None, out=None) -> list[dict]:
    """Grade every submitted notebook of assignment ``name`` with otter's non-containerised grader.

    ``submissions``: one ``.ipynb`` or a folder of them. ``autograder``: the
    zip (default: :func:`autograder_zip`). Returns one row per submission:
    ``submission``, the score of each question, ``total``, ``possible`` and
    ``error`` (why grading itself failed, e.g. a notebook of another
    assignment; empty otherwise). With ``out``, also writes the rows as CSV.
    Each submission runs in its own kernel in the current environment.
    A master notebook is not a submission: given alone it raises
    ``ValueError`` naming the reference submission
    (:func:`reference_submission`); in a folder it gets a row with that error.
    """
    check_choice("name", name, ASSIGNMENTS)
    notebooks = _submissions(submissions)
    if len(notebooks) == 1 and is_master(notebooks[0]):
        raise ValueError(_master_error(notebooks[0], name, root))
    _otter()
    from otter.api import grade_submission
    zip_path = Path(autograder) if autograder is not None else autograder_zip(name, root)
    questions = ASSIGNMENTS[name].questions
    rows = []
    for nb in notebooks:
        row = {"submission": nb.name}
        if is_master(nb):               # otter would fail with "submission for assignment 'None'"
            results, error = None, MasterNotebookError(_master_error(nb, name, root))
        else:
            try:
                results = grade_submission(str(nb), str(zip_path), quiet=True)
                error = results.catastrophic_error
            except Exception as e:  # noqa: BLE001  (one broken submission must not stop the class's grading)
                results, error = None, e
        for q in questions:
            row[q] = float(results.get_score(q)) if results is not None and error is None else 0.0
        row["total"] = float(results.total) if results is not None and error is None else 0.0
        row["possible"] = float(ASSIGNMENTS[name].points)
        row["error"] = "" if error is None else f"{type(error).__name__}: {error}"
        rows.append(row)
    if out is not None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_bytes(out, buf.getvalue().encode())
    return rows


# ---------------------------------------------------------------- command line

EPILOG = f"""\
examples:
  {PROG} list
  {PROG} generate                       # every assignment: dist/ (git-ignored) and student/
  {PROG} generate a2_gradient_coupling
  {PROG} grade a1_preact_alignment submissions/a1/ --out grades_a1.csv
  # check the autograder: the reference submission (solutions) must get full marks
  {PROG} grade a1_preact_alignment book/assignments/a1_preact_alignment/dist/autograder/a1_preact_alignment.ipynb
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description="Generate student versions of the course assignments "
                                     "and grade submissions (otter-grader, no Docker needed).",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=None, help="the book/assignments folder (default: the one of this clone)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the assignments")
    gen = sub.add_parser("generate", help="otter assign each master into dist/ and refresh student/")
    gen.add_argument("names", nargs="*", metavar="NAME",
                     help=f"assignments to build (default: all of {', '.join(ASSIGNMENTS)})")
    gen.add_argument("--no-run-tests", action="store_true", help="skip otter's run of the solutions against the tests")
    gr = sub.add_parser("grade", help="grade submitted notebooks with `otter run` (executes their code here)")
    gr.add_argument("name", choices=list(ASSIGNMENTS), metavar="NAME")
    gr.add_argument("submissions", help="a submitted .ipynb or a folder of them")
    gr.add_argument("--autograder", default=None, help="autograder zip (default: the one in NAME/dist/autograder/)")
    gr.add_argument("--out", default=None, help="write the grades to this CSV file")
    args = parser.parse_args(argv)

    try:
        if args.command == "list":
            for a in ASSIGNMENTS.values():
                print(f"{a.name:24s} {a.points:3d} points  {a.minutes[0]}-{a.minutes[1]} min  {a.title} "
                      f"(after {', '.join(a.chapters)})")
        elif args.command == "generate":
            for name in args.names:
                check_choice("NAME", name, ASSIGNMENTS)
            for name in args.names or list(ASSIGNMENTS):
                dist = generate(name, args.root, run_tests=not args.no_run_tests)
                print(f"{name}: student version in {student_dir(name, args.root)}, autograder in {dist / 'autograder'}")
        else:
            rows = grade(args.name, args.submissions, root=args.root, autograder=args.autograder, out=args.out)
            for r in rows:
                scores = " ".join(f"{q}={r[q]:g}" for q in ASSIGNMENTS[args.name].questions)
                print(f"{r['submission']}: {scores} total={r['total']:g}/{r['possible']:g} {r['error']}".rstrip())
            if args.out:
                print(f"grades written to {args.out}")
    except (FileNotFoundError, ImportError, ValueError) as e:
        parser.error(str(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
