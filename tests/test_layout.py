"""The package's shape: small modules, imports that go one way, imports at the top of modules."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "itercourse"
OPTIONAL = {"otter", "otter.assign", "otter.api", "submitit"}   # imported only where they are used
MAX_LINES = 800     # a hint that a module may hold two ideas, never the reason to cut one (STYLE.md)


def _modules():
    return {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts): p for p in PACKAGE.rglob("*.py")}


def _internal_imports(name: str, path: Path) -> set:
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
            out.add(".".join(base + ([node.module] if node.module else [])))
    return {m.removesuffix(".__init__") for m in out}


def test_no_module_is_two_ideas_long():
    long = {n: len(p.read_text().splitlines()) for n, p in _modules().items()}
    assert not {n: k for n, k in long.items() if k > MAX_LINES}, long


def test_imports_form_no_circle():
    mods = _modules()
    graph = {n.removesuffix(".__init__"): _internal_imports(n, p) - {"itercourse"} for n, p in mods.items()}

    def visit(node, stack):
        for dep in graph.get(node, ()):
            assert dep not in stack, f"import circle: {' -> '.join(stack[stack.index(dep):] + [dep])}"
            visit(dep, stack + [dep])
    for name in graph:
        visit(name, [name])


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
