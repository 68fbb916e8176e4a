"""plot_history: the curves it draws are the history's numbers, train and test in one colour per run.

Oracle: the drawn line data equal the lists of a hand-built History.
"""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from itercourse.training import History  # noqa: E402
from itercourse.viz.plots import plot_history  # noqa: E402


def _history(train, test):
    h = History()
    for e, (a, b) in enumerate(zip(train, test), start=1):
        h.epoch.append(e)
        h.train_acc.append(a)
        h.test_acc.append(b)
        h.train_loss.append(1 - a)
        h.test_loss.append(1 - b)
    return h


def test_curves_are_the_histories_numbers():
    hs = {"a": _history([0.5, 0.8, 0.9], [0.4, 0.7, 0.8]), "b": _history([0.3], [0.2])}
    ax = plot_history(hs)
    lines = ax.get_lines()
    assert len(lines) == 4                                    # train and test per run
    assert list(lines[0].get_xdata()) == [1, 2, 3]
    assert list(lines[0].get_ydata()) == [0.5, 0.8, 0.9]
    assert list(lines[1].get_ydata()) == [0.4, 0.7, 0.8]
    assert lines[0].get_color() == lines[1].get_color() != lines[2].get_color()
    assert lines[0].get_linestyle() == "-" and lines[1].get_linestyle() == "--"
    assert list(lines[3].get_ydata()) == [0.2]                # one epoch: a single point
    ax.figure.canvas.draw()
    lo, hi = ax.get_xlim()
    shown = [t for t in ax.get_xticks() if lo <= t <= hi]
    assert shown and all(float(t).is_integer() for t in shown)   # epochs are whole numbers
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "accuracy"
    loss = plot_history(hs, metric="loss")
    assert list(loss.get_lines()[0].get_ydata()) == pytest.approx([0.5, 0.2, 0.1])
    plt.close("all")


def test_draws_on_a_given_axis_and_never_shows():
    fig, ax = plt.subplots()
    assert plot_history({"a": _history([0.5, 0.6], [0.4, 0.5])}, ax) is ax
    plt.close(fig)


@pytest.mark.parametrize("histories, metric", [({}, "acc"),
                                               ({"a": _history([0.5], [0.4])}, "top5")])
def test_bad_arguments_are_explained(histories, metric):
    with pytest.raises(ValueError, match="histories|metric"):
        plot_history(histories, metric=metric)
