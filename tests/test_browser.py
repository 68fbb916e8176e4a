"""The built book, opened in a real (headless) browser the way a student sees it.

The session builds the book once (``jupyter-book build book/ -W`` into a
temporary folder, or reuses a fresh build named by ``ITERCOURSE_BOOK_HTML``),
serves it on localhost and opens every page of the table of contents in
headless Chromium at 1400x900, **with no network**: every host name fails to
resolve and every other address goes to a closed proxy port, as on a train or
in a classroom with no connection. On every page:

- the first screen: a chapter page's first heading lies inside the first
  1400x900 screen and no Colab install cell is shown;
- maths: no raw TeX delimiters (``\\(``, ``\\[``, ``$$``, ``\\begin{``) in the
  page's text outside code, and every ``.math`` element holds MathJax output
  (``mjx-container``), so MathJax was served by the site itself;
- explorers: every widget-view or kernel-free-slider output area has visible
  content (an ipywidgets view needs a kernel: the book removes it and shows a
  slider figure instead);
- code blocks do not scroll sideways; a table wider than the column scrolls
  inside a box whose scrollbar is drawn;
- tables: no paragraph is a pipe table shown as text (a printed
  ``markdown_table`` must render as a table);
- outputs: no cell's printed output is split into one box per print call;
- captions: every figure a cell draws is numbered and captioned (myst-nb
  figure metadata), kernel-free slider frames aside;
- phone: at 390 px the page is no wider than the screen
  (``document.documentElement.scrollWidth``), nothing sticks out of the
  screen outside a box that scrolls, and every slider is usable (at least
  100 px wide, its frame's name on at most three lines);
- nothing is requested from another origin, and the console has no severe
  message at all (uncaught errors, failed loads, blocked requests);
- no error output: no traceback, ``.output.error``/``.traceback`` or Sphinx
  system message;
- no broken image (``naturalWidth == 0``), no empty figure, and a notebook
  page shows at least as many images as its notebook has image outputs;
- a notebook page has a Colab launch link to
  ``https://colab.research.google.com/github/<repo>/blob/<branch>/book/<page>.ipynb``
  for its own notebook (``<repo>`` and ``<branch>`` from ``_config.yml``);
- every exercise solution is hidden until clicked and shown by a click;
- every kernel-free interactive figure (an ``input[type=range]`` inside a
  cell output) changes the picture it shows when its slider moves.

A link check (no browser) resolves every internal ``href``/``src`` of the site
to a file and every ``#anchor`` to an id on the target page; external links
are skipped (offline). Screenshots of the landing page and of one chapter go
to ``test-artifacts/`` at the repository root (gitignored; another folder via
``ITERCOURSE_TEST_ARTIFACTS``, e.g. when .ci/run tests a temporary copy).

The checks themselves are tested first, on a fixture book with planted faults
(``tests/browser/fixture_book.py``): each fault must be reported and the good
page must pass.

Needs Debian's ``chromium`` and ``chromium-driver`` (``/usr/bin/chromium``,
``/usr/bin/chromedriver``; other paths via ``ITERCOURSE_CHROMIUM`` and
``ITERCOURSE_CHROMEDRIVER``) and the ``selenium`` package; without them the
browser tests are skipped with the reason, and the link check still runs.
Nothing is downloaded: selenium is given the system driver, so Selenium
Manager is never started.
"""
from __future__ import annotations

import functools
import hashlib
import html.parser
import json
import os
import posixpath
import subprocess
import sys
import threading
import time
import warnings
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent / "browser"))
import fixture_book  # noqa: E402  (tests/browser/fixture_book.py)

REPO = Path(__file__).resolve().parents[1]
BOOK = REPO / "book"
ARTIFACTS = Path(os.environ.get("ITERCOURSE_TEST_ARTIFACTS", REPO / "test-artifacts"))   # screenshots
CHROMIUM = os.environ.get("ITERCOURSE_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("ITERCOURSE_CHROMEDRIVER", "/usr/bin/chromedriver")
WINDOW = (1400, 900)       # the reader's first screen: width and height in CSS pixels
# No network for the browser: every host name fails to resolve and every non-local
# address goes to a closed proxy port; the site itself is served on 127.0.0.1.
OFFLINE_FLAGS = ("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
                 "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=localhost;127.0.0.1")
COLAB_CELL_MARK = '"google.colab" in sys.modules'   # a line of the Colab install cell (book/_colab_cell.py)
HTML_ENV = "ITERCOURSE_BOOK_HTML"   # a fresh `jupyter-book build book/` output (…/_build/html) to reuse
BUILD_TIMEOUT_S = 1200


# ------------------------------------------------------------------ what is there

def _browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not (os.path.isfile(p) and os.access(p, os.X_OK))]
    if missing:
        return (f"no headless browser: {', '.join(missing)} not found; install Debian's chromium and "
                "chromium-driver (`apt-get install -y chromium chromium-driver`, as .ci/run does) or set "
                "ITERCOURSE_CHROMIUM / ITERCOURSE_CHROMEDRIVER")
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium package is not installed (`pip install 'selenium>=4.20'`)"
    return None


BROWSER_MISSING = _browser_missing()
needs_browser = pytest.mark.skipif(BROWSER_MISSING is not None, reason=BROWSER_MISSING or "")


def toc_pages(toc_file: Path) -> list[str]:
    """Docnames of every page in a jb-book table of contents, in reading order (root first)."""
    if not toc_file.exists():
        return []
    toc = yaml.safe_load(toc_file.read_text()) or {}
    pages = [toc["root"]] if "root" in toc else []

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                pages.append(node["file"])
            for key in ("parts", "chapters", "sections"):
                for child in node.get(key, []) or []:
                    walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)
    walk({k: v for k, v in toc.items() if k in ("parts", "chapters", "sections")})
    return [posixpath.splitext(p)[0] for p in pages]


def colab_target(config_file: Path) -> tuple[str, str, str]:
    """(owner/repo, branch, path_to_book) from a Jupyter Book ``_config.yml``."""
    cfg = yaml.safe_load(config_file.read_text()) or {}
    repo = cfg.get("repository", {}) or {}
    url = str(repo.get("url", "")).rstrip("/")
    slug = url.split("github.com/", 1)[-1].removesuffix(".git")
    return slug, str(repo.get("branch", "main")), str(repo.get("path_to_book", "book")).strip("/")


PAGES = toc_pages(REPO / "_toc.yml")


# ------------------------------------------------------------------ building and serving

def _sources_mtime(book: Path) -> float:
    paths = [p for p in book.rglob("*") if p.is_file() and "_build" not in p.parts
             and ".ipynb_checkpoints" not in p.parts]
    paths += [REPO / "_config.yml", REPO / "_toc.yml"]
    return max(p.stat().st_mtime for p in paths if p.exists())


def build_book(book: Path, out: Path, *, strict: bool = True) -> Path:
    """``jupyter-book build <book> --path-output <out> [-W]``; returns the html folder."""
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()",
           "build", str(book), "--path-output", str(out)] + (["-W"] if strict else [])
    proc = subprocess.run(cmd, cwd=book.parent, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    html = out / "_build" / "html"
    if proc.returncode != 0 or not (html / "index.html").exists():
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-60:])
        pytest.fail(f"the book did not build (`jupyter-book build {book.name}/ -W`, exit {proc.returncode}):\n{tail}",
                    pytrace=False)
    return html


class Site:
    """A folder served over http://127.0.0.1:<port>/ from a background thread."""

    def __init__(self, root: Path):
        self.root = Path(root)
        handler = functools.partial(_QuietHandler, directory=str(self.root))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture(scope="session")
def book_html(tmp_path_factory) -> Path:
    """The built book: ``$ITERCOURSE_BOOK_HTML`` if it is newer than every source, else a fresh -W build."""
    given = os.environ.get(HTML_ENV)
    if given:
        html = Path(given)
        if (html / "index.html").exists() and (html / "index.html").stat().st_mtime >= _sources_mtime(BOOK):
            return html
        warnings.warn(f"{HTML_ENV}={given} is missing or older than the book's sources; building afresh")
    return build_book(BOOK, tmp_path_factory.mktemp("book"))


@pytest.fixture(scope="session")
def site(book_html):
    s = Site(book_html)
    yield s
    s.close()


@pytest.fixture(scope="session")
def driver(tmp_path_factory):
    """Headless Chromium through the system chromedriver (no downloads, no Selenium Manager)."""
    if BROWSER_MISSING:
        pytest.skip(BROWSER_MISSING)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--window-size={WINDOW[0]},{WINDOW[1]}",
                 *OFFLINE_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "SEVERE"})   # for check_console
    drv = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    drv.set_page_load_timeout(120)
    yield drv
    drv.quit()


# ------------------------------------------------------------------ the checks (one page at a time)

def open_page(driver, url: str) -> None:
    """Load a page and wait until it and its images have finished loading (lazy images made eager)."""
    driver.get_log("browser")                  # drop the previous page's console messages
    driver.get(url)
    deadline = time.time() + 30
    while time.time() < deadline:
        done = driver.execute_script(
            "document.querySelectorAll('img[loading=lazy]').forEach(i => i.loading = 'eager');"
            "return document.readyState === 'complete' && Array.from(document.images).every(i => i.complete);")
        if done:
            return
        time.sleep(0.2)


def check_console(driver) -> list[str]:
    """Every severe console message: uncaught script errors, failed loads (404s, blocked network)."""
    return [f"console {e.get('source', '?')}: {e['message'][:200]}" for e in driver.get_log("browser")
            if e.get("level") == "SEVERE"]


def check_offline(driver) -> list[str]:
    """Resources the page asked another origin for (the browser has no network: each one fails).

    Two views of the same fault: what the page tried to load (resource timing)
    and what its markup points at (scripts, styles, images, frames).
    """
    return [f"external resource: {u[:160]}" for u in driver.execute_script("""
        const here = location.origin, seen = new Set();
        const foreign = u => /^(https?:)?\\/\\//i.test(u) && new URL(u, location.href).origin !== here;
        performance.getEntriesByType('resource').forEach(r => { if (foreign(r.name)) seen.add(r.name); });
        document.querySelectorAll('script[src], img[src], iframe[src], source[src]')
            .forEach(e => { if (foreign(e.getAttribute('src'))) seen.add(e.getAttribute('src')); });
        document.querySelectorAll('link[rel~=stylesheet][href], link[rel~=icon][href], link[rel=preload][href]')
            .forEach(e => { if (foreign(e.getAttribute('href'))) seen.add(e.getAttribute('href')); });
        return Array.from(seen);""")]


def _wait_for_mathjax(driver, timeout_s: float = 20) -> bool:
    """Wait until MathJax (if the page loads it) has typeset the page; False if it never did."""
    driver.set_script_timeout(timeout_s)
    return bool(driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const t0 = Date.now();
        (function poll() {
            const mj = window.MathJax;
            if (mj && mj.startup && mj.startup.promise && mj.typesetPromise) {
                mj.startup.promise.then(() => done(true), () => done(false));
            } else if (Date.now() - t0 > arguments_timeout) { done(false); } else { setTimeout(poll, 100); }
        })();""".replace("arguments_timeout", str(int(timeout_s * 1000) - 500))))


def check_maths(driver) -> list[str]:
    """Maths is typeset: no raw TeX delimiters in the page's text, an ``mjx-container`` in every ``.math``."""
    has_math = driver.execute_script("return document.querySelectorAll('article .math').length > 0;")
    raw_in_text = driver.execute_script(r"""
        const article = document.querySelector('article') || document.body;
        const copy = article.cloneNode(true);
        copy.querySelectorAll('pre, code, script, style, textarea, mjx-container, .highlight')
            .forEach(e => e.remove());
        const text = copy.textContent;
        const found = [];
        for (const d of ['\\(', '\\[', '$$', '\\begin{']) {
            const i = text.indexOf(d);
            if (i >= 0) found.push(text.slice(Math.max(0, i - 30), i + 50).replace(/\s+/g, ' ').trim());
        }
        return found;""")
    problems = [f"raw TeX in the page text: ...{t}..." for t in raw_in_text]
    if has_math and not _wait_for_mathjax(driver):
        problems.append("the page has maths but MathJax did not start (not loaded, or loaded from a network)")
    untypeset = driver.execute_script("""
        return Array.from(document.querySelectorAll('article .math'))
            .filter(m => !m.querySelector('mjx-container'))
            .map(m => m.textContent.trim().slice(0, 60));""") if has_math else []
    problems += [f"maths not typeset (no mjx-container): {t}" for t in untypeset]
    return problems


_EXPLORERS_JS = """
    const areas = new Set();
    document.querySelectorAll(
        'article script[type="application/vnd.jupyter.widget-view+json"], article .cell_output input[type=range]')
        .forEach(e => areas.add(e.closest('.cell_output') || e.parentNode));
    return Array.from(areas).map(box => {
        const shown = Array.from(box.querySelectorAll('*')).filter(e => {
            if (['SCRIPT', 'STYLE'].includes(e.tagName)) return false;
            const r = e.getBoundingClientRect();
            return r.width > 0 && r.height > 0 && getComputedStyle(e).visibility !== 'hidden';
        });
        const r = box.getBoundingClientRect();
        const cell = box.closest('.cell');
        if (cell && !cell.getClientRects().length) return null;   // inside a collapsed solution or toggle
        const code = cell ? (cell.querySelector('.cell_input pre') || {}).textContent || '' : '';
        return {height: r.height, shown: shown.length, what: code.trim().split('\\n').pop().slice(0, 70)};
    });"""


def check_explorers(driver) -> list[str]:
    """Every explorer's output area (a widget view or a kernel-free slider figure) shows something."""
    return [f"explorer shows nothing (output height {a['height']:.0f} px): {a['what'] or '?'}"
            for a in driver.execute_script(_EXPLORERS_JS) if a and (a["height"] < 1 or a["shown"] == 0)]


def check_first_screen(driver) -> list[str]:
    """The page's first heading is visible in the first screen; no Colab install cell is shown."""
    problems = []
    found = driver.execute_script("""
        window.scrollTo(0, 0);
        const h = document.querySelector('article h1');
        if (!h) return null;
        const r = h.getBoundingClientRect();
        return {top: r.top, bottom: r.bottom, height: window.innerHeight, text: h.textContent.trim().slice(0, 60),
                visible: h.getClientRects().length > 0 && getComputedStyle(h).visibility !== 'hidden'};""")
    if found is None:
        problems.append("no <h1> in the article")
    elif not found["visible"] or found["top"] < 0 or found["bottom"] > found["height"]:
        problems.append(f"first heading {found['text']!r} is not in the first screen "
                        f"(top {found['top']:.0f} px, window height {found['height']} px)")
    shown = driver.execute_script("""
        return Array.from(document.querySelectorAll('article .cell_input'))
            .filter(c => c.textContent.includes(arguments[0]))
            .filter(c => c.getClientRects().length > 0 && c.getBoundingClientRect().height > 0).length;""",
                                  COLAB_CELL_MARK)
    if shown:
        problems.append("the Colab install cell is shown (tag it remove-cell in the notebook)")
    return problems


def check_code_width(driver) -> list[str]:
    """Chapter code fits the column unwrapped; printed output is never wrapped (it scrolls in its box).

    A code cell's lines (at most 79 characters) must fit without scrolling or
    wrapping; a cell's printed output keeps its layout (``white-space: pre``)
    and may scroll inside its own box. Code blocks in the text (shell
    commands, solutions) may scroll inside their box.
    """
    problems = [f"code block scrolls sideways ({w} px of content in {c} px): {t}"
                for w, c, t in driver.execute_script("""
        return Array.from(document.querySelectorAll('article .cell_input pre'))
            .filter(p => p.getClientRects().length > 0 && p.scrollWidth > p.clientWidth + 1)
            .map(p => [p.scrollWidth, p.clientWidth, p.textContent.trim().split('\\n')[0].slice(0, 60)]);""")]
    problems += [f"code or output wraps its lines (white-space: {ws}): {t}" for ws, t in driver.execute_script("""
        return Array.from(document.querySelectorAll('article .cell_input pre, article .cell_output pre'))
            .filter(p => p.getClientRects().length > 0 && !['pre', 'nowrap'].includes(getComputedStyle(p).whiteSpace))
            .map(p => [getComputedStyle(p).whiteSpace, p.textContent.trim().split('\\n')[0].slice(0, 60)]);""")]
    return problems


def check_tables(driver) -> list[str]:
    """Every table fits its column or scrolls inside a box whose scrollbar is drawn."""
    return [f"table {t}" for t in driver.execute_script("""
        const out = [];
        document.querySelectorAll('article table').forEach(t => {
            if (!t.getClientRects().length) return;               // in a hidden solution
            let box = t.parentElement;
            while (box && box.tagName !== 'ARTICLE' && getComputedStyle(box).overflowX === 'visible')
                box = box.parentElement;
            const first = (t.textContent || '').trim().replace(/\\s+/g, ' ').slice(0, 50);
            const width = t.getBoundingClientRect().width;
            if (!box || box.tagName === 'ARTICLE') {
                const col = (document.querySelector('article') || document.body).clientWidth;
                if (width > col + 1) out.push(`is wider than the column (${width|0} > ${col} px): ${first}`);
                return;
            }
            if (box.scrollWidth <= box.clientWidth + 1) return;  // fits
            const style = getComputedStyle(box).overflowX;
            const bar = box.offsetHeight - box.clientHeight
                - parseFloat(getComputedStyle(box).borderTopWidth) - parseFloat(getComputedStyle(box).borderBottomWidth);
            if (!['auto', 'scroll'].includes(style)) out.push(`is clipped (overflow-x: ${style}): ${first}`);
            else if (bar < 4) out.push(`scrolls without a visible scrollbar: ${first}`);
        });
        return out;""")]


PHONE = (390, 844)         # a phone screen in CSS pixels: no page may be wider


def check_pipe_tables(driver) -> list[str]:
    """Tables that reached the page as text: a paragraph made of ``| a | b |`` rows (a broken pipe table)."""
    return [f"pipe table shown as text: {t}" for t in driver.execute_script("""
        return Array.from(document.querySelectorAll('article p'))
            .filter(p => p.textContent.split('\\n').filter(l => /^\\s*\\|.*\\|\\s*$/.test(l)).length >= 2
                      || /^\\s*\\|[^|]+\\|[^|]+\\|.*\\|\\s*\\|?\\s*-{3}/.test(p.textContent))
            .map(p => p.textContent.trim().replace(/\\s+/g, ' ').slice(0, 70));""")]


def check_split_outputs(driver) -> list[str]:
    """A cell's printed output split into several boxes (one per print call) instead of one block."""
    return [f"output split into {n} boxes: {t}" for n, t in driver.execute_script("""
        const found = [];
        document.querySelectorAll('.cell_output').forEach(c => {
            const kids = Array.from(c.children), runs = [];
            let run = 0;
            kids.forEach((e, i) => {
                const same = i && e.classList.contains('stream') && kids[i - 1].classList.contains('stream');
                run = same ? run + 1 : (e.classList.contains('stream') ? 1 : 0);
                if (same) runs.push(run);
            });
            if (runs.length) found.push([Math.max(...runs), c.textContent.trim().slice(0, 60)]);
        });
        return found;""")]


def check_captions(driver) -> list[str]:
    """Every figure a cell draws is numbered and captioned (myst-nb figure metadata); slider frames aside."""
    return [f"figure without a number and caption: {t}" for t in driver.execute_script("""
        return Array.from(document.querySelectorAll('article .cell_output img'))
            .filter(i => !(i.closest('.cell_output').querySelector('input[type=range]')))
            .filter(i => { const f = i.closest('figure'); const c = f && f.querySelector('figcaption');
                           return !(c && /\\d/.test((c.querySelector('.caption-number') || {}).textContent || '')); })
            .map(i => (i.getAttribute('alt') || i.getAttribute('src') || '?').slice(0, 70));""")]


_PHONE_JS = """
    const vw = document.documentElement.clientWidth, out = [];
    if (document.documentElement.scrollWidth > vw + 1)
        out.push(`page is ${document.documentElement.scrollWidth} px wide on a ${vw} px screen`);
    document.querySelectorAll('article *').forEach(e => {
        if (!e.getClientRects().length) return;
        const r = e.getBoundingClientRect();
        if (r.right <= vw + 1 || r.width === 0) return;
        for (let a = e.parentElement; a && a !== document.body; a = a.parentElement)
            if (['auto', 'scroll', 'hidden'].includes(getComputedStyle(a).overflowX))
                if (a.getBoundingClientRect().right <= vw + 1) return;
        if (e.parentElement && e.parentElement.getBoundingClientRect().right > vw + 1) return;  // report the outermost
        out.push(`${e.tagName.toLowerCase()} reaches ${r.right | 0} px: ${(e.textContent || '').trim().slice(0, 50)}`);
    });
    document.querySelectorAll('.cell_output input[type=range]').forEach(s => {
        if (!s.getClientRects().length) return;
        const w = s.getBoundingClientRect().width, v = s.parentElement.querySelector('span');
        const lh = v ? parseFloat(getComputedStyle(v).lineHeight) || 20 : 20;
        if (w < 100) out.push(`slider is only ${w | 0} px wide`);
        if (v && v.getBoundingClientRect().height > 3.5 * lh) out.push(`slider label wraps onto ${Math.round(v.getBoundingClientRect().height / lh)} lines`);
    });
    return out;"""


def check_phone(driver, url: str) -> list[str]:
    """At a phone's width (390 px): no page wider than the screen, nothing sticking out of it, sliders usable."""
    driver.set_window_size(*PHONE)
    try:
        open_page(driver, url)
        return [f"at {PHONE[0]} px: {p}" for p in driver.execute_script(_PHONE_JS)]
    finally:
        driver.set_window_size(*WINDOW)


def check_errors(driver) -> list[str]:
    """Error outputs, tracebacks and Sphinx system messages on the page."""
    return driver.execute_script("""
        const found = [];
        document.querySelectorAll('.output.error, .output.traceback, .traceback, .system-message')
            .forEach(e => found.push(e.className + ': ' + e.textContent.trim().slice(0, 160)));
        document.querySelectorAll('.cell_output, .output').forEach(e => {
            if (e.textContent.includes('Traceback (most recent call last)'))
                found.push('Traceback in a cell output: ' + e.textContent.trim().slice(0, 160));
        });
        return Array.from(new Set(found));""")


def check_images(driver) -> list[str]:
    """Images that did not load or decode (``naturalWidth == 0``)."""
    bad = driver.execute_script("""
        return Array.from(document.images)
            .filter(i => i.getAttribute('src') && (!i.complete || i.naturalWidth === 0))
            .map(i => i.getAttribute('src').slice(0, 120));""")
    return [f"broken image: {src}" for src in bad]


def _shown_image_outputs(nb: dict) -> int:
    """Image outputs of a notebook that myst-nb renders as images (richer MIME types win)."""
    richer = ("application/vnd.jupyter.widget-view+json", "application/javascript", "text/html")
    images = ("image/svg+xml", "image/png", "image/jpeg", "image/gif")
    n = 0
    for cell in nb.get("cells", []):
        tags = cell.get("metadata", {}).get("tags", [])
        if cell.get("cell_type") != "code" or {"remove-output", "remove-cell"} & set(tags):
            continue
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if any(m in data for m in images) and not any(m in data for m in richer):
                n += 1
    return n


def check_figures(driver, notebook: Path | None) -> list[str]:
    """Empty ``<figure>`` elements; image outputs of the notebook that the page does not show."""
    problems = [f"empty figure: {fid}" for fid in driver.execute_script("""
        return Array.from(document.querySelectorAll('article figure'))
            .filter(f => !f.querySelector('img, svg, object, canvas, video, iframe'))
            .map(f => f.id || f.textContent.trim().slice(0, 80));""")]
    if notebook is not None and notebook.exists():
        expected = _shown_image_outputs(json.loads(notebook.read_text()))
        shown = driver.execute_script(
            "return document.querySelectorAll('.cell_output img, .cell_output svg, .output img').length;")
        if shown < expected:
            problems.append(f"missing figures: the notebook has {expected} image outputs, the page shows {shown}")
    return problems


def check_colab(driver, expected: str) -> list[str]:
    """The page's Colab launch link points at its own notebook."""
    hrefs = driver.execute_script(
        "return Array.from(document.querySelectorAll('a[href^=\"https://colab.research.google.com\"]'))"
        ".map(a => a.getAttribute('href'));")
    if expected in hrefs:
        return []
    return [f"no Colab launch link to {expected} (found: {hrefs or 'none'})"]


def _visible(driver, element) -> bool:
    return bool(driver.execute_script(
        "const e = arguments[0]; const r = e.getBoundingClientRect();"
        "return e.getClientRects().length > 0 && r.height > 0 && getComputedStyle(e).visibility !== 'hidden';",
        element))


def check_solutions(driver) -> list[str]:
    """Every exercise solution is hidden at first and revealed by clicking it."""
    from selenium.webdriver.common.by import By

    problems = []
    for sol in driver.find_elements(By.CSS_SELECTOR, "div.solution"):
        sid = sol.get_attribute("id") or "?"
        title = sol.find_element(By.CSS_SELECTOR, ".admonition-title").text.strip()
        solves = [a.get_attribute("href").rsplit("#", 1)[-1]
                  for a in sol.find_elements(By.CSS_SELECTOR, ".admonition-title a[href*='#']")]
        body = [c for c in sol.find_elements(By.XPATH, "./*")
                if "admonition-title" not in (c.get_attribute("class") or "")]
        name = f"solution {sid} ({title}{', label ' + solves[0] if solves else ''})"
        if not body:
            problems.append(f"{name}: has no content")
            continue
        if any(_visible(driver, c) for c in body):
            problems.append(f"{name}: visible before any click (give it `:class: dropdown`)")
            continue
        target = (sol.find_elements(By.CSS_SELECTOR, "button.toggle-button")
                  or sol.find_elements(By.CSS_SELECTOR, ".admonition-title"))[0]
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", target)
        driver.execute_script("arguments[0].click();", target)
        deadline = time.time() + 5
        while time.time() < deadline and not any(_visible(driver, c) for c in body):
            time.sleep(0.1)
        if not any(_visible(driver, c) for c in body):
            problems.append(f"{name}: still hidden after clicking it")
    return problems


_FRAME_JS = """
    const box = arguments[0].closest('.cell_output, .output') || arguments[0].parentNode;
    const shown = Array.from(box.querySelectorAll('img, svg, canvas'))
        .filter(e => e.getClientRects().length > 0 && getComputedStyle(e).visibility !== 'hidden')
        .map(e => e.tagName === 'IMG' ? e.currentSrc || e.src
                : e.tagName === 'CANVAS' ? e.toDataURL() : e.outerHTML);
    return shown.length ? shown : [box.innerText];"""


def check_sliders(driver) -> list[str]:
    """Every slider of a kernel-free interactive figure changes the frame it shows."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    problems = []
    sliders = driver.find_elements(By.CSS_SELECTOR, ".cell_output input[type=range], .output input[type=range]")
    for k, slider in enumerate(sliders):
        def frame():
            return hashlib.sha256(json.dumps(driver.execute_script(_FRAME_JS, slider)).encode()).hexdigest()
        lo, hi, value = (float(slider.get_attribute(a) or d) for a, d in (("min", 0), ("max", 100), ("value", 50)))
        before = frame()
        to_end = value < hi
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", slider)
        if _visible(driver, slider):
            slider.send_keys(Keys.END if to_end else Keys.HOME)
        else:                                   # inside a collapsed output: move it the way a script would
            driver.execute_script(
                "const s = arguments[0]; s.value = arguments[1];"
                "s.dispatchEvent(new Event('input', {bubbles: true}));"
                "s.dispatchEvent(new Event('change', {bubbles: true}));", slider, hi if to_end else lo)
        deadline = time.time() + 5
        while time.time() < deadline and frame() == before:
            time.sleep(0.1)
        moved = float(slider.get_attribute("value")) != value
        if not moved:
            problems.append(f"slider {k}: its value did not move (min {lo}, max {hi}, value {value})")
        elif frame() == before:
            problems.append(f"slider {k}: the shown frame did not change when the slider moved "
                            f"from {value} to {slider.get_attribute('value')}")
    return problems


def page_problems(driver, url: str, docname: str, book: Path, colab: tuple[str, str, str]) -> dict[str, list[str]]:
    """Run every browser check on one page; returns {check: [problems]} (empty lists when all is well)."""
    notebook = book / f"{docname}.ipynb"
    is_notebook = notebook.exists()
    open_page(driver, url)
    found = {"first screen": check_first_screen(driver) if is_notebook else [],
             "maths": check_maths(driver),
             "errors": check_errors(driver), "images": check_images(driver),
             "figures": check_figures(driver, notebook if is_notebook else None),
             "explorers": check_explorers(driver), "code": check_code_width(driver), "tables": check_tables(driver),
             "pipe tables": check_pipe_tables(driver), "outputs": check_split_outputs(driver),
             "captions": check_captions(driver) if is_notebook else [],
             "offline": check_offline(driver), "console": check_console(driver)}
    if is_notebook:
        repo, branch, path = colab
        found["colab"] = check_colab(
            driver, f"https://colab.research.google.com/github/{repo}/blob/{branch}/{path}/{docname}.ipynb")
    found["sliders"] = check_sliders(driver)       # clicks last: they change the page
    found["solutions"] = check_solutions(driver)
    found["phone"] = check_phone(driver, url)      # reloads the page at 390 px
    return found


def _report(found: dict[str, list[str]]) -> str:
    return "\n".join(f"  [{check}] {p}" for check, problems in found.items() for p in problems)


# ------------------------------------------------------------------ link check (no browser)

class _LinkParser(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.links = set(), []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("id",) + (("name",) if tag == "a" else ()):
            if a.get(key):
                self.ids.add(a[key])
        for key in ("href", "src"):
            if a.get(key) and tag in ("a", "link", "script", "img", "iframe", "source"):
                self.links.append((tag, a[key]))


def _site_pages(root: Path) -> list[Path]:
    skip = {"_static", "_sources", "_images", "_sphinx_design_static"}
    return sorted(p for p in root.rglob("*.html") if not skip & set(p.relative_to(root).parts))


@functools.lru_cache(maxsize=None)
def _parse(path: Path) -> _LinkParser:
    p = _LinkParser()
    p.feed(path.read_text(errors="replace"))
    return p


def check_links(root: Path) -> list[str]:
    """Every internal link of every page resolves to a file, and its #anchor to an id there."""
    root = Path(root)
    problems = []
    for page in _site_pages(root):
        rel = page.relative_to(root).as_posix()
        for tag, link in _parse(page).links:
            parts = urlsplit(link)
            if parts.scheme or link.startswith("//"):   # http(s), mailto, data, javascript: not ours / offline
                continue
            target_rel = urlsplit(urljoin("http://site/" + rel, link)).path.lstrip("/")
            target = root / unquote(target_rel or rel)
            if target.is_dir() or (target_rel.endswith("/") or target_rel == ""):
                target = target / "index.html" if target.is_dir() else target
            if not target.is_file():
                problems.append(f"{rel}: <{tag}> {link} -> no such file")
                continue
            frag = unquote(parts.fragment)
            if tag == "a" and frag and target.suffix == ".html" and frag not in _parse(target).ids:
                problems.append(f"{rel}: <a> {link} -> no id {frag!r} on {target.relative_to(root).as_posix()}")
    return problems


# ------------------------------------------------------------------ the checks, checked on planted faults

@pytest.fixture(scope="session")
def fixture_site(tmp_path_factory):
    """The fixture book (tests/browser/fixture_book.py) built (not -W) and served."""
    folder = tmp_path_factory.mktemp("fixture-book")
    book = fixture_book.write_fixture_book(folder, site_from=BOOK)
    html = build_book(book, folder / "out", strict=False)
    s = Site(html)
    yield s, book
    s.close()


def test_link_check_finds_planted_dead_links(fixture_site):
    s, _ = fixture_site
    problems = check_links(s.root)
    for dead in fixture_book.EXPECTED_BAD["links"]:
        assert any(f"bad.html: <a> {dead}" in p for p in problems), (dead, problems)
    assert not [p for p in problems if not p.startswith("bad.html")], problems
    assert not [p for p in problems if "example.invalid" in p], "external links must be skipped"


@needs_browser
def test_browser_checks_pass_the_good_page(fixture_site, driver):
    s, book = fixture_site
    found = page_problems(driver, s.url + "good.html", "good", book, (fixture_book.REPO, "main", "book"))
    assert not any(found.values()), "\n" + _report(found)
    assert set(found) == {"first screen", "maths", "errors", "images", "figures", "explorers", "code", "tables",
                          "pipe tables", "outputs", "captions", "offline", "console", "colab", "sliders",
                          "solutions", "phone"}


@needs_browser
def test_browser_checks_find_every_planted_fault(fixture_site, driver):
    s, book = fixture_site
    found = page_problems(driver, s.url + "bad.html", "bad", book, (fixture_book.REPO, "main", "book"))
    for check, needles in fixture_book.EXPECTED_BAD.items():
        if check == "links":
            continue
        for needle in needles:
            assert any(needle in p for p in found[check]), (check, needle, found[check])
    assert len(found["images"]) >= 2, found["images"]          # the 404 and the undecodable PNG
    # a wrong repository in the Colab link is caught too
    wrong = page_problems(driver, s.url + "good.html", "good", book, ("someone/else", "main", "book"))
    assert wrong["colab"] and "someone/else" in wrong["colab"][0], wrong["colab"]


# ------------------------------------------------------------------ the course's book

def test_book_builds_and_has_the_toc_pages(book_html):
    missing = [p for p in PAGES if not (book_html / f"{p}.html").exists()]
    assert PAGES, "_toc.yml names no pages"
    assert not missing, f"pages named in _toc.yml but not built: {missing}"


def test_internal_links_and_anchors_resolve(book_html):
    problems = check_links(book_html)
    assert not problems, f"{len(problems)} broken internal links:\n" + "\n".join(problems[:80])


def test_first_hour_gives_the_readme_commands():
    """The newcomer's page and the README give the same two commands, character for character."""
    page = BOOK / "first_hour.md"
    if not page.exists():
        pytest.skip("book/first_hour.md does not exist")
    readme = [ln for ln in (REPO / "README.md").read_text().splitlines() if ln.startswith("python3 -m venv .venv")]
    assert len(readme) == 2, readme
    text = page.read_text()
    missing = [ln for ln in readme if ln not in text.splitlines()]
    assert not missing, f"book/first_hour.md lacks the README's command(s): {missing}"


@needs_browser
@pytest.mark.parametrize("docname", PAGES)
def test_page_in_browser(docname, site, driver):
    colab = colab_target(REPO / "_config.yml")
    found = page_problems(driver, site.url + f"{docname}.html", docname, BOOK, colab)
    assert not any(found.values()), f"{docname}.html:\n" + _report(found)


def _screenshot(driver, path: Path) -> None:
    height = driver.execute_script("return Math.min(document.documentElement.scrollHeight, 6000);")
    driver.set_window_size(WINDOW[0], max(WINDOW[1], int(height)))
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    driver.set_window_size(*WINDOW)


@needs_browser
def test_screenshots(site, driver):
    """Landing page and one chapter (the first notebook page, else the first page after the root)."""
    open_page(driver, site.url + "index.html")        # redirects to the root page
    deadline = time.time() + 10
    while time.time() < deadline and driver.current_url.endswith("index.html") and PAGES and PAGES[0] != "index":
        time.sleep(0.1)
    shots = [ARTIFACTS / "landing.png"]
    _screenshot(driver, shots[0])
    chapters = [p for p in PAGES if (BOOK / f"{p}.ipynb").exists()] or PAGES[1:]
    if chapters:
        open_page(driver, site.url + f"{chapters[0]}.html")
        shots.append(ARTIFACTS / f"chapter-{chapters[0].replace('/', '_')}.png")
        _screenshot(driver, shots[-1])
    for shot in shots:
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 5000, shot
