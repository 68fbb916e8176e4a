"""Forward and gradient norms along the residual stream (He et al. 2016, eqs. 4-5), checked by hand."""
import torch

from itercourse.models import ResNetConfig, build_resnet
from itercourse.propagation import signal_and_gradient_norms
from itercourse.objectives import task_loss

torch.set_num_threads(1)


def test_norms_match_a_hand_computation_and_leave_parameter_gradients_alone():
    model = build_resnet(ResNetConfig(in_channels=1, widths=(4, 8), blocks=(2, 1), input_size=8), seed=0).eval()
    x, y = torch.randn(3, 1, 8, 8), torch.tensor([0, 1, 2])
    out = signal_and_gradient_norms(model, x, y)
    states = model.trajectory(x)
    assert len(out["forward"]) == len(out["gradient"]) == len(states) == 1 + 2 + 1 + 1
    expected = [float(h.detach().flatten(1).norm(dim=1).mean()) for h in states]
    assert all(abs(a - b) < 1e-5 for a, b in zip(out["forward"], expected))
    last = states[-1].detach().requires_grad_(True)            # dL/dh at the last state, by hand
    (g,) = torch.autograd.grad(task_loss(model.readout(last), y, reduction="sum"), last)
    assert abs(out["gradient"][-1] - float(g.flatten(1).norm(dim=1).mean())) < 1e-5
    assert all(p.grad is None for p in model.parameters())


def test_identity_shortcuts_keep_the_gradient_from_vanishing():
    deep = build_resnet(ResNetConfig(in_channels=1, widths=(4,), blocks=(12,), input_size=8), seed=0).train()
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    g = signal_and_gradient_norms(deep, x, y)["gradient"]
    assert g[0] > 0.1 * g[-1]                                  # eq. 5: the direct term survives 12 blocks
