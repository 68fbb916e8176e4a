"""Explorers: ipywidgets views over precomputed results, and kernel-free slider figures.

An *explorer* (:func:`widget_explorer`, the one ipywidgets helper) only
re-draws results a notebook has already computed, so it responds instantly;
it needs a running kernel. A *slider figure* (:func:`slider_figure`) embeds
every frame as a base64 image behind an ``<input type="range">`` and a few
lines of inline JavaScript: it works in the built book, in a trusted notebook
and in any browser, offline, with no kernel. Without JavaScript the first
frame stays visible. Each chapter also draws its full comparison as an
ordinary figure.

Usage of a slider figure (each frame a matplotlib figure, PNG bytes or SVG text)::

    frames = {f"lambda = {lam}": draw(lam) for lam in strengths}
    slider_figure(frames, "Soft coupling: block similarity", label="strength")
"""
from __future__ import annotations

import base64
import hashlib
import html
import io
import json
from typing import Callable

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import HTML, display
from matplotlib.colors import LogNorm

from .style import MIN_FONT_PT
from .plots import (COLUMN_WIDTH, plot_refinement_summary, plot_sharing_at_init, sharing_limits,
                    unroll_figure, unroll_limits)


# --- the one ipywidgets helper ---

def widget_explorer(controls: list, figure: Callable, *, rows: list | None = None):
    """A view that redraws ``figure(*values)`` whenever one of ``controls`` changes.

    ``controls``: ipywidgets whose ``.value`` are ``figure``'s arguments, in
    order; ``rows``: how to lay the controls (and any extra widgets) out
    above the figure, default one row each. A ``ValueError`` from ``figure``
    is printed in place of the figure. Returns ``(box, redraw)``: the
    ``ipywidgets.VBox`` to display and a function that redraws it.
    """
    out = widgets.Output()

    def redraw(*_):
        with out:
            out.clear_output(wait=True)
            try:
                fig = figure(*[c.value for c in controls])
            except ValueError as err:
                print(err)
                return
            display(fig)
            plt.close(fig)

    for c in controls:
        c.observe(redraw, names="value")
    redraw()
    return widgets.VBox([*(rows if rows is not None else controls), out]), redraw


# --- chapter 2: refinement explorer ---

def refinement_explorer(reports: dict, *, title: str = ""):
    """A drop-down over networks that shows all chapter-2 metrics of the chosen one.

    ``reports`` maps a network's name to its
    :func:`itercourse.refinement.refinement_report` dict. Returns an
    ``ipywidgets.VBox`` (display it as a cell's last value).
    """
    if not isinstance(reports, dict) or not reports:
        raise ValueError(f"reports={reports!r} must be a non-empty dict {{network name: refinement_report(...)}}")
    names = list(reports)

    def figure(name):
        return plot_refinement_summary(reports[name], title=f"{name}{' · ' + title if title else ''}")

    choice = widgets.Dropdown(options=names, value=names[0], description="network",
                              layout=widgets.Layout(width="60%"), style={"description_width": "initial"})
    return widget_explorer([choice], figure)[0]


# --- chapters 3-4: coupling explorer ---

def _blocks_of(record: dict) -> tuple:
    return tuple(record["model"]["blocks"])


def coupling_figure(records: list, strength: float, *, dataset: str | None = None, blocks=None,
                    identical_init: bool = True, title: str = ""):
    """Three panels for one point of the coupling dial, drawn from :func:`itercourse.experiments.coupling_point` records.

    Left: test accuracy per epoch for every strength (the chosen one bold).
    Middle: dissimilarity ``1 - cos(W_i, W_j)`` between the conv weights of
    the last stage's blocks at the end of training, on a log scale (bright =
    identical, 1e-4 or less). Right: final test accuracy
    and effective parameters against strength. Uses the records of
    ``dataset`` and ``blocks`` (default: the first record's) that started
    from identical blocks or not (``identical_init``), and shows the one whose
    strength is nearest to ``strength``. Returns the figure.
    """
    if not records:
        raise ValueError("records is empty; pass the list returned by a sweep of coupling_point(...)")
    dataset = records[0]["dataset"] if dataset is None else dataset
    blocks = _blocks_of(records[0]) if blocks is None else tuple(blocks)
    pool = sorted((r for r in records if r["dataset"] == dataset and _blocks_of(r) == blocks
                   and r["strength"] is not None and r["identical_init"] == identical_init),
                  key=lambda r: r["strength"])
    if not pool:
        raise ValueError(f"no record for dataset={dataset!r}, blocks={blocks!r}, identical_init={identical_init}; "
                         f"available: {sorted({(r['dataset'], _blocks_of(r)) for r in records})}. "
                         "Train one with the live button (or coupling_point) first.")
    chosen = min(pool, key=lambda r: abs(r["strength"] - strength))
    fig = plt.figure(figsize=(COLUMN_WIDTH, 6.4), layout="constrained")
    grid = fig.add_gridspec(2, 2)
    axes = [fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1]), fig.add_subplot(grid[1, :])]
    ax = axes[0]
    for r in pool:
        h = r["history"]
        bold = r is chosen
        ax.plot(h["epoch"], h["test_acc"], color="C3" if bold else "0.7", lw=2.5 if bold else 1,
                label=f"λ = {r['strength']:g}" if bold else None, zorder=3 if bold else 1)
    ax.set(xlabel="epoch", ylabel="test accuracy")
    ax.set_title("training curves\n(grey: other strengths)", fontsize=9)
    ax.legend(loc="lower right", fontsize=MIN_FONT_PT)
    dissim = np.clip(1.0 - np.array(chosen["similarity_last_stage"]), 1e-4, 1.0)   # 1e-4 or less: "identical"
    im = axes[1].imshow(dissim, norm=LogNorm(vmin=1e-4, vmax=1.0), cmap="viridis_r")
    axes[1].set(xlabel="block j", ylabel="block i", xticks=range(len(dissim)), yticks=range(len(dissim)))
    axes[1].set_title(f"1 - cos(W_i, W_j), last stage\nλ = {chosen['strength']:g}", fontsize=9)
    fig.colorbar(im, ax=axes[1], fraction=0.046, label="≤ 1e-4: identical")
    lams = [r["strength"] for r in pool]
    ax = axes[2]
    ax.plot(lams, [r["history"]["test_acc"][-1] for r in pool], "o-", color="C0")
    ax.plot(chosen["strength"], chosen["history"]["test_acc"][-1], "o", ms=12, mfc="none", mec="C3", mew=2)
    ax.set(xlabel="coupling strength λ", ylabel="final test accuracy (blue)", xlim=(-0.05, 1.05))
    ax.set_title("accuracy and effective parameters P_eff against λ", fontsize=9)
    ax2 = ax.twinx()
    ax2.plot(lams, [r["effective_parameters"] / 1e3 for r in pool], "s--", color="C2")
    ax2.set_ylabel("effective parameters, thousands (green)", color="C2")
    fig.suptitle(title or f"{dataset}, blocks per stage {blocks}: λ = {chosen['strength']:g}\nblock spread "
                 f"{', '.join(f'{s:.2f}' for s in chosen['spread_conv'])} (conv weights, per stage)",
                 fontsize=10)
    return fig


def coupling_explorer(records: list, *, live=None, live_datasets=()):
    """An ipywidgets explorer over a precomputed coupling sweep, with an optional live-training button.

    ``records``: a list of :func:`itercourse.experiments.coupling_point` results
    (identical initial blocks). The strength slider and the dataset and depth
    drop-downs only redraw those records, so they respond at once.
    ``live(dataset, blocks, strength) -> record``, if given, adds a button
    that trains one small model at the slider's strength (only when pressed)
    and adds it to the explorer; ``live_datasets`` are extra dataset names it
    can train on.
    """
    if not isinstance(records, list) or not records:
        raise ValueError("records must be a non-empty list of coupling_point(...) results")
    records = list(records)
    datasets = sorted({r["dataset"] for r in records} | set(live_datasets))
    blocks = sorted({_blocks_of(r) for r in records})
    dataset = widgets.Dropdown(options=datasets, value=records[0]["dataset"], description="dataset")
    depth = widgets.Dropdown(options=[(str(b), b) for b in blocks], value=_blocks_of(records[0]),
                             description="blocks/stage")
    strength = widgets.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05, description="strength λ",
                                   continuous_update=False)
    status = widgets.HTML("")
    row2 = [status]
    if live is not None:
        button = widgets.Button(description="train live at this λ", icon="play",
                                tooltip="trains one small model now (a minute or more on a CPU)")
        row2 = [button, status]

    def figure(ds, bl, lam):
        return coupling_figure(records, lam, dataset=ds, blocks=bl)

    box, redraw = widget_explorer([dataset, depth, strength], figure,
                                  rows=[widgets.HBox([dataset, depth, strength]), widgets.HBox(row2)])
    if live is not None:
        def on_click(_):
            button.disabled = True
            status.value = f"training {dataset.value}, {depth.value}, λ = {strength.value:g} ..."
            try:
                records.append(live(dataset.value, depth.value, strength.value))
                status.value = f"done: added λ = {strength.value:g} (live run)"
            except Exception as err:  # show the student the error, keep the explorer alive
                status.value = f"live run failed: {err}"
            finally:
                button.disabled = False
            redraw()

        button.on_click(on_click)
    return box


# --- chapter 5: a block iterated beyond its depth ---

def lipschitz_explorer(curves: dict, accuracy: dict, steps, *, title: str = ""):
    """Sliders over the networks (by their constraint) and the number of extra iterations k.

    ``curves[name]`` is an :func:`unroll_curves` dict, ``accuracy[name]`` the
    accuracies at the extra-step counts ``steps``. Returns an ``ipywidgets.VBox``;
    without ipywidgets, the static figure of the first network.
    """
    names, steps = list(curves), list(steps)
    if not names or set(names) != set(accuracy):
        raise ValueError(f"curves and accuracy must be non-empty dicts with the same networks; got "
                         f"{sorted(curves)} and {sorted(accuracy)}")

    limits = unroll_limits(curves)                  # every view on the same axes

    def figure(name, k):
        return unroll_figure(name, curves[name], accuracy[name], steps, k, title, limits=limits)

    which = widgets.SelectionSlider(options=names, value=names[0], description="network",
                                    layout=widgets.Layout(width="70%"), style={"description_width": "initial"})
    k = widgets.IntSlider(value=steps[-1], min=0, max=len(curves[names[0]]["update"]), description="extra k")
    return widget_explorer([which, k], figure)[0]


# --- kernel-free frames: one figure per slider position, all on the same axes ---

def sharing_frames(by_steps: dict, *, title: str = "") -> dict:
    """Chapter 3's frames: one :func:`plot_sharing_at_init` figure per number of steps n, shared axes.

    ``by_steps[n]`` is ``{network: {"forward", "gradient", "alignment"}}`` for a
    stage of ``n`` steps. Every frame uses the limits of the longest stage
    (:func:`sharing_limits`), so moving the slider shows the curves grow, not the
    axes. Returns ``{"n = ...": Figure}`` for :func:`slider_figure`.
    """
    if not isinstance(by_steps, dict) or not by_steps:
        raise ValueError(f"by_steps must be a non-empty dict {{number of steps: curves}}; got {by_steps!r}")
    limits = sharing_limits(by_steps.values())
    return {f"n = {n}": plot_sharing_at_init(init, limits=limits,
                                             title=f"one stage of {n} steps at initialisation"
                                             + (f" ({title})" if title else ""))
            for n, init in by_steps.items()}


def unroll_frames(curves: dict, accuracy: dict, steps, *, k: int | None = None, title: str = "") -> dict:
    """Chapter 5's frames: one :func:`unroll_figure` per network, all with the same axes.

    ``curves[name]`` is an :func:`itercourse.lipschitz.unroll_curves` dict and
    ``accuracy[name]`` the accuracies at ``steps``; ``k`` (default the last step)
    is marked. Returns ``{name: Figure}`` for :func:`slider_figure`.
    """
    steps = list(steps)
    if not curves or set(curves) != set(accuracy):
        raise ValueError(f"curves and accuracy must be non-empty dicts with the same networks; got "
                         f"{sorted(curves)} and {sorted(accuracy)}")
    limits = unroll_limits(curves)
    k = steps[-1] if k is None else k
    return {name: unroll_figure(name, curves[name], accuracy[name], steps, k, title, limits=limits)
            for name in curves}


# --- kernel-free slider figures ---

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def figure_bytes(fig, fmt: str = "png", dpi: int = 80) -> bytes:
    """Render a matplotlib figure to PNG or SVG bytes and close it (so it is not displayed twice)."""
    if fmt not in ("png", "svg"):
        raise ValueError(f"fmt={fmt!r} is not allowed; choose one of ['png', 'svg']")
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight", metadata={"Software": None} if fmt == "png" else
                {"Date": None, "Creator": None})
    plt.close(fig)
    return buf.getvalue()


def _data_uri(frame, fmt: str, dpi: int) -> str:
    """A ``data:`` URI for one frame: a Figure, PNG bytes or SVG text/bytes."""
    if hasattr(frame, "savefig"):
        frame = figure_bytes(frame, fmt, dpi)
    if isinstance(frame, str):
        frame = frame.encode()
    if not isinstance(frame, (bytes, bytearray)):
        raise TypeError(f"frame of type {type(frame).__name__} is not supported; pass a matplotlib Figure, "
                        "PNG bytes or SVG text")
    frame = bytes(frame)
    if frame.startswith(PNG_MAGIC):
        mime = "image/png"
    elif b"<svg" in frame[:2048]:
        mime = "image/svg+xml"
    else:
        raise ValueError("frame bytes are neither PNG (no PNG signature) nor SVG (no <svg tag); "
                         "pass a matplotlib Figure, PNG bytes or SVG text")
    return f"data:{mime};base64,{base64.b64encode(frame).decode('ascii')}"


def slider_html(frames: dict, title: str = "", *, label: str = "frame", initial: int = 0,
                fmt: str = "png", dpi: int = 80, max_width: str = "100%") -> str:
    """The HTML of a slider figure (see :func:`slider_figure`)."""
    if not isinstance(frames, dict) or not frames:
        raise ValueError(f"frames must be a non-empty dict label -> figure; got {type(frames).__name__} "
                         f"with {len(frames) if hasattr(frames, '__len__') else '?'} entries")
    names = [str(k) for k in frames]
    if not (isinstance(initial, int) and 0 <= initial < len(names)):
        raise ValueError(f"initial={initial!r} is out of range; it must be an integer in 0..{len(names) - 1}")
    uris = [_data_uri(f, fmt, dpi) for f in frames.values()]
    uid = "icsf-" + hashlib.sha1("".join(names + uris + [title]).encode()).hexdigest()[:12]
    imgs = "\n".join(
        f'<img class="{uid}-frame" src="{u}" alt="{html.escape(title)}: {html.escape(n)}" '
        f'style="max-width:{max_width};height:auto;display:{"block" if i == initial else "none"}"/>'
        for i, (n, u) in enumerate(zip(names, uris)))
    js_names = json.dumps(names).replace("</", "<\\/")     # a label cannot close the script early
    script = f"""<script>
(function () {{
  var names = {js_names};
  var range = document.getElementById("{uid}-range"), value = document.getElementById("{uid}-value");
  var frames = document.getElementsByClassName("{uid}-frame");
  range.addEventListener("input", function () {{
    for (var i = 0; i < frames.length; i++) frames[i].style.display = (i == range.value) ? "block" : "none";
    value.textContent = names[range.value];
  }});
}})();
</script>"""
    return f"""<div id="{uid}" style="border:1px solid #ddd;padding:8px;margin:8px 0">
<div style="font-weight:bold;margin-bottom:4px">{html.escape(title)}</div>
<label style="display:flex;flex-wrap:wrap;align-items:center;gap:4px 8px">{html.escape(label)}
<input id="{uid}-range" type="range" min="0" max="{len(names) - 1}" step="1" value="{initial}" style="flex:1 1 160px;min-width:120px;max-width:320px"/>
<span id="{uid}-value" style="font-family:monospace">{html.escape(names[initial])}</span></label>
<noscript>(This slider needs JavaScript; the first frame is shown.)</noscript>
{imgs}
{script}
</div>"""


def slider_figure(frames: dict, title: str = "", *, label: str = "frame", initial: int = 0,
                  fmt: str = "png", dpi: int = 80, max_width: str = "100%"):
    """A kernel-free interactive figure: one precomputed frame per slider position.

    ``frames`` maps a label (shown next to the slider) to a matplotlib Figure
    (rendered to ``fmt`` at ``dpi`` and closed), PNG bytes or SVG text; order
    is slider order. Returns ``IPython.display.HTML`` (display it, or make it a
    cell's last expression). Every frame is embedded, so keep them few and small.
    """
    return HTML(slider_html(frames, title, label=label, initial=initial, fmt=fmt, dpi=dpi, max_width=max_width))
