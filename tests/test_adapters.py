"""from_torchvision: a torchvision ResNet under the stage contract keeps its logits and gets every metric."""
import pytest
import torch
import torchvision

from itercourse import from_torchvision
from itercourse.indices import iterative_convergence_indices
from itercourse.refinement import drop_block_accuracy, gradient_alignment, norm_ratios, unroll_accuracy
from itercourse.walk import stage_states, unrolled

torch.set_num_threads(1)


def _net(name: str, **kw):
    torch.manual_seed(0)
    return getattr(torchvision.models, name)(weights=None, num_classes=10, **kw).eval()


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50"])
def test_same_logits_as_the_torchvision_model(name):
    net = _net(name)
    adapted = from_torchvision(net)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(adapted(x), net(x))
    layers = [net.layer1, net.layer2, net.layer3, net.layer4]
    for stage, layer in zip(adapted.stages, layers):         # the blocks are the model's own modules
        assert list(stage.blocks) == list(layer)[1 if stage.transition is not None else 0:]
    first_is_transition = [s.transition is not None for s in adapted.stages]
    assert first_is_transition == ([True] * 4 if name == "resnet50" else [False, True, True, True])


def test_every_metric_runs_on_resnet18():
    net = _net("resnet18")
    model = from_torchvision(net)
    torch.manual_seed(1)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    loader = [(x[:2], y[:2]), (x[2:], y[2:])]
    cos = gradient_alignment(model, x, y)
    ratios = norm_ratios(model, x)
    assert len(cos) == len(ratios) == 5                       # 2 + 1 + 1 + 1 same-shape blocks
    assert all(-1.0 <= v <= 1.0 for v in cos.values) and all(v > 0 for v in ratios.values)
    drop = drop_block_accuracy(model, loader)
    assert len(drop.acc) == 5 and drop.n == 4
    unroll = unroll_accuracy(model, loader, extra_steps=(0, 2))
    assert unroll.extra_steps == (0, 2) and unroll.n == 4
    with torch.no_grad():
        assert unroll.acc[0] == pytest.approx(float((net(x).argmax(1) == y).float().mean()))
    ind = iterative_convergence_indices(model, loader, depth_factors=(2,))
    assert ind["recurrence"] is not None and 0.0 <= ind["convergence"] <= 1.0 and 0.0 <= ind["divergence"] <= 1.0
    assert not model.training and not net.training


def test_schedules_run_on_the_adapted_model():
    model = from_torchvision(_net("resnet18"))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        states = stage_states(model, x, {0: unrolled(2, 3)})
        assert len(states[0]) == 1 + 2 + 3
        torch.testing.assert_close(model(x, schedules={0: [0, 1]}), model(x))


def test_not_a_torchvision_resnet_is_refused():
    with pytest.raises(TypeError, match="torchvision ResNet"):
        from_torchvision(torch.nn.Linear(2, 2))
