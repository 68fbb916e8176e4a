"""Block diagrams of residual units, drawn from the same layer lists the package builds (chapter 1).

Each diagram is generated from :class:`itercourse.blocks.ResidualUnit` itself,
so a picture can never disagree with the code: the branch column lists the
layers of ``F`` in order, the left column the shortcut ``h``, and the bottom
row what happens after the addition (He et al. 2016, Figs. 2 and 4).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
from torch import nn

from ..blocks import ResidualUnit
from .style import COLUMN_WIDTH, MIN_FONT_PT

_COLOURS = {"BN": "#f6c85f", "ReLU": "#9dd866", "conv": "#6fb1e0", "gate": "#ca472f"}
_SHORTCUT_TEXT = {"identity": "x", "scaled": "0.5 · x", "exclusive_gate": "(1 − g) · x",
                  "shortcut_gate": "(1 − g) · x", "conv1x1": "1×1 conv", "dropout": "dropout(x)"}
_BRANCH_FACTOR = {"exclusive_gate": "g · F", "scaled": "1 · F"}


def _layer_names(unit: ResidualUnit) -> list[str]:
    names = []
    for m in list(unit.pre.modules()) + list(unit.residual.modules()):
        if isinstance(m, nn.BatchNorm2d):
            names.append("BN")
        elif isinstance(m, nn.ReLU):
            names.append("ReLU")
        elif isinstance(m, nn.Conv2d):
            names.append(f"conv {m.kernel_size[0]}×{m.kernel_size[1]}")
    return names


def _box(ax, x, y, text, colour, w=1.9, h=0.55):
    ax.add_patch(plt.Rectangle((x - w / 2, y - h / 2), w, h, facecolor=colour, edgecolor="k", lw=0.8))
    ax.text(x, y, text, ha="center", va="center", fontsize=MIN_FONT_PT)


def draw_unit(unit: str = "preact", shortcut: str = "identity", ax=None, title: str | None = None):
    """Draw one residual unit: the shortcut, the layers of F, the addition and what follows it."""
    block = ResidualUnit(4, 4, unit=unit, shortcut=shortcut)
    if ax is None:
        _, ax = plt.subplots(figsize=(2.6, 4.2), layout="constrained")
    layers = _layer_names(block)
    top = len(layers) + 1.0
    ax.annotate("", xy=(0.0, top - 0.35), xytext=(0.0, top + 0.4), arrowprops=dict(arrowstyle="->"))
    ax.text(0.0, top + 0.55, "$x_l$", ha="center", va="bottom", fontsize=10)
    for k, name in enumerate(layers):                      # the branch F, top to bottom
        _box(ax, 0.6, top - 1 - k, name, _COLOURS[name.split()[0]])
    ax.plot([0.0, 0.6], [top - 0.35, top - 0.35], "k", lw=0.8)
    ax.plot([0.6, 0.6], [top - 0.35, top - 0.72], "k", lw=0.8)
    ax.plot([-0.9, -0.9], [top - 0.35, 0.55], "k", lw=0.8)   # the shortcut h, on the left
    ax.plot([-0.9, 0.0], [top - 0.35, top - 0.35], "k", lw=0.8)
    ax.text(-0.95, top / 2, _SHORTCUT_TEXT[shortcut], rotation=90, ha="right", va="center", fontsize=MIN_FONT_PT,
            color=_COLOURS["gate"] if "gate" in shortcut else "k")
    ax.text(0.6, -0.05 + 0.5, _BRANCH_FACTOR.get(shortcut, "F"), ha="left", va="center", fontsize=MIN_FONT_PT)
    ax.add_patch(plt.Circle((0.0, 0.2), 0.18, facecolor="white", edgecolor="k"))
    ax.text(0.0, 0.2, "+", ha="center", va="center", fontsize=11)
    ax.plot([0.6, 0.6, 0.18], [top - 1 - len(layers) + 1 - 0.28, 0.2, 0.2], "k", lw=0.8)
    ax.plot([-0.9, -0.9, -0.18], [0.55, 0.2, 0.2], "k", lw=0.8)
    after = (["BN"] if unit == "bn_after_add" else []) + (["ReLU"] if block.post_relu else [])
    y = -0.5
    for name in after:                                      # f, after the addition
        _box(ax, 0.0, y, name, _COLOURS[name])
        y -= 0.7
    ax.annotate("", xy=(0.0, y - 0.3), xytext=(0.0, y + 0.4), arrowprops=dict(arrowstyle="->"))
    ax.text(0.0, y - 0.45, "$x_{l+1}$", ha="center", va="top", fontsize=10)
    ax.set_xlim(-1.6, 1.6)
    ax.set_ylim(y - 1.0, top + 1.0)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title or f"{unit} unit\n{shortcut} shortcut", fontsize=MIN_FONT_PT)
    return ax


def unit_diagrams(rows: dict, width: float = COLUMN_WIDTH):
    """Several unit diagrams in the column's width: one row of panels per entry of ``rows``.

    ``rows`` maps a row's heading to a list of ``(unit, shortcut, title)``; each
    row is a subfigure with its own heading, so rows of 5 and of 6 diagrams
    share one figure (chapter 1: He et al.'s activation placements, Fig. 4,
    and shortcuts, Fig. 2). Returns the figure.
    """
    if not rows:
        raise ValueError("rows is empty; pass {heading: [(unit, shortcut, title), ...]}")
    per_row = max(len(r) for r in rows.values())
    panel = width / per_row
    fig = plt.figure(figsize=(width, 0.4 + len(rows) * 2.9 * panel), layout="constrained")
    subfigs = fig.subfigures(len(rows), 1, squeeze=False).ravel()
    for sub, (heading, row) in zip(subfigs, rows.items()):
        axes = sub.subplots(1, per_row, squeeze=False).ravel()
        for ax, (unit, shortcut, title) in zip(axes, row):
            draw_unit(unit, shortcut, ax=ax, title=title)
        for ax in axes[len(row):]:
            ax.axis("off")
        sub.suptitle(heading, fontsize=10)
    return fig
