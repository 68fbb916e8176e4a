"""Smoke mode: one switch that shrinks every run in the course to seconds.

The test suite sets ``ITERCOURSE_SMOKE=1`` before it starts the notebook
kernels; the book build never does. Notebooks and scripts never read the
variable themselves: they call :func:`is_smoke` or :func:`pick`.
"""
from __future__ import annotations

import os
from typing import TypeVar

T = TypeVar("T")

ENV_VAR = "ITERCOURSE_SMOKE"


def is_smoke() -> bool:
    """True when ``ITERCOURSE_SMOKE`` is set to a true value (1, true, yes, on)."""
    return os.environ.get(ENV_VAR, "").strip().lower() in {"1", "true", "yes", "on"}


def pick(full: T, smoke: T) -> T:
    """Return ``smoke`` in smoke mode and ``full`` otherwise.

    Example: ``epochs = pick(full=15, smoke=1)``.
    """
    return smoke if is_smoke() else full


def scale_label() -> str:
    """A short label for figures and tables: which scale produced this output."""
    return "SMOKE (tiny sizes, a check that the code runs: not a result)" if is_smoke() else "full scale"
