"""Reporting: seed statistics, claim verdicts and markdown tables (the figures live in ``itercourse.viz``).

Results over seeds are reported one way everywhere: ``mean ± sd (n=k)``,
with ``sd`` the sample standard deviation over seeds (:func:`spread`).

A grid cell is a (constraint, coupling) pair; its seeds give the spread. Every
claim check compares two groups of runs by the difference of their means
against the seed noise:

    diff = mean(B) - mean(A),     se = s_pooled * sqrt(1/n_A + 1/n_B)

with ``s_pooled`` the within-cell standard deviation pooled over all cells
(so two seeds per cell still give a usable noise estimate). An effect counts
as resolved when ``|diff| > 2 se`` and ``|diff| >= min_effect``. With two
seeds this is a rough screen, not a significance test; the chapters say so.

The claims are the qualitative findings of Lippl, Peters & Kriegeskorte
(2021, "Iterative convergent computation is not a useful inductive bias for ResNets",
ICLR 2021 submission), as stated in its abstract.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict, is_dataclass
from typing import Iterable, Sequence

import numpy as np

from .config_id import _canonical, canonical_config, flat
from .indices import CONVERGENT_C, CONVERGENT_D, INDICES_VERSION, RATE_MAX, is_convergent  # noqa: F401

INDEX_KEYS = ("recurrence", "recurrence_performance", "convergence", "divergence")
INDEX_RANGES = {"recurrence": (-1.05, 1.05), "recurrence_performance": (-1.05, 1.05),
                "convergence": (-0.03, 1.03), "divergence": (-0.03, 1.03)}
INDEX_TITLES = {"recurrence": "recurrence index (state)", "recurrence_performance": "recurrence index (performance)",
                "convergence": "convergence index", "divergence": "divergence index (high = survives)"}


# ---------------------------------------------------------------- convergence as a threshold

# The criterion lives with the indices it reads (itercourse.indices: is_convergent, RATE_MAX,
# CONVERGENT_C = 1 - RATE_MAX, CONVERGENT_D); report imports it for the verdicts and tables.


# ---------------------------------------------------------------- seed statistics

def spread(values) -> float:
    """The spread over seeds: the sample standard deviation (ddof 1) of the finite values; nan below two."""
    v = [float(x) for x in values if math.isfinite(float(x))]
    return statistics.stdev(v) if len(v) > 1 else float("nan")


def mean_spread(values: Sequence[float], scale: float = 1.0, digits: int = 1) -> str:
    """``"mean ± sd (n=k)"`` of ``values`` times ``scale`` (sd: :func:`spread`): how results over seeds read."""
    vals = [float(v) * scale for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return "n/a"
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f} (n=1)"
    return f"{statistics.fmean(vals):.{digits}f} ± {spread(vals):.{digits}f} (n={len(vals)})"


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (``0.5 < p < 1``, ``df > 0``).

    Bisection on the CDF, ``F(t) = 1/2 + int_0^t f``, the density integrated by Simpson's rule (numpy
    only; about 1e-6 accurate): ``t_quantile(0.975, 2) = 4.303``, ``(0.975, 10) = 2.228``.
    """
    if not 0.5 < p < 1 or not df > 0:
        raise ValueError(f"t_quantile needs 0.5 < p < 1 and df > 0; got p={p!r}, df={df!r}")
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)

    def cdf(t: float) -> float:
        x = np.linspace(0.0, t, 2001)
        f = c * (1 + x * x / df) ** (-(df + 1) / 2)
        return 0.5 + (x[1] - x[0]) / 3 * (f[0] + f[-1] + 4 * f[1:-1:2].sum() + 2 * f[2:-1:2].sum())

    lo, hi = 0.0, 1.0
    while cdf(hi) < p:
        lo, hi = hi, 2 * hi
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < p else (lo, mid)
    return (lo + hi) / 2


def welch_ci(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> dict:
    """The difference of means ``mean(b) - mean(a)`` over seeds with its Welch ``level`` CI and n.

        d = mean(b) - mean(a),   se = sqrt(s_a^2 / n_a + s_b^2 / n_b),   d ± t_{(1+level)/2, df} se

    with the Welch-Satterthwaite ``df``. Returns ``diff``, ``low``, ``high``, ``n_a``, ``n_b``, ``df``;
    the interval is nan when either group has fewer than two values (no spread to estimate).
    """
    a = [float(v) for v in a if np.isfinite(v)]
    b = [float(v) for v in b if np.isfinite(v)]
    out = {"n_a": len(a), "n_b": len(b), "diff": float("nan"), "low": float("nan"), "high": float("nan"),
           "df": float("nan")}
    if not a or not b:
        return out
    out["diff"] = statistics.fmean(b) - statistics.fmean(a)
    if len(a) < 2 or len(b) < 2:
        return out
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        out.update(low=out["diff"], high=out["diff"], df=float("inf"))
        return out
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = t_quantile((1 + level) / 2, df) * se
    out.update(low=out["diff"] - half, high=out["diff"] + half, df=df)
    return out


# ---------------------------------------------------------------- grid results

def coupling_of(r) -> float:
    """Coupling strength of a result (``None`` = off = 0)."""
    return float(r.config.train.coupling or 0.0)


def constraint_of(r) -> str:
    """``"none"`` or ``"c=0.9"``: the Lipschitz constraint on the residual branches."""
    c = r.config.model.spectral_coeff
    return "none" if c is None else f"c={c:g}"


def metric_of(r, metric: str) -> float:
    """A number from a result: ``final_test_acc``, an index name, or an ``extras`` entry."""
    if metric == "final_test_acc":
        return r.final_test_acc
    if metric == "final_train_acc":
        return r.history.train_acc[-1]
    if metric in r.indices:
        v = r.indices[metric]
    elif metric in r.extras:
        v = r.extras[metric]
    else:
        raise KeyError(f"metric={metric!r} is not in this result; available: final_test_acc, final_train_acc, "
                       f"{sorted(k for k, v in {**r.indices, **r.extras}.items() if isinstance(v, (int, float)))}")
    return float("nan") if v is None else float(v)


def splitting_fields(results) -> list:
    """Config fields (dotted) other than the seed that differ between runs of one (constraint, coupling) cell.

    Runs that differ in such a field are not replicates, so :func:`cells` keys them apart.
    """
    if not results or not all(is_dataclass(r.config) for r in results):
        return []                                      # synthetic results: cells by constraint and coupling
    flats = [flat(canonical_config(asdict(r.config))) for r in results]
    base = [(constraint_of(r), coupling_of(r)) for r in results]
    ignore = {"seed", "train.seed", "train.coupling", "model.spectral_coeff"}
    out = []
    for k in sorted(set().union(*flats) - ignore):
        groups: dict = {}
        for b, f in zip(base, flats):
            groups.setdefault(b, set()).add(repr(_canonical(f.get(k))))
        if any(len(v) > 1 for v in groups.values()):
            out.append(k)
    return out


def _field_value(r, dotted: str):
    return flat(canonical_config(asdict(r.config))).get(dotted)


def cells(results, metric: str = "final_test_acc") -> dict:
    """``{(constraint, coupling, *other): {"values", "mean", "sd", "n", "min", "max"}}`` over seeds.

    ``other`` names every further field that differs within a (constraint, coupling) pair
    (``"train.lr=0.05"``, :func:`splitting_fields`): only seeds of one config are averaged.
    """
    split = splitting_fields(results)
    groups: dict = {}
    for r in results:
        other = tuple(f"{k}={_field_value(r, k)}" for k in split)
        groups.setdefault((constraint_of(r), coupling_of(r), *other), []).append(metric_of(r, metric))
    out = {}
    for key in sorted(groups, key=lambda k: (k[0] != "none", k[0], k[1], k[2:])):
        v = np.array(groups[key], dtype=float)
        out[key] = {"values": v.tolist(), "mean": float(np.nanmean(v)), "n": int(np.isfinite(v).sum()),
                    "sd": spread(v), "min": float(np.nanmin(v)), "max": float(np.nanmax(v))}
    return out


def pooled_sd(results, metric: str) -> float:
    """Within-cell (seed-to-seed) standard deviation pooled over all cells."""
    ss, df = 0.0, 0
    for c in cells(results, metric).values():
        v = np.array(c["values"], dtype=float)
        v = v[np.isfinite(v)]
        if len(v) > 1:
            ss += float(((v - v.mean()) ** 2).sum())
            df += len(v) - 1
    return math.sqrt(ss / df) if df else float("nan")


def compare(results, metric: str, group_a, group_b, *, min_effect: float = 0.02) -> dict:
    """Mean of ``metric`` in group B minus group A (groups: predicates on a result), with the seed noise."""
    a = np.array([metric_of(r, metric) for r in results if group_a(r)], dtype=float)
    b = np.array([metric_of(r, metric) for r in results if group_b(r)], dtype=float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) == 0 or len(b) == 0:
        return {"diff": float("nan"), "se": float("nan"), "n_a": len(a), "n_b": len(b), "direction": "missing"}
    s = pooled_sd(results, metric)
    se = s * math.sqrt(1 / len(a) + 1 / len(b)) if math.isfinite(s) else float("nan")
    diff = float(b.mean() - a.mean())
    resolved = math.isfinite(se) and abs(diff) > 2 * se and abs(diff) >= min_effect
    return {"mean_a": float(a.mean()), "mean_b": float(b.mean()), "diff": diff, "se": se,
            "n_a": len(a), "n_b": len(b), "direction": ("up" if diff > 0 else "down") if resolved else "unresolved"}


def _lam(value):
    return lambda r: coupling_of(r) == value


def _con(name):
    return lambda r: constraint_of(r) == name


def claim_verdicts(results, *, constrained: str = "c=0.9") -> list[dict]:
    """A verdict for each qualitative claim of Lippl et al. (2021), computed from ``results``.

    Verdicts: ``"supported"``, ``"contradicted"`` or ``"not resolved at our scale"``
    (difference within two seed-noise standard errors, or below ``min_effect``).
    For the "does not improve accuracy" claims, support says why: ``"supported
    (it lowered accuracy)"`` or ``"supported (no resolved change)"``.
    """
    lo, hi = min(coupling_of(r) for r in results), max(coupling_of(r) for r in results)
    rows = []

    def verdict(cmp, want):            # want: "up", "down" or "none" (no improvement)
        if cmp["direction"] == "missing":
            return "missing runs"
        if want == "none":
            return {"up": "contradicted", "down": "supported (it lowered accuracy)"}.get(
                cmp["direction"], "supported (no resolved change)")
        if cmp["direction"] == "unresolved":
            return "not resolved at our scale"
        return "supported" if cmp["direction"] == want else "contradicted"

    def add(claim, metric, a, b, want, what, min_effect=0.02):
        cmp = compare(results, metric, a, b, min_effect=min_effect)
        rows.append({"claim": claim, "metric": metric, "comparison": what, **cmp,
                     "verdict": verdict(cmp, want)})

    add("coupling makes ResNets iterative", "recurrence", _lam(lo), _lam(hi), "up",
        f"recurrence (state), coupling {hi:g} minus {lo:g}, both constraints", min_effect=0.05)
    add("coupling makes ResNets iterative", "recurrence_performance", _lam(lo), _lam(hi), "up",
        f"recurrence (performance), coupling {hi:g} minus {lo:g}, both constraints", min_effect=0.05)
    add("the Lipschitz constraint makes ResNets convergent", "convergence", _con("none"), _con(constrained), "up",
        f"convergence, {constrained} minus none, all couplings", min_effect=0.05)
    add("the Lipschitz constraint makes ResNets convergent", "divergence", _con("none"), _con(constrained), "up",
        f"divergence index (high = survives extra steps), {constrained} minus none, all couplings", min_effect=0.05)
    add("coupling does not improve accuracy", "final_test_acc", _lam(lo), _lam(hi), "none",
        f"test accuracy, coupling {hi:g} minus {lo:g}, both constraints")
    add("the Lipschitz constraint does not improve accuracy", "final_test_acc", _con("none"), _con(constrained),
        "none", f"test accuracy, {constrained} minus none, all couplings")
    # Conventional training: the ordinary ResNet is far from recurrent, though a recurrent one exists.
    conv = [metric_of(r, "recurrence") for r in results if coupling_of(r) == lo and constraint_of(r) == "none"]
    cmp = compare(results, "recurrence", lambda r: coupling_of(r) == hi and constraint_of(r) == "none",
                  lambda r: coupling_of(r) == lo and constraint_of(r) == "none", min_effect=0.05)
    low = bool(conv) and float(np.mean(conv)) < 0.5
    rows.append({"claim": "conventionally trained ResNets do not learn iterative solutions",
                 "metric": "recurrence", **cmp,
                 "comparison": f"recurrence (state) of the ordinary ResNet (coupling {lo:g}, no constraint) minus "
                               f"the coupled one ({hi:g}); the ordinary one below 0.5",
                 "verdict": ("supported" if cmp["direction"] == "down" and low else
                             "contradicted" if cmp["direction"] == "up" or (conv and np.mean(conv) >= 0.5) else
                             "not resolved at our scale")})
    return rows


# ---------------------------------------------------------------- tables

class MarkdownText(str):
    """Markdown text that Jupyter renders as a table and that can be written to a file as it is."""

    def _repr_markdown_(self) -> str:
        return str(self)


def _table_cell(value) -> str:
    """One cell of a pipe table: a ``|`` inside it escaped, line breaks made spaces."""
    return str(value).replace("\\|", "|").replace("|", "\\|").replace("\n", " ")


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence]) -> MarkdownText:
    """A markdown (pipe) table: one header row, one row per item of ``rows``.

    A ``|`` inside a header or a cell (``max |W_i - W_0|``) is escaped, so
    it cannot split the cell and break the table.
    """
    lines = ["| " + " | ".join(_table_cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_table_cell(c) for c in row) + " |" for row in rows]
    return MarkdownText("\n".join(lines))


def _fmt(c: dict, digits: int = 3) -> str:
    return mean_spread([v for v in c["values"]], digits=digits)


def grid_table(results, metrics=("final_test_acc",) + INDEX_KEYS) -> MarkdownText:
    """One row per grid cell: mean ± sd over seeds (n seeds) of each metric."""
    metrics = [m for m in metrics if m == "final_test_acc" or any(m in r.indices for r in results)]
    tables = {m: cells(results, m) for m in metrics}
    keys = list(tables[metrics[0]])
    other = any(len(k) > 2 for k in keys)              # cells also told apart by other fields
    head = ["constraint", "coupling"] + (["other fields"] if other else []) + \
        [m.replace("final_test_acc", "test accuracy") for m in metrics]
    rows = [(key[0], f"{key[1]:g}", *([", ".join(key[2:])] if other else []), *[_fmt(tables[m][key]) for m in metrics])
            for key in keys]
    return markdown_table(head, rows)


def verdict_table(rows) -> MarkdownText:
    """The claim verdicts of :func:`claim_verdicts` as markdown."""
    out = []
    for r in rows:
        d = "n/a" if not math.isfinite(r["diff"]) else f"{r['diff']:+.3f} ± {r['se']:.3f}"
        out.append((r["claim"], r["comparison"], d, f"**{r['verdict']}**"))
    return markdown_table(["claim", "comparison", "difference ± se", "verdict"], out)


# ---------------------------------------------------------------- chapter 2: Jastrzębski et al.'s claims

def reproduction_verdict(ok) -> str:
    """``"reproduced"``, ``"not reproduced"`` or (``ok=None``) ``"not tested"``."""
    return "not tested" if ok is None else "reproduced" if ok else "not reproduced"


def rank_corr(values) -> float:
    """Spearman correlation between position and value (no ties): negative = falling with depth."""
    r = np.argsort(np.argsort(values))
    return float(np.corrcoef(np.arange(len(values)), r)[0, 1])


def sign_test_p(fixed: int, broken: int) -> float:
    """Two-sided sign test on the examples that changed: P(at least this lopsided | fixed, broken equally likely)."""
    n, k = fixed + broken, min(fixed, broken)
    return 1.0 if n == 0 else min(1.0, 2 * sum(math.comb(n, j) for j in range(k + 1)) / 2 ** n)


def refinement_claims(reports: list) -> list[tuple]:
    """Jastrzębski et al.'s (2018) findings checked on chapter 2's networks, one row per claim.

    ``reports``: :func:`itercourse.refinement.refinement_report` dicts of the
    networks (their ``borderline[1]`` is the scaled unrolling). Each row is
    (claim with our criterion, what the paper reports, what we measure, verdict).
    """
    claims = []
    cos_all = [rep["alignment"] for rep in reports]
    neg = [sum(v < 0 for v in c.values) for c in cos_all]
    claims.append(("cosine negative for every block", "yes (all blocks, ResNet-110)",
                   "; ".join(f"{k}/{len(c)} negative" for k, c in zip(neg, cos_all)),
                   reproduction_verdict(all(k == len(c) for k, c in zip(neg, cos_all)))))
    last_vs_first = [(np.mean(c.per_stage()[-1]), np.mean(c.per_stage()[0])) for c in cos_all]
    claims.append(("cosine most negative in the higher blocks (mean over last stage < over first stage)",
                   "yes; last block near -0.1", "; ".join(f"{a:+.3f} vs {b:+.3f}" for a, b in last_vs_first),
                   reproduction_verdict(all(a < b for a, b in last_vs_first))))
    ratios = [rep["norm_ratio"].values for rep in reports]
    corr = [rank_corr(r) for r in ratios]
    claims.append(("norm ratio largest in the first blocks and falling with depth (first > last, rank corr. < 0)",
                   "up to ~2 in the first blocks, then falling",
                   "; ".join(f"{r[0]:.2f} -> {r[-1]:.2f}, corr {c:+.2f}" for r, c in zip(ratios, corr)),
                   reproduction_verdict(all(r[0] > r[-1] and c < 0 for r, c in zip(ratios, corr)))))
    costs = [rep["drop"].acc_cost.values for rep in reports]
    claims.append(("dropping the first block costs the most accuracy", "catastrophic",
                   "; ".join(f"first {c[0]:+.3f}, worst other {max(c[1:]):+.3f}" for c in costs),
                   reproduction_verdict(all(int(np.argmax(c)) == 0 for c in costs))))
    last_stage = [[c for c, s in zip(rep["drop"].acc_cost.values, rep["drop"].acc.stage)
                   if s == max(rep["drop"].acc.stage)] for rep in reports]
    cheap = [np.median(ls) < 0.25 * c[0] for ls, c in zip(last_stage, costs)]
    claims.append(("dropping a higher block costs little (median cost in the last stage < 1/4 of the first block's)",
                   "little", "; ".join(f"median {np.median(ls):+.3f}" for ls in last_stage),
                   reproduction_verdict(all(cheap))))
    unrolls = [rep["unroll"] for rep in reports]
    k = max(unrolls[0][0].extra_steps)
    growth = [[u.state_norm[-1] / u.state_norm[0] for u in us] for us in unrolls]   # [plain, scaled] per network
    claims.append((f"unrolled plainly, activations explode ({k} extra steps: norm grows > 2x; scaled grows less)",
                   "explode unless the block output is scaled",
                   "; ".join(f"plain x{g[0]:.3g}, scaled x{g[1]:.3g}" for g in growth),
                   reproduction_verdict(all(g[0] > 2 and g[1] < g[0] for g in growth))))
    bl = [rep["borderline"][1] for rep in reports]                                   # the scaled unrolling
    fixed, broken, n_b = sum(b.fixed for b in bl), sum(b.broken for b in bl), sum(b.n_borderline for b in bl)
    p = sign_test_p(fixed, broken)
    claims.append(("scaled unrolling improves borderline examples (fixed > broken, sign test p < 0.05)",
                   "43% -> 53% of ~51 images (20 steps, 4 runs)",
                   f"n = {n_b}; " + "; ".join(f"{b.acc_before:.2f} -> {b.acc_after:.2f}" for b in bl)
                   + f"; fixed {fixed}, broken {broken}, p = {p:.2g}",
                   reproduction_verdict(None if n_b < 10 else fixed > broken and p < 0.05)))
    return claims
