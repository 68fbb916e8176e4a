"""Every figure of the book: refinement metrics (ch. 2), a shared stage at initialisation (ch. 3),
unrolling curves (ch. 5), Digitclutter images (ch. 7), grids of results (ch. 7-8).

Every function takes ``ax=None`` (or a figure), draws, and returns the axes it
drew on (or the figure); none calls ``plt.show()``: notebooks arrange and show figures.
Default sizes fit the book's content column (772 px, :data:`COLUMN_WIDTH` inches at
100 dpi), with text of at least 9 pt and constrained layout (:mod:`.style`): a figure
with more than two or three panels stacks them in rows.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator, NullLocator

from ..report import INDEX_KEYS, INDEX_RANGES, INDEX_TITLES, cells, constraint_of, coupling_of
from .style import COLUMN_WIDTH, MIN_FONT_PT  # noqa: F401  (COLUMN_WIDTH: imported from here too)


def _axes(ax, figsize=(6.0, 3.5)):
    if ax is None:
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
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


def plot_history(histories: dict, ax=None, *, metric: str = "acc"):
    """Train (solid) and test (dashed) ``metric`` per epoch, one colour per run.

    ``histories`` maps a run's name to its :class:`itercourse.training.History`
    (anything with ``epoch``, ``train_<metric>`` and ``test_<metric>`` lists);
    ``metric`` is ``"acc"`` or ``"loss"``. A run of one epoch shows as single points.
    """
    if metric not in ("acc", "loss"):
        raise ValueError(f"metric={metric!r} is not allowed; use 'acc' or 'loss'")
    if not histories:
        raise ValueError("histories is empty; plot_history needs at least one run")
    ax = _axes(ax)
    for k, (name, h) in enumerate(histories.items()):
        colour = f"C{k % 10}"
        ax.plot(h.epoch, getattr(h, f"train_{metric}"), "-o", ms=3, color=colour,
                label=f"{name}, train")
        ax.plot(h.epoch, getattr(h, f"test_{metric}"), "--s", ms=3, color=colour,
                label=f"{name}, test")
    last = max(max(h.epoch, default=1) for h in histories.values())
    ax.set_xlim(0.5, last + 0.5)                          # integer ticks even for one epoch
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy" if metric == "acc" else "loss")
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
        _, (ax_acc, ax_norm) = plt.subplots(1, 2, figsize=(COLUMN_WIDTH, 3.2), layout="constrained")
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
        ax_acc.legend(fontsize=MIN_FONT_PT)
    if ax_norm is not None:
        ax_norm.set_xlabel("extra steps k of the last block")
        ax_norm.set_ylabel(r"mean $\|h\|$ / mean $\|h\|$ at k = 0")
        ax_norm.legend(fontsize=MIN_FONT_PT)
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
    ax.set_xticklabels(names, fontsize=MIN_FONT_PT)
    ax.set_ylabel("fraction correct\namong borderline examples")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=MIN_FONT_PT)
    return ax


def plot_refinement_summary(report: dict, fig=None, title: str | None = None):
    """All chapter-2 metrics of one network on a 3x2 grid, from a :func:`refinement_report` dict."""
    if fig is None:
        fig = plt.figure(figsize=(COLUMN_WIDTH, 9.0), layout="constrained")
    axes = fig.subplots(3, 2)
    plot_per_block(report["alignment"], axes[0, 0], zero_line=True)
    axes[0, 0].set_title("cosine of step and loss gradient", fontsize=10)
    plot_per_block(report["norm_ratio"], axes[0, 1])
    axes[0, 1].set_title("relative step size", fontsize=10)
    plot_drop_block(report["drop"], axes[1, 0])
    axes[1, 0].set_title("dropping one block", fontsize=10)
    plot_borderline(report["borderline"], axes[1, 1])
    axes[1, 1].set_title(f"borderline examples (margin < {report['borderline'][0].threshold:g})",
                         fontsize=10)
    plot_unroll(report["unroll"], axes[2, 0], axes[2, 1])
    axes[2, 0].set_title("unrolling the last block: accuracy", fontsize=10)
    axes[2, 1].set_title("unrolling the last block: state norm", fontsize=10)
    for ax in axes.flat:
        if ax.get_xlabel().startswith("depth"):                 # the long stage label: shorter here
            ax.set_xlabel("depth (blocks spread over their stage)")
    if title:
        fig.suptitle(title)
    return fig


# ---------------------------------------------------------------- chapter 3: a shared stage at initialisation

SHARING_PANELS = (("forward", r"mean $\|h_t\|$", "state norm"),
                  ("gradient", r"mean $\|\partial L/\partial h_t\|$", "gradient norm"),
                  ("alignment", r"mean cos$(u_{t-1}, u_t)$", "update alignment"))


def sharing_limits(inits) -> dict:
    """Axis limits that hold every curve of several :func:`plot_sharing_at_init` dicts.

    ``inits``: an iterable of ``{network: {"forward": [...], "gradient": [...],
    "alignment": [...]}}``. Returns ``{"steps": (0, t_max), "forward": (lo, hi),
    "gradient": (lo, hi), "alignment": (lo, hi)}``, so that frames drawn with
    them share their axes (the gradient limits are for a log axis).
    """
    inits = list(inits)
    if not inits:
        raise ValueError("inits is empty; pass at least one {network: curves} dict")
    curves = [r for init in inits for r in init.values()]
    t_max = max(max(len(r["forward"]) - 1, len(r["alignment"])) for r in curves)
    limits = {"steps": (-0.5, t_max + 0.5)}
    for key, _, _ in SHARING_PANELS:
        vals = np.array([v for r in curves for v in r[key]], dtype=float)
        vals = vals[np.isfinite(vals)]
        lo, hi = (float(vals.min()), float(vals.max())) if len(vals) else (0.0, 1.0)
        if key == "gradient":
            lo = max(lo, 1e-12)
            limits[key] = (lo / 1.5, max(hi, lo) * 1.5)
        elif key == "alignment":
            limits[key] = (min(lo, 0.0) - 0.05, 1.05)
        else:
            pad = 0.05 * (hi - lo or 1.0)
            limits[key] = (min(lo, 0.0), hi + pad)
    return limits


def plot_sharing_at_init(init: dict, axes=None, *, title: str | None = None, limits: dict | None = None):
    """State norm, gradient norm and update alignment along one stage, one curve per network (chapter 3).

    ``init[name]`` holds ``forward`` and ``gradient`` (one value per state h_0 .. h_n,
    :func:`itercourse.propagation.signal_and_gradient_norms`) and ``alignment``
    (mean cos(u_{t-1}, u_t), :func:`itercourse.sharing.update_alignment`). Panels
    stack in one row of the column's width; ``limits`` (:func:`sharing_limits`)
    fixes the axes, e.g. for the frames of a slider figure. Returns the figure.
    """
    if not init:
        raise ValueError("init is empty; pass {network name: {'forward', 'gradient', 'alignment'}}")
    if axes is None:
        fig, axes = plt.subplots(1, 3, figsize=(COLUMN_WIDTH, 3.3), layout="constrained")
    for name, r in init.items():
        axes[0].plot(r["forward"], label=name)
        axes[1].semilogy(r["gradient"], label=name)
        axes[2].plot(range(1, len(r["alignment"]) + 1), r["alignment"], label=name)
    for ax, (key, ylabel, panel) in zip(axes, SHARING_PANELS):
        ax.set_xlabel("step t")
        ax.set_ylabel(ylabel)
        ax.set_title(panel, fontsize=9)
        if limits is not None:
            ax.set_xlim(*limits["steps"])
            ax.set_ylim(*limits[key])
    fig = axes[0].figure
    if type(fig.get_layout_engine()).__name__ == "ConstrainedLayoutEngine":
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize=MIN_FONT_PT)
    else:
        axes[0].legend(fontsize=MIN_FONT_PT)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


# ---------------------------------------------------------------- chapter 5: a block iterated beyond its depth

UNROLL_KEYS = ("update", "growth", "turn")


def truncation(curves: dict) -> str:
    """Why the curves of :func:`itercourse.lipschitz.unroll_curves` stop early, in words ("" if they do not).

    ``unroll_curves`` records NaN once the state has collapsed to zero (below
    1e-20 of its starting norm: a contraction towards the fixed point 0, where
    relative changes are undefined) or overflowed (an expansion past float range).
    """
    update = np.asarray(curves["update"], dtype=float)
    finite = np.flatnonzero(np.isfinite(update))
    if len(finite) == len(update):
        return ""
    last = int(finite[-1]) + 1 if len(finite) else 0        # the last t with a value
    growth = [g for g in np.asarray(curves["growth"], dtype=float)[:last] if np.isfinite(g)]
    if growth and growth[-1] < 1:
        why = "the state has shrunk to zero (below 1e-20 of its start: the fixed point 0)"
    else:
        why = "the state has overflowed"
    return f"curves end at t = {last}: {why};\nrelative changes are undefined after that"


def unroll_limits(curves_by_name: dict) -> dict:
    """Shared y limits for the :func:`plot_unroll_curves` panels of several networks (finite values only)."""
    limits = {}
    for key in UNROLL_KEYS:
        vals = np.array([v for c in curves_by_name.values() for v in c[key]], dtype=float)
        vals = vals[np.isfinite(vals) & ((vals > 0) if key != "growth" else True)]
        if not len(vals):
            limits[key] = None
        elif key == "growth":
            pad = 0.05 * (vals.max() - vals.min() or 1.0)
            limits[key] = (float(vals.min()) - pad, float(vals.max()) + pad)
        else:
            limits[key] = (float(vals.min()) / 2, float(vals.max()) * 2)
    return limits


def plot_unroll_curves(curves: dict, axes=None, label=None, k=None, *, limits: dict | None = None,
                       **plot_kw):
    """Three panels over the extra iterations t: relative update, norm growth per step, change of direction.

    ``limits`` (:func:`unroll_limits`) fixes the y axes; the x axis always spans
    every recorded t, also where a curve stops early (see :func:`truncation`).
    """
    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(COLUMN_WIDTH, 2.9), layout="constrained")
    t = range(1, len(curves["update"]) + 1)
    for ax, key, ylabel in zip(axes, ("update", "growth", "turn"),
                               (r"$\|h_{t+1}-h_t\| / \|h_t\|$", r"$\|h_{t+1}\| / \|h_t\|$",
                                r"$1 - \cos(h_t, h_{t+1})$")):
        ax.plot(t, curves[key], label=label, **plot_kw)
        if key != "growth":                                   # growth factors stay within a decade: linear
            ax.set_yscale("log")
            ax.yaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("extra iterations of the last block, t")
        ax.set_ylabel(ylabel)
        ax.set_xlim(0, len(curves[key]) + 1)
        if limits is not None and limits.get(key) is not None:
            ax.set_ylim(*limits[key])
        if k is not None:
            ax.axvline(k, color="grey", lw=0.8, ls=":")
    return axes


def unroll_figure(name: str, curves: dict, accuracy, steps, k: int, title: str = "", *,
                  limits: dict | None = None):
    """One network's unrolling on a 2x2 grid: the three :func:`plot_unroll_curves` panels and accuracy.

    Accuracy is drawn against the extra steps ``steps`` on a linear axis from 0.
    ``limits`` (:func:`unroll_limits`) fixes the curves' y axes, so that the frames
    of a slider figure share them. Curves that stop early say why under the panels
    (:func:`truncation`). Returns the figure.
    """
    steps = list(steps)
    fig, axes = plt.subplots(2, 2, figsize=(COLUMN_WIDTH, 5.4), layout="constrained")
    axes = axes.flat
    plot_unroll_curves(curves, axes[:3], k=k, limits=limits)
    acc = axes[3]
    acc.plot(steps, accuracy, "o-")
    acc.axvline(k, color="grey", lw=0.8, ls=":")
    acc.set_xlabel("extra iterations k")
    acc.set_ylabel("test accuracy")
    acc.set_xlim(-0.02 * max(max(steps), 1), max(max(steps), len(curves["update"])) * 1.02 + 0.5)
    acc.set_ylim(0, 1)
    near = min(range(len(steps)), key=lambda j: abs(steps[j] - k))
    fig.suptitle(f"{name}: accuracy {accuracy[near]:.3f} after k = {steps[near]} extra iterations"
                 + (f" · {title}" if title else ""), fontsize=10)
    note = truncation(curves)
    if note:
        fig.supxlabel(note, fontsize=MIN_FONT_PT, color="dimgrey")
    return fig


# ---------------------------------------------------------------- chapter 7: Digitclutter images

def plot_digitclutter(images, labels, k: int = 16, fig=None):
    """The first ``k`` Digitclutter images in two rows, each titled with its set of digits (``"{0, 4, 7}"``).

    ``images``: ``(N, 1, H, W)`` grey values 0..255; ``labels``: ``(N, 10)`` multi-hot (tensors, as
    :func:`itercourse.digitclutter.make_digitclutter` returns them, or arrays). Returns the figure
    (``python -m itercourse digitclutter --preview`` saves it).
    """
    k = min(k, len(images))
    fig = plt.figure(figsize=(k * 0.75, 3.0)) if fig is None else fig
    axes = fig.subplots(2, (k + 1) // 2, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < k:
            ax.imshow(np.asarray(images[i, 0]), cmap="gray", vmin=0, vmax=255)              # (H, W)
            digits = ", ".join(str(d) for d in np.flatnonzero(np.asarray(labels[i])))
            ax.set_title("{" + digits + "}", fontsize=MIN_FONT_PT)
    return fig


# ---------------------------------------------------------------- chapters 7-8: a coupling x constraint grid

def _colours(keys):
    palette = {"none": "tab:blue"}
    others = ["tab:orange", "tab:green", "tab:red", "tab:purple"]
    for k in keys:
        if k not in palette:
            palette[k] = others[(len(palette) - 1) % len(others)]
    return palette


def plot_vs_coupling(results, metric: str = "final_test_acc", ax=None, *, title: str | None = None,
                     ylabel: str | None = None):
    """``metric`` against coupling strength: every seed as a dot, the cell mean as a line, one colour per constraint."""
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3.2), layout="constrained")
    table = cells(results, metric)
    colours = _colours(sorted({k[0] for k in table}, key=lambda k: (k != "none", k)))
    for con in colours:
        keys = sorted(k for k in table if k[0] == con)
        if not keys:
            continue
        lams = [k[1] for k in keys]
        offset = 0.012 * (list(colours).index(con) - 0.5)
        for k in keys:
            vals = table[k]["values"]
            ax.plot([k[1] + offset] * len(vals), vals, "o", ms=4, alpha=0.55, color=colours[con])
        ax.plot(lams, [table[k]["mean"] for k in keys], "-", color=colours[con],
                label=f"{'no constraint' if con == 'none' else 'Lip(F) <= ' + con[2:]}")
    ax.set_xlabel("coupling strength $\\lambda$")
    ax.set_ylabel(ylabel or metric.replace("_", " "))
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=MIN_FONT_PT)
    return ax


def plot_indices(results, axes=None):
    """The indices against coupling, one panel each, both constraints; returns the figure.

    Without ``axes``: two panels a row, in the column's width (a spare panel is hidden).
    """
    keys = [k for k in INDEX_KEYS if any(k in r.indices for r in results)]
    if axes is None:
        rows = (len(keys) + 1) // 2
        fig, axes = plt.subplots(rows, 2, figsize=(COLUMN_WIDTH, 2.9 * rows), layout="constrained",
                                 squeeze=False)
        for ax in axes.flat[len(keys):]:
            ax.set_visible(False)
    axes = np.atleast_1d(axes).ravel()
    for k, ax in zip(keys, axes):
        plot_vs_coupling(results, k, ax, title=INDEX_TITLES[k], ylabel="index")
        ax.set_ylim(*INDEX_RANGES[k])            # the index's whole range: small wiggles look small
    fig = axes[0].figure
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    return fig


def plot_accuracy_vs_effective_parameters(results, extra=(), ax=None):
    """Test accuracy against effective parameters (coupling.effective_parameters), grid and ``extra`` runs."""
    if ax is None:
        _, ax = plt.subplots(figsize=(4.8, 3.4), layout="constrained")
    colours = _colours(sorted({constraint_of(r) for r in list(results) + list(extra)}, key=lambda k: (k != "none", k)))
    for r in results:
        ax.scatter(r.extras["effective_parameters"] / 1e3, r.final_test_acc, s=12 + 40 * coupling_of(r),
                   color=colours[constraint_of(r)], alpha=0.6)
    for r in extra:
        ax.scatter(r.extras["effective_parameters"] / 1e3, r.final_test_acc, marker="x", s=50,
                   color=colours[constraint_of(r)])
    for con, colour in colours.items():
        ax.scatter([], [], color=colour, label="no constraint" if con == "none" else f"Lip(F) <= {con[2:]}")
    ax.legend(fontsize=MIN_FONT_PT)
    ax.set_xlabel("effective parameters (thousands)")
    ax.set_ylabel("test accuracy")
    ax.set_title("dots: grid (size ~ coupling); x: narrower uncoupled net", fontsize=9)
    return ax
