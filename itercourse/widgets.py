"""Interactive explorers for the chapters (ipywidgets), drawn from precomputed results.

Each explorer only re-draws results a notebook has already computed, so it
responds instantly. Without ipywidgets it returns a static figure instead;
in the built book (no kernel) the explorer shows the view it was saved with,
and each chapter also draws the full comparison as an ordinary figure.

One section per chapter. Keep the top of this module minimal: explorers
import what they need inside the function.
"""
from __future__ import annotations


# --- chapter 2: refinement explorer ---

def refinement_explorer(reports: dict, *, title: str = ""):
    """A drop-down over networks that shows all chapter-2 metrics of the chosen one.

    ``reports`` maps a network's name to its
    :func:`itercourse.refinement.refinement_report` dict. Returns an
    ``ipywidgets.VBox`` (display it as a cell's last value), or, when
    ipywidgets is not installed, the static figure of the first network.
    """
    import matplotlib.pyplot as plt

    from .plots import plot_refinement_summary

    if not isinstance(reports, dict) or not reports:
        raise ValueError(f"reports={reports!r} must be a non-empty dict {{network name: refinement_report(...)}}")
    names = list(reports)

    def figure(name):
        return plot_refinement_summary(reports[name], title=f"{name}{' · ' + title if title else ''}")

    try:
        import ipywidgets as widgets
        from IPython.display import display
    except ImportError:
        return figure(names[0])

    choice = widgets.Dropdown(options=names, value=names[0], description="network",
                              layout=widgets.Layout(width="60%"), style={"description_width": "initial"})
    out = widgets.Output()

    def draw(name):
        with out:
            out.clear_output(wait=True)
            fig = figure(name)
            display(fig)
            plt.close(fig)

    choice.observe(lambda change: draw(change["new"]), names="value")
    draw(names[0])
    return widgets.VBox([choice, out])


# --- chapters 3-4: coupling explorer ---

def _blocks_of(record: dict) -> tuple:
    return tuple(record["model"]["blocks"])


def coupling_figure(records: list, strength: float, *, dataset: str | None = None, blocks=None,
                    identical_init: bool = True, title: str = ""):
    """Three panels for one point of the coupling dial, drawn from :func:`itercourse.coupling.coupling_point` records.

    Left: test accuracy per epoch for every strength (the chosen one bold).
    Middle: dissimilarity ``1 - cos(W_i, W_j)`` between the conv weights of
    the last stage's blocks at the end of training, on a log scale (bright =
    identical, 1e-4 or less). Right: final test accuracy
    and effective parameters against strength. Uses the records of
    ``dataset`` and ``blocks`` (default: the first record's) that started
    from identical blocks or not (``identical_init``), and shows the one whose
    strength is nearest to ``strength``. Returns the figure.
    """
    import matplotlib.pyplot as plt
    import numpy as np

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
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), gridspec_kw={"width_ratios": [1.2, 1, 1.2]})
    ax = axes[0]
    for r in pool:
        h = r["history"]
        bold = r is chosen
        ax.plot(h["epoch"], h["test_acc"], color="C3" if bold else "0.7", lw=2.5 if bold else 1,
                label=f"λ = {r['strength']:g}" if bold else None, zorder=3 if bold else 1)
    ax.set(xlabel="epoch", ylabel="test accuracy", title="training curves (grey: other strengths)")
    ax.legend(loc="lower right")
    from matplotlib.colors import LogNorm
    dissim = np.clip(1.0 - np.array(chosen["similarity_last_stage"]), 1e-4, 1.0)   # 1e-4 or less: "identical"
    im = axes[1].imshow(dissim, norm=LogNorm(vmin=1e-4, vmax=1.0), cmap="viridis_r")
    axes[1].set(xlabel="block j", ylabel="block i", xticks=range(len(dissim)), yticks=range(len(dissim)),
                title=f"1 - cos(W_i, W_j), last stage, λ = {chosen['strength']:g}")
    fig.colorbar(im, ax=axes[1], fraction=0.046, label="≤ 1e-4: identical")
    lams = [r["strength"] for r in pool]
    ax = axes[2]
    ax.plot(lams, [r["history"]["test_acc"][-1] for r in pool], "o-", color="C0")
    ax.plot(chosen["strength"], chosen["history"]["test_acc"][-1], "o", ms=12, mfc="none", mec="C3", mew=2)
    ax.set(xlabel="coupling strength λ", ylabel="final test accuracy (blue)", title="accuracy and P_eff vs λ",
           xlim=(-0.05, 1.05))
    ax2 = ax.twinx()
    ax2.plot(lams, [r["effective_parameters"] / 1e3 for r in pool], "s--", color="C2")
    ax2.set_ylabel("effective parameters, thousands (green)", color="C2")
    fig.suptitle(title or f"{dataset}, blocks per stage {blocks}: λ = {chosen['strength']:g}, block spread "
                 f"{', '.join(f'{s:.2f}' for s in chosen['spread_conv'])} (conv weights, per stage)")
    fig.tight_layout()
    return fig


def coupling_explorer(records: list, *, live=None, live_datasets=()):
    """An ipywidgets explorer over a precomputed coupling sweep, with an optional live-training button.

    ``records``: a list of :func:`itercourse.coupling.coupling_point` results
    (identical initial blocks). The strength slider and the dataset and depth
    drop-downs only redraw those records, so they respond at once.
    ``live(dataset, blocks, strength) -> record``, if given, adds a button
    that trains one small model at the slider's strength (only when pressed)
    and adds it to the explorer; ``live_datasets`` are extra dataset names it
    can train on. Without ipywidgets, returns the static figure of the first record.
    """
    import matplotlib.pyplot as plt

    if not isinstance(records, list) or not records:
        raise ValueError("records must be a non-empty list of coupling_point(...) results")
    records = list(records)
    try:
        import ipywidgets as widgets
        from IPython.display import display
    except ImportError:
        return coupling_figure(records, records[0]["strength"] or 0.0)

    datasets = sorted({r["dataset"] for r in records} | set(live_datasets))
    blocks = sorted({_blocks_of(r) for r in records})
    dataset = widgets.Dropdown(options=datasets, value=records[0]["dataset"], description="dataset")
    depth = widgets.Dropdown(options=[(str(b), b) for b in blocks], value=_blocks_of(records[0]),
                             description="blocks/stage")
    strength = widgets.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05, description="strength λ",
                                   continuous_update=False)
    status = widgets.HTML("")
    out = widgets.Output()

    def draw(*_):
        with out:
            out.clear_output(wait=True)
            try:
                fig = coupling_figure(records, strength.value, dataset=dataset.value, blocks=depth.value)
            except ValueError as err:
                print(err)
                return
            display(fig)
            plt.close(fig)

    for w in (dataset, depth, strength):
        w.observe(draw, names="value")
    row2 = [status]
    if live is not None:
        button = widgets.Button(description="train live at this λ", icon="play",
                                tooltip="trains one small model now (a minute or more on a CPU)")

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
            draw()

        button.on_click(on_click)
        row2 = [button, status]
    draw()
    return widgets.VBox([widgets.HBox([dataset, depth, strength]), widgets.HBox(row2), out])
