"""Tables, figures and verdicts for a coupling x constraint x seed grid of results.

A grid cell is a (constraint, coupling) pair; its seeds give the spread. Every
claim check compares two groups of runs by the difference of their means
against the seed noise:

    diff = mean(B) - mean(A),     se = s_pooled * sqrt(1/n_A + 1/n_B)

with ``s_pooled`` the within-cell standard deviation pooled over all cells
(so two seeds per cell still give a usable noise estimate). An effect counts
as resolved when ``|diff| > 2 se`` and ``|diff| >= min_effect``. With two
seeds this is a rough screen, not a significance test; the chapters say so.

The claims are the qualitative findings of Lippl, Peters & Kriegeskorte
(2021), as stated in their abstracts (REFERENCE.md).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .io import atomic_write_bytes

INDEX_KEYS = ("recurrence", "recurrence_performance", "convergence", "divergence")
INDEX_RANGES = {"recurrence": (-1.05, 1.05), "recurrence_performance": (-1.05, 1.05),
                "convergence": (-0.03, 1.03), "divergence": (-0.03, 1.03)}
INDEX_TITLES = {"recurrence": "recurrence index (state)", "recurrence_performance": "recurrence index (performance)",
                "convergence": "convergence index", "divergence": "divergence index (high = survives)"}


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


def cells(results, metric: str = "final_test_acc") -> dict:
    """``{(constraint, coupling): {"values", "mean", "sd", "n", "min", "max"}}`` over seeds."""
    groups: dict = {}
    for r in results:
        groups.setdefault((constraint_of(r), coupling_of(r)), []).append(metric_of(r, metric))
    out = {}
    for key in sorted(groups, key=lambda k: (k[0] != "none", k[0], k[1])):
        v = np.array(groups[key], dtype=float)
        out[key] = {"values": v.tolist(), "mean": float(np.nanmean(v)), "n": int(np.isfinite(v).sum()),
                    "sd": float(np.nanstd(v, ddof=1)) if np.isfinite(v).sum() > 1 else float("nan"),
                    "min": float(np.nanmin(v)), "max": float(np.nanmax(v))}
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


# ---------------------------------------------------------------- figures

def _colours(keys):
    palette = {"none": "tab:blue"}
    others = ["tab:orange", "tab:green", "tab:red", "tab:purple"]
    for k in keys:
        if k not in palette:
            palette[k] = others[(len(palette) - 1) % len(others)]
    return palette


def plot_vs_coupling(results, metric: str = "final_test_acc", ax=None, *, title: str | None = None,
                     ylabel: str | None = None):
    """``metric`` against coupling strength: every seed as a dot, the cell mean as a line, one colour per constraint."""
    import matplotlib.pyplot as plt
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3.2))
    table = cells(results, metric)
    colours = _colours(sorted({k[0] for k in table}, key=lambda k: (k != "none", k)))
    for con in colours:
        keys = sorted(k for k in table if k[0] == con)
        if not keys:
            continue
        lams = [k[1] for k in keys]
        offset = 0.012 * (list(colours).index(con) - 0.5)
        for k in keys:
            vals = table[k]["values"]
            ax.plot([k[1] + offset] * len(vals), vals, "o", ms=4, alpha=0.55, color=colours[con])
        ax.plot(lams, [table[k]["mean"] for k in keys], "-", color=colours[con],
                label=f"{'no constraint' if con == 'none' else 'Lip(F) <= ' + con[2:]}")
    ax.set_xlabel("coupling strength $\\lambda$")
    ax.set_ylabel(ylabel or metric.replace("_", " "))
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return ax


def plot_indices(results, axes=None):
    """The indices against coupling, one panel each, both constraints; returns the figure."""
    import matplotlib.pyplot as plt
    keys = [k for k in INDEX_KEYS if any(k in r.indices for r in results)]
    if axes is None:
        fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.2))
    axes = np.atleast_1d(axes)
    for k, ax in zip(keys, axes):
        plot_vs_coupling(results, k, ax, title=INDEX_TITLES[k], ylabel="index")
        ax.set_ylim(*INDEX_RANGES[k])            # the index's whole range: small wiggles look small
    fig = axes[0].figure
    fig.tight_layout()
    return fig


def plot_accuracy_vs_effective_parameters(results, extra=(), ax=None):
    """Test accuracy against effective parameters (coupling.effective_parameters), grid and ``extra`` runs."""
    import matplotlib.pyplot as plt
    if ax is None:
        _, ax = plt.subplots(figsize=(4.8, 3.4))
    colours = _colours(sorted({constraint_of(r) for r in list(results) + list(extra)}, key=lambda k: (k != "none", k)))
    for r in results:
        ax.scatter(r.extras["effective_parameters"] / 1e3, r.final_test_acc, s=12 + 40 * coupling_of(r),
                   color=colours[constraint_of(r)], alpha=0.6)
    for r in extra:
        ax.scatter(r.extras["effective_parameters"] / 1e3, r.final_test_acc, marker="x", s=50,
                   color=colours[constraint_of(r)])
    for con, colour in colours.items():
        ax.scatter([], [], color=colour, label="no constraint" if con == "none" else f"Lip(F) <= {con[2:]}")
    ax.legend(fontsize=8)
    ax.set_xlabel("effective parameters (thousands)")
    ax.set_ylabel("test accuracy")
    ax.set_title("dots: grid (size ~ coupling); x: narrower uncoupled net", fontsize=9)
    return ax


# ---------------------------------------------------------------- tables

def _fmt(c: dict, digits: int = 3) -> str:
    if c["n"] == 0:
        return "n/a"
    sd = "" if not math.isfinite(c["sd"]) else f" ± {c['sd']:.{digits}f}"
    return f"{c['mean']:.{digits}f}{sd} (n={c['n']})"


def markdown_table(results, metrics=("final_test_acc",) + INDEX_KEYS) -> str:
    """One row per grid cell: mean ± seed standard deviation (n seeds) of each metric."""
    metrics = [m for m in metrics if m == "final_test_acc" or any(m in r.indices for r in results)]
    tables = {m: cells(results, m) for m in metrics}
    head = "| constraint | coupling | " + " | ".join(m.replace("final_test_acc", "test accuracy") for m in metrics) + " |"
    lines = [head, "|" + "---|" * (len(metrics) + 2)]
    for key in tables[metrics[0]]:
        lines.append(f"| {key[0]} | {key[1]:g} | " + " | ".join(_fmt(tables[m][key]) for m in metrics) + " |")
    return "\n".join(lines)


def verdict_table(rows) -> str:
    """The claim verdicts as markdown."""
    lines = ["| claim | comparison | difference ± se | verdict |", "|---|---|---|---|"]
    for r in rows:
        d = "n/a" if not math.isfinite(r["diff"]) else f"{r['diff']:+.3f} ± {r['se']:.3f}"
        lines.append(f"| {r['claim']} | {r['comparison']} | {d} | **{r['verdict']}** |")
    return "\n".join(lines)


def write_report(experiment: str, results_dir="results", out_dir="report") -> list[Path]:
    """Write ``report.md``, ``accuracy.png`` and ``indices.png`` for one experiment folder; return the paths."""
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .experiments import load_results
    results = load_results(experiment, results_dir)
    if not results:
        raise FileNotFoundError(f"no results in {str(Path(results_dir) / experiment)!r}; run "
                                f"'python -m itercourse sweep --preset ...' first, or pass --results-dir")
    out = Path(out_dir)
    paths = []

    def save(fig, name):
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
        plt.close(fig)
        paths.append(atomic_write_bytes(out / name, buf.getvalue()))

    ax = plot_vs_coupling(results, "final_test_acc", title=f"{experiment}: test accuracy", ylabel="test accuracy")
    save(ax.figure, "accuracy.png")
    save(plot_indices(results), "indices.png")
    cfg = results[0].config
    seeds = sorted({r.config.seed for r in results})
    text = [f"# {experiment}", "",
            f"{len(results)} runs; dataset {cfg.dataset} ({cfg.train_size} train / {cfg.test_size} test images), "
            f"widths {cfg.model.widths}, blocks {cfg.model.blocks}, {cfg.train.epochs} epochs, seeds {seeds}.",
            "", "## Accuracy and indices (mean ± sd over seeds)", "", markdown_table(results), "",
            "![accuracy](accuracy.png)", "", "![indices](indices.png)", ""]
    if len({coupling_of(r) for r in results}) > 1 and len({constraint_of(r) for r in results}) > 1:
        text += ["## The paper's claims at this scale", "", verdict_table(claim_verdicts(results)), ""]
    paths.append(atomic_write_bytes(out / "report.md", "\n".join(text).encode()))
    return paths
