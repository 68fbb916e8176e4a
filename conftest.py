"""Test-run settings shared by the unit tests and the notebook runs (nbval).

This file sits at the repository root so that pytest loads it for *every* path
under the repository: plain ``pytest``, ``pytest tests/...`` and
``pytest book/ch1_identity_mappings.ipynb`` alike.

Smoke mode: the test run always sets ``ITERCOURSE_SMOKE=1`` here, before any
notebook kernel starts. nbval starts each kernel as a child process of pytest,
which inherits this process's environment, so every notebook under test calls
``itercourse.smoke.pick(...)`` with smoke mode on. The book build never loads
this file, so it never runs in smoke mode.
``tests/test_smoke_reaches_kernels.py`` checks that the switch reaches kernels.
"""
from __future__ import annotations

import os
import shutil
import tempfile

SMOKE_VAR = "ITERCOURSE_SMOKE"  # same name as itercourse.smoke.ENV_VAR

# Paths (relative to this file) that pytest never collects: built sites and the
# assignments, whose notebooks are checked by their own tests, not by nbval.
collect_ignore = ["_build", "book/_build", "book/assignments"]


_KERNEL_TMP: list = []   # the test run's own temporary folder, removed when the session ends


def pytest_configure(config):
    """Switch smoke mode on for this process and every kernel it starts."""
    os.environ[SMOKE_VAR] = "1"
    # nbval stops kernels without letting them run their exit handlers, so a chapter's temporary
    # folders would outlive the run: give every kernel (and this process) a temporary folder of
    # the test run's own, removed at the end of the session.
    if not _KERNEL_TMP:
        _KERNEL_TMP.append(tempfile.mkdtemp(prefix="itercourse-test-"))
        os.environ["TMPDIR"] = _KERNEL_TMP[0]
        tempfile.tempdir = None                  # re-read TMPDIR
    # One BLAS/OpenMP thread per kernel unless the caller chose otherwise: on a
    # 2-core CI machine, two spinning threads per kernel make smoke runs 5x slower.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # Kernels draw figures with the inline backend (ipykernel's default when
    # MPLBACKEND is unset). A GUI backend inherited from the caller's shell
    # (e.g. MPLBACKEND=TkAgg) would try to open windows on a headless machine.
    backend = os.environ.get("MPLBACKEND", "")
    if backend and "inline" not in backend.lower() and backend.lower() != "agg":
        del os.environ["MPLBACKEND"]


def pytest_unconfigure(config):
    """Remove the test run's temporary folder, and whatever the kernels left in it."""
    while _KERNEL_TMP:
        shutil.rmtree(_KERNEL_TMP.pop(), ignore_errors=True)
