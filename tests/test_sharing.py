"""Weight sharing: a shared stage is one block iterated, checked against hand-written oracles."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from itercourse.coupling import GradientCoupling, effective_parameters, make_blocks_identical
from itercourse.models import ResNetConfig, build_resnet, count_parameters
from itercourse.sharing import batch_statistics_accuracy, norm_statistics_mismatch, update_alignment
from itercourse.objectives import correct_mask, task_loss

torch.set_num_threads(1)
TINY = dict(in_channels=1, widths=(4, 8), blocks=(3, 3), input_size=12)


def images(seed=0, n=6):
    return torch.randn(n, 1, 12, 12, generator=torch.Generator().manual_seed(seed))


def bn(x, m: nn.BatchNorm2d, training: bool):
    """Batch norm written out: batch statistics in training, running statistics in eval."""
    if training:
        mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False)
    else:
        mean, var = m.running_mean, m.running_var
    x = (x - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + m.eps)
    return x * m.weight[None, :, None, None] + m.bias[None, :, None, None]


def preact_step(h, conv_a, conv_b, bn_a, bn_b, training):
    """h + conv_b(relu(bn_b(conv_a(relu(bn_a(h)))))): the full pre-activation unit, by hand."""
    a = F.conv2d(F.relu(bn(h, bn_a, training)), conv_a.weight, padding=1)
    return h + F.conv2d(F.relu(bn(a, bn_b, training)), conv_b.weight, padding=1)


@pytest.mark.parametrize("training", [True, False])
def test_unshared_bn_stage_is_one_conv_pair_iterated_with_a_norm_per_step(training):
    model = build_resnet(ResNetConfig(share=True, share_norm=False, **TINY), seed=1)
    with torch.no_grad():                       # give every step's BN its own statistics and affine map
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_()
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
    model.train(training)
    x = images()
    h = model.stem(x)
    for stage in model.stages:
        h = stage.enter(h)
        first = stage.blocks[0].residual
        for step in stage.blocks:               # convs of step 0, BN of step t
            assert step.residual[2] is first[2] and step.residual[5] is first[5]
            h = preact_step(h, first[2], first[5], step.residual[0], step.residual[3], training)
    torch.testing.assert_close(model.readout(h), model(x), rtol=1e-5, atol=1e-5)


def test_literally_shared_stage_iterated_beyond_its_depth_by_schedule():
    model = build_resnet(ResNetConfig(share=True, share_norm=True, **TINY), seed=2).eval()
    x, k = images(), 5
    stage = model.stages[0]
    h0 = stage.enter(model.stem(x))
    h = h0
    for _ in range(3 + k):
        h = stage.blocks[0](h)
    states = stage.run_blocks(h0, list(range(3)) + [2] * k)
    assert len(states) == 3 + k + 1
    torch.testing.assert_close(states[-1], h, rtol=0, atol=0)


def test_unshared_bn_stage_run_longer_reuses_the_last_steps_norm():
    model = build_resnet(ResNetConfig(share=True, share_norm=False, **TINY), seed=3).eval()
    x, n, k = images(), 3, 4
    out = model(x, schedules={1: list(range(n)) + [n - 1] * k})
    h = model.stages[1].enter(model.stages[0](model.stem(x)))
    for t in list(range(n)) + [n - 1] * k:
        h = model.stages[1].blocks[t](h)
    torch.testing.assert_close(out, model.readout(h), rtol=0, atol=0)


def test_parameter_counts_of_shared_stages():
    unshared = build_resnet(ResNetConfig(**TINY))
    one_block = build_resnet(ResNetConfig(**dict(TINY, blocks=(1, 1))))
    literal = build_resnet(ResNetConfig(share=True, share_norm=True, **TINY))
    ubn = build_resnet(ResNetConfig(share=True, share_norm=False, **TINY))
    assert count_parameters(literal) == count_parameters(one_block)      # n steps of one block = one block
    bn_per_block = [sum(p.numel() for m in s.blocks[0].modules() if isinstance(m, nn.BatchNorm2d)
                        for p in m.parameters()) for s in ubn.stages]
    extra_norms = sum((n - 1) * b for n, b in zip(TINY["blocks"], bn_per_block))
    assert count_parameters(ubn) == count_parameters(one_block) + extra_norms
    assert count_parameters(one_block) < count_parameters(ubn) < count_parameters(unshared)
    assert effective_parameters(literal) == count_parameters(literal)


def test_gamma_initialisation_of_shared_stages():
    for share_norm, gamma in ((False, 0.1), (True, 1.0)):
        model = build_resnet(ResNetConfig(share=True, share_norm=share_norm, **TINY))
        for stage in model.stages:
            for m in stage.blocks.modules():
                if isinstance(m, nn.BatchNorm2d):
                    assert torch.all(m.weight == gamma)
        assert torch.all(model.final_norm.weight == 1.0)            # outside the stages: the usual 1


def test_shared_gradient_is_the_sum_and_coupling_at_one_gives_the_mean():
    """Sharing sums the per-step gradients; coupling at 1 gives each identical block their mean."""
    shared = build_resnet(ResNetConfig(share=True, share_norm=True, **TINY), seed=4)
    untied = build_resnet(ResNetConfig(**TINY), seed=9)
    with torch.no_grad():                       # untied copy: every block gets the shared block's weights
        for s, stage in enumerate(untied.stages):
            for block in stage.blocks:
                block.load_state_dict(shared.stages[s].blocks[0].state_dict())
        for name in ("stem", "final_norm", "fc"):
            getattr(untied, name).load_state_dict(getattr(shared, name).state_dict())
        untied.stages[1].transition.load_state_dict(shared.stages[1].transition.state_dict())
    x, y = images(5), torch.randint(0, 10, (6,))
    torch.testing.assert_close(untied(x), shared(x))
    for model in (shared, untied):
        task_loss(model(x), y).backward()
    GradientCoupling(untied, 1.0).apply()
    for s, n in enumerate(TINY["blocks"]):
        g_shared = dict(shared.stages[s].blocks[0].named_parameters())
        for block in untied.stages[s].blocks:
            for name, p in block.named_parameters():
                torch.testing.assert_close(p.grad * n, g_shared[name].grad, rtol=1e-4, atol=1e-6)


def test_shared_weights_stay_tied_through_a_state_dict_round_trip():
    a = build_resnet(ResNetConfig(share=True, share_norm=False, **TINY), seed=5).eval()
    b = build_resnet(ResNetConfig(share=True, share_norm=False, **TINY), seed=6).eval()
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(a(images()), b(images()), rtol=0, atol=0)
    blocks = b.stages[0].blocks
    assert blocks[1].residual[2] is blocks[0].residual[2]
    with torch.no_grad():
        blocks[0].residual[2].weight.add_(1.0)
    assert torch.equal(blocks[2].residual[2].weight, blocks[0].residual[2].weight)


def test_make_blocks_identical_leaves_shared_stages_alone():
    model = build_resnet(ResNetConfig(share=True, share_norm=True, **TINY), seed=7)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    make_blocks_identical(model)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


# ----------------------------------------------------------------- diagnostics of shared stages (sharing.py)

def test_update_alignment_end_points():
    h0, u = torch.randn(4, 8), torch.randn(4, 8)
    straight = [h0 + t * u for t in range(6)]                    # the same update every step
    assert update_alignment(straight) == pytest.approx([1.0] * 4, abs=1e-5)
    gen = torch.Generator().manual_seed(0)
    walk = [torch.randn(4, 5000, generator=gen)]
    for _ in range(40):
        walk.append(walk[-1] + torch.randn(4, 5000, generator=gen))
    assert abs(sum(update_alignment(walk)) / 39) < 0.1          # independent updates: unrelated directions
    with pytest.raises(ValueError, match="at least 3"):
        update_alignment(straight[:2])


def calibrate(model, x):
    """Running statistics = exact cumulative averages over one pass of x (train mode)."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval()


def test_norm_statistics_mismatch_is_one_when_statistics_fit_and_drifts_when_shared():
    x = images(0, n=32)
    fitted = calibrate(build_resnet(ResNetConfig(**TINY), seed=0), x)
    for ratios in norm_statistics_mismatch(fitted, x):
        assert ratios == pytest.approx([1.0] * len(ratios), abs=0.02)
    cfg = dict(in_channels=1, widths=(8,), blocks=(12,), input_size=12)
    naive = calibrate(build_resnet(ResNetConfig(share=True, share_norm=True, **cfg), seed=0), x)
    (ratios,) = norm_statistics_mismatch(naive, x)
    assert max(ratios) / min(ratios) > 2 and max(ratios) < 0.9   # one set of statistics fits no step
    ubn = calibrate(build_resnet(ResNetConfig(share=True, **cfg), seed=0), x)
    (ratios,) = norm_statistics_mismatch(ubn, x)
    assert ratios == pytest.approx([1.0] * 12, abs=0.02)
    assert not naive.training


def test_batch_statistics_accuracy_leaves_the_model_alone():
    model = build_resnet(ResNetConfig(**TINY), seed=0).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    y = torch.zeros(12, 10)
    y[torch.arange(12), torch.arange(12) % 10] = 1.0
    loader = [(images(1, n=12), y)]
    acc = batch_statistics_accuracy(model, loader)
    assert 0.0 <= acc <= 1.0 and not model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    probe = build_resnet(ResNetConfig(**TINY), seed=0).train()
    with torch.no_grad():
        want = float(correct_mask(probe(loader[0][0]), y).float().mean())
    assert acc == pytest.approx(want)
