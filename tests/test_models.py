"""Residual units and ResNets: every variant runs, and the stage machinery matches hand-written loops."""
import itertools

import pytest
import torch

from itercourse.blocks import SHORTCUTS, UNITS, ResidualUnit
from itercourse.models import ResNetConfig, build_resnet, count_parameters

torch.set_num_threads(1)
TINY = dict(in_channels=1, widths=(4, 8), blocks=(2, 2), input_size=12)


@pytest.mark.parametrize("unit,shortcut,bottleneck",
                         list(itertools.product(UNITS, SHORTCUTS, (False, True))))
def test_every_unit_and_shortcut_runs_forward_and_backward(unit, shortcut, bottleneck):
    model = build_resnet(ResNetConfig(unit=unit, shortcut=shortcut, bottleneck=bottleneck, **TINY), seed=0)
    x = torch.randn(3, 1, 12, 12)
    logits = model(x)
    assert logits.shape == (3, 10)
    logits.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_trajectory_matches_a_hand_written_loop():
    model = build_resnet(ResNetConfig(**TINY), seed=1).eval()
    x = torch.randn(2, 1, 12, 12)
    h = model.stem(x)
    expected = [h]
    for stage in model.stages:
        if stage.transition is not None:
            h = stage.transition(h)
            expected.append(h)
        for block in stage.blocks:
            h = block(h)
            expected.append(h)
    got = model.trajectory(x)
    assert len(got) == len(expected) == 1 + 1 + sum(TINY["blocks"])
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(model.readout(got[-1]), model(x), rtol=0, atol=0)


def test_preact_identity_block_is_x_plus_branch():
    block = ResidualUnit(8, 8, unit="preact").eval()
    x = torch.randn(2, 8, 6, 6)
    torch.testing.assert_close(block(x), x + block.branch(x))
    torch.testing.assert_close(block.update(x), block.branch(x))


def test_schedules_drop_swap_and_repeat_blocks():
    model = build_resnet(ResNetConfig(**TINY), seed=2).eval()
    x = torch.randn(2, 1, 12, 12)
    stage = model.stages[0]
    h0 = stage.enter(model.stem(x))
    # repeat the last block twice more, by hand
    h = h0
    for i in [0, 1, 1, 1]:
        h = stage.blocks[i](h)
    states = stage.run_blocks(h0, [0, 1, 1, 1])
    torch.testing.assert_close(states[-1], h)
    assert len(states) == 5
    # dropping block 0 of stage 1 is the same as running only block 1
    out = model(x, schedules={1: [1]})
    h = model.stages[1].enter(model.stages[0](model.stem(x)))
    torch.testing.assert_close(out, model.readout(model.stages[1].blocks[1](h)))
    with pytest.raises(ValueError, match="schedule"):
        model(x, schedules={0: [0, 5]})


def test_shared_stage_equals_one_block_iterated_by_hand():
    cfg = ResNetConfig(share=True, share_norm=True, **TINY)
    model = build_resnet(cfg, seed=3).eval()
    stage = model.stages[0]
    assert all(b is stage.blocks[0] for b in stage.blocks)
    x = torch.randn(2, 1, 12, 12)
    h = stage.enter(model.stem(x))
    for _ in range(len(stage.blocks)):
        h = stage.blocks[0](h)
    torch.testing.assert_close(stage(model.stem(x)), h, rtol=0, atol=0)


def test_unshared_bn_shares_convs_but_not_norms():
    model = build_resnet(ResNetConfig(share=True, share_norm=False, **TINY), seed=0)
    b0, b1 = model.stages[0].blocks
    convs0 = [m for m in b0.modules() if isinstance(m, torch.nn.Conv2d)]
    convs1 = [m for m in b1.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(a is b for a, b in zip(convs0, convs1))
    bns0 = [m for m in b0.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    bns1 = [m for m in b1.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(a is not b for a, b in zip(bns0, bns1))
    assert all(float(bn.weight.detach()[0]) == pytest.approx(0.1) for bn in bns0 + bns1)  # UBN gamma init
    unshared = build_resnet(ResNetConfig(**TINY), seed=0)
    assert count_parameters(model) < count_parameters(unshared)


@pytest.mark.parametrize("depth,blocks,params", [(20, (3, 2, 2), 0.27e6), (56, (9, 8, 8), 0.85e6),
                                                 (110, (18, 17, 17), 1.7e6)])
def test_cifar_depths_match_he_et_al(depth, blocks, params):
    cfg = ResNetConfig.cifar(depth)
    assert cfg.blocks == blocks and cfg.depth == depth
    assert count_parameters(build_resnet(cfg)) == pytest.approx(params, rel=0.03)


def test_bottleneck_164():
    cfg = ResNetConfig.cifar(164, bottleneck=True)
    assert cfg.depth == 164
    assert count_parameters(build_resnet(cfg)) == pytest.approx(1.7e6, rel=0.03)


def test_seeded_builds_are_reproducible_and_leave_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_resnet(ResNetConfig(**TINY), seed=7)
    after = torch.rand(1)
    b = build_resnet(ResNetConfig(**TINY), seed=7)
    assert before == after
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("kwargs,exc,words", [
    (dict(unit="postact"), ValueError, ["unit", "'postact'", "preact"]),
    (dict(shortcut="gate"), ValueError, ["shortcut", "'gate'", "exclusive_gate"]),
    (dict(blocks=(3, 0)), ValueError, ["blocks", "0", ">= 1"]),
    (dict(blocks=(3, 2.5)), TypeError, ["blocks", "2.5", "integer"]),
    (dict(widths=(16, -4)), ValueError, ["widths", "-4", ">= 1"]),
    (dict(widths=(16,), blocks=(2, 2)), ValueError, ["widths", "blocks", "same length"]),
    (dict(spectral_coeff=0.0), ValueError, ["spectral_coeff", "0.0", "(0.0"]),
    (dict(spectral_coeff=-1), ValueError, ["spectral_coeff", "-1"]),
    (dict(in_channels=0), ValueError, ["in_channels", "0"]),
    (dict(dropout_p=1.5), ValueError, ["dropout_p", "1.5", "[0.0, 1.0)"]),
    (dict(spectral_flavour="torch"), ValueError, ["spectral_flavour", "'torch'", "operator"]),
])
def test_bad_configs_name_argument_value_and_allowed(kwargs, exc, words):
    with pytest.raises(exc) as info:
        ResNetConfig(**kwargs)
    for w in words:
        assert w in str(info.value)


def test_wrong_input_channels_get_a_clear_error():
    model = build_resnet(ResNetConfig(**TINY))
    with pytest.raises(ValueError, match="in_channels=1"):
        model(torch.randn(2, 3, 12, 12))
    with pytest.raises(ValueError, match="4-d"):
        model(torch.randn(3, 12, 12))


def test_bad_cifar_depth():
    with pytest.raises(ValueError, match="6m\\+2"):
        ResNetConfig.cifar(21)
