"""Argument checks whose messages speak to a student.

Every public function validates its arguments with these helpers, so a bad
input fails early with a message that names the argument, the value received
and what is allowed, instead of a traceback from deep inside torch.
"""
from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Iterable


def check_choice(name: str, value, allowed: Iterable) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``allowed``."""
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not allowed; choose one of {allowed}")


def check_int(name: str, value, *, minimum: int | None = None) -> None:
    """Raise ``TypeError`` unless ``value`` is an int, ``ValueError`` if below ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name}={value!r} must be an integer" + (f" >= {minimum}" if minimum is not None else ""))
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}={value!r} is too small; it must be an integer >= {minimum}")


def check_positive_int(name: str, value) -> None:
    """Raise unless ``value`` is an integer >= 1."""
    check_int(name, value, minimum=1)


def check_range(name: str, value, low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> None:
    """Raise unless ``value`` is a finite real number in the interval [low, high] (ends open if asked)."""
    lo_b, hi_b = ("(" if low_open else "["), (")" if high_open else "]")
    allowed = f"a number in {lo_b}{low}, {high}{hi_b}"
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name}={value!r} must be {allowed}")
    value = float(value)
    if (math.isnan(value) or value < low or value > high
            or (low_open and value == low) or (high_open and value == high)):
        raise ValueError(f"{name}={value!r} is out of range; it must be {allowed}")


def check_positive(name: str, value) -> None:
    """Raise unless ``value`` is a finite real number > 0."""
    check_range(name, value, 0.0, math.inf, low_open=True, high_open=True)
