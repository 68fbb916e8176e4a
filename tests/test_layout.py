"""The package's shape: one home per fact, imports that go one way, imports at the top of modules."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "itercourse"
OPTIONAL = {"otter", "otter.assign", "otter.api", "submitit"}   # imported only where they are used
MAX_LINES = 800     # a hint that a module may hold two ideas, never the reason to cut one (STYLE.md)


def _modules(package: Path = PACKAGE) -> dict:
    """Module name -> file; a package by its own name (``itercourse``, ``itercourse.viz``), not ``.__init__``."""
    return {".".join(p.relative_to(package.parent).with_suffix("").parts).removesuffix(".__init__"): p
            for p in package.rglob("*.py")}


def _internal_imports(name: str, path: Path, modules) -> set:
    """The package modules ``name`` reads names from, relative and absolute imports alike.

    ``from .x import y`` reads from ``pkg.x``; ``from . import y`` reads from module ``pkg.y`` when there
    is one, else from the package face ``pkg`` (``from . import __version__``): an edge to the face.
    """
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    root = package.split(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - (node.level - 1)] + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == root:
                base = node.module
            else:
                continue
            out |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == root}
    return out


def _import_graph(package: Path = PACKAGE) -> dict:
    mods = _modules(package)
    return {n: _internal_imports(n, p, mods) - {n} for n, p in mods.items()}


def _circles(graph: dict) -> list:
    """Every import circle found by a depth-first walk, each as ``a -> b -> ... -> a``."""
    found, done = [], set()

    def visit(node, stack):
        for dep in sorted(graph.get(node, ())):
            if dep in stack:
                found.append(" -> ".join(stack[stack.index(dep):] + [dep]))
            elif dep not in done:
                visit(dep, stack + [dep])
        done.add(node)
    for name in sorted(graph):
        if name not in done:
            visit(name, [name])
    return found


def test_no_module_is_two_ideas_long():
    long = {n: len(p.read_text().splitlines()) for n, p in _modules().items()}
    assert not {n: k for n, k in long.items() if k > MAX_LINES}, long


def test_imports_form_no_circle():
    """The package face (``itercourse/__init__.py``) is a module like the others: a submodule that reads a
    name from it (``from . import __version__``) while the face imports that submodule is a circle."""
    assert not _circles(_import_graph()), _circles(_import_graph())


def test_the_circle_check_sees_the_package_face(tmp_path):
    pkg = tmp_path / "itercourse"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("__version__ = '1'\nfrom .a import f\nfrom .b import g\n")
    (pkg / "a.py").write_text("from . import b\n\ndef f():\n    return b.g()\n")
    (pkg / "b.py").write_text("def g():\n    return 1\n")
    assert _circles(_import_graph(pkg)) == []                    # `from . import b` reads module b, not the face
    (pkg / "b.py").write_text("from . import __version__\n\ndef g():\n    return __version__\n")
    assert _circles(_import_graph(pkg)) == ["itercourse -> itercourse.a -> itercourse.b -> itercourse"]
    (pkg / "b.py").write_text("from itercourse import __version__\n")
    assert _circles(_import_graph(pkg)) == ["itercourse -> itercourse.a -> itercourse.b -> itercourse"]


def test_the_version_has_a_home_that_imports_nothing_of_the_package():
    mods = _modules()
    assert _internal_imports("itercourse.version", mods["itercourse.version"], mods) == set()


def test_imports_sit_at_the_top_of_modules():
    inside = []
    for name, path in _modules().items():
        for fn in ast.walk(ast.parse(path.read_text())):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    if isinstance(node, ast.Import):
                        names = {a.name for a in node.names}
                    elif isinstance(node, ast.ImportFrom):
                        names = {node.module or ""}
                    else:
                        continue
                    if not names <= OPTIONAL:
                        inside.append(f"{name}.{fn.name}: {sorted(names)}")
    assert not inside, inside


# Where each fact of the book lives (issue 26): the one module that defines it. A second definition of
# the same name anywhere in the package is a second home.
HOMES = {
    "canonical_config": "itercourse.config_id", "config_hash": "itercourse.config_id",
    "DATASET_SPECS": "itercourse.data", "relative_update_size": "itercourse.fixedpoint",
    "iterate_last_block": "itercourse.walk", "make_step": "itercourse.training",
    "atomic_write_with_trailer": "itercourse.io", "read_with_trailer": "itercourse.io",
    "coupling_point": "itercourse.experiments", "acquire": "itercourse.locks",
    "claim_row": "itercourse.verdicts", "judge": "itercourse.verdicts", "welch_ci": "itercourse.report",
    "holm": "itercourse.report", "choose_rates": "itercourse.tuning", "PRESETS": "itercourse.presets",
    "TUNED_LR": "itercourse.presets", "write_report": "itercourse.experiment_report",
}
VERDICT_WORDS = ('"supported', '"contradicted', '"not resolved', '"reproduced', '"not reproduced')


def _top_level_names(path: Path) -> set:
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def test_every_fact_has_one_home():
    defined = {name: [m for m, p in _modules().items() if name in _top_level_names(p)] for name in HOMES}
    assert {n: homes for n, homes in defined.items() if homes != [HOMES[n]]} == {}


def test_verdict_words_are_written_only_by_the_verdict_module():
    """The words that turn numbers into claims come from itercourse.verdicts (docstrings may name them)."""
    writers = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                    any(node.value.startswith(w.strip('"')) for w in VERDICT_WORDS) and name != "itercourse.verdicts":
                writers.append((name, node.value[:40]))
    assert writers == []
