"""The report of one experiment folder: ``report.md`` with its tables and verdicts, and its figures.

``python -m itercourse report --experiment NAME`` writes it. The numbers come
from :mod:`itercourse.report` (``mean ± sd`` over seeds), the verdicts from
:mod:`itercourse.verdicts` (the one rule), the figures from :mod:`itercourse.viz`;
this module only puts them on one page. (It sits above all three: the report
module is imported by the verdicts and the figures, so the page cannot live there.)
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from .experiments import load_results
from .io import atomic_write_bytes, atomic_write_png
from .provenance import code_line
from .report import constraint_of, coupling_of, grid_table
from .verdicts import (accuracy_decomposition, arm_of, arm_verdicts, cell_table, decomposition_table, grid_verdicts,
                       rules_table, split_budget)
from .viz.grid_plots import arms_figure
from .viz.plots import plot_indices, plot_vs_coupling


def write_report(experiment: str, results_dir="results", out_dir="report", skipped: list | None = None) -> list[Path]:
    """Write ``report.md``, ``accuracy.png`` and ``indices.png`` for one experiment folder; return the paths.

    An arms grid (chapters 7-8) also gets ``arms.png``, its cell table and the paper's claims judged by
    :func:`itercourse.verdicts.arm_verdicts`; a coupling x constraint grid gets :func:`~itercourse.verdicts.grid_verdicts`.
    Damaged result files are listed in ``report.md`` (and appended to ``skipped`` as ``(path, reason)``).
    """
    skipped = [] if skipped is None else skipped
    results = load_results(experiment, results_dir, skipped=skipped)
    if not results:
        raise FileNotFoundError(f"no results in {str(Path(results_dir) / experiment)!r}; run "
                                f"'python -m itercourse sweep --preset ...' first, or pass --results-dir")
    out = Path(out_dir)
    paths = []

    def save(fig, name):
        paths.append(atomic_write_png(out / name, fig))
        plt.close(fig)

    ax = plot_vs_coupling(results, "final_test_acc", title=f"{experiment}: test accuracy", ylabel="test accuracy")
    save(ax.figure, "accuracy.png")
    save(plot_indices(results), "indices.png")
    cfg = results[0].config
    seeds = sorted({r.config.seed for r in results})
    text = [f"# {experiment}", "",
            f"{len(results)} runs; dataset {cfg.dataset} ({cfg.train_size} train / {cfg.test_size} test images), "
            f"widths {cfg.model.widths}, blocks {cfg.model.blocks}, {cfg.train.epochs} epochs, seeds {seeds}.",
            *(["", f"**{len(skipped)} result file(s) skipped (damaged), not counted:**", ""]
              + [f"- `{p}`: {why}" for p, why in skipped] if skipped else []),
            "", code_line(results), "",
            "## Accuracy and indices (mean ± sd over seeds)", "", grid_table(results), "",
            "![accuracy](accuracy.png)", "", "![indices](indices.png)", ""]
    if any(arm_of(r) in ("conventional", "norm-free") for r in results):   # an arms grid (chapters 7, 8)
        base = min(r.config.train.epochs for r in results)
        budget = [r for r in results if r.config.train.epochs in (base, 2 * base)]
        rungs = [r for r in results if r.config.train.epochs not in (base, 2 * base)]   # a further budget rung
        main, doubled = split_budget(budget)
        if rungs:
            text += [f"**{len(rungs)} run(s) at {sorted({r.config.train.epochs for r in rungs})} epochs** (a further "
                     f"rung of the budget test) are not in the tables below, which hold the budget ({base} "
                     f"epochs) and twice it.", ""]
        save(arms_figure(main), "arms.png")
        text += ["## Arms x initialisation x coupling (mean ± sd over seeds)", "", cell_table(main), "",
                 "![arms](arms.png)", "", "## The paper's claims (itercourse.verdicts: Welch 95% CI, Holm)", "",
                 rules_table(arm_verdicts(main, doubled=doubled)), ""]
        steps = accuracy_decomposition(main)
        if steps:
            text += ["## Where the accuracy gap comes from (ordinary cells, one factor per step)", "",
                     decomposition_table(steps), ""]
    elif len({coupling_of(r) for r in results}) > 1 and len({constraint_of(r) for r in results}) > 1:
        text += ["## The paper's claims at this scale", "", rules_table(grid_verdicts(results)), ""]
    paths.append(atomic_write_bytes(out / "report.md", "\n".join(text).encode()))
    return paths
