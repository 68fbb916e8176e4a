"""Indices of iterative convergence: systems with known answers land where they must, and bad inputs fail clearly."""
import json
import math
import warnings

import pytest
import torch

from itercourse.blocks import ResidualUnit
from itercourse.indices import (chance_accuracy, convergence_index, divergence_index, evaluation_cost,
                                iterative_convergence_indices, recurrence_index, sample_pairs)
from itercourse.models import ResNetConfig, build_resnet
from itercourse.lipschitz import unroll_curves
from itercourse.toys import make_validation_system
from itercourse.walk import Stage

torch.set_num_threads(1)
TINY = dict(in_channels=1, widths=(4, 8), blocks=(3, 3), input_size=12)


def image_loader(batches=2, size=16, seed=0, multilabel=False):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(batches):
        x = torch.randn(size, 1, 12, 12, generator=gen)
        if multilabel:
            y = (torch.rand(size, 10, generator=gen) < 0.3).float()
            y[:, 0] = 1.0                                    # at least one class per image
        else:
            y = torch.randint(10, (size,), generator=gen)
        out.append((x, y))
    return out


def quiet(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)    # untrained nets sit at chance: documented warning
        return fn(*args, **kw)


def all_numbers_finite(obj) -> bool:
    if isinstance(obj, dict):
        return all(all_numbers_finite(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return all(all_numbers_finite(v) for v in obj)
    if isinstance(obj, float):
        return math.isfinite(obj)
    return True


@pytest.fixture(scope="module")
def systems():
    """The four validation systems (fixed seeds), measured once with the default settings."""
    out = {}
    for kind in ("contract", "expand", "random", "specialists"):
        model = make_validation_system(kind, n_blocks=4, seed=0)
        out[kind] = (model, iterative_convergence_indices(model, model.loader(2000, seed=1)))
    return out


# ---------------------------------------------------------------- systems with known answers

def test_validation_systems_land_in_the_expected_order(systems):
    c, e, r, s = (systems[k][1] for k in ("contract", "expand", "random", "specialists"))
    # identical blocks are recurrent; independent random blocks and specialists are not
    assert c["recurrence"] == pytest.approx(1.0, abs=1e-6) and e["recurrence"] == pytest.approx(1.0, abs=1e-6)
    assert r["recurrence"] < c["recurrence"] and s["recurrence"] < c["recurrence"]
    assert abs(r["recurrence"]) < 3 * r["recurrence_sem"] + 0.05   # independent steps: about orthogonal
    # the contraction converges and keeps its accuracy; the expanding map does neither
    assert e["convergence"] < c["convergence"] and e["divergence"] < c["divergence"]
    assert c["divergence"] >= 0.99 and e["convergence"] == 0.0
    # performance at the trained depth is real (well above chance) in every system
    for res in (c, e, r, s):
        assert res["acc"] > res["chance"] + 0.3


def test_expanding_map_loses_accuracy_with_depth_and_its_updates_grow(systems):
    res = systems["expand"][1]["per_stage"][0]
    accs = [systems["expand"][1]["acc"]] + res["acc_by_factor"]
    assert accs[0] > accs[1] > accs[2]                        # 1x > 2x > 4x the trained depth
    u = res["update_sizes"]
    assert u[-1] > u[3]                                        # u_{Fn-1} > u_{n-1}: no settling


def test_convergence_index_matches_the_closed_form_of_the_contraction(systems):
    model, res = systems["contract"]
    n, F = 4, 4
    A, eta = model.A.double(), model.stages[0].blocks[0].eta
    G = torch.eye(A.shape[0], dtype=torch.float64) - eta * A
    x = torch.cat([xb for xb, _ in model.loader(2000, seed=1)]).double()
    h, step_sq, state_sq = x + model.offset.double(), [], []
    for _ in range(F * n):                                     # h_{t+1} - x = G (h_t - x)
        h_next = x + (h - x) @ G
        step_sq.append(float((h_next - h).pow(2).sum()))
        state_sq.append(float(h.pow(2).sum() + x.pow(2).sum()))   # the stream is z = [h, x]
        h = h_next
    u = [math.sqrt(a / b) for a, b in zip(step_sq, state_sq)]
    assert res["per_stage"][0]["update_sizes"] == pytest.approx(u, rel=1e-4)
    # version 2: the late-step rate of the absolute updates, over steps m = 9 .. e = 15
    v = [math.sqrt(a / len(x)) for a in step_sq]
    assert res["per_stage"][0]["step_sizes"] == pytest.approx(v, rel=1e-4)
    rate = (v[15] / v[9]) ** (1 / 6)
    assert res["rate"] == pytest.approx(rate, rel=1e-4) and res["convergence"] == pytest.approx(1 - rate, rel=1e-4)
    assert 0.7 < rate < 0.75                   # tends to the slowest mode, 1 - eta * lambda_min = 0.75, from below


def test_specialist_blocks_are_not_interchangeable_by_either_kind(systems):
    model, res = systems["specialists"]
    assert res["recurrence"] == pytest.approx(0.0, abs=1e-5)    # orthogonal steps: r_ij = 0
    perf = recurrence_index(model, model.loader(2000, seed=1), kind="performance")
    assert perf["index"] == pytest.approx(0.0, abs=1e-5)       # swap == drop exactly: R_ij = 0
    # yet the intact network lands on the fixed point: convergent and no accuracy lost
    assert res["convergence"] > 0.999 and res["divergence"] == 1.0


def test_state_recurrence_of_one_pair_matches_a_hand_computation(systems):
    model, res = systems["random"]
    x = torch.cat([xb for xb, _ in model.loader(2000, seed=1)])
    blocks = model.stages[0].blocks
    with torch.no_grad():
        h0 = model.stem(x)
        h1 = blocks[0](h0)
        d0, d10 = h1 - h0, blocks[1](h0) - h0
    expected = float(2 * (d0 * d10).sum() / (d0.pow(2).sum() + d10.pow(2).sum()))
    got = {(i, j): r for i, j, r in res["per_stage"][0]["pairs"]}
    assert got[(0, 1)] == pytest.approx(expected, rel=1e-4)


def test_identical_blocks_score_one_on_the_performance_kind_too():
    model = make_validation_system("contract", n_blocks=3, seed=2)
    res = recurrence_index(model, model.loader(500, seed=3), kind="performance")
    assert res["index"] == pytest.approx(1.0, abs=1e-6)
    assert all(st["degenerate_pairs"] == 0 for st in res["per_stage"])


# ---------------------------------------------------------------- ResNets

def test_shared_weight_resnet_scores_recurrence_one_and_an_ordinary_one_does_not():
    loader = image_loader()
    shared = build_resnet(ResNetConfig(share=True, share_norm=True, **TINY), seed=0)
    ordinary = build_resnet(ResNetConfig(**TINY), seed=0)
    for kind in ("state", "performance"):
        res = quiet(recurrence_index, shared, loader, kind=kind)
        assert res["index"] == pytest.approx(1.0, abs=1e-5), kind
    res = quiet(recurrence_index, ordinary, loader)
    assert res["index"] < 0.5                                  # independent random blocks: about orthogonal steps


def test_indices_run_in_eval_mode_and_restore_the_mode():
    model = build_resnet(ResNetConfig(**TINY), seed=1).train()
    loader = image_loader()
    a = quiet(iterative_convergence_indices, model, loader)
    assert model.training
    b = quiet(iterative_convergence_indices, model, loader)
    assert a["recurrence"] == b["recurrence"] and a["convergence"] == b["convergence"]


def test_multilabel_targets_work_and_results_are_json_without_nan():
    model = build_resnet(ResNetConfig(**TINY), seed=2)
    res = quiet(iterative_convergence_indices, model, image_loader(multilabel=True), kind="performance")
    assert all_numbers_finite(res)
    json.dumps(res, allow_nan=False)
    for key in ("recurrence", "convergence", "divergence"):
        assert isinstance(res[key], float)


def test_evaluation_cost_counts_every_block_application():
    """The efficiency claim, as an oracle: forward hooks count exactly what evaluation_cost predicts."""
    model = build_resnet(ResNetConfig(**TINY), seed=3)
    loader = image_loader(batches=1)
    calls = {"n": 0}
    for m in model.modules():
        if isinstance(m, ResidualUnit):
            m.register_forward_hook(lambda *_: calls.__setitem__("n", calls["n"] + 1))
    for kind, max_pairs in (("state", None), ("performance", None), ("performance", 3)):
        calls["n"] = 0
        quiet(iterative_convergence_indices, model, loader, kind=kind, max_pairs=max_pairs)
        assert calls["n"] == evaluation_cost(TINY["blocks"], kind=kind, max_pairs=max_pairs)["total"]
    assert evaluation_cost((9, 8, 8))["ratio"] <= 20          # ResNet-56, default settings


def test_pair_subsampling_is_seeded_and_reports_an_error_bar():
    assert len(sample_pairs(9)) == 72 - 24                      # default MAX_PAIRS = 48
    assert sample_pairs(9, 5, seed=1) == sample_pairs(9, 5, seed=1) != sample_pairs(9, 5, seed=2)
    assert sample_pairs(3, None) == [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]
    model = make_validation_system("random", n_blocks=6, seed=0)
    res = recurrence_index(model, model.loader(300, seed=1), max_pairs=5)
    assert len(res["per_stage"][0]["pairs"]) == 5 and res["sem"] is not None and res["sem"] > 0


def test_chance_accuracy_of_single_and_multi_label_targets():
    assert chance_accuracy([torch.tensor([0, 1, 1, 2])]) == 0.5
    sets = torch.tensor([[1, 0, 1], [1, 0, 1], [0, 1, 1], [1, 0, 1]], dtype=torch.float32)
    assert chance_accuracy([sets[:2], sets[2:]]) == 0.75


# ---------------------------------------------------------------- bad inputs and degenerate cases

def test_a_loader_with_no_batches_is_a_clear_error():
    model = build_resnet(ResNetConfig(**TINY), seed=0)
    for fn in (iterative_convergence_indices, recurrence_index, convergence_index, divergence_index):
        with pytest.raises(ValueError, match="no batches"):
            fn(model, [])


@pytest.mark.filterwarnings("ignore:accuracy")
def test_one_block_per_stage_has_no_recurrence_but_the_other_indices_work():
    model = build_resnet(ResNetConfig(**{**TINY, "blocks": (1, 1)}), seed=0)
    loader = image_loader()
    with pytest.raises(ValueError, match="at least two blocks"):
        quiet(recurrence_index, model, loader)
    with pytest.warns(RuntimeWarning, match="recurrence is None"):
        res = iterative_convergence_indices(model, loader)
    assert res["recurrence"] is None and res["recurrence_sem"] is None
    assert 0.0 <= res["convergence"] <= 1.0 and 0.0 <= res["divergence"] <= 1.0
    assert all(st["recurrence"] is None and st["pairs"] == [] for st in res["per_stage"])


def test_an_overflowing_map_gives_zero_not_nan():
    model = make_validation_system("expand", n_blocks=4, eta=-40.0, offset=1e-6, seed=0)
    res = iterative_convergence_indices(model, model.loader(200, seed=1))
    assert res["convergence"] == 0.0 and res["divergence"] == 0.0
    assert all_numbers_finite(res)
    json.dumps(res, allow_nan=False)


def test_a_model_at_chance_gives_documented_degenerate_divergence():
    model = build_resnet(ResNetConfig(**TINY), seed=0)
    loader = image_loader()
    with pytest.warns(RuntimeWarning, match="at or below chance"):
        res = divergence_index(model, loader, chance=1.0)
    assert all(d in (0.0, 1.0) for st in res["per_stage"] for d in st["retention_by_factor"])


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(kind="swap"), ValueError, "kind"),
    (dict(max_pairs=0), ValueError, "max_pairs"),
    (dict(depth_factors=(1, 2)), ValueError, "depth_factors"),
    (dict(depth_factors=()), TypeError, "depth_factors"),
    (dict(depth_factors=(2.5,)), TypeError, "depth_factors"),
])
def test_bad_arguments_name_themselves(kwargs, error, match):
    model = make_validation_system("contract", n_blocks=2)
    with pytest.raises(error, match=match):
        iterative_convergence_indices(model, model.loader(10), **kwargs)


def test_a_model_without_stages_or_with_a_broken_stream_is_refused():
    with pytest.raises(TypeError, match="stages"):
        iterative_convergence_indices(torch.nn.Linear(2, 2), [(torch.zeros(1, 2), torch.zeros(1))])
    model = build_resnet(ResNetConfig(**TINY), seed=0)
    with torch.no_grad():
        model.stages[1].blocks[0].residual[-1].weight.fill_(float("nan"))
    with pytest.raises(ValueError, match="not finite"):
        iterative_convergence_indices(model, image_loader())


def test_validation_system_arguments_are_checked():
    with pytest.raises(ValueError, match="kind"):
        make_validation_system("spiral")
    with pytest.raises(ValueError, match="n_blocks"):
        make_validation_system("specialists", n_blocks=20, dim=16)
    with pytest.raises(ValueError, match="eta"):
        make_validation_system("contract", eta=0.0)
    model = make_validation_system("contract", n_blocks=2)
    with pytest.raises(ValueError, match="x must be"):
        model(torch.zeros(3, 5))


# ---------------------------------------------------------------- the criterion, calibrated (version 2)

@pytest.mark.parametrize("factors", [(2, 4), (16,)], ids=["default depth", "16x depth"])
@pytest.mark.parametrize("q, passes", [(0.5, True), (0.8, True), (0.9, True),
                                       (1.0, False), (1.05, False), (1.3, False)])
def test_criterion_passes_true_contractions_and_fails_the_rest(q, passes, factors):
    """h <- x + q R h (R orthogonal): a contraction exactly when q < 1; the late-step rate is q."""
    from itercourse.indices import is_convergent
    from itercourse.toys import convergent_control
    model = convergent_control(q=q)
    res = iterative_convergence_indices(model, model.loader(1000, seed=5), depth_factors=factors)
    assert is_convergent(res) is passes, (q, factors, res["rate"], res["divergence"])
    assert res["rate"] == pytest.approx(q, abs=2e-3)
    assert res["per_stage"][0]["jacobian_growth"]["median"] == pytest.approx(q, abs=1e-3)


@pytest.mark.parametrize("F", [4, 8, 16])
def test_a_growing_stream_does_not_score_as_converging(F):
    """The isometry q = 1 never settles: version 1 gave it C = 0.38, 0.65, 0.82 at F = 4, 8, 16."""
    from itercourse.toys import convergent_control
    model = convergent_control(q=1.0)
    res = iterative_convergence_indices(model, model.loader(1000, seed=5), depth_factors=(F,))
    assert res["convergence"] == pytest.approx(0.0, abs=1e-3)
    assert res["per_stage"][0]["stream_growth"] > 1.0          # the stream grows, and C does not reward it


def test_divergence_keeps_a_network_that_settles_after_its_trained_depth():
    """Rate 0.9 at 4 blocks: h_n is far from h*, the read-out was fitted at h_n, the state then settles."""
    from itercourse.toys import convergent_control
    model = convergent_control(q=0.9)
    res = iterative_convergence_indices(model, model.loader(1000, seed=5), depth_factors=(2, 4, 8, 16))
    st = res["per_stage"][0]
    assert res["divergence"] >= 0.95                           # accuracy no longer moves in the second half
    assert st["retention_by_factor"][-1] < res["divergence"]   # though it moved away from the trained depth's


def test_late_rate_handles_settled_and_overflowing_streams():
    from itercourse.indices import late_rate
    geometric = [0.5 ** t for t in range(16)]
    assert late_rate(geometric, 4, floor=0.0) == pytest.approx(0.5)
    assert late_rate(geometric, 4, floor=1e-3) == pytest.approx(0.5)        # stops at the float floor
    assert late_rate([1.0, 1.0, 0.0, 0.0, 0.0, 0.0], 2, floor=1e-9) == 0.0  # settled exactly
    assert late_rate([1.0, 1.0, 1.0, math.inf], 2, floor=1e-9) == math.inf  # overflow
    assert late_rate([1.0, 0.0, 0.0, 1.0], 2, floor=1e-9) == math.inf       # stopped, then moves again
    assert late_rate([1.0, 0.0, 0.0, 0.0], 2, floor=1e-9) == 0.0


def test_block_map_growth_is_one_plus_c_for_a_scaled_identity_branch():
    """Lip(F) = c < 1 and still no contraction: F(h) = c h makes h + F(h) grow by 1 + c per step."""
    from itercourse.lipschitz import block_map_growth

    class Scaled(torch.nn.Module):
        def forward(self, h):
            return h + 0.3 * h

    growth = block_map_growth(Scaled(), torch.randn(8, 4, 5, 5))
    assert growth["median"] == pytest.approx(1.3, rel=1e-5) and growth["max"] == pytest.approx(1.3, rel=1e-5)


class _LinearContraction(torch.nn.Module):
    """Every block is h -> q h (stage contract: stem, stages, readout): the relative update is 1 - q."""

    def __init__(self, q: float, n: int = 2):
        super().__init__()
        self.q = q
        self.stem = torch.nn.Identity()
        self.stages = torch.nn.ModuleList([Stage(None, [_Times(q) for _ in range(n)])])
        self.readout = torch.nn.Linear(3, 2)


class _Times(torch.nn.Module):
    def __init__(self, q: float):
        super().__init__()
        self.q = q

    def forward(self, h):
        return self.q * h


@pytest.mark.parametrize("q", [0.5, 0.75])
def test_both_callers_give_one_minus_q_on_a_linear_contraction(q):
    """The one definition of the relative update size, through the indices and through unroll_curves."""
    model = _LinearContraction(q)
    x = torch.tensor([[1.0, 2.0, 2.0], [3.0, 0.0, 4.0], [0.0, 0.0, 8.0], [2.0, 1.0, 2.0]])   # integer states
    res = quiet(iterative_convergence_indices, model, [(x, torch.tensor([0, 1, 0, 1]))], depth_factors=(4,))
    u = res["per_stage"][0]["update_sizes"]
    assert len(u) == 8 and u == [1 - q] * 8                                   # the trained steps and the extra ones
    assert unroll_curves(model, x, extra=6)["update"] == [1 - q] * 6


def test_indices_and_unroll_curves_measure_the_same_update_size():
    """On a network's own trajectory beyond depth n: the indices' u_t for t >= n is unroll_curves' update."""
    model = build_resnet(ResNetConfig(**TINY), seed=0)
    with torch.no_grad():
        model.train()(torch.randn(32, 1, 12, 12, generator=torch.Generator().manual_seed(3)))   # BN statistics
    loader = image_loader(batches=1, size=16)
    res = quiet(iterative_convergence_indices, model, loader, depth_factors=(3,))
    for s, n in enumerate(TINY["blocks"]):
        curves = unroll_curves(model, loader[0][0], extra=2 * n, stage=s)
        assert res["per_stage"][s]["update_sizes"][n:] == pytest.approx(curves["update"], rel=1e-5)
