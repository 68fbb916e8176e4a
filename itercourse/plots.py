"""Figures shared by the chapters.

Every function takes ``ax=None`` (or a figure), draws, and returns the axes it
drew on; none calls ``plt.show()``: notebooks arrange and show figures.
"""
from __future__ import annotations

import matplotlib.pyplot as plt


def _axes(ax, figsize=(6.0, 3.5)):
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


# ---------------------------------------------------------------- chapter 2: refinement metrics

def block_positions(per_block) -> list[float]:
    """x positions of the blocks: the block index for a one-stage network, else ``s + (i + 0.5) / n_s``.

    Spreading the blocks of stage ``s`` evenly over ``[s, s + 1]`` lines up
    networks of different depths stage by stage on one axis.
    """
    counts: dict[int, int] = {}
    for s in per_block.stage:
        counts[s] = counts.get(s, 0) + 1
    if len(counts) == 1:
        return [float(b) for b in per_block.block]
    return [s + (b + 0.5) / counts[s] for s, b in zip(per_block.stage, per_block.block)]


def shade_stages(ax, per_block):
    """Grey bands behind alternate stages and one tick per stage (a one-stage network: one tick per block)."""
    stages = sorted(set(per_block.stage))
    if len(stages) == 1:
        ax.set_xticks(range(len(per_block)))
        ax.set_xlabel("block")
        return ax
    for k, s in enumerate(stages):
        if k % 2 == 0:
            ax.axvspan(s, s + 1, color="0.92", zorder=0, lw=0)
    ax.set_xticks([s + 0.5 for s in stages])
    ax.set_xticklabels([f"stage {s}" for s in stages])
    ax.set_xlim(stages[0], stages[-1] + 1)
    ax.set_xlabel("depth (each stage's blocks spread evenly over it)")
    return ax


def plot_per_block(per_block, ax=None, label=None, *, zero_line: bool = False, **plot_kw):
    """One curve over the blocks of a network (a :class:`itercourse.refinement.PerBlock`).

    Curves of networks with the same number of stages but different depths can
    share an axis: blocks are placed by :func:`block_positions`.
    """
    ax = _axes(ax)
    ax.plot(block_positions(per_block), per_block.values, marker=plot_kw.pop("marker", "o"), label=label, **plot_kw)
    if not getattr(ax, "_itercourse_stages_drawn", False):      # bands and ticks once per axis
        if zero_line:
            ax.axhline(0, color="k", lw=0.8)
        shade_stages(ax, per_block)
        ax.set_ylabel(per_block.metric)
        ax._itercourse_stages_drawn = True
    return ax


def plot_drop_block(result, ax=None, label=None, **plot_kw):
    """Test accuracy with each block dropped (points) and of the intact network (dashed line)."""
    ax = plot_per_block(result.acc, ax, label=label, **plot_kw)
    colour = ax.lines[-1].get_color()
    ax.axhline(result.intact_acc, ls="--", color=colour, lw=1)
    ax.set_ylabel("test accuracy, block dropped\n(dashed: intact)")
    return ax


def plot_unroll(results, ax_acc=None, ax_norm=None):
    """Accuracy and relative state norm against extra steps of the last block, one curve per scale.

    ``results``: a sequence of :class:`itercourse.refinement.UnrollResult`. The
    norm is shown relative to the trained depth (``k = 0``) when ``0`` is among
    the steps, on a log axis. Returns ``(ax_acc, ax_norm)``.
    """
    if ax_acc is None and ax_norm is None:
        _, (ax_acc, ax_norm) = plt.subplots(1, 2, figsize=(10, 3.5))
    for r in results:
        label = "plain (scale 1)" if r.scale == 1 else f"scaled ({r.scale:g})"
        if ax_acc is not None:
            ax_acc.plot(r.extra_steps, r.acc, marker="o", label=label)
        if ax_norm is not None:
            base = r.state_norm[r.extra_steps.index(0)] if 0 in r.extra_steps else 1.0
            ax_norm.semilogy(r.extra_steps, [v / base for v in r.state_norm], marker="o", label=label)
    if ax_acc is not None:
        ax_acc.set_xlabel("extra steps k of the last block")
        ax_acc.set_ylabel("test accuracy")
        ax_acc.legend(fontsize=8)
    if ax_norm is not None:
        ax_norm.set_xlabel("extra steps k of the last block")
        ax_norm.set_ylabel(r"mean $\|h\|$ / mean $\|h\|$ at k = 0")
        ax_norm.legend(fontsize=8)
    return ax_acc, ax_norm


def plot_borderline(results, ax=None):
    """Fraction correct among borderline examples before and after each change (bars), with n."""
    ax = _axes(ax)
    names, before, after = [], [], []
    for r in results:
        what = ("drop vs keep last block" if r.compare == "last_block"
                else f"+{r.extra_steps} steps, scale {r.scale:g}")
        names.append(f"{what}\n(n={r.n_borderline})")
        before.append(r.acc_before)
        after.append(r.acc_after)
    pos = range(len(names))
    ax.bar([p - 0.2 for p in pos], before, width=0.4, label="before")
    ax.bar([p + 0.2 for p in pos], after, width=0.4, label="after")
    ax.set_xticks(list(pos))
    ax.set_xticklabels(names, fontsize=7)
    ax.set_ylabel("fraction correct\namong borderline examples")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    return ax


def plot_refinement_summary(report: dict, fig=None, title: str | None = None):
    """All chapter-2 metrics of one network on a 2x3 grid, from a :func:`refinement_report` dict."""
    if fig is None:
        fig = plt.figure(figsize=(15, 7.5))
    axes = fig.subplots(2, 3)
    plot_per_block(report["alignment"], axes[0, 0], zero_line=True)
    axes[0, 0].set_title("cosine of step and loss gradient")
    plot_per_block(report["norm_ratio"], axes[0, 1])
    axes[0, 1].set_title("relative step size")
    plot_drop_block(report["drop"], axes[0, 2])
    axes[0, 2].set_title("dropping one block")
    plot_unroll(report["unroll"], axes[1, 0], axes[1, 1])
    axes[1, 0].set_title("unrolling the last block: accuracy")
    axes[1, 1].set_title("unrolling the last block: state norm")
    plot_borderline(report["borderline"], axes[1, 2])
    axes[1, 2].set_title(f"borderline examples (margin < {report['borderline'][0].threshold:g})")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
