"""The one verdict rule (Welch CI, Holm, minimum effect, margin, budget test) and every chapter's claims,
on fabricated results with known answers."""
import math
from types import SimpleNamespace as NS

import pytest

from itercourse.verdicts import (MARGIN_ACC, arm_verdicts, budget_rows, cell_table, claim_row, grid_verdicts,
                                 identity_mapping_claims, intermediate_coupling, judge, rules_table, split_budget)

ARM_MODELS = {"conventional": dict(branch_norm="bn", branch_init="default", spectral_coeff=None),
              "norm-free": dict(branch_norm="none", branch_init="zero", spectral_coeff=None),
              "constrained": dict(branch_norm="none", branch_init="default", spectral_coeff=0.9)}
NOISE = (-0.002, 0.0, 0.002)                   # three seeds, spread 0.002


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


def one(a, b, want="up", **kw):
    kw.setdefault("min_effect", 0.02)
    if want == "none":
        kw.setdefault("margin", MARGIN_ACC)
    return judge([claim_row("claim", "b minus a", "final_test_acc", a, b, want, **kw)])[0]


def test_a_direction_needs_the_interval_to_exclude_zero_and_the_minimum_effect():
    assert one([0.5, 0.51, 0.49], [0.6, 0.61, 0.59])["verdict"] == "supported"
    r = one([0.5, 0.51, 0.49], [0.4, 0.41, 0.39])
    assert r["verdict"] == "contradicted" and (r["n_a"], r["n_b"]) == (3, 3) and r["high"] < 0
    assert one([0.5, 0.6, 0.4], [0.55, 0.65, 0.45])["verdict"] == "not resolved at our scale"   # CI spans 0
    assert one([0.5, 0.5001, 0.4999], [0.51, 0.5101, 0.5099])["direction"] == "unresolved"   # below the minimum
    assert one([0.5], [0.9])["verdict"] == "not resolved at our scale"                       # n = 1: no interval
    assert one([], [0.9])["verdict"] == "missing runs"
    # three seeds each, one sd apart (the old noise rule passed it): p ~ 0.3, not resolved
    assert one([0.50, 0.53, 0.56], [0.53, 0.56, 0.59])["verdict"] == "not resolved at our scale"


def test_holm_makes_a_table_of_tests_one_family():
    a, b = [0.50, 0.52, 0.54, 0.51, 0.53], [0.53, 0.55, 0.57, 0.54, 0.56]       # p ~ 0.02 alone
    alone = one(a, b)
    assert alone["verdict"] == "supported" and alone["p_differs"] < 0.05
    rows = judge([claim_row("c", "x", "m", a, b, "up", min_effect=0.02) for _ in range(5)])
    assert all(r["verdict"] == "not resolved at our scale" and r["p_holm"] > 0.05 and r["tests"] == 5 for r in rows)
    # a null claim puts one test into the family: the margin test below the minimum effect
    near = judge([claim_row("c", "x", "m", [0.70, 0.701, 0.699], [0.70, 0.702, 0.698], "none", min_effect=0.02,
                            margin=0.02)] * 1 + [claim_row("c", "x", "m", a, b, "up", min_effect=0.02)])
    assert near[0]["tests"] == 2 and near[0]["verdict"].startswith("supported (a gain of +0.02")


def test_a_null_claim_needs_the_margin_excluded():
    tight = one([0.70, 0.701, 0.699], [0.70, 0.702, 0.698], "none")
    assert tight["verdict"].startswith("supported (a gain of +0.02 or more excluded)") and tight["high"] < MARGIN_ACC
    wide = one([0.6, 0.7, 0.8], [0.6, 0.7, 0.8], "none")                 # no change, but a wide interval
    assert wide["verdict"].startswith("not resolved (the 95% CI allows a gain up to +") and wide["high"] > MARGIN_ACC
    assert one([0.7, 0.71, 0.69], [0.6, 0.61, 0.59], "none")["verdict"] == "supported (it lowered accuracy)"
    assert one([0.6, 0.61, 0.59], [0.7, 0.71, 0.69], "none")["verdict"] == "contradicted (it improved)"
    with pytest.raises(ValueError, match="margin"):
        claim_row("c", "x", "m", [1, 2], [1, 2], "none", min_effect=0.02)
    with pytest.raises(ValueError, match="want"):
        claim_row("c", "x", "m", [1, 2], [1, 2], "sideways", min_effect=0.02)


def with_epochs(results, epochs, shift=0.0):
    out = []
    for r in results:
        cfg = NS(**vars(r.config))
        cfg.train = NS(**vars(r.config.train), epochs=epochs)
        out.append(NS(**{**vars(r), "config": cfg, "final_test_acc": r.final_test_acc + shift}))
    return out


def test_the_budget_test_can_fail():
    base = fabricate(lambda *k: 0.7, lambda *k: 0.1)
    ordinary = [r for r in base if not r.config.train.identical_init]
    main = with_epochs(base, 16)
    # doubling adds 0.005: the budget passes in every arm, and the accuracy rows carry no note
    rows = arm_verdicts(main, doubled=with_epochs(ordinary, 32, shift=0.005))
    budget = [r for r in rows if r["claim"].startswith("the budget suffices")]
    assert len(budget) == 3 and all(r["verdict"] == "passes" for r in budget)
    assert not any("budget" in r["verdict"] for r in rows if r["metric"] == "final_test_acc" and r not in budget)
    # doubling adds 0.05 (a cosine schedule's last epoch gains ~0 either way): it fails, and the rows say so
    rows = arm_verdicts(main, doubled=with_epochs(ordinary, 32, shift=0.05))
    assert all(r["verdict"].startswith("fails") for r in rows if r["claim"].startswith("the budget suffices"))
    acc_rows = [r for r in rows if r["metric"] == "final_test_acc" and not r["claim"].startswith("the budget")]
    assert acc_rows and all("budget test failed" in r["verdict"] for r in acc_rows)
    # no doubled runs: untested, said on every accuracy row
    assert all("budget untested" in r["verdict"] for r in arm_verdicts(main) if r["metric"] == "final_test_acc"
               and r["want"] != "threshold")
    both, doubled = split_budget(main + with_epochs(ordinary, 32))
    assert len(both) == len(main) and len(doubled) == len(ordinary)
    with pytest.raises(ValueError, match="epochs"):
        split_budget(main + with_epochs(ordinary, 20))
    assert budget_rows(main, []) == []


def test_grid_verdicts_on_grids_with_known_answers():
    from test_report import fake_results
    clear_runs = fake_results(effect=0.6, noise=0.01)
    clear = {(r["claim"], r["metric"]): r["verdict"].split(";")[0] for r in grid_verdicts(clear_runs)}
    assert clear[("coupling makes ResNets iterative", "recurrence")] == "supported"
    assert clear[("the Lipschitz constraint makes ResNets convergent", "convergence")].startswith("not judged")
    for r in clear_runs:                                         # the same runs with version-2 indices
        r.indices["indices_version"] = 2
    clear = {(r["claim"], r["metric"]): r["verdict"].split(";")[0] for r in grid_verdicts(clear_runs)}
    assert clear[("the Lipschitz constraint makes ResNets convergent", "convergence")] == "supported"
    assert clear[("the Lipschitz constraint makes ResNets convergent", "divergence")].startswith("not resolved")
    assert clear[("coupling does not improve accuracy", "final_test_acc")] == "supported (it lowered accuracy)"
    assert clear[("conventionally trained ResNets do not learn iterative solutions", "recurrence")] == "supported"
    back = {(r["claim"], r["metric"]): r["verdict"].split(";")[0]
            for r in grid_verdicts(fake_results(effect=-0.6, noise=0.01))}
    assert back[("coupling makes ResNets iterative", "recurrence")] == "contradicted"
    assert back[("coupling does not improve accuracy", "final_test_acc")] == "contradicted (it improved)"
    noisy = {(r["claim"], r["metric"]): r["verdict"].split(";")[0]
             for r in grid_verdicts(fake_results(effect=0.03, noise=0.2))}
    assert noisy[("coupling makes ResNets iterative", "recurrence")].startswith("not resolved")
    assert noisy[("coupling does not improve accuracy", "final_test_acc")].startswith(
        "not resolved (the 95% CI allows a gain up to")
    table = rules_table(grid_verdicts(fake_results(effect=0.6, noise=0.01)))
    assert "difference [95% CI]" in table and "p (Holm)" in table and "**supported**" in table


def test_constraint_is_compared_with_the_best_unconstrained_arm():
    # conventional 0.80, norm-free 0.70, constrained 0.75: above the weak arm, below the best one
    acc = lambda arm, init, lam: {"conventional": 0.80, "norm-free": 0.70, "constrained": 0.75}[arm]
    rows = by_claim(arm_verdicts(fabricate(acc, lambda *k: 0.1)))
    row, = rows["the Lipschitz constraint does not improve accuracy"]
    assert "conventional" in row["comparison"]
    assert row["verdict"].split(";")[0] == "supported (it lowered accuracy)" and row["diff"] == pytest.approx(-0.05)
    # now the constraint beats every unconstrained arm
    acc2 = lambda arm, init, lam: {"conventional": 0.70, "norm-free": 0.72, "constrained": 0.80}[arm]
    row, = by_claim(arm_verdicts(fabricate(acc2, lambda *k: 0.1)))["the Lipschitz constraint does not improve accuracy"]
    assert "norm-free" in row["comparison"] and row["verdict"].split(";")[0] == "contradicted (it improved)"


def test_recurrence_verdict_rests_on_intermediate_coupling_not_on_lambda_one():
    # Recurrence is high only at lambda = 1 (by construction); intermediate coupling changes nothing.
    rec = lambda arm, init, lam: 0.95 if lam == 1.0 else 0.1
    rows = by_claim(arm_verdicts(fabricate(lambda *k: 0.7, rec)))
    iterative = rows["coupling makes ResNets iterative"]
    assert len(iterative) == 3 and all("lambda 0.5" in r["comparison"] for r in iterative)
    assert all(r["verdict"].split(";")[0] == "not resolved at our scale" for r in iterative)
    # Intermediate coupling raises recurrence in every arm: supported.
    rec2 = lambda arm, init, lam: 0.1 + 0.6 * lam
    assert all(r["verdict"].split(";")[0] == "supported" for r in
               by_claim(arm_verdicts(fabricate(lambda *k: 0.7, rec2)))["coupling makes ResNets iterative"])


def test_initialisation_confound_is_its_own_row():
    # Identical init alone raises recurrence; coupling adds nothing on top of it.
    rec = lambda arm, init, lam: 0.6 if init == "identical" else 0.1
    rows = by_claim(arm_verdicts(fabricate(lambda *k: 0.7, rec)))
    assert all(r["verdict"].split(";")[0] == "supported" for r in rows["(confound) identical initialisation alone raises recurrence"])
    assert all(r["verdict"].split(";")[0] == "not resolved at our scale" for r in rows["coupling makes ResNets iterative"])


def test_convergence_is_a_threshold_not_a_direction():
    # The constraint raises C and D a lot, but no network passes (rate 0.5 is fast enough, D = 0.5 is not).
    conv = lambda arm, init, lam: 0.5 if arm == "constrained" else 0.1
    rows = by_claim(arm_verdicts(fabricate(lambda *k: 0.7, lambda *k: 0.1, conv=conv, div=conv)))
    for r in rows["the Lipschitz constraint makes ResNets convergent"]:
        assert r["direction"] == "up" and r["verdict"].split(";")[0].startswith("direction only: 0 of 3")
    any_row, = [r for k, v in rows.items() if k.startswith("any network convergent") for r in v]
    assert any_row["verdict"].split(";")[0] == "no: 0 of 36 networks"
    assert rows["conventionally trained ResNets do not learn iterative convergent solutions"][0]["verdict"].split(";")[0] == "supported"
    # Now the constrained networks pass the criterion: the claim is supported.
    conv2 = lambda arm, init, lam: 0.9 if arm == "constrained" else 0.1
    rows = by_claim(arm_verdicts(fabricate(lambda *k: 0.7, lambda *k: 0.1, conv=conv2, div=conv2)))
    assert all(r["verdict"].split(";")[0] == "supported" for r in rows["the Lipschitz constraint makes ResNets convergent"])
    any_row, = [r for k, v in rows.items() if k.startswith("any network convergent") for r in v]
    assert any_row["verdict"].split(";")[0] == "yes: 12 of 36 networks"


def test_conventional_training_claim_fails_when_ordinary_nets_are_recurrent():
    rec = lambda arm, init, lam: 0.7
    rows = by_claim(arm_verdicts(fabricate(lambda *k: 0.7, rec)))
    assert rows["conventionally trained ResNets do not learn iterative convergent solutions"][0]["verdict"].split(";")[0] == \
        "contradicted"


def test_version_1_indices_are_not_judged_by_the_criterion():
    conv = lambda arm, init, lam: 0.9 if arm == "constrained" else 0.1
    rows = by_claim(arm_verdicts(fabricate(lambda *k: 0.7, lambda *k: 0.1, conv=conv, div=conv, version=1)))
    row, = rows["the Lipschitz constraint makes ResNets convergent"]
    assert row["verdict"].split(";")[0].startswith("not judged")
    any_row, = [r for k, v in rows.items() if k.startswith("any network convergent") for r in v]
    assert any_row["verdict"].split(";")[0] == "not judged: version-1 indices"


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
    grad_row = [v for k, v in rows.items() if "at initialisation, pre-activation" in k]
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
        "indep.\nλ = 0", "ident.\nλ = 0", "ident.\nλ = 0.5", "ident.\nλ = 1"]
    arms = ("conventional", "norm-free", "constrained")
    for coll in ax.collections:                              # arms side by side, each in its colour
        x = float(np.ma.getdata(coll.get_offsets())[0, 0])
        k = round((x - round(x)) / 0.2) + 1                  # width 0.6 / 3 arms
        assert np.allclose(coll.get_edgecolor()[0], to_rgba(arm_colour(arms[k]), 0.8))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["conventional", "norm-free", "constrained"]
    plt.close("all")


def test_cells_show_the_last_epoch_gain_descriptively():
    from itercourse.verdicts import last_gain, still_climbing
    results = fabricate(lambda *k: 0.7, lambda *k: 0.1)
    for r in results:
        r.history = NS(train_acc=[0.5, 0.9, 0.905])
    assert not still_climbing(results[0]) and last_gain(results[0]) == pytest.approx(0.005)
    assert last_gain(results[0], epochs=2) == pytest.approx(0.405)
    assert math.isnan(last_gain(results[0], epochs=3))
    with pytest.raises(ValueError, match="epochs=0"):
        last_gain(results[0], epochs=0)
    assert "+0.005" in cell_table(results) and "last-epoch gain" in cell_table(results)


def test_a_null_claim_can_exclude_the_margin_alone_but_not_after_holm():
    a, b = [0.80, 0.83, 0.86], [0.70, 0.73, 0.76]                  # 95% CI of b - a well below +0.02
    alone = one(a, b, "none")
    assert alone["verdict"] == "supported (it lowered accuracy)" and alone["tests"] == 1
    noisy = [claim_row("c", "x", "m", [0.5, 0.6, 0.7], [0.5, 0.6, 0.7], "up", min_effect=0.02) for _ in range(30)]
    rows = judge([claim_row("c", "x", "m", a, b, "none", min_effect=0.02, margin=0.02)] + noisy)
    assert rows[0]["high"] < 0.02 and rows[0]["p_holm"] > 0.05 and rows[0]["tests"] == 31
    assert rows[0]["verdict"].startswith("not resolved (the 95% CI excludes a gain of +0.02, but not after Holm")


def test_a_grid_of_ordinary_and_recurrent_cells_compares_them_and_says_both_factors_changed():
    results = [r for r in fabricate(lambda *k: 0.9, lambda *k: 0.1)
               if (r.config.train.identical_init, r.config.train.coupling) in ((False, 0.0), (True, 1.0))]
    rows = by_claim(arm_verdicts(results))
    assert "coupling does not improve accuracy" not in rows                 # no identical-init lambda 0 cell
    recurrent = rows["a recurrent ResNet is not more accurate than an ordinary one"]
    assert len(recurrent) == 3 and all("change together" in r["comparison"] for r in recurrent)
    assert all(r["verdict"].startswith("supported (a gain of +0.02") for r in recurrent)
    missing = judge([claim_row("c", "x", "m", [], [0.5, 0.6], "none", min_effect=0.02, margin=0.02)])[0]
    assert missing["verdict"] == "missing runs" and math.isnan(missing["p_holm"])


def fake_refinement(cos, ratio, cost, border=(0.4, 0.5), growth=(100.0, 3.0)):
    """A refinement_report-shaped dict of one network with two stages of two blocks each."""
    from itercourse.refinement import PerBlock
    per_block = lambda v: PerBlock(tuple(v), (0, 0, 1, 1), (0, 1, 0, 1))   # noqa: E731
    return {"alignment": per_block(cos), "norm_ratio": per_block(ratio),
            "drop": NS(acc_cost=per_block(cost), acc=per_block(cost)),
            "unroll": [NS(extra_steps=(0, 20), state_norm=(1.0, g)) for g in growth],
            "borderline": [None, NS(acc_before=border[0], acc_after=border[1], n_borderline=20)]}


def test_chapter_2_claims_follow_the_rule_on_known_answers():
    from itercourse.verdicts import LATER_BLOCKS_UNTESTABLE, refinement_claims, reproduction_verdict
    nets = [fake_refinement(cos=(-0.01 + e, 0.0, -0.15 + e, -0.2), ratio=(2.0 + e, 1.5, 1.0, 0.6 + e),
                            cost=(0.9 + e, 0.5, 0.3, 0.2), border=(0.40 + e, 0.55))
            for e in (-0.004, 0.0, 0.004)]
    rows = {r[0]: r for r in refinement_claims(nets)}
    assert len(rows) == 8
    assert rows["cosine negative for every block (threshold: every network)"][3] == "not reproduced"   # 0.0 block
    cos = rows["cosine more negative in the last stage than in the first"]
    assert cos[3] == "reproduced" and "n 3 networks" in cos[2] and "Holm, 4 tests" in cos[2]
    assert rows["norm ratio largest at the first block"][3] == "reproduced"
    assert rows["dropping the first block costs the most accuracy"][3] == "reproduced"
    assert rows["dropping a later block costs little"][3] == LATER_BLOCKS_UNTESTABLE
    assert rows["scaled unrolling improves borderline examples"][3] == "reproduced"
    # the same claims on networks whose pattern is reversed, or lost in the noise
    flipped = [fake_refinement(cos=(-0.2 + e, 0.0, -0.01, 0.0), ratio=(0.6, 1.5, 1.0, 2.0 + e),
                               cost=(0.3, 0.9 + e, 0.3, 0.2), border=(0.55, 0.40 + e)) for e in (-0.004, 0.0, 0.004)]
    rows = {r[0]: r[3] for r in refinement_claims(flipped)}
    assert rows["cosine more negative in the last stage than in the first"] == "not reproduced"
    assert rows["scaled unrolling improves borderline examples"] == "not reproduced"
    noisy = [fake_refinement(cos=(0.0, 0.0, e, 0.0), ratio=(1.0, 1.0, 1.0, 1.0 + e), cost=(0.5 + e, 0.5, 0.5, 0.5),
                             border=(0.5, 0.5 + e)) for e in (-0.3, 0.0, 0.3)]
    rows = {r[0]: r[3] for r in refinement_claims(noisy)}
    assert rows["cosine more negative in the last stage than in the first"] == "not resolved at this scale"
    assert [reproduction_verdict(v) for v in (True, False, None)] == ["reproduced", "not reproduced", "not tested"]


def ordinary_runs(means, seeds=5, epochs=32):
    """Ordinary cells (independent init, lambda 0) of the named arms, ``means``: {arm: accuracy}."""
    models = {**ARM_MODELS, "constrained, zero init": dict(branch_norm="none", branch_init="zero", spectral_coeff=0.9)}
    out = []
    for arm, acc in means.items():
        for seed in range(seeds):
            e = 0.002 * (seed - (seeds - 1) / 2)
            cfg = NS(model=NS(**models[arm]), train=NS(coupling=0.0, identical_init=False, epochs=epochs), seed=seed)
            out.append(NS(config=cfg, final_test_acc=acc + e, history=NS(train_acc=[0.9]), extras={},
                          indices={"recurrence": 0.1 + e, "convergence": 0.1 + e, "divergence": 0.5 + e,
                                   "indices_version": 2, "rate": 0.9 - e}, meta={}))
    return out


def test_the_true_twin_isolates_the_bound_and_the_gap_decomposes():
    from itercourse.verdicts import accuracy_decomposition, decomposition_table
    runs = ordinary_runs({"conventional": 0.86, "norm-free": 0.80, "constrained": 0.70,
                          "constrained, zero init": 0.79})
    rows = by_claim(arm_verdicts(runs))
    alone = rows["the Lipschitz constraint alone does not improve accuracy"][0]
    assert alone["n_a"] == alone["n_b"] == 5 and alone["verdict"].startswith("supported")
    assert "true" not in alone["comparison"] and "constrained, zero init minus norm-free" in alone["comparison"]
    conv = rows["the Lipschitz constraint makes ResNets convergent"]
    assert len(conv) == 4 and {r["bound_arm"] for r in conv} == {"constrained", "constrained, zero init"}
    steps = {r["step"]: r for r in accuracy_decomposition(runs)}
    assert steps["removing batch norm (with zero init and its own rate)"]["diff"] == pytest.approx(-0.06)
    assert steps["adding the bound"]["diff"] == pytest.approx(-0.01)
    assert steps["both together"]["diff"] == pytest.approx(
        steps["removing batch norm (with zero init and its own rate)"]["diff"] + steps["adding the bound"]["diff"])
    assert steps["default instead of zero init (constrained arm)"]["diff"] == pytest.approx(-0.09)
    assert "5 vs 5" in decomposition_table(list(steps.values()))
    # without the twin there is no such row and no such step
    plain = ordinary_runs({"conventional": 0.86, "norm-free": 0.80, "constrained": 0.70})
    assert "the Lipschitz constraint alone does not improve accuracy" not in by_claim(arm_verdicts(plain))
    assert [r["step"] for r in accuracy_decomposition(plain)] == ["removing batch norm (with zero init and its own rate)"]


def test_the_doubled_budget_and_the_twin_enter_the_arms_table_together():
    runs = ordinary_runs({"conventional": 0.86, "norm-free": 0.80, "constrained, zero init": 0.79})
    doubled = ordinary_runs({"conventional": 0.87, "norm-free": 0.83, "constrained, zero init": 0.80}, seeds=3,
                            epochs=64)
    main, twice = split_budget(runs + doubled)
    budget = {r["arm"]: r for r in arm_verdicts(main, doubled=twice) if r["want"] == "threshold" and "arm" in r}
    assert budget["conventional"]["passes"] and budget["constrained, zero init"]["passes"]
    assert not budget["norm-free"]["passes"]                        # +0.03 on doubling
    alone = by_claim(arm_verdicts(main, doubled=twice))["the Lipschitz constraint alone does not improve accuracy"]
    assert "budget test failed or missing for norm-free" in alone[0]["verdict"]


def test_an_arm_without_coupled_cells_gets_no_coupling_rows():
    """The true twin has only ordinary cells: no coupling or recurrence row may ask for its coupled cells."""
    grid = fabricate(lambda *k: 0.8, lambda *k: 0.2)
    grid += ordinary_runs({"constrained, zero init": 0.79}, seeds=3)
    rows = arm_verdicts(grid)
    assert not [r["comparison"] for r in rows if "constrained, zero init: lambda" in r["comparison"]]
    assert all(r["verdict"] != "missing runs" for r in rows)


def test_the_budget_curve_draws_a_line_per_arm_through_the_means():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from itercourse.viz.grid_plots import plot_budget_curve
    runs = ordinary_runs({"conventional": 0.86, "constrained": 0.70}, seeds=2, epochs=16)
    runs += ordinary_runs({"conventional": 0.87, "constrained": 0.78}, seeds=2, epochs=32)
    ax = plot_budget_curve(runs)
    lines = {l.get_label(): l for l in ax.get_lines()}
    assert set(lines) == {"conventional", "constrained"}
    assert list(lines["constrained"].get_xdata()) == [16, 32]
    assert np.allclose(lines["constrained"].get_ydata(), [0.70, 0.78])
    assert sum(len(c.get_offsets()) for c in ax.collections) == len(runs)
    plt.close("all")
