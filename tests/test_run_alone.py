"""Chapters run alone, as Colab opens them: from a folder that holds only the notebook.

Colab copies one notebook into an empty folder and installs the package; the
chapter must then find the committed results it reads (``results/``) through
the package, not through the working directory, and leave nothing behind.
Oracles: the results found from an empty folder are the repository's files;
a wheel built from this checkout installs the same files under
``itercourse/_results``; a temporary folder is gone once its process exits;
a chapter run from an empty folder in smoke mode raises no error, writes no
file beside itself and leaves no temporary folder.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from itercourse import sweeps

REPO = Path(__file__).resolve().parents[1]
COMMITTED = sorted(p.relative_to(REPO / "results").as_posix() for p in (REPO / "results").rglob("*.json"))
# Chapters that read committed results or train in a temporary folder.
ALONE = ["ch3_weight_sharing", "ch6_indices", "ch7_digitclutter", "ch8_gpu_experiments"]


def test_committed_results_are_found_from_an_empty_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    found = sweeps.find_results_dir(required=True)
    assert found is not None and found.is_absolute()
    assert sorted(p.relative_to(found).as_posix() for p in found.rglob("*.json")) == COMMITTED


def test_no_results_anywhere_is_said_not_divided(tmp_path, monkeypatch):
    """Without a results folder: None, or with required=True an error naming where it looked."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sweeps, "__file__", str(tmp_path / "site" / "itercourse" / "sweeps.py"))
    assert sweeps.find_results_dir() is None
    with pytest.raises(FileNotFoundError, match="_results"):
        sweeps.find_results_dir(required=True)


@pytest.mark.skipif(importlib.util.find_spec("setuptools") is None, reason="needs setuptools to build a wheel")
def test_a_wheel_installs_the_committed_results(tmp_path):
    """``pip install git+...`` builds a wheel: it must hold results/ as itercourse/_results/."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy(REPO / name, src / name)
    for folder in ("itercourse", "results"):
        shutil.copytree(REPO / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__", "*.claim"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path / "wheel"), str(src)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wheel = next((tmp_path / "wheel").glob("itercourse-*.whl"))
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    installed = site / "itercourse" / sweeps.INSTALLED_RESULTS
    assert sorted(p.relative_to(installed).as_posix() for p in installed.rglob("*.json")) == COMMITTED
    empty = tmp_path / "empty"
    empty.mkdir()
    out = subprocess.run([sys.executable, "-c", "from itercourse.sweeps import find_results_dir; "
                          "print(find_results_dir(required=True).resolve())"],
                         cwd=empty, env={**os.environ, "PYTHONPATH": str(site)}, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()) == installed.resolve()


def test_temporary_folders_are_removed_when_the_process_exits(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    out = subprocess.run([sys.executable, "-c", "from itercourse.sweeps import _temporary_folder; "
                          "f = _temporary_folder('itercourse_test'); (f / 'x').write_text('1'); print(f)"],
                         env={**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": str(REPO)},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()).parent == tmp and list(tmp.iterdir()) == []


@pytest.mark.parametrize("chapter", ALONE)
def test_chapter_runs_from_an_empty_folder(chapter, tmp_path, monkeypatch):
    """The notebook alone in a folder, in smoke mode: no error, nothing written beside it, no temp left."""
    from nbclient import NotebookClient

    folder, tmp = tmp_path / "colab", tmp_path / "tmp"
    folder.mkdir()
    tmp.mkdir()
    shutil.copy(REPO / "book" / f"{chapter}.ipynb", folder)
    monkeypatch.setenv("ITERCOURSE_SMOKE", "1")
    monkeypatch.setenv("TMPDIR", str(tmp))                      # the kernel's temporary folders land here
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    nb = nbformat.read(str(folder / f"{chapter}.ipynb"), as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(folder)}})
    client.execute()                                           # raises CellExecutionError on any error
    assert sorted(p.name for p in folder.iterdir()) == [f"{chapter}.ipynb"]
    left = [p.name for p in tmp.iterdir() if p.name.startswith("itercourse")]
    assert not left, f"temporary folders left behind: {left}"
