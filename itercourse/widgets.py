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
