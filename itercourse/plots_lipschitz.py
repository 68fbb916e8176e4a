"""Chapter 5 figures: the curves of a block iterated beyond its trained depth, and an ipywidgets explorer.

Every plot function takes ``ax``/``axes=None``, draws and returns them; none
calls ``plt.show()``. The explorer only re-draws curves a notebook already
computed; for the static book, the chapter passes :func:`unroll_figure`
frames to :func:`itercourse.static_figures.slider_figure` (no kernel needed).
"""
from __future__ import annotations

import matplotlib.pyplot as plt


def unroll_curves(model, x, *, extra: int, stage: int = -1) -> dict:
    """Iterate a stage's last block ``extra`` times beyond its trained depth and record how the state moves.

        h_{t+1} = B_{n-1}(h_t),  t = 0 .. extra - 1,  h_0 = the stage's trained output

    Returns per step t: ``update`` = ||h_{t+1} - h_t|| / ||h_t|| (root mean square
    over examples), ``growth`` = mean ||h_{t+1}|| / ||h_t||, and ``turn`` = mean
    1 - cos(h_t, h_{t+1}) (how much the state's direction still changes); NaN once
    a state has collapsed to zero (1e-20 of the start) or overflowed.
    Uses the model's schedule API: ``stage.run_blocks(h, [n - 1] * extra)``.
    """
    import torch

    was_training = model.training
    model.eval()
    with torch.no_grad():
        states = model.stage_states(x)
        st = model.stages[stage]
        h0 = states[stage][-1]                                          # (B, C, H, W)
        traj = st.run_blocks(h0, [len(st.blocks) - 1] * extra)
    model.train(was_training)
    flat = [t.flatten(1).double() for t in traj]                        # (B, D) each
    norms = [f.norm(dim=1) for f in flat]
    floor = 1e-20 * float(norms[0].max())    # below this the state is zero to float32 precision: stop the curves
    update, growth, turn = [], [], []
    for a, b, na, nb in zip(flat, flat[1:], norms, norms[1:]):
        if float(na.min()) < floor:
            update.append(float("nan")), growth.append(float("nan")), turn.append(float("nan"))
            continue
        update.append(float((((b - a).norm(dim=1) / na) ** 2).mean().sqrt()))
        growth.append(float((nb / na).mean()))
        turn.append(float((1 - (a * b).sum(1) / (na * nb)).mean()))
    return {"update": update, "growth": growth, "turn": turn}


def plot_unroll_curves(curves: dict, axes=None, label=None, k=None, **plot_kw):
    """Three panels over the extra iterations t: relative update, norm growth per step, change of direction."""
    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    t = range(1, len(curves["update"]) + 1)
    from matplotlib.ticker import NullLocator

    for ax, key, ylabel in zip(axes, ("update", "growth", "turn"),
                               (r"$\|h_{t+1}-h_t\| / \|h_t\|$", r"$\|h_{t+1}\| / \|h_t\|$",
                                r"$1 - \cos(h_t, h_{t+1})$")):
        ax.plot(t, curves[key], label=label, **plot_kw)
        if key != "growth":                                   # growth factors stay within a decade: linear
            ax.set_yscale("log")
            ax.yaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("extra iterations of the last block, t")
        ax.set_ylabel(ylabel)
        if k is not None:
            ax.axvline(k, color="grey", lw=0.8, ls=":")
    return axes


def unroll_figure(name: str, curves: dict, accuracy, steps, k: int, title: str = ""):
    """One network's unrolling: the three :func:`plot_unroll_curves` panels and accuracy against extra steps."""
    from matplotlib.ticker import NullLocator

    steps = list(steps)
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.2))
    plot_unroll_curves(curves, axes[:3], k=k)
    axes[3].plot(steps, accuracy, "o-")
    axes[3].axvline(k, color="grey", lw=0.8, ls=":")
    axes[3].set_xlabel("extra iterations k")
    axes[3].set_ylabel("test accuracy")
    axes[3].set_xscale("symlog", linthresh=1)
    axes[3].xaxis.set_minor_locator(NullLocator())
    axes[3].set_ylim(0, 1)
    near = min(range(len(steps)), key=lambda j: abs(steps[j] - k))
    fig.suptitle(f"{name}: accuracy {accuracy[near]:.3f} after k = {steps[near]} extra iterations"
                 + (f" · {title}" if title else ""))
    fig.tight_layout()
    return fig


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

    def figure(name, k):
        return unroll_figure(name, curves[name], accuracy[name], steps, k, title)

    try:
        import ipywidgets as widgets
        from IPython.display import display
    except ImportError:
        return figure(names[0], steps[-1])
    which = widgets.SelectionSlider(options=names, value=names[0], description="network",
                                    layout=widgets.Layout(width="70%"), style={"description_width": "initial"})
    k = widgets.IntSlider(value=steps[-1], min=0, max=len(curves[names[0]]["update"]), description="extra k")
    out = widgets.Output()

    def draw(*_):
        with out:
            out.clear_output(wait=True)
            fig = figure(which.value, k.value)
            display(fig)
            plt.close(fig)

    which.observe(draw, names="value")
    k.observe(draw, names="value")
    draw()
    return widgets.VBox([which, k, out])
