"""Figures of the arms grid (chapter 7): accuracy and indices against lambda and against the measured dial.

Cells are (arm, initialisation, coupling) as in :mod:`itercourse.verdicts`.
"Where a network ended on the dial" is measured, not set: the mean per-stage
block spread (``extras["block_spread"]``: 0 = identical blocks, about 1 =
independent) or the effective parameter count (``extras["effective_parameters"]``),
both from :mod:`itercourse.coupling`. Every function takes ``ax``/``axes``
(or none) and returns what it drew on; none calls ``plt.show()``.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ..indices import CONVERGENT_C, CONVERGENT_D
from ..report import metric_of
from ..tuning import choose_rates, rate_table
from ..verdicts import ARMS, arm_of, calibrated, cell_of, init_of
from .style import COLUMN_WIDTH, MIN_FONT_PT

DIALS = {"block_spread": "block spread (0: identical blocks)",
         "effective_parameters": "effective parameters"}
MARKERS = {"identical": "o", "independent": "s"}
THRESHOLDS = {"convergence": CONVERGENT_C, "divergence": CONVERGENT_D}


def dial_position(r, dial: str = "block_spread") -> float:
    """Where a trained network sits on the coupling dial, measured (nan when not recorded)."""
    v = r.extras.get(dial)
    if v is None:
        return float("nan")
    return float(np.mean(v)) if isinstance(v, (list, tuple)) else float(v)


def _criterion_line(ax, results, metric: str) -> None:
    """The convergence criterion's threshold as a dotted line, for indices that it can judge (version 2)."""
    if metric in THRESHOLDS and calibrated(results):
        ax.axhline(THRESHOLDS[metric], color="grey", ls=":", lw=1, label="convergence criterion")


def arm_colour(arm: str):
    """The colour of an arm in every figure of the arms grid (tab10, in the order of ``ARMS``)."""
    return plt.get_cmap("tab10")(ARMS.index(arm) if arm in ARMS else 9)


def plot_vs_lambda(results, metric: str = "final_test_acc", ax=None, *, ylabel: str | None = None):
    """Mean ± sd over seeds of ``metric`` against lambda, one line per arm (identical init), and the
    ordinary cell (independent init, lambda 0) as a square; the criterion line for C and D."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.0, 3.5), layout="constrained")
    arms = [a for a in ARMS if any(arm_of(r) == a for r in results)]
    for arm in arms:
        for init in ("identical", "independent"):
            lams = sorted({cell_of(r)[2] for r in results if cell_of(r)[:2] == (arm, init)})
            if not lams:
                continue
            vals = [[metric_of(r, metric) for r in results if cell_of(r) == (arm, init, lam)] for lam in lams]
            mean = [np.nanmean(v) for v in vals]
            sd = [np.nanstd(v, ddof=1) if len(v) > 1 else 0.0 for v in vals]
            ax.errorbar(lams, mean, yerr=sd, marker=MARKERS[init], capsize=3, color=arm_colour(arm),
                        linestyle="-" if init == "identical" else "none",
                        label=f"{arm}, {init} init", mfc="white" if init == "independent" else None)
    _criterion_line(ax, results, metric)
    ax.set_xlabel("coupling strength lambda (set)")
    ax.set_ylabel(ylabel or metric)
    ax.legend(fontsize=MIN_FONT_PT)
    return ax


def plot_vs_dial(results, metric: str = "final_test_acc", ax=None, *, dial: str = "block_spread",
                 ylabel: str | None = None):
    """Every run's ``metric`` against its measured position on the dial (one point per run)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.0, 3.5), layout="constrained")
    seen = set()
    for r in results:
        arm, init = arm_of(r), init_of(r)
        label = None if (arm, init) in seen else f"{arm}, {init} init"
        seen.add((arm, init))
        ax.scatter(dial_position(r, dial), metric_of(r, metric), color=arm_colour(arm), marker=MARKERS[init],
                   facecolors="white" if init == "independent" else arm_colour(arm), s=28, label=label)
    _criterion_line(ax, results, metric)
    ax.set_xlabel("measured " + DIALS.get(dial, dial))
    ax.set_ylabel(ylabel or metric)
    ax.legend(fontsize=MIN_FONT_PT)
    return ax


def plot_runs_by_cell(results, metric: str = "final_test_acc", ax=None, *, ylabel: str | None = None,
                      width: float = 0.6):
    """One dot per run at its cell: a slot per (initialisation, lambda), the arms side by side in it.

    Slots: independent initialisation first (the ordinary ResNet), then identical initialisation by
    increasing lambda. Colour: the arm (:func:`arm_colour`); marker: the initialisation (hollow
    squares for independent blocks). The criterion line is drawn for C and D.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6.0, 3.5), layout="constrained")
    arms = [a for a in ARMS if any(arm_of(r) == a for r in results)]
    slots = sorted({cell_of(r)[1:] for r in results}, key=lambda s: (s[0] != "independent", s[1]))
    step = width / max(len(arms), 1)
    for k, arm in enumerate(arms):
        label = arm
        for j, (init, lam) in enumerate(slots):
            vals = [metric_of(r, metric) for r in results if cell_of(r) == (arm, init, lam)]
            if not vals:
                continue
            x = j + (k - (len(arms) - 1) / 2) * step
            ax.scatter([x] * len(vals), vals, color=arm_colour(arm), marker=MARKERS[init], s=24, alpha=0.8,
                       facecolors="white" if init == "independent" else arm_colour(arm), label=label)
            label = None
    _criterion_line(ax, results, metric)
    short = {"independent": "indep.", "identical": "ident."}          # four slots fit a half-column panel
    ax.set_xticks(range(len(slots)), [f"{short.get(init, init)}\nλ = {lam:g}" for init, lam in slots],
                  fontsize=MIN_FONT_PT)
    ax.set_xlim(-0.6, len(slots) - 0.4)
    ax.set_ylabel(ylabel or metric)
    ax.legend(fontsize=MIN_FONT_PT)
    return ax


def arms_figure(results, metrics=("final_test_acc", "recurrence", "convergence", "divergence"),
                dial: str = "block_spread"):
    """One row per metric: against lambda (left) and against the measured dial (right).

    Drawn for the book's column (:data:`COLUMN_WIDTH` wide, 2.5 in a row), one
    legend for the whole figure above the panels.
    """
    metrics = list(metrics)
    fig, axes = plt.subplots(len(metrics), 2, figsize=(COLUMN_WIDTH, 0.6 + 2.5 * len(metrics)),
                             squeeze=False, layout="constrained")
    for k, m in enumerate(metrics):
        label = m.replace("final_test_acc", "test accuracy")
        plot_vs_lambda(results, m, axes[k, 0], ylabel=label)
        plot_vs_dial(results, m, axes[k, 1], dial=dial, ylabel=label)
        if k < len(metrics) - 1:                 # x labels on the bottom row only
            axes[k, 0].set_xlabel("")
            axes[k, 1].set_xlabel("")
    legend = {}                                  # every label once, from whichever panel has it
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(lab, h)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    handles, labels = list(legend.values()), list(legend)
    fig.legend(handles, labels, loc="outside upper center", ncols=min(len(labels), 3) or 1)
    return fig


def plot_curves(results, axes=None):
    """Training and test accuracy per epoch, one thin line per run, coloured by arm: does every run
    reach its plateau before the comparison is made?"""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(COLUMN_WIDTH, 3.4), sharey=True, layout="constrained")
    seen = set()
    for r in results:
        arm, h = arm_of(r), r.history
        label = None if arm in seen else arm
        seen.add(arm)
        epochs = np.arange(1, len(h.train_acc) + 1)
        axes[0].plot(epochs, h.train_acc, color=arm_colour(arm), lw=0.8, alpha=0.6, label=label)
        axes[1].plot(epochs, h.test_acc, color=arm_colour(arm), lw=0.8, alpha=0.6)
    for ax, title in zip(axes, ("training accuracy (running, per epoch)", "test accuracy")):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
    axes[0].set_ylabel("accuracy (exact digit set)")
    axes[0].legend(fontsize=MIN_FONT_PT)
    return axes


def plot_rate_grid(results, ax=None):
    """Validation accuracy against the peak learning rate (log scale), one line per arm: the mean over
    seeds, each seed a dot, the chosen rate (:func:`itercourse.tuning.choose_rates`) ringed, and a
    chosen rate at the grid's edge marked as such in the legend."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.0, 3.5), layout="constrained")
    table, chosen = rate_table(results), choose_rates(results)
    for arm in [a for a in ARMS if a in table]:
        rates = list(table[arm])
        colour = arm_colour(arm)
        ax.plot(rates, [np.mean(table[arm][lr]) for lr in rates], "-", color=colour,
                label=f"{arm}: {chosen[arm]['lr']:g}" + ("" if chosen[arm]["interior"] else " (at the edge)"))
        for lr in rates:
            ax.scatter([lr] * len(table[arm][lr]), table[arm][lr], color=colour, s=14, alpha=0.6)
        ax.scatter([chosen[arm]["lr"]], [chosen[arm]["val_acc"]], s=160, facecolors="none", edgecolors=colour,
                   linewidths=1.5)
    ax.set_xscale("log", base=2)
    all_rates = sorted({lr for by_rate in table.values() for lr in by_rate})
    ax.set_xticks(all_rates, [f"{lr:g}" for lr in all_rates])
    ax.minorticks_off()
    ax.set_xlabel("peak learning rate (cosine schedule)")
    ax.set_ylabel("validation accuracy")
    ax.legend(title="arm: chosen rate (ringed)", fontsize=MIN_FONT_PT, title_fontsize=MIN_FONT_PT)
    return ax


def plot_budget_curve(results, metric: str = "final_test_acc", ax=None, *, ylabel: str | None = None):
    """``metric`` against the training budget (epochs, log scale), one line per arm through the mean over
    seeds, each run a dot: where an arm's curve still rises between two budgets, a verdict at the
    smaller one is about the budget, not the arm. ``results``: ordinary cells of one recipe at several
    epoch counts (they may come from several grids)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.0, 3.5), layout="constrained")
    for arm in [a for a in ARMS if any(arm_of(r) == a for r in results)]:
        runs = [r for r in results if arm_of(r) == arm]
        budgets = sorted({r.config.train.epochs for r in runs})
        vals = [[metric_of(r, metric) for r in runs if r.config.train.epochs == e] for e in budgets]
        ax.plot(budgets, [np.mean(v) for v in vals], "-o", color=arm_colour(arm), label=arm, ms=4)
        for e, v in zip(budgets, vals):
            ax.scatter([e] * len(v), v, color=arm_colour(arm), s=12, alpha=0.5)
    every = sorted({r.config.train.epochs for r in results})
    ax.set_xscale("log", base=2)
    ax.set_xticks(every, [str(e) for e in every])
    ax.minorticks_off()
    ax.set_xlabel("epochs (cosine schedule over the whole run)")
    ax.set_ylabel(ylabel or metric)
    ax.legend(fontsize=MIN_FONT_PT)
    return ax
