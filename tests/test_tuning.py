"""Choosing each arm's learning rate on validation images: the argmax of the mean over seeds, and a
winner at the edge of the tried range refused."""
from types import SimpleNamespace as NS

import pytest

from itercourse.tuning import check_tuned, choose_rates, rate_table, rates_markdown

MODELS = {"conventional": dict(branch_norm="bn", branch_init="default", spectral_coeff=None),
          "norm-free": dict(branch_norm="none", branch_init="zero", spectral_coeff=None)}


def run(arm, lr, acc, seed=0, val_size=100):
    cfg = NS(model=NS(**MODELS[arm]), train=NS(lr=lr), val_size=val_size, seed=seed)
    return NS(config=cfg, id=f"{arm}-{lr}-{seed}", extras={"val_acc": acc} if val_size else {})


def grid(curves):
    """``curves``: {arm: {lr: [acc per seed]}} -> fabricated runs."""
    return [run(arm, lr, acc, seed) for arm, by_lr in curves.items() for lr, accs in by_lr.items()
            for seed, acc in enumerate(accs)]


def test_the_choice_is_the_best_mean_over_seeds_not_the_best_single_run():
    results = grid({"conventional": {0.05: [0.70, 0.72], 0.1: [0.90, 0.60], 0.2: [0.76, 0.78]},
                    "norm-free": {0.05: [0.80, 0.80], 0.1: [0.70, 0.70], 0.2: [0.30, 0.30]}})
    chosen = choose_rates(results)
    assert chosen["conventional"]["lr"] == 0.2 and chosen["conventional"]["val_acc"] == pytest.approx(0.77)
    assert chosen["conventional"]["runner_up"] == 0.1 and chosen["conventional"]["seeds"] == 2
    assert chosen["norm-free"]["lr"] == 0.05
    assert rate_table(results)["norm-free"][0.2] == [0.30, 0.30]


def test_a_winner_at_the_edge_of_the_grid_is_refused():
    edge = choose_rates(grid({"conventional": {0.05: [0.7], 0.1: [0.8], 0.2: [0.9]}}))
    assert not edge["conventional"]["interior"]
    with pytest.raises(ValueError, match=r"edge of the tried range \[0.05, 0.1, 0.2\]"):
        check_tuned(edge)
    inside = choose_rates(grid({"conventional": {0.05: [0.7], 0.1: [0.9], 0.2: [0.8]}}))
    check_tuned(inside)
    assert "0.1" in rates_markdown(grid({"conventional": {0.05: [0.7], 0.1: [0.9], 0.2: [0.8]}}))


def test_fewer_than_three_rates_is_not_a_choice():
    with pytest.raises(ValueError, match="tried 2 learning rates"):
        check_tuned(choose_rates(grid({"conventional": {0.05: [0.7], 0.1: [0.9]}})))


def test_a_run_without_a_validation_split_is_named():
    with pytest.raises(ValueError, match=r"conventional-0.1-0 has no extras\['val_acc'\].*val_size = 0"):
        choose_rates([run("conventional", 0.1, 0.5, val_size=0)])


def test_the_rate_figure_draws_every_run_and_rings_the_choice():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from itercourse.viz.grid_plots import plot_rate_grid
    results = grid({"conventional": {0.05: [0.70, 0.72], 0.1: [0.90, 0.88], 0.2: [0.76, 0.78]},
                    "norm-free": {0.05: [0.80, 0.80], 0.1: [0.70, 0.70], 0.2: [0.85, 0.30]}})
    ax = plot_rate_grid(results)
    dots = sum(len(c.get_offsets()) for c in ax.collections)
    assert dots == len(results) + 2                            # every run, plus one ring per arm
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["conventional: 0.1", "norm-free: 0.05 (at the edge)"]
    plt.close("all")


def test_the_committed_rates_are_the_winners_of_the_committed_grid():
    """presets.TUNED_LR (the rates of the grid the verdicts rest on) is what the committed learning-rate
    grid chose, every winner strictly inside six tried rates, two seeds behind each."""
    from pathlib import Path

    from itercourse.experiments import load_results
    from itercourse.presets import LR_GRID, TUNED_LR, PRESETS
    from itercourse.sweeps import load_grid
    results_dir = Path(__file__).resolve().parents[1] / "results"
    results = load_results("digitclutter_arms_lr", results_dir)
    assert {r.id for r in results} == {c.id for c in load_grid(PRESETS["digitclutter_arms_lr"]())}
    chosen = choose_rates(results)
    check_tuned(chosen)
    assert {arm: c["lr"] for arm, c in chosen.items()} == TUNED_LR
    assert all(c["tried"] == LR_GRID and c["seeds"] == 2 for c in chosen.values())
