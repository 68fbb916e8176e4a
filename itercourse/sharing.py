"""Diagnostics of weight-shared stages: why naive sharing explodes and what unshared batch norm repairs.

A stage whose blocks share their weights is one cell iterated,
``h_{t+1} = h_t + F(h_t; W)`` (``ResNetConfig(share=True)``, see models.py).
Jastrzębski et al. (2018, Sec. 5) found that sharing naively makes the
representation explode and the network both underfit and overfit, and that
*unshared batch normalisation* (statistics and scale/shift per step, scale
initialised to 0.1) fixes it. Three measurements separate the causes:

- :func:`update_alignment`: consecutive updates ``u_t = h_{t+1} - h_t`` of a
  shared cell point the same way, so they add up coherently (the state grows
  like the number of steps, not its square root);
- :func:`norm_statistics_mismatch`: with one batch norm for every step, its
  running statistics average over steps whose states have different scales,
  so at test time it normalises each step by the wrong amount;
- :func:`batch_statistics_accuracy`: the accuracy the same weights reach when
  every step normalises with its own (batch) statistics.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from .objectives import count_correct
from .walk import check_model, device_of, enter, eval_mode


def update_alignment(states: list) -> list[float]:
    """Mean cosine between consecutive updates ``u_t = h_{t+1} - h_t`` of a stage's states.

        a_t = mean_b cos(u_t[b], u_{t+1}[b]),   t = 0 .. len(states) - 3

    Independent blocks give updates in unrelated directions (a ~ 0); one block
    iterated on similar inputs gives aligned updates (a ~ 1), which add up
    coherently: ``||h_T - h_0||`` grows like T instead of sqrt(T).
    """
    if len(states) < 3:
        raise ValueError(f"states has {len(states)} entries; consecutive updates need at least 3 states")
    u = [(b - a).detach().flatten(1) for a, b in zip(states, states[1:])]          # (B, D) each
    return [float(nn.functional.cosine_similarity(p, q, dim=1).mean()) for p, q in zip(u, u[1:])]


def _first_norm(block: nn.Module) -> nn.BatchNorm2d:
    for m in block.modules():
        if isinstance(m, nn.BatchNorm2d):
            return m
    raise ValueError(f"block {type(block).__name__} has no BatchNorm2d; norm_statistics_mismatch needs "
                     "blocks with batch norm (ResNetConfig(branch_norm='bn'))")


@torch.no_grad()
def norm_statistics_mismatch(model: nn.Module, x: torch.Tensor) -> list[list[float]]:
    """Per stage and step: actual scale of the first batch norm's input over the scale its running statistics assume.

        r_t = mean_c  std_batch(z_t)[c] / sqrt(running_var_t[c] + eps)

    where ``z_t`` is the input of the first batch norm of the block applied at
    step t (for pre-activation units, the state ``h_t`` itself), in evaluation
    mode. ``r_t = 1`` means the stored statistics fit that step; a naively
    shared stage has one ``running_var`` for all steps, so ``r_t`` drifts
    across steps. The model is left in the mode it was in.
    """
    check_model(model)
    seen = {}

    def grab(module, inputs):
        seen["z"] = inputs[0]

    out = []
    with eval_mode(model):
        h = model.stem(x)
        for stage in model.stages:
            h = enter(stage, h)
            ratios = []
            for block in stage.blocks:
                bn = _first_norm(block)
                handle = bn.register_forward_pre_hook(grab)
                try:
                    h = block(h)
                finally:
                    handle.remove()
                z = seen.pop("z")                                          # (B, C, H, W)
                std = z.transpose(0, 1).flatten(1).std(dim=1, unbiased=False)  # (C,)
                ratios.append(float((std / torch.sqrt(bn.running_var + bn.eps)).mean()))
            out.append(ratios)
    return out


@torch.no_grad()
def batch_statistics_accuracy(model: nn.Module, loader) -> float:
    """Accuracy when every batch norm uses the statistics of the test batch itself, not its running ones.

    Compared with ``evaluate(model, loader)["acc"]`` (running statistics) it
    tells whether a network fails because one set of running statistics is
    shared by steps whose states have very different scales. The model is
    left unchanged (a copy is run in training mode).
    """
    probe = copy.deepcopy(model).train()
    device = device_of(probe)
    correct = n = 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        correct += count_correct(probe(x), y)
        n += len(y)
    if n == 0:
        raise ValueError("loader yielded no examples; batch_statistics_accuracy() needs at least one batch")
    return correct / n
