"""Forward-signal and gradient norms along the residual stream (chapter 1).

With identity shortcuts and nothing after the addition, the state of unit L
is the state of any earlier unit l plus a sum of residuals, and the gradient
reaching unit l keeps a term that does not pass through any weight layer:

    x_L = x_l + sum_{i=l}^{L-1} F(x_i)                           (He et al. 2016, eq. 4)
    dE/dx_l = dE/dx_L (1 + d/dx_l sum_{i=l}^{L-1} F(x_i))        (eq. 5)

A shortcut that scales x by lambda multiplies that direct term by
lambda^(L-l) (eq. 7): it vanishes (lambda < 1) or explodes (lambda > 1) with depth.
:func:`signal_and_gradient_norms` measures both quantities at every unit
boundary of a real network in one forward and one backward pass.
"""
from __future__ import annotations

import torch

from .objectives import task_loss


def signal_and_gradient_norms(model, x: torch.Tensor, y: torch.Tensor) -> dict:
    """Per residual-stream state: mean ``||h||`` and mean ``||dL/dh||`` per example.

    Returns ``{"forward": [...], "gradient": [...]}``, one entry per state of
    ``model.trajectory(x)`` (stem output, then after every transition and block).
    The model's mode is respected: ``model.train()`` normalises with batch
    statistics, as the first SGD step sees them. Parameter gradients are left
    untouched (the gradients are taken with respect to the states only).
    """
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(f"x and y must be non-empty batches of the same length; got {len(x)} and {len(y)}")
    states = model.trajectory(x)                               # [(B, C, H, W), ...]
    loss = task_loss(model.readout(states[-1]), y, reduction="sum")
    grads = torch.autograd.grad(loss, states)                  # dL/dh for every state, one backward pass

    def mean_norm(t: torch.Tensor) -> float:                   # mean over the batch of ||t_b||_2
        return t.detach().flatten(1).norm(dim=1).mean().item()

    return {"forward": [mean_norm(h) for h in states], "gradient": [mean_norm(g) for g in grads]}
