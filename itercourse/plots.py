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

def shade_stages(ax, per_block, label_stages: bool = True):
    """Grey bands behind alternate stages of a per-block x axis, block indices as ticks, stage names on top."""
    spans: dict[int, list[int]] = {}
    for pos, s in enumerate(per_block.stage):
        spans.setdefault(s, []).append(pos)
    for k, s in enumerate(sorted(spans)):
        lo, hi = spans[s][0] - 0.5, spans[s][-1] + 0.5
        if k % 2 == 0:
            ax.axvspan(lo, hi, color="0.92", zorder=0, lw=0)
        if label_stages:
            ax.text((lo + hi) / 2, 1.0, f"stage {s}", transform=ax.get_xaxis_transform(),
                    ha="center", va="bottom", fontsize=8, color="0.35")
    ax.set_xticks(range(len(per_block)))
    ax.set_xticklabels([str(b) for b in per_block.block], fontsize=7)
    ax.set_xlim(-0.5, len(per_block) - 0.5)
    ax.set_xlabel("block (index within its stage)")
    return ax


def plot_per_block(per_block, ax=None, label=None, *, zero_line: bool = False, **plot_kw):
    """One curve over the blocks of a network (a :class:`itercourse.refinement.PerBlock`)."""
    ax = _axes(ax)
    ax.plot(range(len(per_block)), per_block.values, marker=plot_kw.pop("marker", "o"), label=label, **plot_kw)
    if zero_line:
        ax.axhline(0, color="k", lw=0.8)
    shade_stages(ax, per_block, label_stages=not getattr(ax, "_stages_labelled", False))
    ax._stages_labelled = True
    ax.set_ylabel(per_block.metric)
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
    axes[0, 0].set_title("cosine of step and loss gradient", pad=14)
    plot_per_block(report["norm_ratio"], axes[0, 1])
    axes[0, 1].set_title("relative step size", pad=14)
    plot_drop_block(report["drop"], axes[0, 2])
    axes[0, 2].set_title("dropping one block", pad=14)
    plot_unroll(report["unroll"], axes[1, 0], axes[1, 1])
    axes[1, 0].set_title("unrolling the last block: accuracy")
    axes[1, 1].set_title("unrolling the last block: state norm")
    plot_borderline(report["borderline"], axes[1, 2])
    axes[1, 2].set_title(f"borderline examples (margin < {report['borderline'][0].threshold:g})")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
