"""The three indices of iterative convergence: recurrence, convergence and divergence.

Lippl et al. (2021) say an iterative method has two properties, *iteration*
(the same step applied again and again) and *convergence* (the steps settle
on a fixed point), and define three indices of iterative convergence to
measure them in ResNets. Their exact formulas were not available to us, so
the definitions below are **our operationalisation** of those two properties;
the paper's may differ. Each index is computed per stage of same-shape blocks
``h_{i+1} = B_i(h_i)``, ``i = 0 .. n-1`` (``h_0`` = the stage's input after
its transition), pooled over the examples of a loader, then averaged over
stages (every stage counts the same).

Recurrence (iteration): can block j stand in for block i? Two kinds:

    "state" (default):  r_ij = 2 <d_i, d_ij> / (||d_i||^2 + ||d_ij||^2)
                        d_i = B_i(h_i) - h_i,   d_ij = B_j(h_i) - h_i
    "performance":      R_ij = clip((P_swap - P_drop_i) / (P_intact - P_drop_i), -1, 1),  P = -mean loss

``r_ij = 1`` exactly when block j, put where block i is, takes block i's step
(shared weights: 1 up to float rounding); 0 when the two steps are orthogonal
(unrelated blocks); -1 when opposite. ``R_ij = 1``: swapping in block j costs
nothing; 0: as bad as leaving slot i empty; -1 or below (clipped): worse than
empty. The stage index is the mean over ordered pairs i != j (all of them,
or ``max_pairs`` drawn with a seed), reported with its standard error.

Convergence: does the residual stream settle beyond the trained depth? Apply
the stage's last block ``(F - 1) n`` more times (F = the largest depth
factor, :func:`itercourse.walk.iterate_last_block`) and watch the *absolute*
update sizes, root-mean-square over examples,

    v_t = ||h_{t+1} - h_t||,     rho = (v_e / v_m) ** (1 / (e - m)),     C = clip(1 - rho, 0, 1)

``rho`` is the late-step contraction rate: the geometric-mean factor by which
one step shrinks the update over the second half ``m .. e`` of the extra steps
(``e`` = the last step, or the first step whose update is below float
precision, ``SETTLED`` times ``||h_n||``). A linear contraction with rate q
gives ``rho = q``, an isometry 1, an expanding map more than 1. ``C`` is the
fraction of the update removed per late step; the criterion
(:func:`is_convergent`) asks ``rho <= RATE_MAX`` (``C >= CONVERGENT_C``).

Divergence: does performance survive extra iterations? With ``acc_f`` the
accuracy after running stage s at ``f`` times its depth (extra steps by its
last block, the later stages as trained), ``chance`` the accuracy of the best
constant guess on the same labels and ``F`` the largest factor,

    D = clip((acc_F - chance) / (acc_{F/2} - chance), 0, 1)        (acc_{F/2} = acc_1 when F = 2)

``D = 1``: the second half of the extra iterations loses no accuracy, so a
network that settles on a fixed point after its trained depth keeps its score;
``D = 0``: down to chance, or already at chance by ``F/2``. High means *not*
divergent. The retention ``R_f = clip((acc_f - chance) / (acc_1 - chance), 0, 1)``
(how much of the trained depth's accuracy is left) is reported beside it.

The block map itself: for each stage, ``||h_t||`` along the extra iterations
(``state_norms``), the stream's growth per step ``(||h_{Fn}|| / ||h_n||)^(1/((F-1)n))``
and the growth rate of the linearised map ``h -> B(h)`` at the trained states
(power iteration on its Jacobian ``I + J_F``, :func:`itercourse.lipschitz.block_map_growth`).

**Version 2.** The first version of these indices (``indices_version`` absent)
divided the update by ``||h_t||`` and compared it with the update at the trained
depth: a growing stream scored as converging (an isometry reached C = 0.65 at
F = 8), a true contraction at rate 0.9 failed at F = 4, and D compared with the
trained depth, so a network that settles after depth n on a slightly different
state failed. Chapter 6 shows both versions on the same known systems.

Source: Lippl, Peters & Kriegeskorte (2021), abstract (the two properties and
the three indices); the block drop/unroll tests of Jastrzębski et al. (2018,
Sec. 4.3-4.4). Validated on systems with known answers in ``itercourse.toys``.
"""
from __future__ import annotations

import math
import warnings
from collections import Counter
from numbers import Integral

import torch

from .errors import check_choice, check_int
from .fixedpoint import relative_update_size, rms_over_examples
from .lipschitz import block_map_growth
from .objectives import check_labels, correct_mask, task_loss
from .walk import check_model, device_of, eval_mode, finish, iterate_last_block, stage_states

KINDS = ("state", "performance")
DEPTH_FACTORS = (2, 4)   # extra iterations: the stage is run at 2x and 4x its trained depth
MAX_PAIRS = 48           # block pairs per stage (of n (n - 1)); keeps the "state" cost linear in depth
LOSS_CAP = 1e6           # per-example loss of a blown-up (non-finite) output, so sums stay finite
DEGENERATE_TOL = 1e-4    # |P_intact - P_drop| below this (relative): dropping the block changes nothing
SETTLED = 1e-6           # update size relative to ||h_n|| at float32 precision: the stream has stopped moving
INDICES_VERSION = 2      # recorded in every result; version 1 (no field) measured u_t / ||h_t|| (see docstring)
RATE_MAX = 0.95          # criterion: each late extra step shrinks the update by at least 5%
CONVERGENT_C = 1.0 - RATE_MAX   # the same criterion on C = 1 - rho
CONVERGENT_D = 0.8       # criterion: the second half of the extra iterations keeps >= 80% of the accuracy
GROWTH_ITERATIONS = 20   # power-iteration steps for the block map's Jacobian growth rate
GROWTH_EXAMPLES = 64     # examples (of the first batch) whose Jacobian growth is measured
MAX_DEPTH_FACTOR = 1000  # the deepest iteration the indices may ask for: 1000x the trained depth


# ---------------------------------------------------------------- checks and helpers

def _check_factors(depth_factors) -> tuple:
    if isinstance(depth_factors, Integral):
        depth_factors = (depth_factors,)
    if not isinstance(depth_factors, (tuple, list)) or len(depth_factors) == 0:
        raise TypeError(f"depth_factors={depth_factors!r} must be a non-empty tuple of integers >= 2, e.g. (2, 4)")
    for f in depth_factors:
        check_int("depth_factors[i]", f, minimum=2, maximum=MAX_DEPTH_FACTOR)
    return tuple(sorted(set(int(f) for f in depth_factors)))


def sample_pairs(n: int, max_pairs: int | None = MAX_PAIRS, seed: int = 0) -> list[tuple[int, int]]:
    """Ordered pairs ``(i, j)``, ``i != j``, of ``n`` blocks: all ``n (n - 1)``, or ``max_pairs`` drawn without replacement."""
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
    if max_pairs is not None and len(pairs) > max_pairs:
        gen = torch.Generator().manual_seed(seed)
        keep = torch.randperm(len(pairs), generator=gen)[:max_pairs].sort().values
        pairs = [pairs[k] for k in keep.tolist()]
    return pairs


def chance_accuracy(labels) -> float:
    """Accuracy of the best constant guess: the frequency of the most common label (or label set)."""
    counts: Counter = Counter()
    for y in labels:
        y = y.detach().cpu()
        if y.is_floating_point() and y.dim() == 2:                 # multi-hot label sets
            rows, k = torch.unique(y > 0.5, dim=0, return_counts=True)
            counts.update({tuple(r.tolist()): int(c) for r, c in zip(rows, k)})
        else:
            counts.update(y.reshape(-1).tolist())
    n = sum(counts.values())
    if n == 0:
        raise ValueError("labels are empty; chance_accuracy needs at least one label")
    return max(counts.values()) / n


def _sq(t: torch.Tensor) -> torch.Tensor:
    """Sum over examples of ``||t_b||^2``, per-example norms in the input dtype, the sum in float64, on the device."""
    return torch.linalg.vector_norm(t.flatten(1), dim=1).double().pow(2).sum()


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Sum over examples of ``<a_b, b_b>``, accumulated in float64."""
    return torch.vdot(a.reshape(-1), b.reshape(-1)).double()


def _mean_sem(values: list[float]):
    """Mean and standard error (std / sqrt(m)); the error is None for fewer than two values."""
    if not values:
        return None, None
    m = len(values)
    mean = sum(values) / m
    if m < 2:
        return mean, None
    var = sum((v - mean) ** 2 for v in values) / (m - 1)
    return mean, math.sqrt(var / m)


def _overall(per_stage: list[dict], key: str):
    """Mean over stages that have a value, and its error sqrt(sum sem^2) / k (None when any is missing)."""
    vals = [st[key] for st in per_stage if st.get(key) is not None]
    if not vals:
        return None, None
    sems = [st.get(key + "_sem") for st in per_stage if st.get(key) is not None]
    sem = math.sqrt(sum(e * e for e in sems)) / len(vals) if all(e is not None for e in sems) else None
    return sum(vals) / len(vals), sem


class _Scorer:
    """Loss sum and correct count of logits against labels; non-finite outputs count as wrong, loss LOSS_CAP."""

    def __init__(self, y: torch.Tensor):
        self.y = y

    def __call__(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        finite = torch.isfinite(logits).all(1)
        safe = torch.where(finite[:, None], logits, torch.zeros_like(logits))
        loss = task_loss(safe, self.y, reduction="none").double()
        loss = torch.where(finite & torch.isfinite(loss), loss.clamp(max=LOSS_CAP), torch.full_like(loss, LOSS_CAP))
        return loss.sum(), (correct_mask(safe, self.y) & finite).sum()


# ---------------------------------------------------------------- one pass over the data

@torch.no_grad()
def _pair(item, model):
    """One ``(x, y)`` batch of a loader, checked against the model before any block runs."""
    if not (isinstance(item, (tuple, list)) and len(item) == 2):
        got = f"a {type(item).__name__}" + (f" of shape {tuple(item.shape)}" if hasattr(item, "shape") else "")
        raise TypeError(f"loader must yield (x, y) batches of images and labels; it yielded {got}. "
                        "Allowed: a data.loader(...) or a list of (x, y) pairs")
    check = getattr(model, "_check_input", None)       # channels and dtype, as model(x) checks them
    if check is not None:
        check(item[0])
    classes = getattr(getattr(model, "fc", None), "out_features", None)
    if classes is not None:                            # torch's own errors for bad labels name nothing
        check_labels(item[1], classes, len(item[0]))
    return item


def _measure(model, loader, *, recurrence: bool, iteration: bool, kind: str = "state",
             max_pairs: int | None = MAX_PAIRS, depth_factors=DEPTH_FACTORS, seed: int = 0, device=None,
             chance: float | None = None) -> dict:
    """Accumulate everything the indices need in one pass, reusing each batch's block-boundary states."""
    check_model(model, every_stage=True)
    check_choice("kind", kind, KINDS)
    if max_pairs is not None:
        check_int("max_pairs", max_pairs, minimum=1)
    check_int("seed", seed, minimum=0)
    factors = _check_factors(depth_factors)
    device = device_of(model, device)
    stages = list(model.stages)
    ns = [len(st.blocks) for st in stages]
    F = factors[-1]
    measured = tuple(sorted(set(factors) | ({F // 2} if F // 2 >= 2 else set())))   # D needs acc at F/2
    pairs = [sample_pairs(n, max_pairs, seed + 7919 * s) if recurrence else [] for s, n in enumerate(ns)]

    # Sums over examples, kept as float64 tensors on the device (one transfer at the end).
    zero = lambda: torch.zeros((), dtype=torch.float64, device=device)   # noqa: E731
    n_seen, labels = 0, []
    base = [zero(), zero()]                                       # loss sum, correct count of the intact net
    rec = [{p: [zero(), zero()] for p in ps} for ps in pairs]     # state: 2<d_i,d_ij>, |d_i|^2+|d_ij|^2; perf: swap loss
    drop = [{i: zero() for i, _ in ps} for ps in pairs]           # performance: loss sum with block i dropped
    step_sq = [[zero() for _ in range(F * n)] for n in ns]        # ||h_{t+1} - h_t||^2, t = 0 .. Fn-1
    state_sq = [[zero() for _ in range(F * n + 1)] for n in ns]   # ||h_t||^2, t = 0 .. Fn
    deep = [[zero() for _ in measured] for _ in ns]               # correct count at depth f n, per factor
    growth = [None for _ in ns]                                   # Jacobian growth of the last block, batch 1

    with eval_mode(model), torch.no_grad():          # measurements only: no graph (at 16x depth it held GBs)
        for item in loader:
            x, y = _pair(item, model)
            x, y = x.to(device), y.to(device)
            score = _Scorer(y)
            labels.append(y)
            # The base pass: every stage's states h_0 .. h_n, kept for reuse (cost: one forward).
            states = stage_states(model, x)
            for s, hs in enumerate(states):
                if not all(bool(torch.isfinite(t).all()) for t in hs):
                    raise ValueError(f"the residual stream of stage {s} is not finite at the trained depth "
                                     "(inf or NaN in the model's own forward pass); the indices need a working model")
            h = states[-1][-1]
            loss, correct = score(model.readout(h))
            base[0] += loss
            base[1] += correct
            n_seen += len(x)

            for s, st in enumerate(stages):
                hs, n = states[s], ns[s]
                steps = [hs[t + 1] - hs[t] for t in range(n)]     # d_t = B_t(h_t) - h_t
                if recurrence and kind == "state":                # one block application per pair
                    for (i, j), acc in rec[s].items():
                        d_ij = st.blocks[j](hs[i]) - hs[i]
                        acc[0] += 2.0 * _dot(steps[i], d_ij)
                        acc[1] += _sq(steps[i]) + _sq(d_ij)
                elif recurrence:                                  # performance: run the rest of the net
                    for i in drop[s]:
                        drop[s][i] += score(finish(model, hs[i], s, i + 1))[0]            # slot i left empty
                    for (i, j), acc in rec[s].items():
                        acc[0] += score(finish(model, st.blocks[j](hs[i]), s, i + 1))[0]   # block j in slot i
                if iteration:
                    for t in range(n):                            # the trained steps
                        step_sq[s][t] += _sq(steps[t])
                        state_sq[s][t] += _sq(hs[t])
                    h, marks = hs[n], {f * n: k for k, f in enumerate(measured)}
                    if growth[s] is None:                         # the linearised block map at h_n
                        growth[s] = block_map_growth(st.blocks[n - 1], h[:GROWTH_EXAMPLES],
                                                     n_iter=GROWTH_ITERATIONS, seed=seed + s)
                    extra = iterate_last_block(st, h, (F - 1) * n)  # h_{n+1} .. h_{Fn}, one at a time
                    for t, h_next in enumerate(extra, start=n):   # extra steps of the last block
                        step_sq[s][t] += _sq(h_next - h)
                        state_sq[s][t] += _sq(h)
                        h = h_next
                        if t + 1 in marks:
                            deep[s][marks[t + 1]] += score(finish(model, h, s, n))[1]
                    state_sq[s][F * n] += _sq(h)
    if n_seen == 0:
        raise ValueError("loader yielded no batches; the indices need at least one batch of (x, y)")

    val = lambda t: float(t.detach()) if torch.is_tensor(t) else float(t)   # noqa: E731  (device -> float)
    loss_sum = val(base[0])
    out = {"indices_version": INDICES_VERSION, "n": n_seen, "loss": loss_sum / n_seen,
           "acc": val(base[1]) / n_seen, "kind": kind,
           "max_pairs": max_pairs, "depth_factors": list(factors), "per_stage": []}
    chance = chance_accuracy(labels) if chance is None else float(chance)
    at_chance = out["acc"] - chance <= 1e-12
    if iteration:
        out["chance"] = chance
        if at_chance:
            warnings.warn(f"accuracy {out['acc']:.4f} is at or below chance ({chance:.4f}); the divergence index "
                          "is degenerate: 1 where extra iterations lose nothing, else 0", RuntimeWarning, stacklevel=3)
    for s, n in enumerate(ns):
        st: dict = {"stage": s, "blocks": n}
        if recurrence:
            st.update(_recurrence_stage(kind, {p: (val(a), val(b)) for p, (a, b) in rec[s].items()},
                                        {i: val(v) for i, v in drop[s].items()}, loss_sum, n_seen))
        if iteration:
            st.update(_convergence_stage([val(v) for v in step_sq[s]], [val(v) for v in state_sq[s]], n, F,
                                         n_seen))
            st.update(_divergence_stage([val(v) for v in deep[s]], n_seen, out["acc"], chance, factors,
                                        measured, at_chance))
            st["jacobian_growth"] = growth[s]
        out["per_stage"].append(st)
    return out


def _recurrence_stage(kind: str, rec: dict, drop: dict, loss_sum: float, n: int) -> dict:
    values, degenerate = [], 0
    for (i, j), (a, b) in rec.items():
        if kind == "state":
            r = a / b if b > 0 else 1.0                     # both steps exactly zero: identical at these inputs
        else:
            p_int, p_drop, p_swap = -loss_sum / n, -drop[i] / n, -a / n
            den = p_int - p_drop
            if abs(den) <= DEGENERATE_TOL * max(1.0, abs(p_int)):
                degenerate += 1                             # dropping block i changes nothing: pair uninformative
                continue
            r = min(1.0, max(-1.0, (p_swap - p_drop) / den))
        values.append([i, j, r])
    index, sem = _mean_sem([v[2] for v in values])
    return {"recurrence": index, "recurrence_sem": sem, "pairs": values, "degenerate_pairs": degenerate}


def late_rate(v: list, n: int, floor: float) -> float:
    """The late-step contraction rate of absolute update sizes ``v_0 .. v_{Fn-1}`` (n trained steps).

        rho = (v_e / v_m) ** (1 / (e - m)),   m = the middle of the window n-1 .. e

    ``e``: the first extra step whose update is at most ``floor`` (float precision),
    else the last step. An update that is already below ``floor`` at the
    trained depth gives 0 if it stays there and ``inf`` if it moves again;
    a non-finite update (overflow) gives ``inf``.
    """
    start, last = n - 1, len(v) - 1
    if not all(math.isfinite(x) for x in v[start:]):
        return math.inf
    if v[start] <= floor:
        return 0.0 if all(x <= floor for x in v[n:]) else math.inf
    end = next((t for t in range(n, last + 1) if v[t] <= floor), last)
    mid = start + (end - start) // 2
    return (v[end] / v[mid]) ** (1.0 / (end - mid))


def _convergence_stage(step_sq: list, state_sq: list, n: int, F: int, count: int) -> dict:
    v = [rms_over_examples(a, count) for a in step_sq]      # absolute update sizes, t = 0 .. Fn-1
    norms = [rms_over_examples(a, count) for a in state_sq]  # ||h_t||, t = 0 .. Fn
    u = [relative_update_size(x, h) for x, h in zip(v, norms)]   # u_t = v_t / ||h_t||, both RMS
    rate = late_rate(v, n, SETTLED * norms[n]) if math.isfinite(norms[n]) else math.inf
    c = min(1.0, max(0.0, 1.0 - rate)) if math.isfinite(rate) else 0.0
    end, ref = norms[F * n], norms[n]
    stream = (end / ref) ** (1.0 / ((F - 1) * n)) if math.isfinite(end) and ref > 0 else None
    finite = lambda xs: [x if math.isfinite(x) else None for x in xs]   # noqa: E731  (JSON: overflow -> None)
    return {"convergence": c, "rate": rate if math.isfinite(rate) else None,
            "update_sizes": finite(u), "step_sizes": finite(v), "state_norms": finite(norms),
            "stream_growth": stream}


def _divergence_stage(correct: list, n: int, acc1: float, chance: float, factors: tuple, measured: tuple,
                      at_chance: bool) -> dict:
    acc = {f: c / n for f, c in zip(measured, correct)}
    F = factors[-1]
    ref = acc.get(F // 2, acc1)                             # F = 2: the trained depth is the reference
    if at_chance:
        d = 1.0 if acc[F] >= acc1 else 0.0
        retention = [1.0 if acc[f] >= acc1 else 0.0 for f in factors]
    else:
        d = 0.0 if ref - chance <= 1e-12 else min(1.0, max(0.0, (acc[F] - chance) / (ref - chance)))
        retention = [min(1.0, max(0.0, (acc[f] - chance) / (acc1 - chance))) for f in factors]
    return {"divergence": d, "retention": retention[-1], "retention_by_factor": retention,
            "acc_by_factor": [acc[f] for f in factors], "acc_by_measured_factor": [[f, acc[f]] for f in measured]}


def is_convergent(indices: dict, rate_max: float = RATE_MAX, d_min: float = CONVERGENT_D) -> bool:
    """The convergence criterion: in every stage ``rho <= rate_max`` and ``D >= d_min``.

    Calibrated on known systems (``tests/test_indices.py``, chapter 6): the
    input-injected linear step of :func:`itercourse.toys.convergent_control`
    passes at rates q = 0.5, 0.8, 0.9 and fails at q = 1.0, 1.05, 1.3, at 4x and
    16x depth. Raises ``ValueError`` for indices of version 1 (measured before
    the recalibration: their C and D mean something else; see the module
    docstring) and returns False when a value is missing.
    """
    if not isinstance(indices, dict):
        raise TypeError(f"indices={indices!r} must be the dict of iterative_convergence_indices")
    if indices.get("indices_version", 1) < INDICES_VERSION:
        raise ValueError("indices of version 1 (no 'indices_version') cannot be judged by the recalibrated "
                         "criterion; recompute them from the weights (python -m itercourse reanalyse) or rerun")
    stages = indices.get("per_stage") or [indices]
    for st in stages:
        rate, d = st.get("rate"), st.get("divergence")
        if rate is None or d is None or not (rate <= rate_max and d >= d_min):
            return False
    return True


# ---------------------------------------------------------------- the public indices

def iterative_convergence_indices(model, loader, *, kind: str = "state", max_pairs: int | None = MAX_PAIRS,
                                  depth_factors=DEPTH_FACTORS, seed: int = 0, device=None,
                                  chance: float | None = None) -> dict:
    """The recurrence, convergence and divergence indices of ``model`` on ``loader``, per stage and overall.

    Definitions (ours) in the module docstring. One pass over the data: each
    batch's block-boundary states ``h_0 .. h_n`` of every stage are computed
    once (one forward) and reused. In units of one block application, with
    ``m_s`` pairs in stage s, ``T_s`` the blocks and transitions after stage s
    and ``F`` the largest depth factor, the extra work per batch is

        recurrence "state":        sum_s m_s                                   (B_j(h_i) only)
        recurrence "performance":  sum_s sum_{pairs} (n_s - i + T_s) + sum_{distinct i} (n_s - i - 1 + T_s)
        convergence + divergence:  sum_s ((F - 1) n_s + |factors and F/2| T_s + 1)

    (:func:`evaluation_cost` computes these counts.) Returns a JSON-friendly
    dict: ``recurrence`` (in [-1, 1]; ``None`` when no stage has two blocks),
    ``recurrence_sem``, ``convergence`` and ``divergence`` (in [0, 1]), the
    intact ``acc``/``loss``, ``chance``, ``n`` and ``per_stage`` details
    (pair values, update sizes ``u_t``, accuracy per depth factor).
    """
    out = _measure(model, loader, recurrence=True, iteration=True, kind=kind, max_pairs=max_pairs,
                   depth_factors=depth_factors, seed=seed, device=device, chance=chance)
    rec, rec_sem = _overall(out["per_stage"], "recurrence")
    if rec is None:
        warnings.warn("no stage has two blocks (or every pair was degenerate): recurrence is None",
                      RuntimeWarning, stacklevel=2)
    rates = [st["rate"] for st in out["per_stage"]]
    head = {"recurrence": rec, "recurrence_sem": rec_sem,
            "convergence": _overall(out["per_stage"], "convergence")[0],
            "divergence": _overall(out["per_stage"], "divergence")[0],
            "retention": _overall(out["per_stage"], "retention")[0],
            "rate": None if any(r is None for r in rates) else max(rates)}
    return {**head, **out}


def recurrence_index(model, loader, *, kind: str = "state", max_pairs: int | None = MAX_PAIRS, seed: int = 0,
                     device=None) -> dict:
    """How interchangeable the blocks of each stage are: mean of r_ij (or R_ij) over ordered pairs i != j.

        state:        r_ij = 2 <d_i, d_ij> / (||d_i||^2 + ||d_ij||^2),  d_i = B_i(h_i) - h_i, d_ij = B_j(h_i) - h_i
        performance:  R_ij = clip((P_swap - P_drop_i) / (P_intact - P_drop_i), -1, 1),  P = -mean loss

    1 = interchangeable (a recurrent stage), 0 = unrelated steps / as bad as
    an empty slot, negative = opposite steps / worse than an empty slot.
    Returns ``index``, ``sem`` (standard error over pairs, combined over
    stages) and ``per_stage``. Performance pairs whose drop changes the loss
    by less than ``DEGENERATE_TOL`` are skipped and counted; a stage with one
    block has no pairs and reports ``None``. Raises ``ValueError`` when no
    stage has a usable pair. Our operationalisation of Lippl et al.'s (2021)
    iteration property.
    """
    out = _measure(model, loader, recurrence=True, iteration=False, kind=kind, max_pairs=max_pairs,
                   seed=seed, device=device)
    index, sem = _overall(out["per_stage"], "recurrence")
    if index is None:
        raise ValueError(f"no stage of this model has a usable pair of blocks (blocks per stage: "
                         f"{[st['blocks'] for st in out['per_stage']]}, degenerate pairs: "
                         f"{[st['degenerate_pairs'] for st in out['per_stage']]}); the recurrence index needs "
                         "a stage with at least two blocks whose removal changes the loss")
    return {"index": index, "sem": sem, **out}


def convergence_index(model, loader, *, depth_factors=DEPTH_FACTORS, device=None) -> dict:
    """How fast the updates die out when each stage's last block is iterated beyond the trained depth.

        v_t = ||h_{t+1} - h_t||,   rho = late-step rate of v_t (:func:`late_rate`),   C = clip(1 - rho, 0, 1)

    ``rho < 1``: the updates shrink geometrically (a contraction at rate q gives
    ``rho = q``); ``rho >= 1`` (C = 0): they stay as large or grow. Stream
    overflow gives C = 0; a stream already still at the trained depth gives
    C = 1. Returns ``index`` (mean over stages) and ``per_stage`` (``convergence``,
    ``rate``, ``step_sizes`` v_t, ``update_sizes`` u_t = v_t / ||h_t|| (a ratio of RMS
    values, :func:`itercourse.fixedpoint.relative_update_size`), ``state_norms``,
    ``stream_growth``, ``jacobian_growth``). Our operationalisation (version 2)
    of Lippl et al.'s (2021) convergence property.
    """
    out = _measure(model, loader, recurrence=False, iteration=True, depth_factors=depth_factors, device=device)
    return {"index": _overall(out["per_stage"], "convergence")[0], **out}


def divergence_index(model, loader, *, depth_factors=DEPTH_FACTORS, chance: float | None = None,
                     device=None) -> dict:
    """Whether accuracy survives the second half of the extra iterations (1 = all of it).

        D = clip((acc_F - chance) / (acc_{F/2} - chance), 0, 1),   R_f = clip((acc_f - chance) / (acc_1 - chance), 0, 1)

    ``chance`` defaults to the frequency of the most common label (set) in
    ``loader``. A model at or below chance is degenerate: D = 1 if the
    extra steps lose nothing, else 0 (with a warning). Returns ``index``
    (mean over stages) and ``per_stage`` (with the retention ``R_f`` per
    factor and the accuracy per factor). Our operationalisation (version 2) of the
    convergence property as survival of performance (Lippl et al. 2021;
    Jastrzębski et al. 2018, Sec. 4.4).
    """
    out = _measure(model, loader, recurrence=False, iteration=True, depth_factors=depth_factors,
                   device=device, chance=chance)
    return {"index": _overall(out["per_stage"], "divergence")[0], **out}


def evaluation_cost(blocks_per_stage, *, transitions=None, kind: str = "state", max_pairs: int | None = MAX_PAIRS,
                    depth_factors=DEPTH_FACTORS, seed: int = 0) -> dict:
    """Block applications :func:`iterative_convergence_indices` makes per example, and the ratio to one forward.

    ``blocks_per_stage`` e.g. ``(9, 8, 8)``; ``transitions[s]`` says whether
    stage s starts with a transition unit (default: every stage but the
    first). Counts units (blocks and transitions), which in a CIFAR ResNet
    cost about the same FLOPs in every stage; stem and readout are ignored.
    """
    check_choice("kind", kind, KINDS)
    ns = [int(n) for n in blocks_per_stage]
    trans = [s > 0 for s in range(len(ns))] if transitions is None else [bool(t) for t in transitions]
    factors = _check_factors(depth_factors)
    forward = sum(ns) + sum(trans)
    tail = [sum(ns[k] + trans[k] for k in range(s + 1, len(ns))) for s in range(len(ns))]
    rec = 0
    for s, n in enumerate(ns):
        ps = sample_pairs(n, max_pairs, seed + 7919 * s)
        if kind == "state":
            rec += len(ps)
        else:
            rec += sum(n - i + tail[s] for i, _ in ps) + sum(n - i - 1 + tail[s] for i in {i for i, _ in ps})
    F = factors[-1]
    measured = set(factors) | ({F // 2} if F // 2 >= 2 else set())
    # extra steps, the rest of the network at every measured factor, one forward for the Jacobian growth
    it = sum((F - 1) * n + len(measured) * tail[s] + 1 for s, n in enumerate(ns))
    total = forward + rec + it
    return {"forward": forward, "recurrence": rec, "iteration": it, "total": total, "ratio": total / forward}
