"""Verdict rules for the arms grid (chapter 7) and for He et al.'s orderings (chapter 1).

The rules, applied the same way to every claim:

1. **Effect direction.** Group B minus group A, each a set of seeds of one
   cell: ``diff = mean(B) - mean(A)``. The effect is *resolved* only when
   ``|diff|`` exceeds the seed spread of both groups (``noise = max(sd_A, sd_B)``,
   ``sd`` = :func:`itercourse.report.spread`, the package's one spread) and is
   at least ``min_effect``; with fewer than two seeds in a group it is never
   resolved. Every row reports ``n`` per group.
2. **Accuracy against the best unconstrained arm.** "The constraint does not
   improve accuracy" compares the constrained arm's ordinary cell with the
   *best* unconstrained arm's ordinary cell (highest mean test accuracy), never
   with a weak baseline.
3. **Recurrence from intermediate coupling.** "Coupling makes ResNets
   iterative" compares identical-init lambda = 0 with identical-init
   intermediate lambda (the one nearest 0.5, strictly between 0 and 1), per
   arm. lambda = 1 is recurrent by construction and is not evidence. A
   confound row compares independent with identical initialisation at lambda = 0.
4. **Convergence as a threshold.** A network is convergent only if
   :func:`itercourse.indices.is_convergent` (late-step rate <= 0.95 and
   D >= 0.8 in every stage, the recalibrated indices of version 2). The
   constraint "makes ResNets convergent" is supported only if the indices
   rise (rule 1) *and* most constrained runs pass; a rise without passing
   networks is reported as "direction only". Results measured with the
   version-1 indices are not judged by the criterion (their rows say so).

5. **Plateau.** A run is compared only as trained if its training accuracy rose
   by less than ``PLATEAU_GAIN`` (1.5 points) in its last epoch. A row whose
   groups hold a run that was still climbing says so in its verdict
   ("... ; not all runs at a plateau"), and :func:`cell_table` counts the
   plateaued runs of every cell.

Cells are (arm, initialisation, coupling). Arms (:func:`arm_of`):
``conventional`` (BN in the branches), ``norm-free`` (no BN, zero-initialised
branches), ``constrained`` (no BN, Lipschitz bound c on each branch) and
``no-BN, He init`` (the previous grid's badly conditioned baseline).
"""
from __future__ import annotations

import math

import numpy as np

from .errors import check_int
from .report import (CONVERGENT_D, INDICES_VERSION, RATE_MAX, is_convergent, markdown_table, mean_spread,
                     metric_of, spread)

ARMS = ("conventional", "norm-free", "constrained", "no-BN, He init")
MIN_EFFECT_ACC = 0.02        # accuracy: at least 2 points
MIN_EFFECT_INDEX = 0.05      # indices (range about 0..1)
PLATEAU_GAIN = 0.015         # rule 5: the last epoch added less than 1.5 points of training accuracy
PLATEAU_NOTE = "; not all runs at a plateau"


# ---------------------------------------------------------------- cells

def arm_of(r) -> str:
    """The arm of a result or of an experiment config (see the module docstring)."""
    m = getattr(r, "config", r).model
    if m.spectral_coeff is not None:
        return "constrained"
    if m.branch_norm == "bn":
        return "conventional"
    return "norm-free" if getattr(m, "branch_init", "default") == "zero" else "no-BN, He init"


def init_of(r) -> str:
    """``"identical"`` or ``"independent"``: how the blocks of a stage started."""
    return "identical" if r.config.train.identical_init is True else "independent"


def coupling_value(r) -> float:
    return float(r.config.train.coupling or 0.0)


def cell_of(r) -> tuple:
    """``(arm, init, coupling)``."""
    return arm_of(r), init_of(r), coupling_value(r)


def last_gain(r, epochs: int = 1) -> float:
    """Training accuracy gained over the last ``epochs`` epochs (nan when the run has no more epochs than that)."""
    check_int("epochs", epochs, minimum=1)
    acc = r.history.train_acc
    return float(acc[-1] - acc[-1 - epochs]) if len(acc) > epochs else float("nan")


def still_climbing(r) -> bool:
    """Rule 5: the run's last epoch added at least ``PLATEAU_GAIN`` (nan, too short to tell: False)."""
    return last_gain(r) >= PLATEAU_GAIN


def _plateau_note(results, *cells) -> str:
    return PLATEAU_NOTE if any(still_climbing(r) for r in results if cell_of(r) in cells) else ""


def values(results, metric: str, cell: tuple) -> list:
    """Finite values of ``metric`` over the seeds of ``cell``."""
    out = [metric_of(r, metric) for r in results if cell_of(r) == cell]
    return [v for v in out if math.isfinite(v)]


def effect(a, b, min_effect: float) -> dict:
    """Rule 1: mean(b) - mean(a), the larger seed spread, n per group and the direction."""
    a = [float(v) for v in a if math.isfinite(float(v))]
    b = [float(v) for v in b if math.isfinite(float(v))]
    if not a or not b:
        return {"diff": float("nan"), "noise": float("nan"), "n_a": len(a), "n_b": len(b), "direction": "missing"}
    diff = float(np.mean(b) - np.mean(a))
    noise = max(spread(a), spread(b)) if len(a) > 1 and len(b) > 1 else float("nan")
    resolved = math.isfinite(noise) and abs(diff) > noise and abs(diff) >= min_effect
    return {"mean_a": float(np.mean(a)), "mean_b": float(np.mean(b)), "diff": diff, "noise": noise,
            "n_a": len(a), "n_b": len(b),
            "direction": ("up" if diff > 0 else "down") if resolved else "unresolved"}


def _want(direction: str, want: str) -> str:
    if direction == "missing":
        return "missing runs"
    if want == "none":                       # "does not improve": only a resolved rise contradicts
        return {"up": "contradicted", "down": "supported (it lowered accuracy)"}.get(
            direction, "supported (no resolved change)")
    if direction == "unresolved":
        return "not resolved at our scale"
    return "supported" if direction == want else "contradicted"


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


# ---------------------------------------------------------------- Lippl et al.'s claims

def arm_verdicts(results, *, constrained: str = "constrained", min_effect_acc: float = MIN_EFFECT_ACC,
                 min_effect_index: float = MIN_EFFECT_INDEX) -> list[dict]:
    """A row per claim of Lippl et al. under rules 1-4; each row has its groups, ``n`` and verdict."""
    rows = []
    arms = [a for a in ARMS if any(arm_of(r) == a for r in results)]
    free = [a for a in arms if a != constrained]
    mid = intermediate_coupling(results)

    def add(claim, comparison, metric, cell_a, cell_b, want, min_effect, note=""):
        e = effect(values(results, metric, cell_a), values(results, metric, cell_b), min_effect)
        rows.append({"claim": claim, "comparison": comparison, "metric": metric, **e,
                     "verdict": _want(e["direction"], want) + note + _plateau_note(results, cell_a, cell_b)})

    # Rule 2: the constraint against the best unconstrained arm (ordinary cells).
    ordinary = {a: values(results, "final_test_acc", (a, "independent", 0.0)) for a in arms}
    best = max((a for a in free if ordinary[a]), key=lambda a: np.mean(ordinary[a]), default=None)
    if best is not None:
        add("the Lipschitz constraint does not improve accuracy",
            f"test accuracy, {constrained} minus the best unconstrained arm ({best}); ordinary cells",
            "final_test_acc", (best, "independent", 0.0), (constrained, "independent", 0.0), "none",
            min_effect_acc)
    for a in arms:
        if mid is None:
            break
        add("coupling does not improve accuracy", f"test accuracy, {a}: lambda {mid:g} minus 0, identical init",
            "final_test_acc", (a, "identical", 0.0), (a, "identical", mid), "none", min_effect_acc)
    # Rule 3: recurrence from intermediate coupling, and the initialisation confound.
    for a in arms:
        if mid is not None:
            add("coupling makes ResNets iterative", f"recurrence, {a}: lambda {mid:g} minus 0, identical init",
                "recurrence", (a, "identical", 0.0), (a, "identical", mid), "up", min_effect_index)
        add("(confound) identical initialisation alone raises recurrence",
            f"recurrence, {a}, lambda 0: identical minus independent init",
            "recurrence", (a, "independent", 0.0), (a, "identical", 0.0), "up", min_effect_index)
    # Rule 4: convergence, as a direction and as a threshold.
    twin = "norm-free" if "norm-free" in arms else best
    if not calibrated(results):                 # version-1 indices: C rose with a growing stream
        n_twin = len(values(results, "final_test_acc", (twin, "independent", 0.0))) if twin else 0
        n_con = len(values(results, "final_test_acc", (constrained, "independent", 0.0)))
        rows.append({"claim": "the Lipschitz constraint makes ResNets convergent",
                     "comparison": f"convergence criterion, {constrained} against {twin}; ordinary cells",
                     "metric": "rate, divergence", "diff": float("nan"), "noise": float("nan"), "n_a": n_twin,
                     "n_b": n_con, "direction": "threshold",
                     "verdict": "not judged: these results carry the version-1 indices (chapter 6)"})
    elif twin is not None and constrained in arms:
        k, n = convergent_count(results, (constrained, "independent", 0.0))
        for metric in ("convergence", "divergence"):
            e = effect(values(results, metric, (twin, "independent", 0.0)),
                       values(results, metric, (constrained, "independent", 0.0)), min_effect_index)
            verdict = _want(e["direction"], "up")
            if verdict == "supported" and not (n and k > n / 2):
                verdict = f"direction only: {k} of {n} constrained networks convergent"
            verdict += _plateau_note(results, (twin, "independent", 0.0), (constrained, "independent", 0.0))
            rows.append({"claim": "the Lipschitz constraint makes ResNets convergent",
                         "comparison": f"{metric}, {constrained} minus {twin}; ordinary cells", "metric": metric,
                         **e, "verdict": verdict})
    k, n = convergent_count(results)
    per_arm = [f"{a}: {_count_text(convergent_count([r for r in results if arm_of(r) == a]))}" for a in arms]
    rows.append({"claim": f"any network convergent (rate <= {RATE_MAX:g} and D >= {CONVERGENT_D:g})",
                 "comparison": "; ".join(per_arm) if k is not None else "the runs carry version-1 indices",
                 "metric": "convergence, divergence", "diff": float("nan"), "noise": float("nan"),
                 "n_a": n, "n_b": n, "direction": "threshold",
                 "verdict": ("not judged: version-1 indices" if k is None
                             else f"yes: {k} of {n} networks" if k else f"no: 0 of {n} networks")})
    # Conventional training: the ordinary cells of the unconstrained arms.
    rec = {a: values(results, "recurrence", (a, "independent", 0.0)) for a in free}
    rec = {a: v for a, v in rec.items() if v}
    counts = [convergent_count(results, (a, "independent", 0.0))[0] for a in rec]
    passing = None if None in counts else sum(counts)
    low = bool(rec) and all(np.mean(v) < 0.5 for v in rec.values())
    rows.append({"claim": "conventionally trained ResNets do not learn iterative convergent solutions",
                 "comparison": "ordinary cells (independent init, lambda 0) of the unconstrained arms: mean "
                               "recurrence below 0.5 and no network convergent; " +
                               "; ".join(f"{a} {np.mean(v):.2f}" for a, v in rec.items()),
                 "metric": "recurrence", "diff": float("nan"), "noise": float("nan"),
                 "n_a": sum(len(v) for v in rec.values()), "n_b": 0, "direction": "threshold",
                 "verdict": ("missing runs" if not rec else
                             "not judged: version-1 indices" if passing is None else
                             "supported" if low and passing == 0 else "contradicted")
                            + _plateau_note(results, *[(a, "independent", 0.0) for a in rec])})
    return rows


def rules_table(rows) -> str:
    """The rows of :func:`arm_verdicts` as a markdown table."""
    out = []
    for r in rows:
        d = "n/a" if not math.isfinite(r["diff"]) else f"{r['diff']:+.3f} (spread {r['noise']:.3f})"
        n = f"{r['n_a']} vs {r['n_b']}" if r["direction"] != "threshold" else f"{r['n_a']}"
        out.append((r["claim"], r["comparison"], d, n, f"**{r['verdict']}**"))
    return markdown_table(["claim", "comparison", "difference (seed spread)", "n", "verdict"], out)


def cell_table(results, metrics=("final_test_acc", "final_train_acc", "recurrence", "convergence",
                                 "divergence")) -> str:
    """One row per (arm, init, coupling): mean ± sd (n) of each metric, block spread, convergent count."""
    keys = sorted({cell_of(r) for r in results}, key=lambda c: (ARMS.index(c[0]), c[1] != "independent", c[2]))
    rows = []
    for key in keys:
        rs = [r for r in results if cell_of(r) == key]
        cols = [mean_spread([metric_of(r, m) for r in rs], digits=3) for m in metrics]
        spreads = [float(np.mean(r.extras["block_spread"])) for r in rs if r.extras.get("block_spread")]
        k, n = convergent_count(rs)
        flat = sum(not still_climbing(r) for r in rs)
        judged = "not judged (v1)" if k is None else f"{k}/{n}"
        rows.append((*key[:2], f"{key[2]:g}", *cols, mean_spread(spreads, digits=3), judged, f"{flat}/{n}"))
    head = ["arm", "init", "lambda", *[m.replace("final_", "") for m in metrics], "block spread", "convergent",
            "at plateau"]
    return markdown_table(head, rows)


# ---------------------------------------------------------------- chapter 1: He et al.'s orderings

def _order(accs: dict, better, worse, min_effect: float) -> tuple:
    e = effect(accs[worse], accs[better], min_effect)
    verdict = {"up": "reproduced", "down": "not reproduced"}.get(e["direction"], "not resolved at this scale")
    got = f"{np.mean(accs[better]):.3f} vs {np.mean(accs[worse]):.3f} (spread {e['noise']:.3f}, n {e['n_b']}/{e['n_a']})"
    return got, verdict


def identity_mapping_claims(accs: dict, gradients: dict | None = None, *, min_effect: float = 0.01) -> list[tuple]:
    """He et al.'s (2016) orderings checked on chapter 1's runs, one row per claim (like ``refinement_claims``).

    ``accs``: ``{(unit, shortcut): [test accuracy per seed]}``; ``gradients``:
    ``{(unit, shortcut): [gradient norm per state, first to last]}`` at
    initialisation (:func:`itercourse.propagation.signal_and_gradient_norms`).
    An ordering "A better than B" is reproduced when A's mean test accuracy
    exceeds B's by more than both seed spreads and ``min_effect`` (rule 1),
    not reproduced when B wins by that margin, else not resolved at this scale.
    Rows: (claim, what the paper reports, what we measure, verdict).
    """
    rows = []
    pre, orig = ("preact", "identity"), ("original", "identity")
    placements = [v for v in accs if v[1] == "identity"]
    if pre in accs and orig in accs:
        rows.append(("full pre-activation beats the original unit", "6.37% vs 6.61% error",
                     *_order(accs, pre, orig, min_effect)))
    others = [v for v in placements if v != pre]
    if pre in accs and others:
        res = [_order(accs, pre, v, min_effect)[1] for v in others]
        worst = "not reproduced" if "not reproduced" in res else (
            "reproduced" if all(x == "reproduced" for x in res) else "not resolved at this scale")
        best = max(placements, key=lambda v: np.mean(accs[v]))
        rows.append(("full pre-activation is the best activation placement", "lowest error of the five (6.37%)",
                     f"best here: {best[0]} ({np.mean(accs[best]):.3f}); pre-activation vs each other: "
                     f"{sum(x == 'reproduced' for x in res)} ahead, {sum(x == 'not reproduced' for x in res)} behind",
                     worst))
    for other, paper in ((("bn_after_add", "identity"), "6.61% vs 8.17%"),
                         (("relu_before_add", "identity"), "6.61% vs 7.84%")):
        if orig in accs and other in accs:
            rows.append((f"the original unit beats {other[0]}", paper, *_order(accs, orig, other, min_effect)))
    mult = [v for v in accs if v[0] == "original" and v[1] != "identity"]
    if orig in accs and mult:
        res = [_order(accs, orig, v, min_effect)[1] for v in mult]
        rows.append(("the identity shortcut beats every other shortcut (original unit)",
                     "6.61% vs 6.91-12.22% or fail",
                     f"ahead of {sum(x == 'reproduced' for x in res)}, behind {sum(x == 'not reproduced' for x in res)}"
                     f", unresolved {sum(x.startswith('not resolved') for x in res)} of {len(res)}",
                     "reproduced" if all(x == "reproduced" for x in res) else
                     "not reproduced" if "not reproduced" in res else "not resolved at this scale"))
    if gradients:
        ratio = {v: g[0] / g[-1] for v, g in gradients.items()}
        if pre in ratio and orig in ratio:
            rows.append(("at initialisation, pre-activation keeps the gradient closer to the top value than the "
                         "original unit (first/last gradient ratio nearer 1)", "argued (Sec. 4), not measured",
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
