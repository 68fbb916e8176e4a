"""Reporting: one spread convention, markdown tables, claim verdicts (chapters 2 and 7) with known answers."""
import math
import re

import pytest
import torch

from itercourse.report import (claim_verdicts, grid_table, markdown_table, mean_spread, rank_corr,
                               reproduction_verdict, sign_test_p, spread, verdict_table)


def test_spread_is_the_sample_standard_deviation():
    assert spread([1.0, 3.0]) == pytest.approx(math.sqrt(2))
    assert math.isnan(spread([1.0])) and math.isnan(spread([]))
    assert spread([1.0, float("nan"), 3.0]) == pytest.approx(math.sqrt(2))
    assert mean_spread([0.5, 0.7], scale=100) == "60.0 ± 14.1 (n=2)"
    assert mean_spread([0.5]) == "0.5 (n=1)" and mean_spread([]) == "n/a"


def test_markdown_table_is_text_that_jupyter_renders():
    t = markdown_table(["a", "b"], [(1, 2), ("x", "y")])
    assert t == "| a | b |\n|---|---|\n| 1 | 2 |\n| x | y |"
    assert t._repr_markdown_() == str(t)


def test_markdown_table_escapes_pipes_in_headers_and_cells():
    t = markdown_table(["max |W_i - W_0|", "b"], [("x|y", "a\nb")])
    head, rule, row = t.splitlines()
    assert head == "| max \\|W_i - W_0\\| | b |" and row == "| x\\|y | a b |"
    # every row has as many unescaped pipes as the rule: the table cannot break
    n = rule.count("|")
    assert all(len(re.findall(r"(?<!\\)\|", line)) == n for line in (head, row))


def test_chapter_2_statistics():
    assert rank_corr([3, 2, 1]) == pytest.approx(-1.0) and rank_corr([1, 2, 3]) == pytest.approx(1.0)
    assert sign_test_p(0, 0) == 1.0
    assert sign_test_p(10, 0) == pytest.approx(2 / 2 ** 10)
    assert sign_test_p(5, 5) == 1.0
    assert [reproduction_verdict(v) for v in (True, False, None)] == ["reproduced", "not reproduced", "not tested"]


def fake_results(effect: float, noise: float, seeds=(0, 1)):
    """Synthetic grid results with a known answer: recurrence rises by ``effect`` from coupling 0 to 1,
    convergence by ``effect`` with the constraint, accuracy falls by ``effect`` with coupling."""
    from types import SimpleNamespace as NS
    rng = torch.Generator().manual_seed(0)
    out = []
    for seed in seeds:
        for c in (None, 0.9):
            for lam in (0.0, 0.5, 1.0):
                jitter = lambda: noise * float(torch.randn(1, generator=rng))    # noqa: E731
                cfg = NS(train=NS(coupling=lam), model=NS(spectral_coeff=c), seed=seed)
                out.append(NS(config=cfg, final_test_acc=0.5 - effect * lam + jitter(), history=NS(train_acc=[0.5]),
                              extras={}, indices={"recurrence": 0.1 + effect * lam + jitter(),
                                                  "recurrence_performance": 0.0 + effect * lam + jitter(),
                                                  "convergence": 0.2 + (effect if c else 0.0) + jitter(),
                                                  "divergence": 0.5 + jitter()}))
    return out


def test_claim_verdicts_on_grids_with_known_answers():
    clear = {(r["claim"], r["metric"]): r["verdict"] for r in claim_verdicts(fake_results(effect=0.6, noise=0.01))}
    assert clear[("coupling makes ResNets iterative", "recurrence")] == "supported"
    assert clear[("the Lipschitz constraint makes ResNets convergent", "convergence")] == "supported"
    assert clear[("the Lipschitz constraint makes ResNets convergent", "divergence")].startswith("not resolved")
    assert clear[("coupling does not improve accuracy", "final_test_acc")] == "supported (it lowered accuracy)"
    assert clear[("conventionally trained ResNets do not learn iterative solutions", "recurrence")] == "supported"
    backwards = {(r["claim"], r["metric"]): r["verdict"] for r in claim_verdicts(fake_results(effect=-0.6, noise=0.01))}
    assert backwards[("coupling makes ResNets iterative", "recurrence")] == "contradicted"
    assert backwards[("coupling does not improve accuracy", "final_test_acc")] == "contradicted"
    noisy = {(r["claim"], r["metric"]): r["verdict"] for r in claim_verdicts(fake_results(effect=0.03, noise=0.2))}
    assert noisy[("coupling makes ResNets iterative", "recurrence")].startswith("not resolved")
    assert noisy[("coupling does not improve accuracy", "final_test_acc")] == "supported (no resolved change)"


def test_grid_and_verdict_tables_read_mean_sd_n():
    results = fake_results(effect=0.6, noise=0.01)
    table = grid_table(results, metrics=("final_test_acc", "recurrence"))
    assert table.splitlines()[0] == "| constraint | coupling | test accuracy | recurrence |"
    assert "(n=2)" in table and "±" in table
    assert "**supported**" in verdict_table(claim_verdicts(results))


def test_t_quantiles_match_the_tables():
    from itercourse.report import t_quantile
    for df, t in ((1, 12.706), (2, 4.303), (4, 2.776), (10, 2.228), (1000, 1.962)):
        assert abs(t_quantile(0.975, df) - t) < 1e-3, (df, t_quantile(0.975, df))


def test_welch_ci_on_known_groups():
    from itercourse.report import welch_ci
    ci = welch_ci([0.5, 0.52, 0.48], [0.6, 0.61, 0.59])
    assert abs(ci["diff"] - 0.1) < 1e-12 and (ci["n_a"], ci["n_b"]) == (3, 3)
    # equal variances 4e-4 and 1e-4, n = 3: se = sqrt(5e-4 / 3), df = 25/9 * 2 / ... (Welch)
    se = (0.0004 / 3 + 0.0001 / 3) ** 0.5
    df = (0.0005 / 3) ** 2 / ((0.0004 / 3) ** 2 / 2 + (0.0001 / 3) ** 2 / 2)
    assert abs(ci["df"] - df) < 1e-9 and ci["low"] < 0.1 - 2 * se and ci["high"] > 0.1 + 2 * se
    assert welch_ci([0.5], [0.6])["low"] != welch_ci([0.5], [0.6])["low"]      # nan: no spread with n = 1
