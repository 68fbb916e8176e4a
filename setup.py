"""Packaging hook: install the committed results with the package.

Everything else about the package is declared in ``pyproject.toml``. The book's
chapters read the committed results (``results/<experiment>/<id>.json``); a
chapter opened alone (as Colab opens it, from an empty folder, after
``pip install git+...``) finds them as ``itercourse/_results/``
(:func:`itercourse.sweeps.find_results_dir`). This hook copies them there when
a wheel is built. An editable install (``pip install -e .``) needs no copy:
``find_results_dir`` reads the clone's ``results/`` itself.
"""
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

RESULTS = Path(__file__).resolve().parent / "results"
INSTALLED = "_results"          # itercourse.sweeps.INSTALLED_RESULTS


class build_py_with_results(build_py):
    """``build_py``, then ``results/**/*.json`` copied to ``<build>/itercourse/_results/``."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False) or not RESULTS.is_dir():
            return
        for src in sorted(RESULTS.rglob("*.json")):
            target = Path(self.build_lib, "itercourse", INSTALLED, src.relative_to(RESULTS))
            self.mkpath(str(target.parent))
            self.copy_file(str(src), str(target))


setup(cmdclass={"build_py": build_py_with_results})
