"""The stage that converges by construction: its bound holds by an independent computation, it is a
recurrent network iterated by hand, and it reaches its fixed point."""
import pytest
import torch

from itercourse.contraction import InjectedContraction
from itercourse.lipschitz import block_map_growth
from itercourse.models import ResNetConfig, build_resnet
from itercourse.opnorm import conv_operator_norm
from itercourse.walk import eval_mode, stage_states

torch.set_num_threads(1)
CFG = dict(in_channels=1, num_classes=10, widths=(4, 8), blocks=(3, 3), input_size=12, branch_norm="none",
           spectral_coeff=0.8, block_map="contraction", share=True)


@pytest.fixture(scope="module")
def model():
    m = build_resnet(ResNetConfig(**CFG), seed=0)
    with torch.no_grad():                       # push the weights up so that the caps must act
        for p in m.parameters():
            p.mul_(3.0)
    return m


def test_step_bound_holds_by_an_independent_operator_norm(model):
    with eval_mode(model), torch.no_grad():
        for s, stage in enumerate(model.stages):
            block = stage.blocks[0]
            c, h, w = model.stage_input_shapes[s]
            norms = [conv_operator_norm(conv, (c, h, w), n_iter=2000, tol=1e-9) for conv in (block.w1, block.w2)]
            assert norms[0] * norms[1] <= 0.8 * (1 + 1e-3)
            assert block.step_lipschitz_bound() <= 0.8 * (1 + 1e-3)


def test_jacobian_growth_at_real_states_is_below_the_bound(model):
    x = torch.randn(16, 1, 12, 12)
    with eval_mode(model), torch.no_grad():
        states = stage_states(model, x)
    for s, stage in enumerate(model.stages):
        growth = block_map_growth(stage.blocks[0], states[s][-1])
        assert growth["max"] <= 0.8 * (1 + 1e-3)


def test_recurrent_stage_equals_the_step_iterated_by_hand(model):
    x = torch.randn(4, 1, 12, 12)
    with eval_mode(model), torch.no_grad():
        logits = model(x)
        z = model.stages[0].transition(model.stem(x))               # z_0 = [x, x]
        assert torch.equal(z[:, :4], z[:, 4:])
        step = model.stages[0].blocks[0]
        assert all(b is step for b in model.stages[0].blocks)      # one module: a recurrent stage
        for _ in range(3):
            h, xin = z[:, :4], z[:, 4:]
            z = torch.cat([step.w2(torch.relu(step.w1(h) + step.inject(xin))), xin], 1)
        z = model.stages[1].transition(z)
        for _ in range(3):
            z = model.stages[1].blocks[0](z)
        assert torch.allclose(model.readout(z), logits, atol=1e-6)


def test_iterating_reaches_the_fixed_point_at_the_bounded_rate(model):
    x = torch.randn(8, 1, 12, 12)
    with eval_mode(model), torch.no_grad():
        z = model.stages[0].transition(model.stem(x))
        step, sizes = model.stages[0].blocks[0], []
        for _ in range(80):
            z_next = step(z)
            sizes.append(float((z_next - z).norm()))
            z = z_next
    assert sizes[-1] < 1e-5 * sizes[0]
    assert all(b <= 0.8 * a * (1 + 1e-3) + 1e-6 * sizes[0] for a, b in zip(sizes, sizes[1:]))   # float floor


@pytest.mark.parametrize("override, match", [
    (dict(spectral_coeff=None), "spectral_coeff"), (dict(spectral_coeff=1.0), "spectral_coeff"),
    (dict(branch_norm="bn"), "branch_norm"), (dict(contraction_step=0.0), "contraction_step"),
    (dict(shortcut="scaled"), "shortcut"), (dict(block_map="equilibrium"), "block_map")])
def test_bad_contraction_configs_fail_clearly(override, match):
    with pytest.raises((ValueError, TypeError), match=match):
        ResNetConfig(**{**CFG, **override})


def test_a_single_step_refuses_a_coefficient_of_one():
    with pytest.raises(ValueError, match="coeff"):
        InjectedContraction(4, 8, 1.0)
