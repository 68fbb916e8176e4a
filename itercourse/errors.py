"""Argument checks whose messages speak to a student.

Every public function validates its arguments with these helpers, so a bad
input fails early with a message that names the argument, the value received
and what is allowed, instead of a traceback from deep inside torch.
"""
from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Iterable

import torch


def check_choice(name: str, value, allowed: Iterable) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``allowed``."""
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not allowed; choose one of {allowed}")


class DivergedError(ValueError):
    """Training or evaluation produced a non-finite or absurd loss (or non-finite logits): the run diverged.

    Raised instead of writing the run as a result (a learning rate too high, for instance); a sweep
    records it as a failure (``<id>.failed.json``) and goes on with the other configs.
    """


def check_int(name: str, value, *, minimum: int | None = None, maximum: int | None = None) -> None:
    """Raise ``TypeError`` unless ``value`` is an int, ``ValueError`` if below ``minimum`` or above ``maximum``."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name}={value!r} must be an integer" + (f" >= {minimum}" if minimum is not None else ""))
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}={value!r} is too small; it must be an integer >= {minimum}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name}={value!r} is too large; allowed: an integer in "
                         f"{minimum if minimum is not None else '...'}..{maximum}")


def check_finite(name: str, value) -> None:
    """Raise unless ``value`` is a finite real number (NaN and +-inf refused)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name}={value!r} must be a finite number")
    if not math.isfinite(float(value)):
        raise ValueError(f"{name}={value!r} is not allowed; it must be a finite number (not NaN or inf)")


def check_bool(name: str, value) -> None:
    """Raise ``TypeError`` unless ``value`` is True or False (the string "False" is truthy: refuse it)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name}={value!r} must be True or False (a bool, not {type(value).__name__})")


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


def check_device(name: str, device) -> "torch.device":
    """The ``torch.device`` named by ``device``; ``ValueError`` if it is no device or is absent here."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"{name}={device!r} is not a device; use 'cpu', 'cuda', 'cuda:1' or 'auto'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{name}={device!r}: no CUDA GPU is available here (torch.cuda.is_available() is False); "
                         "use device='cpu' or 'auto' (on Colab: Runtime > Change runtime type > GPU)")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"{name}={device!r}: no Apple MPS device is available here "
                         "(torch.backends.mps.is_available() is False); use device='cpu' or 'auto'")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"{name}={device!r} is not supported; use 'cpu', 'cuda', 'cuda:1', 'mps' or 'auto'")
    return dev
