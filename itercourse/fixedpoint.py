"""Fixed-point iteration: apply a map until the iterates stop moving.

    x_{k+1} = T(x_k)

If ``T`` is a contraction (``Lip(T) = q < 1``) the iterates converge to its
unique fixed point, ``||x_k - x*|| <= q^k / (1 - q) ||x_1 - x_0||`` (Banach).
A residual stage iterated beyond its trained depth is such an iteration with
``T(h) = h + F(h)``; inverting a residual block is one with ``T(x) = y - F(x)``
(:func:`itercourse.lipschitz.invert_residual`). The interface follows
QuantEcon's ``compute_fixed_point``: the iterate, the step count and the residuals.

How far an iteration still moves, measured over a batch of examples ``b``, has
one definition here, :func:`relative_update_size`: the root-mean-square update
over the root-mean-square state. The convergence index
(:mod:`itercourse.indices`, ``update_sizes``) and the unrolling curves of
chapter 5 (:func:`itercourse.lipschitz.unroll_curves`, ``update``) both use it.
"""
from __future__ import annotations

import math
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


def rms_over_examples(sq_sum: float, count: int) -> float:
    """The root mean square over ``count`` examples of a per-example norm, from the sum of its squares.

        ||a||_rms = sqrt( sum_b ||a_b||^2 / count )

    ``inf`` when the sum is not finite (an overflowed state).
    """
    return math.sqrt(sq_sum / count) if math.isfinite(sq_sum) else math.inf


def relative_update_size(step_rms: float, state_rms: float) -> float:
    """The relative update size of one step ``h_t -> h_{t+1}`` over a batch: RMS update over RMS state.

        u_t = v_t / ||h_t||_rms,    v_t = ||h_{t+1} - h_t||_rms,    ||a||_rms = sqrt(mean_b ||a_b||^2)

    (:func:`rms_over_examples`). A ratio of root-mean-square values, which is
    ``sqrt(sum_b ||h_{t+1,b} - h_{t,b}||^2 / sum_b ||h_{t,b}||^2)``, so examples
    with larger states weigh more; it is *not* the RMS of the per-example ratios
    ``||h_{t+1,b} - h_{t,b}|| / ||h_{t,b}||`` (the two agree when every example
    has the same norm; :func:`itercourse.refinement.norm_ratios`, Jastrzębski et
    al.'s per-block metric, is the mean of those per-example ratios). A linear
    contraction ``h -> q h`` gives ``u_t = 1 - q`` at every step, a fixed point 0.
    A zero state gives 0 if it stays put and ``inf`` if it moves.
    """
    if state_rms > 0:
        return step_rms / state_rms
    return 0.0 if step_rms == 0 else math.inf
