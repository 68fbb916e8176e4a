"""Tuning every arm alike: one learning-rate grid, scored on held-out training images.

Chapter 7 compares arms that train differently (batch norm, zero-initialised
branches, a Lipschitz constraint). A comparison is fair only if each arm gets
the same search for its learning rate: every arm's ordinary cell trains over
one grid of peak rates, each run is scored on the validation split (training
images held out and never trained on, ``extras["val_acc"]``; never the test
images), and the arm's rate is the one with the highest mean validation
accuracy over seeds.

A rate at the edge of the grid is not a choice but a sign that the grid is too
short there: :func:`choose_rates` reports whether each winner lies strictly
inside the tried range, and :func:`check_tuned` turns a winner at the edge into
an error.
"""
from __future__ import annotations

import statistics
from collections import defaultdict

from .report import markdown_table
from .verdicts import ARMS, arm_of


def val_acc(r) -> float:
    """The validation accuracy a run recorded; a ValueError naming the run if it has none."""
    acc = r.extras.get("val_acc")
    if acc is None:
        raise ValueError(f"result {r.id} has no extras['val_acc']: it trained without a validation split "
                         f"(val_size = {r.config.val_size}); tune on runs with val_size > 0")
    return float(acc)


def rate_table(results) -> dict:
    """``{arm: {lr: [validation accuracy per seed]}}`` over ``results`` (arms in the order of
    :data:`itercourse.verdicts.ARMS`, rates ascending)."""
    table = defaultdict(lambda: defaultdict(list))
    for r in results:
        table[arm_of(r)][float(r.config.train.lr)].append(val_acc(r))
    return {arm: dict(sorted(table[arm].items())) for arm in sorted(table, key=ARMS.index)}


def choose_rates(results) -> dict:
    """Per arm: the rate with the highest mean validation accuracy, and what that choice rests on.

    ``{arm: {"lr", "val_acc" (its mean), "seeds" (runs behind that mean), "tried" (every rate),
    "interior" (strictly inside the tried range), "runner_up" (the second-best rate)}}``.
    Ties go to the smaller rate.
    """
    chosen = {}
    for arm, rates in rate_table(results).items():
        means = {lr: statistics.fmean(accs) for lr, accs in rates.items()}
        ranked = sorted(means, key=lambda lr: (-means[lr], lr))
        best, tried = ranked[0], sorted(means)
        chosen[arm] = {"lr": best, "val_acc": means[best], "seeds": len(rates[best]), "tried": tried,
                       "interior": tried[0] < best < tried[-1],
                       "runner_up": ranked[1] if len(ranked) > 1 else None}
    return chosen


def check_tuned(chosen: dict, *, min_rates: int = 3) -> None:
    """A ValueError unless every arm tried at least ``min_rates`` rates and its winner lies inside them."""
    for arm, c in chosen.items():
        if len(c["tried"]) < min_rates:
            raise ValueError(f"arm {arm!r} tried {len(c['tried'])} learning rates {c['tried']}; "
                             f"a choice needs at least {min_rates}")
        if not c["interior"]:
            raise ValueError(f"arm {arm!r}: the best learning rate {c['lr']} is at the edge of the tried range "
                             f"{c['tried']}; extend the grid beyond it before choosing")


def rates_markdown(results) -> str:
    """A markdown table: one row per arm, mean validation accuracy (n seeds) per rate, the chosen rate."""
    table, chosen = rate_table(results), choose_rates(results)
    rates = sorted({lr for r in table.values() for lr in r})
    rows = []
    for arm, by_rate in table.items():
        cells = [f"{statistics.fmean(by_rate[lr]):.3f} ({len(by_rate[lr])})" if lr in by_rate else "-"
                 for lr in rates]
        c = chosen[arm]
        rows.append([arm, *cells, f"{c['lr']:g}" + ("" if c["interior"] else " (edge)")])
    return markdown_table(["arm", *[f"lr {lr:g}" for lr in rates], "chosen"], rows)
