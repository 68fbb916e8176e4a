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
from itercourse.viz.plots import (COLUMN_WIDTH, plot_sharing_at_init, sharing_limits,  # noqa: E402
                                  truncation, unroll_figure, unroll_limits)

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
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH / 6, 3.7))     # one of six diagrams a row
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
