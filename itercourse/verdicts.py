"""Every chapter's verdicts on the papers' claims, under one rule (chapters 1, 2, 6, 7 and 8).

**The rule.** A claim compares two groups of runs, each the seeds of one cell:
``diff = mean(B) - mean(A)`` with its Welch 95% confidence interval and ``n``
per group (:func:`difference`). Every row says which hypothesis it tests and
gets a Welch p-value; the p-values of one table are one family, adjusted with
Holm's step-down method (:func:`itercourse.report.holm`), so a table of 14
rows does not get 14 chances at a false "supported".

- *A direction* ("coupling raises recurrence", "A beats B") is **resolved**
  when its Holm-adjusted two-sided p is below ``ALPHA`` (then the 95% CI
  excludes 0 too) *and* ``|diff|`` is at least the minimum effect
  (``MIN_EFFECT_ACC`` = 0.02 for accuracy, ``MIN_EFFECT_INDEX`` = 0.05 for the
  indices). It is then ``supported`` or ``contradicted`` by its sign, else
  ``not resolved``.
- *A null claim* ("X does not improve accuracy") is **supported** only when an
  improvement of ``MARGIN_ACC`` (+0.02, fixed before any run) or more is
  excluded: the one-sided Welch test of ``diff >= margin`` (its p doubled, so
  that before the adjustment p < 0.05 exactly when the 95% CI's upper end is
  below the margin) is significant after Holm. It is ``contradicted`` by a
  resolved improvement, and otherwise ``not resolved``: the row then says how
  large a gain its CI still allows. "No resolved change" is never support.
  A row puts one p-value into the family: the margin test, or, when the
  observed gain already reaches the minimum effect (so no margin can be
  excluded), the test of that gain.
- *The budget test* replaces a plateau rule that a cosine schedule always
  passes: where a grid holds each arm's ordinary cell also at twice the
  epochs (:func:`split_budget`), an accuracy verdict on an arm holds only if
  doubling moved that arm's mean test accuracy by less than the minimum effect
  (:func:`budget_rows`); otherwise the row says the budget test failed.
  Without doubled runs the rows say the budget is untested.

Other rows of the arms tables:

- **Accuracy against the best unconstrained arm.** "The constraint does not
  improve accuracy" compares the constrained arm's ordinary cell with the
  *best* unconstrained arm's ordinary cell (highest mean test accuracy).
- **Recurrence from intermediate coupling.** "Coupling makes ResNets
  iterative" compares identical-init lambda = 0 with identical-init
  intermediate lambda (the one nearest 0.5, strictly between 0 and 1), per
  arm; lambda = 1 is recurrent by construction and is not evidence. Confound
  rows compare independent with identical initialisation at lambda = 0, for
  recurrence and for accuracy.
- **Convergence as a threshold.** A network is convergent only if
  :func:`itercourse.indices.is_convergent` (late-step rate <= 0.95 and
  D >= 0.8 in every stage, the indices of version 2). The constraint "makes
  ResNets convergent" is supported only if the indices rise (the rule above)
  *and* most constrained runs pass; a rise without passing networks is
  "direction only". Results with version-1 indices are not judged.

Cells are (arm, initialisation, coupling). Arms (:func:`arm_of`):
``conventional`` (BN in the branches), ``norm-free`` (no BN, zero-initialised
branches), ``constrained`` (no BN, Lipschitz bound c on each branch, default
initialisation), ``constrained, zero init`` (the norm-free arm plus the bound
and nothing else: its true twin) and ``no-BN, He init`` (the previous grid's
badly conditioned baseline).
"""
from __future__ import annotations

import math
import statistics
from collections import Counter

import numpy as np

from .errors import check_choice, check_int
from .indices import CONVERGENT_D, INDICES_VERSION, RATE_MAX, is_convergent
from .report import (constraint_of, coupling_of, holm, markdown_table, mean_spread, metric_of, rank_corr, t_quantile,
                     welch_ci, welch_p)

ARMS = ("conventional", "norm-free", "constrained", "no-BN, He init", "constrained, zero init")
TRUE_TWIN_ARM = "constrained, zero init"   # the norm-free arm plus the bound and nothing else
CONSTRAINED_ARMS = ("constrained", TRUE_TWIN_ARM)
ALPHA = 0.05                 # family-wise error rate of one table (Holm)
MIN_EFFECT_ACC = 0.02        # accuracy: a direction needs at least 2 points
MIN_EFFECT_INDEX = 0.05      # indices (range about 0..1)
MARGIN_ACC = 0.02            # "does not improve accuracy": a gain of 2 points or more must be excluded
PLATEAU_GAIN = 0.015         # descriptive only (chapters 1 and 2 print it): last-epoch gain of a flat curve


# ---------------------------------------------------------------- cells

def arm_of(r) -> str:
    """The arm of a result or of an experiment config (see the module docstring)."""
    m = getattr(r, "config", r).model
    if m.spectral_coeff is not None:
        return "constrained, zero init" if getattr(m, "branch_init", "default") == "zero" else "constrained"
    if m.branch_norm == "bn":
        return "conventional"
    return "norm-free" if getattr(m, "branch_init", "default") == "zero" else "no-BN, He init"


def init_of(r) -> str:
    """``"identical"`` or ``"independent"``: how the blocks of a stage started."""
    return "identical" if r.config.train.identical_init is True else "independent"


def coupling_value(r) -> float:
    return float(r.config.train.coupling)


def cell_of(r) -> tuple:
    """``(arm, init, coupling)``."""
    return arm_of(r), init_of(r), coupling_value(r)


def last_gain(r, epochs: int = 1) -> float:
    """Training accuracy gained over the last ``epochs`` epochs (nan when the run has no more epochs than that).

    Descriptive: under a cosine schedule the last epochs run at a learning rate near 0, so a small
    last gain does not show a plateau; verdicts use the budget test (:func:`budget_rows`) instead.
    """
    check_int("epochs", epochs, minimum=1)
    acc = r.history.train_acc
    return float(acc[-1] - acc[-1 - epochs]) if len(acc) > epochs else float("nan")


def still_climbing(r) -> bool:
    """The last epoch added at least ``PLATEAU_GAIN`` of training accuracy (descriptive; see :func:`last_gain`)."""
    return last_gain(r) >= PLATEAU_GAIN


def values(results, metric: str, cell: tuple) -> list:
    """Finite values of ``metric`` over the seeds of ``cell``."""
    out = [metric_of(r, metric) for r in results if cell_of(r) == cell]
    return [v for v in out if math.isfinite(v)]


# ---------------------------------------------------------------- the rule

def difference(a, b) -> dict:
    """``mean(b) - mean(a)`` over seeds with its Welch 95% CI, ``se``, ``df`` and ``n`` per group."""
    a = [float(v) for v in a if math.isfinite(float(v))]
    b = [float(v) for v in b if math.isfinite(float(v))]
    out = welch_ci(a, b)
    out.setdefault("se", float("nan"))
    if a and b:
        out.update(mean_a=statistics.fmean(a), mean_b=statistics.fmean(b))
    return out


def claim_row(claim: str, comparison: str, metric: str, a, b, want: str, *, min_effect: float,
              margin: float | None = None, note: str = "") -> dict:
    """One comparison, B minus A, of a claim that wants ``"up"``, ``"down"`` or ``"none"`` (no improvement).

    The row holds the difference, CI, n and its raw p-values; :func:`judge` gives the verdict once the
    table's rows are all known (the Holm family). ``"none"`` needs ``margin``.
    """
    check_choice("want", want, ("up", "down", "none"))
    if want == "none" and margin is None:
        raise ValueError("want='none' (a null claim) needs margin=, the gain it must exclude")
    d = difference(a, b)
    row = {"claim": claim, "comparison": comparison, "metric": metric, "want": want, "min_effect": min_effect,
           "margin": margin, "note": note, **d, "p_differs": welch_p(d), "direction": "threshold"}
    p_margin = 2 * welch_p(d, above=margin) if want == "none" else float("nan")
    row["p_below_margin"] = min(1.0, p_margin) if math.isfinite(p_margin) else float("nan")
    return row


def threshold_row(claim: str, comparison: str, metric: str, n: int, verdict: str) -> dict:
    """A row that counts networks against a threshold (no difference, no p-value)."""
    nan = float("nan")
    return {"claim": claim, "comparison": comparison, "metric": metric, "want": "threshold", "n_a": n, "n_b": 0,
            "diff": nan, "low": nan, "high": nan, "p_differs": nan, "p_below_margin": nan, "verdict": verdict,
            "direction": "threshold", "note": ""}


def _decisive_p(r: dict) -> float:
    """The one p-value a row puts into its table's Holm family.

    A direction row: the two-sided test of ``diff = 0``. A null claim: the test that its observed
    difference can still decide. Below the minimum effect no improvement can be resolved, so it is the
    margin test (is a gain of ``margin`` excluded?); at or above it the margin test cannot succeed, so
    it is the test of the improvement. One hypothesis per row either way.
    """
    if r["want"] != "none":
        return r["p_differs"]
    return r["p_differs"] if r["diff"] >= r["min_effect"] else r["p_below_margin"]


def judge(rows: list, *, alpha: float = ALPHA) -> list:
    """Verdicts for a table's rows under the rule (module docstring), Holm-adjusted over its rows.

    Every row that compares two groups puts one p-value into the family (:func:`_decisive_p`); adds
    ``p_holm`` (that p adjusted), ``tests`` (the family's size), ``direction`` (``up``, ``down``,
    ``unresolved`` or ``missing``) and ``verdict``. Threshold rows are left as they are.
    """
    tested = [i for i, r in enumerate(rows) if r["want"] != "threshold"]
    adjusted = dict(zip(tested, holm([_decisive_p(rows[i]) for i in tested])))
    family = sum(1 for i in tested if math.isfinite(adjusted[i]))
    for i in tested:
        r = rows[i]
        p = adjusted[i]
        r.update(p_holm=p, tests=family)
        if not r["n_a"] or not r["n_b"]:
            r.update(direction="missing", verdict="missing runs" + r["note"])
            continue
        resolved = p < alpha and abs(r["diff"]) >= r["min_effect"]
        if r["want"] == "none":
            improved = r["diff"] >= r["min_effect"] and p < alpha
            lowered = r["high"] < 0 and -r["diff"] >= r["min_effect"]     # descriptive: the 95% CI below 0
            r["direction"] = "up" if improved else "down" if lowered else "unresolved"
            if improved:
                verdict = "contradicted (it improved)"
            elif p < alpha:
                verdict = ("supported (it lowered accuracy)" if lowered else
                           f"supported (a gain of {r['margin']:+.2g} or more excluded)")
            elif not math.isfinite(r["high"]):
                verdict = "not resolved: too few seeds for an interval"
            elif r["high"] < r["margin"]:
                verdict = (f"not resolved (the 95% CI excludes a gain of {r['margin']:+.2g}, but not after "
                           f"Holm's adjustment for {family} tests)")
            else:
                verdict = f"not resolved (the 95% CI allows a gain up to {r['high']:+.3f})"
        else:
            r["direction"] = ("up" if r["diff"] > 0 else "down") if resolved else "unresolved"
            verdict = ("not resolved at our scale" if not resolved else
                       "supported" if r["direction"] == r["want"] else "contradicted")
        r["verdict"] = verdict + r["note"]
    return rows


def split_budget(results) -> tuple:
    """``(main, doubled)``: the runs at the grid's own number of epochs, and those at twice it (the budget test).

    The main budget is the smallest number of epochs among ``results``; runs at exactly twice it are the
    doubled twins; any other budget is a ValueError (a grid has at most these two).
    """
    epochs = Counter(r.config.train.epochs for r in results)
    if not epochs:
        return [], []
    base = min(epochs)
    other = sorted(set(epochs) - {base, 2 * base})
    if other:
        raise ValueError(f"results train for {sorted(epochs)} epochs; a grid holds its budget and twice it "
                         f"({base} and {2 * base}), not {other}")
    return ([r for r in results if r.config.train.epochs == base],
            [r for r in results if r.config.train.epochs == 2 * base])


def budget_rows(results, doubled, *, min_effect: float = MIN_EFFECT_ACC) -> list:
    """Per arm with doubled runs: the ordinary cell's test accuracy at twice the epochs minus at the budget.

    The budget passes for an arm when ``|diff| < min_effect`` (and both groups have runs); a row's
    ``passes`` says so. Rows for the table, with CI and n (no hypothesis test: the rule is on the size).
    """
    rows = []
    for arm in [a for a in ARMS if any(arm_of(r) == a for r in doubled)]:
        cell = (arm, "independent", 0.0)
        row = claim_row("the budget suffices (doubling moves accuracy less than the minimum effect)",
                        f"test accuracy, {arm}, ordinary cell: twice the epochs minus the budget", "final_test_acc",
                        values(results, "final_test_acc", cell), values(doubled, "final_test_acc", cell), "up",
                        min_effect=min_effect)
        passes = bool(row["n_a"] and row["n_b"]) and abs(row["diff"]) < min_effect
        row.update(want="threshold", arm=arm, passes=passes, p_differs=float("nan"),
                   verdict=("passes" if passes else "missing runs" if not (row["n_a"] and row["n_b"]) else
                            "fails: train longer before judging this arm's accuracy"))
        rows.append(row)
    return rows


BUDGET_UNTESTED = "; budget untested (no doubled runs)"


def _budget_note(budget: list, arms) -> str:
    """The note an accuracy row gets from the budget test of the arms it compares."""
    if not budget:
        return BUDGET_UNTESTED
    tested = {b["arm"]: b["passes"] for b in budget}
    failing = [a for a in arms if not tested.get(a, False)]
    return f"; budget test failed or missing for {', '.join(failing)}" if failing else ""


def intermediate_coupling(results) -> float | None:
    """The identical-init coupling strictly between 0 and 1 nearest 0.5, or ``None``."""
    mids = sorted({coupling_value(r) for r in results if init_of(r) == "identical" and 0 < coupling_value(r) < 1})
    return min(mids, key=lambda v: (abs(v - 0.5), v)) if mids else None


def calibrated(results) -> bool:
    """True when every result carries the recalibrated indices (version 2): only then does the criterion apply."""
    return all(r.indices.get("indices_version", 1) >= INDICES_VERSION for r in results)


def _count_text(count: tuple) -> str:
    k, n = count
    return f"not judged/{n}" if k is None else f"{k}/{n}"


def convergent_count(results, cell=None) -> tuple:
    """``(passing, total)`` networks by the criterion, in ``cell`` (or all); passing is ``None`` for
    results measured with the version-1 indices, which the criterion cannot judge."""
    rs = [r for r in results if cell is None or cell_of(r) == cell]
    if not calibrated(rs):
        return None, len(rs)
    return sum(is_convergent(r.indices) for r in rs), len(rs)


def mean_ci(vals) -> tuple:
    """Mean of ``vals`` with its one-sample t 95% interval (nan interval below two values)."""
    v = [float(x) for x in vals if math.isfinite(float(x))]
    if not v:
        return float("nan"), float("nan"), float("nan")
    m = statistics.fmean(v)
    if len(v) < 2:
        return m, float("nan"), float("nan")
    half = t_quantile(0.975, len(v) - 1) * statistics.stdev(v) / math.sqrt(len(v))
    return m, m - half, m + half


# ---------------------------------------------------------------- Lippl et al.'s claims, arms grids

def arm_verdicts(results, *, doubled=(), constrained: str = "constrained", min_effect_acc: float = MIN_EFFECT_ACC,
                 min_effect_index: float = MIN_EFFECT_INDEX, margin_acc: float = MARGIN_ACC) -> list[dict]:
    """A row per claim of Lippl et al. under the rule, judged as one Holm family; each row has its groups,
    difference, 95% CI, n and verdict. ``doubled``: the ordinary cells at twice the epochs (the budget test,
    whose rows come first; see :func:`split_budget`)."""
    rows = []
    arms = [a for a in ARMS if any(arm_of(r) == a for r in results)]
    free = [a for a in arms if a not in CONSTRAINED_ARMS]
    mid = intermediate_coupling(results)
    budget = budget_rows(results, list(doubled), min_effect=min_effect_acc)

    def add(claim, comparison, metric, cell_a, cell_b, want, min_effect, margin=None, note=""):
        if metric == "final_test_acc":
            note += _budget_note(budget, sorted({cell_a[0], cell_b[0]}, key=ARMS.index))
        rows.append(claim_row(claim, comparison, metric, values(results, metric, cell_a),
                              values(results, metric, cell_b), want, min_effect=min_effect, margin=margin,
                              note=note))

    ordinary = {a: values(results, "final_test_acc", (a, "independent", 0.0)) for a in arms}
    best = max((a for a in free if ordinary[a]), key=lambda a: np.mean(ordinary[a]), default=None)
    if best is not None and constrained in arms:
        add("the Lipschitz constraint does not improve accuracy",
            f"test accuracy, {constrained} minus the best unconstrained arm ({best}); ordinary cells",
            "final_test_acc", (best, "independent", 0.0), (constrained, "independent", 0.0), "none",
            min_effect_acc, margin_acc)
    has = lambda cell: any(cell_of(r) == cell for r in results)     # noqa: E731
    alone = TRUE_TWIN_ARM in arms and "norm-free" in arms and constrained != TRUE_TWIN_ARM
    if alone:
        add("the Lipschitz constraint alone does not improve accuracy",
            f"test accuracy, {TRUE_TWIN_ARM} minus norm-free (one factor: the bound); ordinary cells",
            "final_test_acc", ("norm-free", "independent", 0.0), (TRUE_TWIN_ARM, "independent", 0.0), "none",
            min_effect_acc, margin_acc)
    for a in arms:
        for lam in [v for v in (mid, 1.0) if v is not None and has((a, "identical", v))]:
            if has((a, "identical", 0.0)):      # coupling alone: both sides from identical initial blocks
                add("coupling does not improve accuracy", f"test accuracy, {a}: lambda {lam:g} minus 0, identical "
                    "init", "final_test_acc", (a, "identical", 0.0), (a, "identical", lam), "none", min_effect_acc,
                    margin_acc)
            elif lam == 1.0 and has((a, "independent", 0.0)):     # a grid of ordinary and recurrent cells only
                add("a recurrent ResNet is not more accurate than an ordinary one",
                    f"test accuracy, {a}: recurrent (identical init, lambda 1) minus ordinary (independent init, "
                    "lambda 0); initialisation and coupling change together", "final_test_acc",
                    (a, "independent", 0.0), (a, "identical", 1.0), "none", min_effect_acc, margin_acc)
        if any(cell_of(r) == (a, "identical", 0.0) for r in results):
            add("(confound) identical initialisation alone changes accuracy",
                f"test accuracy, {a}, lambda 0: identical minus independent init",
                "final_test_acc", (a, "independent", 0.0), (a, "identical", 0.0), "up", min_effect_acc)
    for a in arms:
        if mid is not None and has((a, "identical", 0.0)) and has((a, "identical", mid)):
            add("coupling makes ResNets iterative", f"recurrence, {a}: lambda {mid:g} minus 0, identical init",
                "recurrence", (a, "identical", 0.0), (a, "identical", mid), "up", min_effect_index)
        if any(cell_of(r) == (a, "identical", 0.0) for r in results):
            add("(confound) identical initialisation alone raises recurrence",
                f"recurrence, {a}, lambda 0: identical minus independent init",
                "recurrence", (a, "independent", 0.0), (a, "identical", 0.0), "up", min_effect_index)
    twin = "norm-free" if "norm-free" in arms else best
    convergence_rows = []
    if not calibrated(results):                 # version-1 indices: C rose with a growing stream
        n_con = len(values(results, "final_test_acc", (constrained, "independent", 0.0)))
        convergence_rows.append(threshold_row(
            "the Lipschitz constraint makes ResNets convergent",
            f"convergence criterion, {constrained} against {twin}; ordinary cells", "rate, divergence", n_con,
            "not judged: these results carry the version-1 indices (chapter 6)"))
    elif twin is not None and constrained in arms:
        pairs = [(twin, constrained)] + ([("norm-free", TRUE_TWIN_ARM)] if alone else [])
        for base, bound in pairs:
            for metric in ("convergence", "divergence"):
                add("the Lipschitz constraint makes ResNets convergent",
                    f"{metric}, {bound} minus {base}; ordinary cells", metric,
                    (base, "independent", 0.0), (bound, "independent", 0.0), "up", min_effect_index)
                rows[-1]["bound_arm"] = bound
    judge(rows)
    if calibrated(results) and twin is not None and constrained in arms:
        for r in rows:
            if "bound_arm" in r and r["verdict"].startswith("supported"):
                k, n = convergent_count(results, (r["bound_arm"], "independent", 0.0))
                if not (n and k > n / 2):
                    r["verdict"] = f"direction only: {k} of {n} constrained networks convergent"
    rows += convergence_rows
    k, n = convergent_count(results)
    per_arm = [f"{a}: {_count_text(convergent_count([r for r in results if arm_of(r) == a]))}" for a in arms]
    rows.append(threshold_row(f"any network convergent (rate <= {RATE_MAX:g} and D >= {CONVERGENT_D:g})",
                              "; ".join(per_arm) if k is not None else "the runs carry version-1 indices",
                              "convergence, divergence", n,
                              "not judged: version-1 indices" if k is None
                              else f"yes: {k} of {n} networks" if k else f"no: 0 of {n} networks"))
    rec = {a: values(results, "recurrence", (a, "independent", 0.0)) for a in free}
    rec = {a: v for a, v in rec.items() if v}
    counts = [convergent_count(results, (a, "independent", 0.0))[0] for a in rec]
    passing = None if None in counts else sum(counts)
    cis = {a: mean_ci(v) for a, v in rec.items()}
    low = bool(rec) and all(hi < 0.5 for _, _, hi in cis.values())
    high = any(lo >= 0.5 for _, lo, _ in cis.values())
    rows.append(threshold_row(
        "conventionally trained ResNets do not learn iterative convergent solutions",
        "ordinary cells (independent init, lambda 0) of the unconstrained arms: mean recurrence [95% CI] below "
        "0.5 and no network convergent; " + "; ".join(
            f"{a} {m:.2f} [{lo:.2f}, {hi:.2f}]" if math.isfinite(lo) else f"{a} {m:.2f} (n={len(rec[a])}, no CI)"
            for a, (m, lo, hi) in cis.items()),
        "recurrence", sum(len(v) for v in rec.values()),
        "missing runs" if not rec else "not judged: version-1 indices" if passing is None else
        "supported" if low and passing == 0 else "contradicted" if high or passing else "not resolved at our scale"))
    return budget + rows


def accuracy_decomposition(results) -> list[dict]:
    """Where the constrained arms' accuracy gap to batch norm comes from, one step per factor (ordinary cells).

    Rows (each ``difference``: B minus A with its Welch 95% CI and n, descriptive: no verdict, no Holm):
    removing batch norm (conventional -> norm-free: no BN, zero-initialised branches, the arm's own
    rate), adding the bound (norm-free -> its true twin), the two together (conventional -> twin), and
    what separates the constrained arm from the twin (default instead of zero initialisation, and its
    own rate). Steps whose arms are missing are left out.
    """
    steps = [("removing batch norm (with zero init and its own rate)", "conventional", "norm-free"),
             ("adding the bound", "norm-free", TRUE_TWIN_ARM),
             ("both together", "conventional", TRUE_TWIN_ARM),
             ("default instead of zero init (constrained arm)", TRUE_TWIN_ARM, "constrained")]
    rows = []
    for step, a, b in steps:
        va, vb = (values(results, "final_test_acc", (arm, "independent", 0.0)) for arm in (a, b))
        if va and vb:
            rows.append({"step": step, "from": a, "to": b, **difference(va, vb)})
    return rows


def decomposition_table(rows) -> str:
    """:func:`accuracy_decomposition` as a markdown table."""
    return markdown_table(["step", "from", "to", "test accuracy change [95% CI]", "n"],
                          [(r["step"], r["from"], r["to"], ci_text(r), f"{r['n_a']} vs {r['n_b']}") for r in rows])


def grid_verdicts(results, *, constrained: str = "c=0.9") -> list[dict]:
    """The claims of Lippl et al. on a (constraint x coupling) grid without arms (chapter 7's previous grid).

    Groups pool every run of a coupling (or constraint), both constraints (or all couplings); the rule and
    the Holm family are those of :func:`arm_verdicts`.
    """
    lo, hi = min(coupling_of(r) for r in results), max(coupling_of(r) for r in results)
    pick = lambda metric, keep: [metric_of(r, metric) for r in results if keep(r)]   # noqa: E731
    lam = lambda v: lambda r: coupling_of(r) == v                                        # noqa: E731
    con = lambda c: lambda r: constraint_of(r) == c                                      # noqa: E731
    rows = [
        claim_row("coupling makes ResNets iterative", f"recurrence (state), coupling {hi:g} minus {lo:g}, "
                  "both constraints", "recurrence", pick("recurrence", lam(lo)), pick("recurrence", lam(hi)), "up",
                  min_effect=MIN_EFFECT_INDEX),
        claim_row("coupling makes ResNets iterative", f"recurrence (performance), coupling {hi:g} minus {lo:g}, "
                  "both constraints", "recurrence_performance", pick("recurrence_performance", lam(lo)),
                  pick("recurrence_performance", lam(hi)), "up", min_effect=MIN_EFFECT_INDEX),
        claim_row("coupling does not improve accuracy", f"test accuracy, coupling {hi:g} minus {lo:g}, both "
                  "constraints", "final_test_acc", pick("final_test_acc", lam(lo)), pick("final_test_acc", lam(hi)),
                  "none", min_effect=MIN_EFFECT_ACC, margin=MARGIN_ACC, note=BUDGET_UNTESTED),
        claim_row("the Lipschitz constraint does not improve accuracy", f"test accuracy, {constrained} minus none, "
                  "all couplings", "final_test_acc", pick("final_test_acc", con("none")),
                  pick("final_test_acc", con(constrained)), "none", min_effect=MIN_EFFECT_ACC, margin=MARGIN_ACC,
                  note=BUDGET_UNTESTED),
        claim_row("conventionally trained ResNets do not learn iterative solutions",
                  f"recurrence (state) of the ordinary ResNet (coupling {lo:g}, no constraint) minus the coupled "
                  f"one ({hi:g})", "recurrence",
                  pick("recurrence", lambda r: coupling_of(r) == hi and constraint_of(r) == "none"),
                  pick("recurrence", lambda r: coupling_of(r) == lo and constraint_of(r) == "none"), "down",
                  min_effect=MIN_EFFECT_INDEX),
    ]
    if calibrated(results):
        rows[2:2] = [claim_row("the Lipschitz constraint makes ResNets convergent",
                               f"{m}, {constrained} minus none, all couplings", m, pick(m, con("none")),
                               pick(m, con(constrained)), "up", min_effect=MIN_EFFECT_INDEX)
                     for m in ("convergence", "divergence")]
    judge(rows)
    if not calibrated(results):
        rows.insert(2, threshold_row("the Lipschitz constraint makes ResNets convergent",
                                     f"convergence and divergence, {constrained} minus none", "convergence",
                                     len(results), "not judged: these results carry the version-1 indices"))
    return rows


# ---------------------------------------------------------------- tables

def ci_text(r: dict, digits: int = 3) -> str:
    """A row's difference with its 95% CI, e.g. ``-0.103 [-0.127, -0.079]`` (``(no CI: n < 2)`` without one)."""
    if not math.isfinite(r["diff"]):
        return "n/a"
    ci = f" [{r['low']:+.{digits}f}, {r['high']:+.{digits}f}]" if math.isfinite(r["low"]) else " (no CI: n < 2)"
    return f"{r['diff']:+.{digits}f}{ci}"


def rules_table(rows) -> str:
    """Verdict rows (:func:`arm_verdicts`, :func:`grid_verdicts`) as a markdown table: difference with its
    95% CI, n per group, Holm-adjusted p and verdict."""
    out = []
    for r in rows:
        n = f"{r['n_a']} vs {r['n_b']}" if r["n_b"] else f"{r['n_a']}"
        p = r.get("p_holm", float("nan"))
        out.append((r["claim"], r["comparison"], ci_text(r), n, "" if not math.isfinite(p) else f"{p:.2g}",
                    f"**{r['verdict']}**"))
    return markdown_table(["claim", "comparison", "difference [95% CI]", "n", "p (Holm)", "verdict"], out)


def cell_table(results, metrics=("final_test_acc", "final_train_acc", "recurrence", "convergence",
                                 "divergence")) -> str:
    """One row per (arm, init, coupling): mean ± sd (n) of each metric, block spread, convergent count,
    and the median training-accuracy gain of the last epoch (descriptive, see :func:`last_gain`)."""
    keys = sorted({cell_of(r) for r in results}, key=lambda c: (ARMS.index(c[0]), c[1] != "independent", c[2]))
    rows = []
    for key in keys:
        rs = [r for r in results if cell_of(r) == key]
        cols = [mean_spread([metric_of(r, m) for r in rs], digits=3) for m in metrics]
        spreads = [float(np.mean(r.extras["block_spread"])) for r in rs if r.extras.get("block_spread")]
        k, n = convergent_count(rs)
        gains = [g for g in map(last_gain, rs) if math.isfinite(g)]
        judged = "not judged (v1)" if k is None else f"{k}/{n}"
        rows.append((*key[:2], f"{key[2]:g}", *cols, mean_spread(spreads, digits=3), judged,
                     f"{np.median(gains):+.3f}" if gains else "n/a"))
    head = ["arm", "init", "lambda", *[m.replace("final_", "") for m in metrics], "block spread", "convergent",
            "last-epoch gain"]
    return markdown_table(head, rows)


# ---------------------------------------------------------------- chapter 1: He et al.'s orderings

def reproduction_verdict(ok) -> str:
    """``"reproduced"``, ``"not reproduced"`` or (``ok=None``, the experiment was not run) ``"not tested"``."""
    return "not tested" if ok is None else "reproduced" if ok else "not reproduced"


_REPRODUCED = {"supported": "reproduced", "contradicted": "not reproduced",
               "not resolved at our scale": "not resolved at this scale"}


def identity_mapping_claims(accs: dict, gradients: dict | None = None, *, min_effect: float = 0.01) -> list[tuple]:
    """He et al.'s (2016) orderings checked on chapter 1's runs, one row per claim (like ``refinement_claims``).

    ``accs``: ``{(unit, shortcut): [test accuracy per seed]}``; ``gradients``:
    ``{(unit, shortcut): [gradient norm per state, first to last]}`` at
    initialisation (:func:`itercourse.propagation.signal_and_gradient_norms`).
    Every ordering "A better than B" is one comparison under the module's rule
    (Welch CI, Holm over all the orderings of the table, ``|diff| >= min_effect``):
    reproduced when A wins resolved, not reproduced when B does, else not
    resolved at this scale. Rows: (claim, what the paper reports, what we measure, verdict).
    """
    pre, orig = ("preact", "identity"), ("original", "identity")
    placements = [v for v in accs if v[1] == "identity"]
    others = [v for v in placements if v != pre]
    mult = [v for v in accs if v[0] == "original" and v[1] != "identity"]
    pairs = []
    if pre in accs:
        pairs += [(pre, v) for v in others]
    if orig in accs:
        pairs += [(orig, v) for v in (("bn_after_add", "identity"), ("relu_before_add", "identity")) if v in accs]
        pairs += [(orig, v) for v in mult]
    tests = {pair: claim_row(f"{pair[0]} beats {pair[1]}", "", "final_test_acc", accs[pair[1]], accs[pair[0]], "up",
                             min_effect=min_effect) for pair in dict.fromkeys(pairs)}
    judge(list(tests.values()))
    verdict = {pair: _REPRODUCED[r["verdict"]] for pair, r in tests.items()}

    def got(pair):
        r = tests[pair]
        p = f", p (Holm) {r['p_holm']:.2g}" if math.isfinite(r["p_holm"]) else ""
        return f"{r['mean_b']:.3f} vs {r['mean_a']:.3f}: {ci_text(r)}, n {r['n_b']}/{r['n_a']}{p}"

    def overall(res):
        return ("not reproduced" if "not reproduced" in res else
                "reproduced" if all(x == "reproduced" for x in res) else "not resolved at this scale")

    rows = []
    if (pre, orig) in tests:
        rows.append(("full pre-activation beats the original unit", "6.37% vs 6.61% error", got((pre, orig)),
                     verdict[pre, orig]))
    if pre in accs and others:
        res = [verdict[pre, v] for v in others]
        best = max(placements, key=lambda v: np.mean(accs[v]))
        rows.append(("full pre-activation is the best activation placement", "lowest error of the five (6.37%)",
                     f"best here: {best[0]} ({np.mean(accs[best]):.3f}); pre-activation vs each other: "
                     f"{sum(x == 'reproduced' for x in res)} ahead, {sum(x == 'not reproduced' for x in res)} behind",
                     overall(res)))
    for other, paper in ((("bn_after_add", "identity"), "6.61% vs 8.17%"),
                         (("relu_before_add", "identity"), "6.61% vs 7.84%")):
        if (orig, other) in tests:
            rows.append((f"the original unit beats {other[0]}", paper, got((orig, other)), verdict[orig, other]))
    if orig in accs and mult:
        res = [verdict[orig, v] for v in mult]
        rows.append(("the identity shortcut beats every other shortcut (original unit)",
                     "6.61% vs 6.91-12.22% or fail",
                     f"ahead of {sum(x == 'reproduced' for x in res)}, behind {sum(x == 'not reproduced' for x in res)}"
                     f", unresolved {sum(x.startswith('not resolved') for x in res)} of {len(res)}", overall(res)))
    if gradients:
        ratio = {v: g[0] / g[-1] for v, g in gradients.items()}
        if pre in ratio and orig in ratio:
            rows.append(("(our reading, not the paper's claim) at initialisation, pre-activation keeps the gradient "
                         "closer to the top value than the original unit (first/last gradient ratio nearer 1)",
                         "not claimed: Sec. 4.1 argues 'ease of optimization' (f an identity) and shows training "
                         "curves, no gradient norms",
                         f"{ratio[pre]:.3g} vs {ratio[orig]:.3g}",
                         "reproduced" if abs(math.log(ratio[pre])) < abs(math.log(ratio[orig])) else "not reproduced"))
        mult = [v for v in ratio if v[0] == "original" and v[1] not in ("identity", "exclusive_gate")]
        if orig in ratio and mult:
            far = [v for v in mult if abs(math.log(ratio[v])) > abs(math.log(ratio[orig]))]
            rows.append(("multiplicative shortcuts (scaled, gates, 1x1, dropout) move the first/last gradient ratio "
                         "further from 1 than the identity shortcut (exclusive gate at b_g = -6 excepted)",
                         "multiplicative shortcuts hamper propagation (Sec. 3)",
                         f"{len(far)} of {len(mult)} further from 1",
                         "reproduced" if len(far) == len(mult) else "not reproduced"))
    return rows


# ---------------------------------------------------------------- chapter 2: Jastrzebski et al.'s signatures

LATER_BLOCKS_UNTESTABLE = ("not testable here: at 2-4 blocks per stage each block carries a large share of "
                           "its stage (the paper's ResNet-110 has 18)")


def refinement_claims(reports: list) -> list[tuple]:
    """Jastrzębski et al.'s (2018) findings checked on chapter 2's trained networks, one row per claim.

    ``reports``: :func:`itercourse.refinement.refinement_report` dicts, one per network (its
    ``borderline[1]`` is the scaled unrolling). A claim that one quantity exceeds another is a
    comparison over the n networks under the module's rule (Welch CI, Holm over the table's
    comparisons, minimum effect ``MIN_EFFECT_INDEX`` for cosines and norm ratios, ``MIN_EFFECT_ACC``
    for accuracies): reproduced when it is resolved in the paper's direction, not reproduced when
    resolved against it, else not resolved at this scale. A claim that *every* block or network shows
    a pattern is a threshold: k of n. Rows: (claim, what the paper reports, what we measure, verdict).
    """
    n = len(reports)
    first_stage = [float(np.mean(rep["alignment"].per_stage()[0])) for rep in reports]
    last_stage = [float(np.mean(rep["alignment"].per_stage()[-1])) for rep in reports]
    ratios = [list(rep["norm_ratio"].values) for rep in reports]
    costs = [list(rep["drop"].acc_cost.values) for rep in reports]
    scaled = [rep["borderline"][1] for rep in reports]
    tests = {
        "cos": claim_row("cosine more negative in the last stage", "last-stage minus first-stage mean cosine",
                         "cosine", first_stage, last_stage, "down", min_effect=MIN_EFFECT_INDEX),
        "ratio": claim_row("norm ratio largest at the first block", "last block minus first block", "norm ratio",
                           [r[0] for r in ratios], [r[-1] for r in ratios], "down", min_effect=MIN_EFFECT_INDEX),
        "drop": claim_row("dropping the first block costs the most", "first block's cost minus the worst other's",
                          "accuracy cost", [max(c[1:]) for c in costs], [c[0] for c in costs], "up",
                          min_effect=MIN_EFFECT_ACC),
        "border": claim_row("scaled unrolling improves borderline examples", "accuracy after minus before",
                            "accuracy", [b.acc_before for b in scaled], [b.acc_after for b in scaled], "up",
                            min_effect=MIN_EFFECT_ACC),
    }
    judge(list(tests.values()))
    verdict = {k: _REPRODUCED[r["verdict"]] for k, r in tests.items()}

    def got(key, before, after, digits=3):
        r = tests[key]
        p = f", p (Holm, {r['tests']} tests) {r['p_holm']:.2g}" if math.isfinite(r["p_holm"]) else ""
        return (f"{after} {r['mean_b']:.{digits}f} vs {before} {r['mean_a']:.{digits}f}: {ci_text(r)}, "
                f"n {n} networks{p}")

    all_negative = sum(all(v < 0 for v in rep["alignment"].values) for rep in reports)
    falling = sum(rank_corr(r) < 0 for r in ratios)
    unrolls = [rep["unroll"] for rep in reports]
    k = max(unrolls[0][0].extra_steps)
    growth = [[u.state_norm[-1] / u.state_norm[0] for u in us] for us in unrolls]   # [plain, scaled] per network
    explode = sum(g[0] > 2 and g[1] < g[0] for g in growth)
    last_cost = [float(np.median([c for c, s in zip(rep["drop"].acc_cost.values, rep["drop"].acc.stage)
                                  if s == max(rep["drop"].acc.stage)])) for rep in reports]
    every = lambda count: "reproduced" if count == n else "not reproduced"            # noqa: E731
    return [
        ("cosine negative for every block (threshold: every network)", "yes (all blocks, ResNet-110)",
         f"{all_negative} of {n} networks; negative blocks: "
         + ", ".join(f"{sum(v < 0 for v in rep['alignment'].values)}/{len(rep['alignment'])}" for rep in reports),
         every(all_negative)),
        ("cosine more negative in the last stage than in the first", "yes; last block near -0.1",
         got("cos", "first", "last"), verdict["cos"]),
        ("norm ratio largest at the first block", "up to ~2 in the first blocks, then falling",
         got("ratio", "first", "last", 2), verdict["ratio"]),
        ("norm ratio falling with depth (threshold: rank correlation with position < 0 in every network)",
         "falling", f"{falling} of {n} networks; correlations "
         + ", ".join(f"{rank_corr(r):+.2f}" for r in ratios), every(falling)),
        ("dropping the first block costs the most accuracy", "catastrophic", got("drop", "worst other", "first"),
         verdict["drop"]),
        ("dropping a later block costs little", "little (ResNet-110)",
         "median cost in the last stage " + ", ".join(f"{c:+.3f}" for c in last_cost), LATER_BLOCKS_UNTESTABLE),
        (f"unrolled plainly, activations explode (threshold: {k} extra steps grow the norm > 2x, and scaled "
         "unrolling grows it less, in every network)", "explode unless the block output is scaled",
         f"{explode} of {n} networks; " + "; ".join(f"plain x{g[0]:.3g}, scaled x{g[1]:.3g}" for g in growth),
         every(explode)),
        ("scaled unrolling improves borderline examples", "43% -> 53% of ~51 images (20 steps, 4 runs)",
         got("border", "before", "after", 2) + f"; {sum(b.n_borderline for b in scaled)} borderline images",
         verdict["border"]),
    ]

