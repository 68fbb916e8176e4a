"""A tiny Jupyter Book with known faults: the oracle for the browser checks.

``write_fixture_book(folder)`` writes a three-page book (an intro, a notebook
that does everything right, a notebook that breaks every rule) whose expected
findings are known in advance. ``tests/test_browser.py`` builds it, runs the
same checks it runs on the course's book, and asserts that the good page
passes and that every fault of the bad page is reported. A check that cannot
see a planted fault would also miss a real one.

The book is written to a temporary folder at test time (never under
``tests/``), so nbval never collects its notebooks.
"""
from __future__ import annotations

import base64
import json
import shutil
import struct
import zlib
from pathlib import Path

REPO = "example/fixture-course"   # repository.url of the fixture book (no network is used)


def png_bytes(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A valid solid-colour RGB PNG, built by hand (no imaging library needed)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    row = b"\x00" + bytes(rgb) * width                     # filter byte 0, then the pixels
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(row * height))
            + chunk(b"IEND", b""))


def _b64png(rgb) -> str:
    return base64.b64encode(png_bytes(8, 8, rgb)).decode()


def _md(source: str) -> dict:
    return {"cell_type": "markdown", "metadata": {}, "source": source}


def _code(source: str, outputs=(), tags=(), meta=None) -> dict:
    meta = dict(meta or {}, **({"tags": list(tags)} if tags else {}))
    return {"cell_type": "code", "execution_count": 1, "metadata": meta, "source": source,
            "outputs": list(outputs)}


def _display(data: dict) -> dict:
    return {"output_type": "display_data", "metadata": {}, "data": data}


def _notebook(cells) -> dict:
    return {"nbformat": 4, "nbformat_minor": 4, "cells": cells,
            "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                         "language_info": {"name": "python"}}}


def slider_html(frames: list[str], working: bool = True) -> str:
    """A kernel-free interactive figure: a range input that shows one of several pre-rendered frames."""
    imgs = "".join(f'<img class="frame" src="data:image/png;base64,{f}" width="40" height="40" '
                   f'style="display:{"inline" if i == 0 else "none"}">' for i, f in enumerate(frames))
    handler = ("var fs=this.parentNode.querySelectorAll('img.frame');"
               "for(var i=0;i<fs.length;i++){fs[i].style.display=(i==this.value)?'inline':'none';}")
    oninput = f' oninput="{handler}"' if working else ""
    return (f'<div class="fixture-explorer"><input type="range" min="0" max="{len(frames) - 1}" value="0" '
            f'step="1"{oninput}>{imgs}</div>')


COLAB_CELL = ("# On Colab: install the course package. Elsewhere: nothing to do.\n"
              "import importlib.util, subprocess, sys\n"
              'if "google.colab" in sys.modules and importlib.util.find_spec("fixture") is None:\n'
              '    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "fixture"], check=True)')

WIDE_TABLE = ("| " + " | ".join(f"column {i} with a long header" for i in range(12)) + " |\n"
              "|" + "---|" * 12 + "\n| " + " | ".join(str(i) for i in range(12)) + " |\n")

GOOD_CELLS = [
    _code(COLAB_CELL, tags=["remove-cell"]),      # first, as in the course, and not shown
    _md("# A good chapter\n\nIt shows a figure, an exercise with hidden solutions and an explorer; "
        "maths inline, $x_{l+1} = x_l + F_l(x_l)$, and on its own line:\n\n$$\\|F(x)\\| \\le c\\,\\|x\\|.$$\n\n"
        "(fixture-section)=\n## A section\n\nBack to the {doc}`intro`; on to the {ref}`exercise <fixture-ex>`.\n\n"
        + WIDE_TABLE),
    _md("A long name in running text breaks on a phone: "
        "`itercourse.refinement.a_very_long_function_name_that_would_not_fit_a_phone_screen`."),
    _code("result = some_function(first_argument=1, second_argument=2,\n"
          "                       third_argument=3, fourth_argument=4)", []),
    _code("plot()", [_display({"image/png": _b64png((200, 30, 30)), "text/plain": "<Figure>"})],
          meta={"mystnb": {"figure": {"caption": "A red square.", "name": "fig-fixture-red"},
                           "image": {"alt": "a red square"}}}),
    # a printed table (text/markdown) renders as a table; two prints make one output block
    _code("table()", [_display({"text/markdown": "| a | b |\n|---|---|\n| 1 | 2 |", "text/plain": "<table>"})]),
    _code("print(1); print(2)", [{"output_type": "stream", "name": "stdout", "text": "1\n"},
                                 {"output_type": "stream", "name": "stdout", "text": "2\n"}]),
    _md("```{exercise}\n:label: fixture-ex\n\nWhat is 2 + 2?\n```\n\n"
        "```{solution} fixture-ex\n:class: dropdown\n\nThe answer is four.\n```"),
    _md("```{exercise}\n:label: fixture-ex2\n\nCompute it in code.\n```\n\n"
        "````{solution-start} fixture-ex2\n:class: dropdown\n````"),
    _code("print(2 + 2)", [{"output_type": "stream", "name": "stdout", "text": "4\n"}]),
    _md("````{solution-end}\n````"),
    _code("explorer()", [_display({"text/html": slider_html([_b64png((0, 0, 255)), _b64png((0, 255, 0)),
                                                              _b64png((255, 0, 0))]),
                                   "text/plain": "<explorer>"})]),
]

BAD_CELLS = [
    # the Colab install cell shown above the title, long enough to push the title off the first screen
    _code(COLAB_CELL + "\n" + "\n".join(f"# setup line {i}" for i in range(60)), tags=["remove-output"]),
    _md("# A bad chapter\n\n"
        '<a href="good.html#no-such-anchor">a dead anchor</a> and '
        '<a href="no_such_page.html">a dead page</a> and '
        '<a href="https://example.invalid/x">an external link (skipped offline)</a>.'),
    # a traceback committed as an output
    _code("1 / 0", [{"output_type": "error", "ename": "ZeroDivisionError", "evalue": "division by zero",
                     "traceback": ["Traceback (most recent call last)", "ZeroDivisionError: division by zero"]}]),
    # an image output whose bytes are not an image
    _code("plot()", [_display({"image/png": base64.b64encode(b"not a png at all").decode(),
                               "text/plain": "<Figure>"})]),
    # a figure that points at a file that does not exist
    _code("show()", [_display({"text/html": '<img src="_images/missing-figure.png" alt="missing">',
                               "text/plain": "<img>"})]),
    # a solution that is not hidden (no dropdown class)
    _md("```{exercise}\n:label: fixture-bad-ex\n\nWhat is 3 + 3?\n```\n\n"
        "```{solution} fixture-bad-ex\n\nThe answer is six, in plain sight.\n```"),
    # a script in an output that throws when the page loads
    _code("widget()", [_display({"text/html": "<script>window.itercourseFixtureBroken.call()</script>",
                                 "text/plain": "<widget>"})]),
    # an explorer whose slider does nothing
    _code("explorer()", [_display({"text/html": slider_html([_b64png((0, 0, 255)), _b64png((0, 255, 0))],
                                                            working=False),
                                   "text/plain": "<explorer>"})]),
    # an ipywidgets explorer: without a kernel (and no widget scripts) its output area is empty
    _code("widget_explorer()", [_display({"application/vnd.jupyter.widget-view+json": {
        "model_id": "0123456789abcdef", "version_major": 2, "version_minor": 0}, "text/plain": "VBox()"})]),
    # TeX that MathJax never sees (raw delimiters in the text) and a formula it cannot typeset
    _code("show_formula()", [_display({"text/html": '<p>a raw formula \\(x^2\\) in the text</p>'
                                                    '<span class="math notranslate"><code>\\(z\\)</code></span>',
                                       "text/plain": "<formula>"})]),
    # a script from a CDN: the offline browser cannot fetch it
    _code("load_library()", [_display({"text/html": '<script src="https://cdn.example.invalid/lib.js"></script>'
                                                    '<p>library loaded</p>',
                                       "text/plain": "<library>"})]),
    # a printed table that is broken (its rule has fewer cells than its header): shown as text
    _code("table()", [_display({"text/markdown": "| a | b | c |\n|---|---|\n| 1 | 2 | 3 |\n| 4 | 5 | 6 |",
                                "text/plain": "<table>"})]),
    # output split into one box per print (as rendered without merged streams)
    _code("prints()", [_display({"text/html": '<div class="cell_output"><div class="output stream">one</div>'
                                              '<div class="output stream">two</div></div>',
                                 "text/plain": "<prints>"})]),
    # a fixed-width box in the text: wider than a phone screen, not in a box that scrolls
    _md('<div style="width: 700px; background: #eee">a fixed-width box wider than a phone</div>'),
    # a code cell with a line far longer than 79 characters: it scrolls sideways
    _code("x = 1  # " + "long " * 40, []),
    # printed output that wraps its lines
    _code("wrapped()", [_display({"text/html": '<div class="highlight"><pre style="white-space: pre-wrap">'
                                               + "aligned " * 40 + "</pre></div>", "text/plain": "<wrapped>"})]),
    # a code block that cannot wrap, and a wide table clipped by its box
    _code("wide()", [_display({"text/html": '<div class="highlight"><pre style="white-space: pre; overflow-x: auto">'
                                            + "x = 1  # " + "long " * 60 + "</pre></div>"
                                            '<div style="overflow: hidden"><table><tr>'
                                            + "".join(f"<td>cell number {i} of a wide table</td>" for i in range(20))
                                            + "</tr></table></div>",
                               "text/plain": "<wide>"})]),
]

CONFIG = f"""\
title: fixture book
author: tests
only_build_toc_files: true
execute:
  execute_notebooks: "off"
repository:
  url: https://github.com/{REPO}
  path_to_book: book
  branch: main
launch_buttons:
  colab_url: https://colab.research.google.com
  notebook_interface: classic
html:
  favicon: _static/favicon.svg
sphinx:
  extra_extensions:
    - sphinx_exercise
  local_extensions:
    itercourse_book: _ext
  config:
    html_context:
      default_mode: auto
    mathjax_path: mathjax/tex-svg-full.js
    nb_ipywidgets_js: {{}}
    nb_render_markdown_format: myst
    nb_merge_streams: true
"""

TOC = """\
format: jb-book
root: intro
chapters:
  - file: good
  - file: bad
"""

INTRO = """\
# Fixture intro

Read {doc}`good` first, then {ref}`its section <fixture-section>`.
"""

# What the checks must find on each page of the fixture, by check.
EXPECTED_BAD = {
    "first screen": ["is not in the first screen", "Colab install cell is shown"],
    "maths": ["raw TeX in the page text", "maths not typeset"],
    "errors": ["ZeroDivisionError"],
    "console": ["Uncaught TypeError", "cdn.example.invalid"],
    "offline": ["https://cdn.example.invalid/lib.js"],
    "explorers": ["explorer shows nothing", "widget_explorer()"],
    "code": ["code block scrolls sideways", "wraps its lines"],
    "tables": ["is clipped"],
    "pipe tables": ["pipe table shown as text"],
    "outputs": ["output split into 2 boxes"],
    "captions": ["figure without a number and caption"],
    "phone": ["a fixed-width box wider than a phone"],
    "images": ["missing-figure.png"],          # plus the undecodable PNG output
    "figures": [],
    "links": ["good.html#no-such-anchor", "no_such_page.html"],
    "solutions": ["fixture-bad-ex"],
    "sliders": ["did not change"],
}


def write_fixture_book(folder: str | Path, site_from: str | Path | None = None) -> Path:
    """Write the fixture book under ``folder/book`` and return that path.

    ``site_from``: the course's ``book/`` folder, whose ``_ext/`` (the Sphinx
    extension that serves MathJax offline) and ``_static/`` (CSS, favicon) the
    fixture uses too, so that the good page is built the way the course is.
    """
    book = Path(folder) / "book"
    book.mkdir(parents=True, exist_ok=True)
    if site_from is not None:
        for sub in ("_ext", "_static"):
            shutil.copytree(Path(site_from) / sub, book / sub, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__"))
    (book / "_config.yml").write_text(CONFIG)
    (book / "_toc.yml").write_text(TOC)
    (book / "intro.md").write_text(INTRO)
    (book / "good.ipynb").write_text(json.dumps(_notebook(GOOD_CELLS), indent=1))
    (book / "bad.ipynb").write_text(json.dumps(_notebook(BAD_CELLS), indent=1))
    return book
