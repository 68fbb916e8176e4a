"""Which code produced a result: the git commit (when there is one) and a hash of the package's sources.

Every result written by :func:`itercourse.experiments.run` records

    meta["code"] = {"commit": HEAD or None, "dirty": True/False/None,
                    "source_sha256": sha256 over the package's .py files, "version": __version__}

``commit`` is the git HEAD of the checkout the package sits in (``None``
outside git); ``dirty`` says whether the package's own files differ from that
commit (new result files elsewhere in the tree do not count). The source hash
names the code even without git: two results with the same ``source_sha256``
came from the same package sources. Results written before provenance was
recorded have no ``code`` entry; :func:`code_label` calls them
"unknown (before provenance)".
"""
from __future__ import annotations

import functools
import hashlib
import subprocess
from pathlib import Path

from .version import __version__

PACKAGE_DIR = Path(__file__).resolve().parent
UNKNOWN = "unknown (before provenance)"


def source_sha256(package_dir=PACKAGE_DIR) -> str:
    """SHA-256 over the package's ``.py`` files: relative path and content, in sorted path order."""
    h = hashlib.sha256()
    root = Path(package_dir)
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


def _git(args: list, cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@functools.lru_cache(maxsize=None)
def _code_cached(package_dir: str) -> tuple:
    root = Path(package_dir)
    commit = _git(["rev-parse", "HEAD"], root)
    dirty = None
    if commit:
        status = _git(["status", "--porcelain", "--", "."], root)
        dirty = None if status is None else bool(status)
    return commit or None, dirty, source_sha256(root)


def code_provenance(package_dir=PACKAGE_DIR) -> dict:
    """``{"commit", "dirty", "source_sha256", "version"}`` of the package (computed once per process)."""
    commit, dirty, sha = _code_cached(str(Path(package_dir).resolve()))
    return {"commit": commit, "dirty": dirty, "source_sha256": sha, "version": __version__}


def code_label(meta: dict) -> str:
    """A short name for the code behind a result's ``meta``: ``"<commit[:10]>[+dirty] src <sha[:10]>"``."""
    code = (meta or {}).get("code")
    if not code:
        return UNKNOWN
    head = (code.get("commit") or "no git")[:10] + ("+dirty" if code.get("dirty") else "")
    return f"{head} src {str(code.get('source_sha256'))[:10]}"


def code_versions(results) -> dict:
    """``{code label: number of results}`` over ``results`` (objects with ``.meta``).

    Results are grouped by their package sources (``source_sha256``), not by commit: commits that only
    add result files or documentation leave the code, and so the group, unchanged. The label names the
    sources and every commit seen for them."""
    groups: dict = {}
    for r in results:
        code = (r.meta or {}).get("code")
        key = code.get("source_sha256") if code else None
        label = code_label(r.meta).split(" src ")[0] if code else UNKNOWN
        commits, n = groups.get(key, ({}, 0))
        groups[key] = ({**commits, label: None}, n + 1)
    out = {}
    for key, (commits, n) in groups.items():
        out[UNKNOWN if key is None else f"src {str(key)[:10]} (commit {', '.join(commits)})"] = n
    return out


def mixed_code_warning(results) -> str | None:
    """A warning line when ``results`` come from more than one version of the package sources (else ``None``)."""
    versions = code_versions(results)
    if len(versions) <= 1:
        return None
    parts = ", ".join(f"{k}: {n}" for k, n in sorted(versions.items()))
    return f"warning: these {sum(versions.values())} results come from {len(versions)} code versions ({parts})"


def code_line(results) -> str:
    """One line naming the code behind ``results``; a warning when they come from different code."""
    return mixed_code_warning(results) or f"Code: {next(iter(code_versions(results)))}."
