"""Reporting: seed statistics and markdown tables (verdicts: ``itercourse.verdicts``; figures: ``itercourse.viz``;
a results folder's report.md: ``itercourse.experiment_report``).

Results over seeds are reported one way everywhere: ``mean ± sd (n=k)``,
with ``sd`` the sample standard deviation over seeds (:func:`spread`); a
difference between two groups of seeds as ``diff [95% CI]`` with its Welch
interval (:func:`welch_ci`), its p-value (:func:`welch_p`) and, for a table of
tests, Holm's adjustment (:func:`holm`). The rule that turns these numbers
into the words "supported", "contradicted" and "not resolved" lives in
:mod:`itercourse.verdicts`, the one home of every chapter's verdicts.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict, is_dataclass
from typing import Iterable, Sequence

import numpy as np

from .config_id import _canonical, canonical_config, flat

INDEX_KEYS = ("recurrence", "recurrence_performance", "convergence", "divergence")
INDEX_RANGES = {"recurrence": (-1.05, 1.05), "recurrence_performance": (-1.05, 1.05),
                "convergence": (-0.03, 1.03), "divergence": (-0.03, 1.03)}
INDEX_TITLES = {"recurrence": "recurrence index (state)", "recurrence_performance": "recurrence index (performance)",
                "convergence": "convergence index", "divergence": "divergence index (high = survives)"}


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


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the regularised incomplete beta function (modified Lentz, ~1e-14)."""
    tiny, c, d = 1e-300, 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def t_cdf(t: float, df: float) -> float:
    """``P(T <= t)`` for Student's t with ``df > 0`` degrees of freedom (``df = inf``: the normal).

    Through the regularised incomplete beta function, ``P(|T| > |t|) = I_{df/(df+t^2)}(df/2, 1/2)``
    (numpy-free, about 1e-12 accurate): ``t_cdf(2.228, 10) = 0.975``.
    """
    if not df > 0:
        raise ValueError(f"t_cdf needs df > 0; got df={df!r}")
    if math.isinf(df):
        return 0.5 * math.erfc(-t / math.sqrt(2))
    x = df / (df + t * t)
    a, b = df / 2, 0.5
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)) \
        if 0 < x < 1 else 0.0
    tail = front * _betacf(a, b, x) / a if x < (a + 1) / (a + b + 2) else \
        1.0 - (front * _betacf(b, a, 1 - x) / b if x < 1 else 0.0)       # P(|T| > |t|)
    return 1 - tail / 2 if t >= 0 else tail / 2


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (``0.5 < p < 1``, ``df > 0``).

    Bisection on :func:`t_cdf`: ``t_quantile(0.975, 2) = 4.303``, ``(0.975, 10) = 2.228``.
    """
    if not 0.5 < p < 1 or not df > 0:
        raise ValueError(f"t_quantile needs 0.5 < p < 1 and df > 0; got p={p!r}, df={df!r}")
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        lo, hi = hi, 2 * hi
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
    return (lo + hi) / 2


def welch_ci(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> dict:
    """The difference of means ``mean(b) - mean(a)`` over seeds with its Welch ``level`` CI and n.

        d = mean(b) - mean(a),   se = sqrt(s_a^2 / n_a + s_b^2 / n_b),   d ± t_{(1+level)/2, df} se

    with the Welch-Satterthwaite ``df``. Returns ``diff``, ``low``, ``high``, ``n_a``, ``n_b``, ``df``;
    and ``se``; the interval is nan when either group has fewer than two values (no spread to estimate).
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
        out.update(low=out["diff"], high=out["diff"], df=float("inf"), se=0.0)
        return out
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = t_quantile((1 + level) / 2, df) * se
    out.update(low=out["diff"] - half, high=out["diff"] + half, df=df, se=se)
    return out


def welch_p(ci: dict, *, above: float | None = None) -> float:
    """The Welch test's p-value from a :func:`welch_ci` result (nan where its interval is nan).

    ``above=None``: two-sided, H0 ``diff = 0``. ``above=m``: one-sided, H0 ``diff >= m`` against
    ``diff < m`` (a non-superiority test: small p says the true difference is below the margin ``m``).
    """
    d, se = ci["diff"], ci.get("se", float("nan"))
    if not (math.isfinite(d) and math.isfinite(se)):
        return float("nan")
    if se == 0:                                          # identical values in both groups: no noise at all
        return (0.0 if d != 0 else 1.0) if above is None else (0.0 if d < above else 1.0)
    if above is None:
        return min(1.0, 2 * t_cdf(-abs(d) / se, ci["df"]))
    return t_cdf((d - above) / se, ci["df"])


def holm(p_values: Sequence[float]) -> list:
    """Holm's step-down adjustment of ``p_values`` (family-wise error control; nan stays nan, not counted).

    Sorted ascending, the ``k``-th smallest of ``m`` becomes ``max_{j <= k} min(1, (m - j + 1) p_(j))``;
    an adjusted p below alpha rejects at family-wise level alpha.
    """
    finite = [(p, i) for i, p in enumerate(p_values) if math.isfinite(p)]
    out = [float("nan")] * len(p_values)
    running, m = 0.0, len(finite)
    for j, (p, i) in enumerate(sorted(finite)):
        running = max(running, min(1.0, (m - j) * p))
        out[i] = running
    return out


# ---------------------------------------------------------------- grid results

def coupling_of(r) -> float:
    """Coupling strength of a result (0 = off)."""
    return float(r.config.train.coupling)


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


# ---------------------------------------------------------------- chapter 2: Jastrzębski et al.'s claims

def rank_corr(values) -> float:
    """Spearman correlation between position and value (no ties): negative = falling with depth."""
    r = np.argsort(np.argsort(values))
    return float(np.corrcoef(np.arange(len(values)), r)[0, 1])


