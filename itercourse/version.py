"""The package's version: one source of truth, the ``version`` of ``[project]`` in ``pyproject.toml``.

This module imports nothing from the package, so any module (and the package
face, ``itercourse/__init__.py``) can import ``__version__`` from it without an
import circle.

Where the version is read:

1. the ``pyproject.toml`` beside the package, when this is a source checkout
   (a clone on ``PYTHONPATH`` or an editable install): the file itself, so a
   version bumped there is seen without reinstalling, and a second checkout on
   ``PYTHONPATH`` reports its own version, not that of the one installed;
2. otherwise the installed distribution's metadata,
   ``importlib.metadata.version("itercourse")``, which the build wrote from that
   same ``pyproject.toml`` (a wheel carries no ``pyproject.toml``);
3. otherwise ``"0+unknown"`` (neither: the package files copied by hand).
"""
from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "itercourse"
PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
UNKNOWN_VERSION = "0+unknown"


def version_in_pyproject(path=PYPROJECT, name: str = DISTRIBUTION) -> str | None:
    """``version`` of the ``[project]`` table of ``path`` when that project is ``name``; None otherwise."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    table = re.search(r"^\[project\][ \t]*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    if table is None or not re.search(rf"^name\s*=\s*[\"']{re.escape(name)}[\"']", table.group(1), re.M):
        return None
    found = re.search(r"^version\s*=\s*[\"']([^\"']+)[\"']", table.group(1), re.M)
    return found.group(1) if found else None


def installed_version(name: str = DISTRIBUTION) -> str | None:
    """The version in the installed distribution's metadata; None when ``name`` is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


__version__ = version_in_pyproject() or installed_version() or UNKNOWN_VERSION
