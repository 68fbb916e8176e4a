"""Verdict rules of the arms grid and of chapter 1, on fabricated results with known answers."""
import math
from types import SimpleNamespace as NS

import pytest

from itercourse.verdicts import (arm_verdicts, cell_table, effect, identity_mapping_claims,
                                 intermediate_coupling, rules_table)

ARM_MODELS = {"conventional": dict(branch_norm="bn", branch_init="default", spectral_coeff=None),
              "norm-free": dict(branch_norm="none", branch_init="zero", spectral_coeff=None),
              "constrained": dict(branch_norm="none", branch_init="default", spectral_coeff=0.9)}
NOISE = (-0.01, 0.0, 0.01)                     # three seeds, spread 0.01


def fabricate(acc, rec, conv=lambda *k: 0.2, div=lambda *k: 0.1, couplings=(0.0, 0.5, 1.0), version=2):
    """Results of every (arm, init, coupling, seed) cell; ``acc`` etc. map (arm, init, lam) to a mean.
    Version-2 indices carry the late-step rate, ``1 - C``; ``version=1`` fabricates the old indices."""
    out = []
    cells = [(a, "identical", lam) for a in ARM_MODELS for lam in couplings]
    cells += [(a, "independent", 0.0) for a in ARM_MODELS]
    for arm, init, lam in cells:
        for seed, e in enumerate(NOISE):
            cfg = NS(model=NS(**ARM_MODELS[arm]), train=NS(coupling=lam, identical_init=init == "identical"),
                     seed=seed)
            key = (arm, init, lam)
            out.append(NS(config=cfg, final_test_acc=acc(*key) + e, history=NS(train_acc=[0.9]),
                          extras={"block_spread": [1.0 if init == "independent" else 1 - lam]},
                          indices={"recurrence": rec(*key) + e, "convergence": conv(*key) + e,
                                   "divergence": div(*key) + e,
                                   **({"indices_version": 2, "rate": 1 - conv(*key) - e} if version == 2 else {})},
                          meta={}))
    return out


def by_claim(rows):
    out = {}
    for r in rows:
        out.setdefault(r["claim"], []).append(r)
    return out


def test_effect_needs_more_than_the_seed_spread_and_a_minimum():
    assert effect([0.5, 0.51, 0.49], [0.6, 0.61, 0.59], 0.02)["direction"] == "up"
    assert effect([0.5, 0.6, 0.4], [0.55, 0.65, 0.45], 0.02)["direction"] == "unresolved"   # within the spread
    assert effect([0.5, 0.501], [0.51, 0.511], 0.02)["direction"] == "unresolved"           # below min_effect
    assert effect([0.5], [0.9], 0.02)["direction"] == "unresolved"                          # n = 1: no spread
    assert effect([], [0.9], 0.02)["direction"] == "missing"
    e = effect([0.5, 0.51, 0.49], [0.4, 0.41, 0.39], 0.02)
    assert e["direction"] == "down" and (e["n_a"], e["n_b"]) == (3, 3)


def test_constraint_is_compared_with_the_best_unconstrained_arm():
    # conventional 0.80, norm-free 0.70, constrained 0.75: above the weak arm, below the best one
    acc = lambda arm, init, lam: {"conventional": 0.80, "norm-free": 0.70, "constrained": 0.75}[arm]
    rows = by_claim(arm_verdicts(fabricate(acc, lambda *k: 0.1)))
    row, = rows["the Lipschitz constraint does not improve accuracy"]
    assert "conventional" in row["comparison"]
    assert row["verdict"] == "supported (it lowered accuracy)" and row["diff"] == pytest.approx(-0.05)
    # now the constraint beats every unconstrained arm
    acc2 = lambda arm, init, lam: {"conventional": 0.70, "norm-free": 0.72, "constrained": 0.80}[arm]
    row, = by_claim(arm_verdicts(fabricate(acc2, lambda *k: 0.1)))["the Lipschitz constraint does not improve accuracy"]
    assert "norm-free" in row["comparison"] and row["verdict"] == "contradicted"


def test_recurrence_verdict_rests_on_intermediate_coupling_not_on_lambda_one():
    # Recurrence is high only at lambda = 1 (by construction); intermediate coupling changes nothing.
    rec = lambda arm, init, lam: 0.95 if lam == 1.0 else 0.1
    rows = by_claim(arm_verdicts(fabricate(lambda *k: 0.7, rec)))
    iterative = rows["coupling makes ResNets iterative"]
    assert len(iterative) == 3 and all("lambda 0.5" in r["comparison"] for r in iterative)
    assert all(r["verdict"] == "not resolved at our scale" for r in iterative)
    # Intermediate coupling raises recurrence in every arm: supported.
    rec2 = lambda arm, init, lam: 0.1 + 0.6 * lam
    assert all(r["verdict"] == "supported" for r in
               by_claim(arm_verdicts(fabricate(lambda *k: 0.7, rec2)))["coupling makes ResNets iterative"])


def test_initialisation_confound_is_its_own_row():
    # Identical init alone raises recurrence; coupling adds nothing on top of it.
    rec = lambda arm, init, lam: 0.6 if init == "identical" else 0.1
    rows = by_claim(arm_verdicts(fabricate(lambda *k: 0.7, rec)))
    assert all(r["verdict"] == "supported" for r in rows["(confound) identical initialisation alone raises recurrence"])
    assert all(r["verdict"] == "not resolved at our scale" for r in rows["coupling makes ResNets iterative"])


def test_convergence_is_a_threshold_not_a_direction():
    # The constraint raises C and D a lot, but no network passes (rate 0.5 is fast enough, D = 0.5 is not).
    conv = lambda arm, init, lam: 0.5 if arm == "constrained" else 0.1
    rows = by_claim(arm_verdicts(fabricate(lambda *k: 0.7, lambda *k: 0.1, conv=conv, div=conv)))
    for r in rows["the Lipschitz constraint makes ResNets convergent"]:
        assert r["direction"] == "up" and r["verdict"].startswith("direction only: 0 of 3")
    any_row, = [r for k, v in rows.items() if k.startswith("any network convergent") for r in v]
    assert any_row["verdict"] == "no: 0 of 36 networks"
    assert rows["conventionally trained ResNets do not learn iterative convergent solutions"][0]["verdict"] == "supported"
    # Now the constrained networks pass the criterion: the claim is supported.
    conv2 = lambda arm, init, lam: 0.9 if arm == "constrained" else 0.1
    rows = by_claim(arm_verdicts(fabricate(lambda *k: 0.7, lambda *k: 0.1, conv=conv2, div=conv2)))
    assert all(r["verdict"] == "supported" for r in rows["the Lipschitz constraint makes ResNets convergent"])
    any_row, = [r for k, v in rows.items() if k.startswith("any network convergent") for r in v]
    assert any_row["verdict"] == "yes: 12 of 36 networks"


def test_conventional_training_claim_fails_when_ordinary_nets_are_recurrent():
    rec = lambda arm, init, lam: 0.7
    rows = by_claim(arm_verdicts(fabricate(lambda *k: 0.7, rec)))
    assert rows["conventionally trained ResNets do not learn iterative convergent solutions"][0]["verdict"] == \
        "contradicted"


def test_version_1_indices_are_not_judged_by_the_criterion():
    conv = lambda arm, init, lam: 0.9 if arm == "constrained" else 0.1
    rows = by_claim(arm_verdicts(fabricate(lambda *k: 0.7, lambda *k: 0.1, conv=conv, div=conv, version=1)))
    row, = rows["the Lipschitz constraint makes ResNets convergent"]
    assert row["verdict"].startswith("not judged")
    any_row, = [r for k, v in rows.items() if k.startswith("any network convergent") for r in v]
    assert any_row["verdict"] == "not judged: version-1 indices"


def test_tables_report_n_per_cell():
    results = fabricate(lambda *k: 0.7, lambda *k: 0.1, couplings=(0.0, 0.25, 0.5, 0.75, 1.0))
    assert intermediate_coupling(results) == 0.5
    table = cell_table(results)
    assert table.count("\n") == 2 + 3 * 6 - 1 and "(n=3)" in table and "0/3" in table
    assert "n" in rules_table(arm_verdicts(results)).splitlines()[0]


def test_chapter_1_orderings_on_known_answers():
    base = {("preact", "identity"): 0.80, ("original", "identity"): 0.75, ("bn_after_add", "identity"): 0.70,
            ("relu_before_add", "identity"): 0.70, ("relu_only_preact", "identity"): 0.74,
            ("original", "scaled"): 0.60, ("original", "dropout"): 0.30}
    accs = {k: [v - 0.005, v, v + 0.005] for k, v in base.items()}
    grads = {("preact", "identity"): [684, 1], ("original", "identity"): [91.8, 1],
             ("original", "scaled"): [1.7e6, 1], ("original", "dropout"): [1.27e4, 1]}
    rows = {r[0]: r[3] for r in identity_mapping_claims(accs, grads)}
    assert rows["full pre-activation beats the original unit"] == "reproduced"
    assert rows["full pre-activation is the best activation placement"] == "reproduced"
    assert rows["the identity shortcut beats every other shortcut (original unit)"] == "reproduced"
    grad_row = [v for k, v in rows.items() if k.startswith("at initialisation, pre-activation")]
    assert grad_row == ["not reproduced"]                    # 684 vs 91.8: the chapter's old summary was wrong
    # The original unit ahead of pre-activation (chapter 1's short run): not reproduced.
    accs[("original", "identity")] = [0.85, 0.855, 0.86]
    rows = {r[0]: r[3] for r in identity_mapping_claims(accs)}
    assert rows["full pre-activation beats the original unit"] == "not reproduced"
    assert rows["full pre-activation is the best activation placement"] == "not reproduced"
    # Within the seed spread: not resolved.
    noisy = {k: [v - 0.2, v, v + 0.2] for k, v in base.items()}
    rows = {r[0]: r[3] for r in identity_mapping_claims(noisy)}
    assert rows["full pre-activation beats the original unit"] == "not resolved at this scale"


def test_arms_figure_draws_both_dials():
    import matplotlib
    matplotlib.use("Agg")
    from itercourse.viz.grid_plots import arms_figure, dial_position
    results = fabricate(lambda *k: 0.7, lambda *k: 0.1)
    fig = arms_figure(results)
    assert len(fig.axes) == 8
    assert dial_position(results[0]) == 1.0 and dial_position(results[0], "effective_parameters") != 1.0


def test_curves_draw_one_line_per_run_and_name_each_arm_once():
    import matplotlib
    matplotlib.use("Agg")
    from itercourse.viz.grid_plots import plot_curves
    results = fabricate(lambda *k: 0.7, lambda *k: 0.1)
    for r in results:
        r.history = NS(train_acc=[0.3, 0.6, 0.7], test_acc=[0.2, 0.5, 0.6])
    axes = plot_curves(results)
    assert len(axes[0].lines) == len(axes[1].lines) == len(results)
    assert sorted(t.get_text() for t in axes[0].get_legend().get_texts()) == sorted(ARM_MODELS)


def test_plot_runs_by_cell_draws_one_dot_per_run_in_its_arm_colour():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import to_rgba

    from itercourse.viz.grid_plots import arm_colour, plot_runs_by_cell
    results = fabricate(lambda *k: 0.7, lambda *k: 0.1)
    results[0].indices["recurrence"] = None                  # a missing index is drawn as nothing
    ax = plot_runs_by_cell(results, "recurrence")
    ys = np.concatenate([np.ma.filled(c.get_offsets()[:, 1].astype(float), np.nan) for c in ax.collections])
    assert np.isfinite(ys).sum() == len(results) - 1
    # a slot per (init, lambda): the ordinary cell first, then identical init by lambda
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "independent\nlambda = 0", "identical\nlambda = 0", "identical\nlambda = 0.5", "identical\nlambda = 1"]
    arms = ("conventional", "norm-free", "constrained")
    for coll in ax.collections:                              # arms side by side, each in its colour
        x = float(np.ma.getdata(coll.get_offsets())[0, 0])
        k = round((x - round(x)) / 0.2) + 1                  # width 0.6 / 3 arms
        assert np.allclose(coll.get_edgecolor()[0], to_rgba(arm_colour(arms[k]), 0.8))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["conventional", "norm-free", "constrained"]
    plt.close("all")


def test_rows_and_cells_say_when_a_run_was_still_climbing():
    from itercourse.verdicts import PLATEAU_NOTE, last_gain, still_climbing
    results = fabricate(lambda *k: 0.7, lambda *k: 0.1)
    for r in results:
        r.history = NS(train_acc=[0.5, 0.9, 0.905])                 # gain 0.005: at a plateau
    slow = [r for r in results if (r.config.model.branch_init, r.config.train.identical_init) == ("zero", False)]
    slow[0].history = NS(train_acc=[0.3, 0.5, 0.55])               # gain 0.05: still climbing
    assert still_climbing(slow[0]) and not still_climbing(results[0])
    assert not still_climbing(NS(history=NS(train_acc=[0.9])))     # too short to tell
    assert last_gain(slow[0]) == pytest.approx(0.05)
    assert last_gain(slow[0], epochs=2) == pytest.approx(0.25)           # over the last two epochs
    assert math.isnan(last_gain(slow[0], epochs=3))                      # the run is too short
    with pytest.raises(ValueError, match="epochs=0"):
        last_gain(slow[0], epochs=0)
    rows = arm_verdicts(results)
    flagged = {r["comparison"] for r in rows if r["verdict"].endswith(PLATEAU_NOTE)}
    assert flagged and all("norm-free" in c or "best unconstrained" in c or "unconstrained arms" in c
                           for c in flagged)
    assert not any(r["verdict"].endswith(PLATEAU_NOTE) for r in rows if "conventional:" in r["comparison"])
    table = cell_table(results)
    line, = [ln for ln in table.splitlines() if ln.startswith("| norm-free | independent |")]
    assert line.rstrip(" |").endswith("2/3")
