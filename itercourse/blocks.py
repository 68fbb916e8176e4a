"""Residual units: the activation placements and shortcut variants of He et al. 2016.

A residual unit computes ``y = h(x) + F(x)`` and ``x_next = f(y)``. He et al.
(2016, Sections 3-4) show that when both the shortcut ``h`` and the
after-addition map ``f`` are identities, the signal from any unit reaches any
later unit directly:

    x_L = x_l + sum_{i=l}^{L-1} F(x_i)                       (He et al. eq. 4)
    dE/dx_l = dE/dx_L * (1 + d/dx_l sum_i F(x_i))            (He et al. eq. 5)

This module builds every unit of their Table 2 (where the activations sit)
with every shortcut of their Table 1 (what ``h`` is). Each unit exposes:

- ``unit(x)``: the next residual-stream state;
- ``unit.branch(x)``: the residual function ``F(x)`` (pre-activation included);
- ``unit.update(x) = unit(x) - x``: the step the unit takes in activation
  space, equal to ``F(x)`` for the pre-activation units with identity shortcut.
"""
from __future__ import annotations

import torch
from torch import nn

from .errors import check_choice, check_positive_int, check_range

UNITS = ("preact", "original", "bn_after_add", "relu_before_add", "relu_only_preact")
SHORTCUTS = ("identity", "scaled", "exclusive_gate", "shortcut_gate", "conv1x1", "dropout")
BRANCH_NORMS = ("bn", "none")

# Units whose output passes through ReLU after the addition (He et al. Fig. 4a, 4b).
POST_ACTIVATED = ("original", "bn_after_add")


def conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    """A 3x3 convolution with padding 1 and no bias (BN or the next unit supplies the bias)."""
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


def conv1x1(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    """A 1x1 convolution without bias."""
    return nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)


def norm(channels: int, kind: str) -> nn.Module:
    """Batch norm over ``channels``, or the identity when ``kind == "none"``."""
    return nn.BatchNorm2d(channels) if kind == "bn" else nn.Identity()


def _branch_layers(unit: str, c_in: int, c_mid: int, c_out: int, stride: int,
                   bottleneck: bool, branch_norm: str) -> list[nn.Module]:
    """The layers of ``F`` for one activation placement (He et al. 2016, Fig. 4).

    ``convs`` is 3x3-3x3 (basic) or 1x1-3x3-1x1 (bottleneck); the placement
    decides where BN and ReLU go around them.
    """
    if bottleneck:
        convs = [conv1x1(c_in, c_mid), conv3x3(c_mid, c_mid, stride), conv1x1(c_mid, c_out)]
    else:
        convs = [conv3x3(c_in, c_mid, stride), conv3x3(c_mid, c_out)]
    outs = [c.out_channels for c in convs]
    layers: list[nn.Module] = []
    if unit == "preact":                       # BN-ReLU-conv, repeated; nothing after the addition
        for conv in convs:
            layers += [norm(conv.in_channels, branch_norm), nn.ReLU(), conv]
    elif unit == "relu_only_preact":           # ReLU-conv-BN, repeated
        for conv, c in zip(convs, outs):
            layers += [nn.ReLU(), conv, norm(c, branch_norm)]
    elif unit == "original":                   # conv-BN-ReLU ... conv-BN, ReLU after the addition
        for k, (conv, c) in enumerate(zip(convs, outs)):
            layers += [conv, norm(c, branch_norm)] + ([nn.ReLU()] if k < len(convs) - 1 else [])
    elif unit == "bn_after_add":               # conv-BN-ReLU ... conv, BN and ReLU after the addition
        for k, (conv, c) in enumerate(zip(convs, outs)):
            last = k == len(convs) - 1
            layers += [conv] + ([] if last else [norm(c, branch_norm), nn.ReLU()])
    elif unit == "relu_before_add":            # conv-BN-ReLU, repeated: F >= 0, nothing after the addition
        for conv, c in zip(convs, outs):
            layers += [conv, norm(c, branch_norm), nn.ReLU()]
    return layers


class ResidualUnit(nn.Module):
    """One residual unit ``x_next = f(h(x) + F(x))`` with a chosen placement and shortcut.

    Shortcuts ``h`` (He et al. 2016, Table 1; ``g = sigmoid(W_g x + b_g)``, 1x1 conv):

    ============== ============================== ===========================
    name           combination                    parameters
    ============== ============================== ===========================
    identity       x + F                          none
    scaled         s * x + b * F                  ``shortcut_scale``, ``branch_scale``
    exclusive_gate (1 - g) * x + g * F            ``gate_bias`` (init of b_g)
    shortcut_gate  (1 - g) * x + F                ``gate_bias``
    conv1x1        W x + F                        a learned 1x1 conv
    dropout        m * x + F, m ~ Bernoulli(1-p)  ``dropout_p`` (eval: (1 - p) * x)
    ============== ============================== ===========================

    A unit that changes shape (``stride > 1`` or ``c_in != c_out``) is a stage
    *transition*: its shortcut is always a 1x1 projection, and for the
    pre-activation units the projection sees the pre-activated input, as in
    He et al. (2016, appendix).
    """

    def __init__(self, c_in: int, c_out: int, *, stride: int = 1, unit: str = "preact",
                 shortcut: str = "identity", bottleneck: bool = False, branch_norm: str = "bn",
                 shortcut_scale: float = 0.5, branch_scale: float = 1.0, gate_bias: float = -6.0,
                 dropout_p: float = 0.5):
        super().__init__()
        check_choice("unit", unit, UNITS)
        check_choice("shortcut", shortcut, SHORTCUTS)
        check_choice("branch_norm", branch_norm, BRANCH_NORMS)
        check_positive_int("c_in", c_in)
        check_positive_int("c_out", c_out)
        check_range("dropout_p", dropout_p, 0.0, 1.0, high_open=True)
        self.unit, self.bottleneck = unit, bottleneck
        self.is_transition = stride != 1 or c_in != c_out
        self.shortcut = "projection" if self.is_transition else shortcut
        self.shortcut_scale, self.branch_scale, self.dropout_p = shortcut_scale, branch_scale, dropout_p
        c_mid = c_out // 4 if bottleneck else c_out

        layers = _branch_layers(unit, c_in, c_mid, c_out, stride, bottleneck, branch_norm)
        # A preact transition applies its first BN-ReLU to both paths, so keep it apart.
        self.preact_shared = unit == "preact" and self.is_transition
        if self.preact_shared:
            self.pre = nn.Sequential(*layers[:2])
            self.residual = nn.Sequential(*layers[2:])
        else:
            self.pre = nn.Identity()
            self.residual = nn.Sequential(*layers)

        if self.shortcut == "projection":
            self.proj = conv1x1(c_in, c_out, stride)
        elif self.shortcut == "conv1x1":
            self.proj = conv1x1(c_in, c_out)
        if self.shortcut in ("exclusive_gate", "shortcut_gate"):
            self.gate = nn.Conv2d(c_in, c_out, 1, bias=True)
            nn.init.constant_(self.gate.bias, gate_bias)
        self.post_norm = norm(c_out, branch_norm) if unit == "bn_after_add" else nn.Identity()
        self.post_relu = unit in POST_ACTIVATED

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """The residual function ``F(x)``, pre-activation included.  # (B, C, H, W) -> (B, C', H', W')"""
        return self.residual(self.pre(x))

    def _shortcut(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """``h(x)`` before the gate or scale is applied; ``a`` is the pre-activated input."""
        if self.shortcut == "projection":
            return self.proj(a if self.preact_shared else x)
        if self.shortcut == "conv1x1":
            return self.proj(x)
        if self.shortcut == "dropout":
            keep = 1.0 - self.dropout_p
            if self.training:  # a Bernoulli mask without rescaling: 0.5-scaling in expectation (He et al.)
                return x * torch.bernoulli(torch.full_like(x, keep))
            return x * keep
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.pre(x)
        f = self.residual(a)
        s = self._shortcut(x, a)
        if self.shortcut == "scaled":
            y = self.shortcut_scale * s + self.branch_scale * f
        elif self.shortcut == "exclusive_gate":
            g = torch.sigmoid(self.gate(x))
            y = (1 - g) * s + g * f
        elif self.shortcut == "shortcut_gate":
            g = torch.sigmoid(self.gate(x))
            y = (1 - g) * s + f
        else:
            y = s + f
        y = self.post_norm(y)
        return torch.relu(y) if self.post_relu else y

    def update(self, x: torch.Tensor) -> torch.Tensor:
        """The step in activation space, ``unit(x) - x`` (same-shape units only)."""
        if self.is_transition:
            raise ValueError("update() is defined for same-shape units only; this unit is a stage transition "
                             "(its input and output shapes differ)")
        return self(x) - x

    def extra_repr(self) -> str:
        return f"unit={self.unit!r}, shortcut={self.shortcut!r}, bottleneck={self.bottleneck}"
