"""Any ResNet under the stage contract: torchvision's ResNets, measured like the course's own.

torchvision's ``resnet18/34/50/...`` are ``stem -> layer1..layer4 -> pool ->
fc``, each layer a list of residual blocks (``BasicBlock`` or ``Bottleneck``).
Their blocks are He et al.'s (2016) *original* unit, ReLU after the addition,

    h_{i+1} = ReLU(h_i + F(h_i)),

still a same-shape map ``h -> block(h)``. The first block of a layer that has
a ``downsample`` shortcut changes the shape (stride 2, or more channels, as in
resnet50's ``layer1``), so it becomes the stage's *transition*; the other
blocks are the stage's same-shape blocks. :func:`from_torchvision` wraps the
model's own modules (no copy: training the adapter trains the original), so
the logits are the same, and every measurement of :mod:`itercourse.refinement`
and :mod:`itercourse.indices` runs on it.
"""
from __future__ import annotations

import torch
import torchvision
from torch import nn

from .walk import Stage, check_schedules

LAYERS = ("layer1", "layer2", "layer3", "layer4")
_PARTS = ("conv1", "bn1", "relu", "maxpool", *LAYERS, "avgpool", "fc")


class TorchvisionResNet(nn.Module):
    """A torchvision ResNet seen as ``stem -> stages -> readout``; same modules, same function."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        stages = []
        for name in LAYERS:
            blocks = list(getattr(net, name))
            first_changes_shape = getattr(blocks[0], "downsample", None) is not None
            transition = blocks[0] if first_changes_shape else None
            stages.append(Stage(transition, blocks[1:] if first_changes_shape else blocks))
        self.stages = nn.ModuleList(stages)
        self.avgpool, self.fc = net.avgpool, net.fc
        self.training = net.training            # the wrapper starts in the model's mode

    def readout(self, h: torch.Tensor) -> torch.Tensor:
        """Logits from a last-stage state: global average pool, linear."""
        return self.fc(torch.flatten(self.avgpool(h), 1))           # (B, C, H, W) -> (B, classes)

    def _check_input(self, x: torch.Tensor) -> None:
        """The images the wrapped ResNet accepts: 4-d, its conv1's channels, its weights' dtype."""
        conv = self.stem[0]
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            raise ValueError(f"x must be a 4-d image batch (B, C, H, W); got shape "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        if x.shape[1] != conv.in_channels:
            raise ValueError(f"x has {x.shape[1]} channels but the model's conv1 takes {conv.in_channels}; "
                             f"allowed: images with {conv.in_channels} channel(s)")
        if x.dtype != conv.weight.dtype and not torch.is_autocast_enabled():
            raise TypeError(f"x has dtype {x.dtype} but the model's weights are {conv.weight.dtype}; allowed: "
                            f"{conv.weight.dtype} (x.to({conv.weight.dtype}))")

    def forward(self, x: torch.Tensor, schedules: dict | None = None) -> torch.Tensor:
        """Logits; ``schedules`` maps a stage index to the block schedule it should run."""
        self._check_input(x)
        if schedules:
            check_schedules(schedules, len(self.stages))
        schedules = schedules or {}
        h = self.stem(x)
        for s, stage in enumerate(self.stages):
            h = stage(h, schedules.get(s))
        return self.readout(h)


def from_torchvision(model: nn.Module) -> TorchvisionResNet:
    """Adapt a torchvision ResNet (``resnet18``, ``resnet34``, ``resnet50``, ...) to the stage contract.

    The adapter shares the model's modules, so ``from_torchvision(m)(x)``
    equals ``m(x)`` in eval mode and training either trains both. A layer
    whose only block is its transition leaves a stage without blocks, which
    the per-stage indices refuse.
    """
    missing = [p for p in _PARTS if not hasattr(model, p)]
    if not isinstance(model, nn.Module) or missing:
        raise TypeError(f"model={type(model).__name__} is not a torchvision ResNet (it lacks {missing}); "
                        "pass e.g. torchvision.models.resnet18(num_classes=10)")
    base = torchvision.models.ResNet
    own = [m for m in ("forward", "_forward_impl") if getattr(type(model), m, None) is not getattr(base, m)]
    if own:
        raise TypeError(f"model={type(model).__name__} defines its own {' and '.join(own)}, which the adapter "
                        "would ignore (it runs conv1 -> bn1 -> relu -> maxpool -> layer1..4 -> avgpool -> fc), so "
                        "its logits would differ; allowed: a torchvision ResNet whose forward is torchvision's")
    empty = [name for name in LAYERS if len(getattr(model, name)) == 0]
    if empty:
        raise ValueError(f"model.{empty[0]} is empty (no blocks); allowed: a torchvision ResNet whose layers "
                         "each hold at least one block")
    return TorchvisionResNet(model)
