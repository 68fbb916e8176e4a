"""Reporting: one spread convention, the t distribution, Welch intervals, Holm, markdown tables, chapter 2's statistics."""
import math
import re

import pytest
import torch

from itercourse.report import grid_table, holm, markdown_table, mean_spread, rank_corr, spread, t_cdf, welch_ci, welch_p


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


def test_grid_table_reads_mean_sd_n():
    results = fake_results(effect=0.6, noise=0.01)
    table = grid_table(results, metrics=("final_test_acc", "recurrence"))
    assert table.splitlines()[0] == "| constraint | coupling | test accuracy | recurrence |"
    assert "(n=2)" in table and "±" in table


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


def test_t_cdf_matches_the_tables_and_the_normal():
    for df, t in ((1, 12.706), (2, 4.303), (4, 2.776), (10, 2.228), (1000, 1.962)):
        assert t_cdf(t, df) == pytest.approx(0.975, abs=2e-5)
    assert t_cdf(0.0, 3) == 0.5 and t_cdf(-1.0, 5) == pytest.approx(0.18161, abs=1e-5)
    assert t_cdf(1.0, 5) + t_cdf(-1.0, 5) == pytest.approx(1.0)
    assert t_cdf(1.0, float("inf")) == pytest.approx(0.841345, abs=1e-6)
    assert t_cdf(2.5, 2.9411) == pytest.approx(0.95570, abs=5e-4)         # fractional df (Welch)
    with pytest.raises(ValueError, match="df"):
        t_cdf(1.0, 0)


def test_welch_p_two_sided_and_against_a_margin():
    ci = welch_ci([0.5, 0.52, 0.48], [0.6, 0.61, 0.59])
    p = welch_p(ci)
    assert 0 < p < 0.01 and p == pytest.approx(2 * t_cdf(-ci["diff"] / ci["se"], ci["df"]))
    # 95% CI below the margin <=> doubled one-sided p below 0.05
    assert ci["high"] < 0.15 and 2 * welch_p(ci, above=0.15) < 0.05
    assert ci["high"] > 0.14 and 2 * welch_p(ci, above=0.14) > 0.05
    assert math.isnan(welch_p(welch_ci([0.5], [0.6])))                    # n = 1: no test
    same = welch_ci([0.5, 0.5], [0.5, 0.5])
    assert welch_p(same) == 1.0 and welch_p(same, above=0.02) == 0.0


def test_holm_on_known_answers():
    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    out = holm([0.01, float("nan"), 0.02])
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.02)
    assert holm([]) == [] and holm([0.9, 0.9]) == [1.0, 1.0]            # capped at 1
