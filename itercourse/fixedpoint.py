"""Fixed-point iteration: apply a map until the iterates stop moving.

    x_{k+1} = T(x_k)

If ``T`` is a contraction (``Lip(T) = q < 1``) the iterates converge to its
unique fixed point, ``||x_k - x*|| <= q^k / (1 - q) ||x_1 - x_0||`` (Banach).
A residual stage iterated beyond its trained depth is such an iteration with
``T(h) = h + F(h)``; inverting a residual block is one with ``T(x) = y - F(x)``
(:func:`itercourse.lipschitz.invert_residual`). The interface follows
QuantEcon's ``compute_fixed_point``: the iterate, the step count and the residuals.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .errors import check_positive, check_positive_int


@dataclass(frozen=True)
class FixedPointResult:
    """The outcome of ``x_{k+1} = T(x_k)``."""

    x: torch.Tensor          # the last iterate
    steps: int               # how many times T was applied
    residuals: tuple         # ||x_{k+1} - x_k|| after every step
    converged: bool          # the last residual fell below tol * (1 + ||x||)


def fixed_point_iteration(T: Callable, x0: torch.Tensor, *, tol: float = 1e-6,
                          max_iter: int = 500) -> FixedPointResult:
    """Iterate ``x_{k+1} = T(x_k)`` until ``||x_{k+1} - x_k|| <= tol (1 + ||x_{k+1}||)`` or ``max_iter`` steps.

    If ``Lip(T) = q < 1`` the iterates converge to the unique fixed point and
    ``||x_k - x*|| <= q^k / (1 - q) ||x_1 - x_0||`` (Banach fixed-point theorem).
    """
    check_positive("tol", tol)
    check_positive_int("max_iter", max_iter)
    x, residuals, converged = x0, [], False
    for _ in range(max_iter):
        nxt = T(x)
        residuals.append(float((nxt - x).norm()))
        x = nxt
        converged = residuals[-1] <= tol * (1.0 + float(x.norm()))
        if converged or not torch.isfinite(x).all():
            break
    return FixedPointResult(x, len(residuals), tuple(residuals), converged)
