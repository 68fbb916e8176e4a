"""The package's version: one source of truth (pyproject.toml's [project] version), one home (itercourse.version)."""
import ast
import re
from pathlib import Path

import itercourse
from itercourse import experiments, provenance, version

REPO = Path(__file__).resolve().parents[1]


def declared_version() -> str:
    """``[project] version`` of pyproject.toml, read by a TOML parser where Python has one (3.11+)."""
    text = (REPO / "pyproject.toml").read_text()
    try:
        import tomllib
    except ModuleNotFoundError:                       # Python < 3.11: the line itself
        return re.search(r'^version = "([^"]+)"$', text, re.M).group(1)
    return tomllib.loads(text)["project"]["version"]


def test_the_version_is_the_one_in_pyproject():
    declared = declared_version()
    assert itercourse.__version__ == version.__version__ == declared
    assert experiments._versions()["itercourse"] == declared
    assert provenance.code_provenance()["version"] == declared


def test_no_module_spells_the_version_itself():
    """Only pyproject.toml writes the version down; every module imports it from itercourse.version."""
    spelled = []
    for path in sorted((REPO / "itercourse").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and \
                    any(isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets):
                spelled.append(path.name)
    assert spelled == []


def test_version_in_pyproject_reads_only_this_projects_table(tmp_path):
    path = tmp_path / "pyproject.toml"
    assert version.version_in_pyproject(path) is None                                   # no file
    path.write_text('[project]\nname = "other"\nversion = "9.9"\n')
    assert version.version_in_pyproject(path) is None                                   # another project
    path.write_text('[tool.x]\nversion = "1.0"\n\n[project]\nname = "itercourse"\nversion = "2.3.4"\n'
                    '\n[tool.y]\nversion = "5.0"\n')
    assert version.version_in_pyproject(path) == "2.3.4"
    path.write_text('[project]\nname = "itercourse"\ndynamic = ["version"]\n')
    assert version.version_in_pyproject(path) is None                                   # not written down here


def test_an_uninstalled_package_without_pyproject_says_unknown():
    assert version.installed_version("itercourse-no-such-distribution") is None
    assert version.UNKNOWN_VERSION == "0+unknown"
