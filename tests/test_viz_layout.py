"""Figures as the book shows them: sized for its 772 px column, slider frames on shared axes.

Oracles: the frames of a slider figure must have identical axis limits (else
the axes jump as the reader moves the slider); a figure's width must not pass
the column's 7.7 inches; a curve that stops early must say why.
"""
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from itercourse.viz.diagrams import draw_unit  # noqa: E402
from itercourse.viz.explorers import (coupling_figure, sharing_frames, slider_html,  # noqa: E402
                                      unroll_frames)
from itercourse.viz.plots import (COLUMN_WIDTH, plot_digitclutter, plot_sharing_at_init,  # noqa: E402
                                  sharing_limits, truncation, unroll_figure, unroll_limits)

NAN = float("nan")


def _limits(fig):
    return [(ax.get_xlim(), ax.get_ylim()) for ax in fig.axes if ax.get_visible()]


def _unroll(kind, t=30, stop=None):
    if kind == "contract":
        curves = {"update": [0.5 ** i for i in range(t)], "growth": [0.2] * t,
                  "turn": [1e-3 * 0.5 ** i for i in range(t)]}
    else:
        curves = {"update": [0.1 * (i + 1) for i in range(t)], "growth": [1.5] * t,
                  "turn": [1e-4 * (i + 1) for i in range(t)]}
    if stop is not None:
        for key in curves:
            curves[key][stop:] = [NAN] * (t - stop)
    return curves


def _init(n, scale):
    return {"unshared": {"forward": [scale * i for i in range(n + 1)],
                         "gradient": [scale / (i + 1) for i in range(n + 1)],
                         "alignment": [0.1 * scale] * (n - 1)},
            "naive shared": {"forward": [2 * scale * i for i in range(n + 1)],
                             "gradient": [1.0] * (n + 1), "alignment": [0.9] * (n - 1)}}


def test_unroll_frames_share_their_axes_and_fit_the_column():
    steps = [0, 1, 5, 20]
    curves = {"grows": _unroll("grow"), "contractive": _unroll("contract", stop=12)}
    accuracy = {"grows": [0.9, 0.8, 0.4, 0.1], "contractive": [0.8, 0.8, 0.8, 0.8]}
    frames = unroll_frames(curves, accuracy, steps, title="tiny")
    assert list(frames) == ["grows", "contractive"]
    first, second = frames.values()
    assert _limits(first) == _limits(second)
    for fig in frames.values():
        assert fig.get_size_inches()[0] <= COLUMN_WIDTH + 1e-9
        acc = fig.axes[3]
        assert acc.get_xscale() == "linear" and acc.get_xlim()[0] < 0 < acc.get_xlim()[1]
        assert all(t.get_text().lstrip("−-") == t.get_text() for t in acc.get_xticklabels()
                   if t.get_position()[0] >= 0)                  # no negative tick such as -10^0
    assert "t = 12" in second._suptitle.get_text() + second._supxlabel.get_text()
    assert first._supxlabel is None                              # nothing stops early: no note
    plt.close("all")
    with pytest.raises(ValueError, match="same networks"):
        unroll_frames(curves, {"grows": accuracy["grows"]}, steps)


def test_truncation_names_the_reason():
    assert truncation(_unroll("grow")) == ""
    assert "shrunk to zero" in truncation(_unroll("contract", stop=7)) and "t = 7" in truncation(
        _unroll("contract", stop=7))
    assert "overflowed" in truncation(_unroll("grow", stop=9))
    limits = unroll_limits({"a": _unroll("contract", stop=5)})
    assert all(math.isfinite(v) for key in ("update", "growth", "turn") for v in limits[key])


def test_sharing_frames_one_per_depth_on_the_longest_stage_axes():
    by_steps = {4: _init(4, 1.0), 16: _init(16, 3.0)}
    frames = sharing_frames(by_steps, title="tiny")
    assert list(frames) == ["n = 4", "n = 16"]
    a, b = frames.values()
    assert _limits(a) == _limits(b)
    limits = sharing_limits(by_steps.values())
    assert limits["steps"][1] >= 16 and limits["forward"][1] >= 2 * 3.0 * 16
    for fig in frames.values():
        assert fig.get_size_inches()[0] <= COLUMN_WIDTH + 1e-9
        assert len([ax for ax in fig.axes if ax.get_visible()]) == 3
    html = slider_html(frames, "ch3", label="steps n")
    assert html.count("<img") == 2
    plt.close("all")
    with pytest.raises(ValueError, match="by_steps"):
        sharing_frames({})
    with pytest.raises(ValueError, match="init"):
        plot_sharing_at_init({})


def test_unroll_figure_and_coupling_figure_fit_the_column():
    fig = unroll_figure("one", _unroll("grow"), [0.5, 0.4], [0, 10], k=10)
    assert fig.get_size_inches()[0] <= COLUMN_WIDTH + 1e-9 and len(fig.axes) == 4
    records = [dict(dataset="d", model={"blocks": [2, 2]}, strength=lam, identical_init=True,
                    history={"epoch": [1, 2], "test_acc": [0.3, 0.5 + lam / 10]},
                    similarity_last_stage=[[1, 0.9], [0.9, 1]], effective_parameters=1e4,
                    spread_conv=[0.1, 0.2]) for lam in (0.0, 1.0)]
    fig = coupling_figure(records, 0.4)
    assert fig.get_size_inches()[0] <= COLUMN_WIDTH + 1e-9
    plt.close("all")


def test_diagram_labels_stay_inside_their_boxes():
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH / 6, 3.7), layout="constrained")   # one of six a row
    draw_unit("preact", "identity", ax=ax)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [p.get_window_extent(renderer) for p in ax.patches if isinstance(p, plt.Rectangle)]
    labels = [t for t in ax.texts if t.get_text().startswith("conv")]
    assert labels
    for text in labels:
        inner = text.get_window_extent(renderer)
        assert any(b.x0 <= inner.x0 and inner.x1 <= b.x1 for b in boxes), text.get_text()
    plt.close(fig)


def test_index_panels_two_a_row_in_the_column():
    from test_report import fake_results

    from itercourse.viz.plots import plot_indices

    fig = plot_indices(fake_results(effect=0.3, noise=0.01))
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 4 and fig.get_size_inches()[0] <= COLUMN_WIDTH + 1e-9
    assert len({round(ax.get_position().x0, 3) for ax in visible}) == 2      # two columns
    plt.close(fig)


# ------------------------------------------------------------------ drawn for the page (issue 24)

def test_the_book_style_is_set_when_viz_is_imported():
    from itercourse.viz.style import BOOK_RC, DPI, MIN_FONT_PT

    assert matplotlib.rcParams["figure.dpi"] == DPI >= 150
    for key in ("xtick.labelsize", "ytick.labelsize", "legend.fontsize", "font.size"):
        assert matplotlib.rcParams[key] == BOOK_RC[key] and BOOK_RC[key] >= MIN_FONT_PT
    assert matplotlib.rcParams["figure.figsize"][0] <= COLUMN_WIDTH


def _no_small_text(fig):
    """No text below 9 pt, and none cut off by the figure's edge."""
    from matplotlib.text import Text

    from itercourse.viz.style import small_texts

    small = small_texts(fig)
    assert not small, f"text below 9 pt: {small[:5]}"
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    texts = list(fig.texts) + [t for leg in fig.legends for t in leg.get_texts()]
    for ax in fig.axes:                           # titles, labels, notes, legends (tick labels are clipped)
        texts += [ax.title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
        texts += list(ax.get_legend().get_texts()) if ax.get_legend() else []
    for sub in getattr(fig, "subfigs", []):
        texts += list(sub.texts)
    for t in texts:
        if isinstance(t, Text) and t.get_visible() and t.get_text().strip():
            e = t.get_window_extent(renderer)
            assert box.x0 - 1 <= e.x0 and e.x1 <= box.x1 + 1, f"text cut off at the edge: {t.get_text()!r}"


def test_unit_diagrams_fit_the_column_with_readable_text():
    from itercourse.blocks import SHORTCUTS, UNITS
    from itercourse.viz.diagrams import unit_diagrams

    fig = unit_diagrams({"placements": [(u, "identity", u) for u in UNITS],
                         "shortcuts": [("original", s, s) for s in SHORTCUTS]})
    assert fig.get_size_inches()[0] <= COLUMN_WIDTH + 1e-9
    assert fig.get_size_inches()[1] <= 10
    _no_small_text(fig)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    axes = [ax for ax in fig.axes if ax.patches]
    assert len(axes) == len(UNITS) + len(SHORTCUTS)
    for ax in axes:                               # every layer name inside its box
        boxes = [p.get_window_extent(renderer) for p in ax.patches if isinstance(p, plt.Rectangle)]
        for text in ax.texts:
            if text.get_text() in ("BN", "ReLU") or text.get_text().startswith("conv"):
                inner = text.get_window_extent(renderer)
                assert any(b.x0 <= inner.x0 and inner.x1 <= b.x1 for b in boxes), text.get_text()
    titles = sorted((ax.title.get_window_extent(renderer) for ax in axes), key=lambda b: (b.y0, b.x0))
    for a, b in zip(titles, titles[1:]):          # neighbouring titles of a row do not overlap
        if abs(a.y0 - b.y0) < 1:
            assert a.x1 <= b.x0, "panel titles overlap"
    plt.close(fig)


def test_arms_figure_stacks_its_panels_in_the_column():
    from test_verdicts import fabricate

    from itercourse.viz.grid_plots import arms_figure, plot_curves

    results = fabricate(lambda *k: 0.7, lambda *k: 0.1)
    fig = arms_figure(results)
    width, height = fig.get_size_inches()
    assert width <= COLUMN_WIDTH + 1e-9 and height <= 11
    assert len({round(ax.get_position().x0, 3) for ax in fig.axes}) == 2      # two columns, four rows
    assert len(fig.legends) == 1 and not any(ax.get_legend() for ax in fig.axes)
    _no_small_text(fig)
    plt.close(fig)
    for r in results:
        r.history = type("H", (), {"train_acc": [0.3, 0.6], "test_acc": [0.2, 0.5]})()
    fig = plot_curves(results)[0].figure
    assert fig.get_size_inches()[0] <= COLUMN_WIDTH + 1e-9
    _no_small_text(fig)
    plt.close(fig)


def test_figures_of_the_chapters_have_text_of_at_least_9_pt():
    from test_report import fake_results

    from itercourse.viz.plots import plot_indices

    figs = [unroll_figure("one", _unroll("contract", stop=12), [0.5, 0.4], [0, 10], k=10),
            plot_sharing_at_init(_init(4, 1.0), title="t"),
            plot_indices(fake_results(effect=0.3, noise=0.01))]
    for fig in figs:
        assert fig.get_size_inches()[0] <= COLUMN_WIDTH + 1e-9
        _no_small_text(fig)
    plt.close("all")


def test_digitclutter_preview_shows_the_images_titled_with_their_digits():
    import numpy as np
    from itercourse.digitclutter import make_digitclutter
    images, labels = make_digitclutter(5, 3, seed=2)
    fig = plot_digitclutter(images, labels)                      # k = 16 asks for more than there are
    shown = [ax for ax in fig.axes if ax.images]
    assert len(fig.axes) == 6 and len(shown) == 5                # two rows of 3, the last panel blank
    for ax, img, lab in zip(shown, images, labels):
        assert np.array_equal(ax.images[0].get_array(), img[0].numpy())
        assert ax.get_title() == "{" + ", ".join(str(d) for d in range(10) if lab[d]) + "}"
        assert len(ax.get_title().split(",")) == 3                # three distinct digits
    fig2 = plot_digitclutter(images.numpy(), labels.numpy(), k=2, fig=plt.figure())
    assert len(fig2.axes) == 2 and fig2.axes[0].get_title() == shown[0].get_title()
    plt.close("all")
