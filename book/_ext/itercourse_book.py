"""Sphinx extension for the itercourse book: a site that works offline and reads cleanly.

Loaded by ``_config.yml`` (``sphinx: local_extensions``). Three small jobs:

1. **MathJax from the site itself.** ``mathjax_path`` (set in ``_config.yml``)
   names a file under ``_static/``; this extension copies that file, with
   MathJax's Apache-2.0 licence, from the PyPI package ``django-static-mathjax``
   (MathJax 3.2.2, listed in ``requirements.txt``) into the built site. Nothing
   is vendored in the repository and no CDN is needed to read the maths. The
   ``tex-svg-full`` component holds the TeX input with every extension and the
   SVG output, so the browser fetches no further MathJax file (no fonts).
2. **One copy of each inline script.** Sphinx 7 registers an inline script
   added after the builder starts (sphinx-thebe's ``const THEBE_JS_URL = ...``)
   twice, once as ``None`` and once as ``''``; the second copy throws
   ``SyntaxError: Identifier 'THEBE_JS_URL' has already been declared`` on
   every page. Duplicates are dropped from each page's script list.
3. **Exercise numbers restart in every chapter.** Sphinx numbers enumerable
   nodes through the whole book when the table of contents is not numbered,
   so chapter 2 would start at "Exercise 4". Each document's exercises are
   renumbered from 1, prefixed by the chapter number its title starts with
   ("2 · Residual blocks ..." gives Exercise 2.1, 2.2, ...).
"""
from __future__ import annotations

import importlib.util
import posixpath
import re
import shutil
from pathlib import Path

from sphinx.errors import ExtensionError

MATHJAX_PACKAGE = "mathjax"                   # import name of the PyPI package django-static-mathjax
MATHJAX_DIST = ("static", "mathjax", "es5")   # where the package keeps MathJax's combined components
MATHJAX_LICENSE = ("static", "mathjax", "LICENSE")


# ---------------------------------------------------------------- 1. MathJax offline

def mathjax_source(mathjax_path: str) -> tuple[Path, Path]:
    """(component file, licence file) in the installed django-static-mathjax for ``mathjax_path``."""
    spec = importlib.util.find_spec(MATHJAX_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ExtensionError("the book serves MathJax from the site: pip install 'django-static-mathjax==3.2.2.1' "
                             "(it is in requirements.txt)")
    root = Path(list(spec.submodule_search_locations)[0])
    name = posixpath.basename(mathjax_path)
    component = root.joinpath(*MATHJAX_DIST, name)
    if not component.is_file():
        raise ExtensionError(f"mathjax_path={mathjax_path!r}: no MathJax component {name!r} in {component.parent}; "
                             "use one of its es5/*.js files, e.g. 'mathjax/tex-svg-full.js'")
    return component, root.joinpath(*MATHJAX_LICENSE)


def check_mathjax_path(app, config) -> None:
    """Fail early, with the fix, if ``mathjax_path`` is a URL or its file is not installed."""
    path = config.mathjax_path or ""
    if "://" in path or path.startswith("//"):
        raise ExtensionError(f"mathjax_path={path!r} is a URL; the book serves MathJax itself: set it to "
                             "'mathjax/tex-svg-full.js' (a file under _static/)")
    mathjax_source(path)


def copy_mathjax(app, exc) -> None:
    """Copy the MathJax component and its licence to ``_static/<dirname of mathjax_path>/``."""
    if exc is not None or app.builder.format != "html":
        return
    component, licence = mathjax_source(app.config.mathjax_path)
    target = Path(app.outdir, "_static", posixpath.dirname(app.config.mathjax_path))
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(component, target / component.name)
    if licence.is_file():
        shutil.copyfile(licence, target / "LICENSE")


# ---------------------------------------------------------------- 2. one copy of each inline script

def drop_duplicate_scripts(app, pagename, templatename, context, doctree) -> None:
    """Remove repeated entries (same file or same inline body and attributes) from the page's scripts."""
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for js in scripts:
        attrs = getattr(js, "attributes", {}) or {}
        key = (getattr(js, "filename", str(js)) or "", tuple(sorted((k, str(v)) for k, v in attrs.items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    scripts[:] = unique


# ---------------------------------------------------------------- 3. exercise numbers per chapter

CHAPTER_TITLE = re.compile(r"^\s*(\d+)\s*[·.:]")   # "2 · Residual blocks as gradient steps"


def number_exercises_per_chapter(app, env) -> list[str]:
    """Renumber each document's exercises 1, 2, ... (prefixed by its chapter number, if its title has one)."""
    changed = []
    for docname, numbers in env.toc_fignumbers.items():
        exercises = numbers.get("exercise")
        if not exercises:
            continue
        title = env.titles.get(docname)
        match = CHAPTER_TITLE.match(title.astext()) if title is not None else None
        prefix = (int(match.group(1)),) if match else ()
        renumbered = {node_id: prefix + (k,) for k, node_id in enumerate(exercises, start=1)}
        if renumbered != exercises:
            numbers["exercise"] = renumbered
            changed.append(docname)
    return changed


def setup(app):
    app.connect("config-inited", check_mathjax_path)
    app.connect("build-finished", copy_mathjax)
    app.connect("html-page-context", drop_duplicate_scripts, priority=900)
    app.connect("env-get-updated", number_exercises_per_chapter, priority=900)   # after Sphinx numbers them
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
