"""Soft gradient coupling: the rule against a hand-written oracle, and its two exact end points."""
import math

import pytest
import torch
from torch import nn

from itercourse.coupling import (GradientCoupling, block_difference, block_similarity, block_spread,
                                 corresponding_parameters, effective_parameters, group_spread, make_blocks_identical)
from itercourse.data import load_dataset
from itercourse.models import ResNetConfig, Stage, build_resnet, count_parameters
from itercourse.objectives import task_loss
from itercourse.training import TrainConfig, deviation_decay, train

torch.set_num_threads(1)
TINY = dict(in_channels=1, widths=(4, 8), blocks=(3, 3), input_size=12)
STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)


@pytest.fixture(scope="module")
def data():
    return load_dataset("digitclutter", train_size=48, test_size=16, seed=0, size=12)


def batch(seed=0, n=8):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 12, 12, generator=gen), torch.randint(0, 10, (n,), generator=gen)


def block_params(model, s):
    """Per block of stage s, its parameters by name."""
    return [dict(b.named_parameters()) for b in model.stages[s].blocks]


def max_block_difference(model) -> float:
    """Largest |W_i - W_0| over every stage, block and parameter."""
    worst = 0.0
    for s in range(len(model.stages)):
        tables = block_params(model, s)
        for table in tables[1:]:
            for name, p in table.items():
                worst = max(worst, float((p - tables[0][name]).detach().abs().max()))
    return worst


def sgd_steps(model, strength, steps, *, lr=0.1, momentum=0.9, weight_decay=5e-3, seed=0):
    """A hand-written training loop: backward, couple, SGD step with momentum and weight decay."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    coupling = None if strength is None else GradientCoupling(model, strength)
    model.train()
    for step in range(steps):
        x, y = batch(seed * 1000 + step)
        opt.zero_grad(set_to_none=True)
        task_loss(model(x), y).backward()
        if coupling is not None:
            coupling.apply()
        opt.step()
    return model


# ----------------------------------------------------------------- the rule

@pytest.mark.parametrize("include_norm", [True, False])
def test_rule_matches_a_hand_written_loop(include_norm):
    model = build_resnet(ResNetConfig(**TINY), seed=0)
    x, y = batch()
    task_loss(model(x), y).backward()
    before = {n: p.grad.clone() for n, p in model.named_parameters()}
    lam = 0.3
    GradientCoupling(model, lam, include_norm=include_norm).apply()
    for s, stage in enumerate(model.stages):
        n = len(stage.blocks)
        norm_layers = {name for name, m in stage.blocks[0].named_modules() if isinstance(m, nn.BatchNorm2d)}
        for name, _ in stage.blocks[0].named_parameters():
            full = [f"stages.{s}.blocks.{i}.{name}" for i in range(n)]
            mean = sum(before[f] for f in full) / n               # mean_j g_j, by hand
            coupled = include_norm or name.rpartition(".")[0] not in norm_layers
            for f in full:
                want = (1 - lam) * before[f] + lam * mean if coupled else before[f]
                torch.testing.assert_close(dict(model.named_parameters())[f].grad, want, rtol=1e-6, atol=1e-7)
    for name, p in model.named_parameters():                     # stem, transitions, read-out: untouched
        if ".blocks." not in name:
            assert torch.equal(p.grad, before[name]), name


def test_block_without_gradient_counts_as_zero():
    model = build_resnet(ResNetConfig(**TINY), seed=0)
    x, _ = batch()
    model(x, schedules={0: [0, 1]})[:, 0].sum().backward()       # block 2 of stage 0 is never used
    g0 = model.stages[0].blocks[0].residual[2].weight.grad.clone()
    g1 = model.stages[0].blocks[1].residual[2].weight.grad.clone()
    assert model.stages[0].blocks[2].residual[2].weight.grad is None
    GradientCoupling(model, 1.0).apply()
    mean = (g0 + g1) / 3
    for b in model.stages[0].blocks:
        torch.testing.assert_close(b.residual[2].weight.grad, mean)


# ----------------------------------------------------------------- the two exact end points

def test_strength_zero_trains_bitwise_like_no_coupling(data):
    states = []
    for coupling in (None, 0.0):
        model = build_resnet(ResNetConfig(**TINY), seed=4)
        cfg = TrainConfig(epochs=2, batch_size=16, lr=0.05, coupling=coupling, fast=False, augment=True, seed=1)
        train(model, data, cfg, progress=False)
        states.append(model.state_dict())
    assert states[0].keys() == states[1].keys()
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k


def test_strength_one_from_identical_weights_stays_exactly_recurrent():
    model = make_blocks_identical(build_resnet(ResNetConfig(**TINY), seed=5))
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert max_block_difference(model) == 0.0
    sgd_steps(model, 1.0, steps=40)
    assert max_block_difference(model) == 0.0                   # bitwise identical blocks
    assert block_difference(model) == [0.0, 0.0]
    moved = max(float((p.detach() - start[n]).abs().max()) for n, p in model.named_parameters() if ".blocks." in n)
    assert moved > 1e-2                                          # ... that really trained
    # In training mode (batch statistics) every stage is block 0 iterated by hand.
    x, _ = batch(99)
    h = model.stem(x)
    for stage in model.stages:
        h = stage.enter(h)
        for _ in stage.blocks:
            h = stage.blocks[0](h)
    torch.testing.assert_close(model.readout(h), model(x), rtol=0, atol=0)


def test_strength_one_without_coupling_drifts_apart():
    model = make_blocks_identical(build_resnet(ResNetConfig(**TINY), seed=5))
    sgd_steps(model, 0.0, steps=5)
    assert max_block_difference(model) > 1e-4


def deviations(model):
    """Every coupled tensor's deviations W_i - W_bar from its group mean, concatenated."""
    return torch.cat([(torch.stack(g.params) - torch.stack(g.params).mean(0)).detach().flatten()
                      for g in corresponding_parameters(model)])


def test_strength_one_from_independent_weights_only_decays_the_differences():
    model = build_resnet(ResNetConfig(**TINY), seed=5)
    before = deviations(model)
    sgd_steps(model, 1.0, steps=40, lr=0.1, momentum=0.9, weight_decay=5e-3)
    cfg = TrainConfig(lr=0.1, momentum=0.9, weight_decay=5e-3, schedule="constant")
    c = deviation_decay(cfg, 40)
    assert 0.5 < c < 0.95                                        # weight decay shrank them, nothing else
    torch.testing.assert_close(deviations(model), c * before, rtol=1e-4, atol=1e-6)


def test_train_with_identical_init_and_strength_one_stays_recurrent(data):
    model = build_resnet(ResNetConfig(**TINY), seed=6)
    train(model, data, TrainConfig(epochs=2, batch_size=16, coupling=1.0, identical_init=True, fast=False),
          progress=False)
    assert max_block_difference(model) == 0.0
    assert effective_parameters(model) == pytest.approx(
        count_parameters(build_resnet(ResNetConfig(**dict(TINY, blocks=(1, 1))))))


def test_intermediate_strengths_shrink_the_spread_monotonically():
    spreads = []
    for lam in STRENGTHS:
        model = make_blocks_identical(build_resnet(ResNetConfig(**TINY), seed=7))
        sgd_steps(model, lam, steps=15, seed=3)
        spreads.append(block_spread(model))
    for s in range(len(TINY["blocks"])):
        column = [sp[s] for sp in spreads]
        assert all(a > b for a, b in zip(column, column[1:])), column
        assert column[-1] == 0.0 and column[0] > 1e-4


# ----------------------------------------------------------------- sharing, spectral norm

def test_shared_stages_have_nothing_to_couple_but_unshared_bn_does():
    literal = build_resnet(ResNetConfig(share=True, share_norm=True, **TINY), seed=0)
    assert GradientCoupling(literal, 1.0).groups == []
    ubn = build_resnet(ResNetConfig(share=True, share_norm=False, **TINY), seed=0)
    coupled = GradientCoupling(ubn, 1.0).groups
    assert coupled and all(g.is_norm for g in coupled)          # the convs are already one tensor
    assert GradientCoupling(ubn, 1.0, include_norm=False).groups == []
    ids = [id(p) for p in GradientCoupling(ubn, 1.0).params]
    assert len(ids) == len(set(ids))                            # no tensor blended twice


def test_spectral_normalised_blocks_pair_up_by_name():
    model = build_resnet(ResNetConfig(branch_norm="none", spectral_coeff=0.9, **TINY), seed=8)
    names = {g.name for g in corresponding_parameters(model)}
    assert any("parametrizations.weight.original" in n for n in names), names
    make_blocks_identical(model)
    sgd_steps(model, 1.0, steps=5, lr=0.05)
    assert max_block_difference(model) == 0.0


# ----------------------------------------------------------------- effective parameters and spread

def outside_count(model) -> int:
    grouped = {id(p) for g in corresponding_parameters(model) for p in g.unique}
    return sum(p.numel() for p in model.parameters() if id(p) not in grouped)


def test_effective_parameters_of_identical_blocks_is_one_block_per_stage():
    model = make_blocks_identical(build_resnet(ResNetConfig(**TINY), seed=0))
    one_block = sum(sum(p.numel() for p in stage.blocks[0].parameters()) for stage in model.stages)
    assert effective_parameters(model) == outside_count(model) + one_block
    assert block_spread(model) == [0.0, 0.0]


def test_effective_parameters_of_orthogonal_blocks_is_n_times():
    model = build_resnet(ResNetConfig(branch_norm="none", **TINY), seed=0)
    with torch.no_grad():
        for g in corresponding_parameters(model):                # make the n members exactly orthogonal
            w = torch.randn(g.numel, g.n, dtype=torch.float64)
            q, _ = torch.linalg.qr(w)                            # (numel, n), orthonormal columns
            for i, p in enumerate(g.params):
                p.copy_(q[:, i].reshape(p.shape))
    assert effective_parameters(model) == pytest.approx(count_parameters(model), rel=1e-6)
    assert block_spread(model) == pytest.approx([1.0, 1.0], rel=1e-6)


def test_independent_initialisation_is_close_to_n_times():
    model = build_resnet(ResNetConfig(branch_norm="none", **dict(TINY, widths=(16, 32))), seed=0)
    assert effective_parameters(model) == pytest.approx(count_parameters(model), rel=0.03)
    assert block_spread(model) == pytest.approx([1.0, 1.0], abs=0.05)
    sim = block_similarity(model, 1)
    assert sim.shape == (3, 3) and torch.allclose(sim.diagonal(), torch.ones(3))
    assert sim.fill_diagonal_(0).abs().max() < 0.1


@pytest.mark.parametrize("share_norm", [True, False])
def test_effective_parameters_of_a_shared_model_is_its_parameter_count(share_norm):
    model = build_resnet(ResNetConfig(share=True, share_norm=share_norm, **TINY), seed=0)
    with torch.no_grad():                                        # unshared BN: make the steps differ
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.normal_()
                m.bias.normal_()
    # shared convs count once; per-step BN tensors count by their (now ~independent) spread
    assert effective_parameters(model, include_norm=False) == count_parameters(model)
    assert effective_parameters(model) == pytest.approx(count_parameters(model), rel=0.02)


def test_group_spread_end_points():
    w = torch.randn(10, 10)
    assert group_spread([w, w, w]) == 0.0
    assert group_spread([w]) == 0.0
    assert group_spread([torch.zeros(3), torch.zeros(3)]) == 0.0
    assert group_spread([w, -w]) == pytest.approx(2.0)          # anti-correlated: n/(n-1)
    e = torch.eye(4)
    assert group_spread(list(e)) == pytest.approx(1.0)


# ----------------------------------------------------------------- errors speak to a student

@pytest.mark.parametrize("strength,exc", [(-0.1, ValueError), (1.5, ValueError), (math.nan, ValueError),
                                          ("0.5", TypeError), (True, TypeError)])
def test_bad_strength_names_argument_value_and_allowed(strength, exc):
    model = build_resnet(ResNetConfig(**TINY), seed=0)
    with pytest.raises(exc) as info:
        GradientCoupling(model, strength)
    msg = str(info.value)
    assert "strength" in msg and repr(strength) in msg and "[0.0, 1.0]" in msg


def test_model_without_stages_is_a_type_error():
    with pytest.raises(TypeError, match="stages"):
        GradientCoupling(nn.Linear(3, 3), 0.5)
    with pytest.raises(TypeError, match="stages"):
        effective_parameters(nn.Sequential(nn.Linear(3, 3)))


class Mismatched(nn.Module):
    def __init__(self):
        super().__init__()
        self.stages = nn.ModuleList([Stage(None, [nn.Conv2d(4, 4, 3), nn.Conv2d(4, 4, 1)])])


def test_blocks_of_different_shapes_name_the_stage_and_parameter():
    for fn in (lambda m: GradientCoupling(m, 0.5), make_blocks_identical, effective_parameters):
        with pytest.raises(ValueError) as info:
            fn(Mismatched())
        assert "stage 0" in str(info.value) and "'weight'" in str(info.value)


def test_include_norm_must_be_a_bool():
    with pytest.raises(TypeError, match="include_norm"):
        GradientCoupling(build_resnet(ResNetConfig(**TINY)), 0.5, include_norm="yes")
