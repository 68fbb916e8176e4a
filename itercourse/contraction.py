"""A stage that converges by construction: a contraction with input injection.

An ordinary residual block iterates ``h <- h + F(h)``. Bounding ``Lip(F) <= c``
does not make that map a contraction: its Jacobian is ``I + J_F``, whose
spectral radius can reach ``1 + c`` (chapter 5). A map converges by
construction when the *whole step* is a contraction in ``h``. The stage
below, in the spirit of deep equilibrium models (Bai, Kolter & Koltun 2019)
and monotone operator networks (Winston & Kolter 2020), keeps the stage's
input ``x`` and injects it into every step:

    h_0 = x,    h_{t+1} = (1 - a) h_t + a G(h_t, x),    G(h, x) = W_2 relu(W_1 h + U x + b)

with ``||W_1||_2, ||W_2||_2 <= sqrt(c)`` (true operator norms of the convs,
:class:`itercourse.lipschitz.OperatorNormCap`), so ``Lip_h(G) <= c`` and

    Lip_h(step) <= (1 - a) + a c < 1        for c < 1, 0 < a <= 1.

By Banach's theorem every input ``x`` has one fixed point ``h*(x)`` and the
iterates reach it at that rate, whatever the weights: training cannot undo it.
``U`` (the injection) is free, so what the fixed point *is* stays learnable.

The state the stage passes between blocks is ``z = [h, x]`` stacked along the
channels, so each block is still a map of the residual stream,
``z -> z + F(z)``, and every tool of the course (schedules, indices, unrolling)
runs on it unchanged; the first ``state_channels`` channels are the iterated
state, the rest the carried input. The read-out and the next stage see ``h``.
"""
from __future__ import annotations

import torch
from torch import nn

from .blocks import conv3x3
from .errors import check_positive_int, check_range
from .lipschitz import spectral_normalise_conv
from .opnorm import conv_operator_norm


class InjectedContraction(nn.Module):
    """One step ``h <- (1 - a) h + a W_2 relu(W_1 h + U x + b)`` on the state ``z = [h, x]``."""

    def __init__(self, channels: int, size: int, coeff: float, step: float = 1.0, *, cap: bool = True):
        super().__init__()
        check_positive_int("channels", channels)
        check_positive_int("size", size)
        check_range("coeff", coeff, 0.0, 1.0, low_open=True, high_open=True)
        check_range("step", step, 0.0, 1.0, low_open=True)
        self.state_channels = channels          # z[:, :C] is h (iterated), z[:, C:] is x (carried)
        self.coeff, self.step, self.size = float(coeff), float(step), size
        self.w1 = conv3x3(channels, channels)   # W_1, capped at sqrt(c)
        self.w2 = conv3x3(channels, channels)   # W_2, capped at sqrt(c)
        self.inject = nn.Conv2d(channels, channels, 3, padding=1, bias=True)   # U and b: unconstrained
        if cap:
            self.cap()

    def cap(self) -> None:
        """Cap ``||W_1||_2`` and ``||W_2||_2`` at ``sqrt(c)`` (call once, after any re-initialisation)."""
        shape = (self.state_channels, self.size, self.size)
        for conv in (self.w1, self.w2):
            spectral_normalise_conv(conv, shape, self.coeff ** 0.5, "operator")

    def g(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``G(h, x) = W_2 relu(W_1 h + U x + b)``.  # (B, C, H, W), (B, C, H, W) -> (B, C, H, W)"""
        return self.w2(torch.relu(self.w1(h) + self.inject(x)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h, x = z[:, :self.state_channels], z[:, self.state_channels:]
        h_next = (1.0 - self.step) * h + self.step * self.g(h, x)
        return torch.cat([h_next, x], 1)                                 # (B, 2C, H, W)

    def branch(self, z: torch.Tensor) -> torch.Tensor:
        """The step as a residual function, ``F(z) = block(z) - z`` (zero on the carried input)."""
        return self(z) - z

    def update(self, z: torch.Tensor) -> torch.Tensor:
        return self(z) - z

    @torch.no_grad()
    def step_lipschitz_bound(self) -> float:
        """``(1 - a) + a ||W_1||_2 ||W_2||_2``, the norms computed afresh by power iteration (opnorm)."""
        shape = (self.state_channels, self.size, self.size)
        norms = [conv_operator_norm(conv, shape) for conv in (self.w1, self.w2)]
        return (1.0 - self.step) + self.step * norms[0] * norms[1]

    def extra_repr(self) -> str:
        return f"channels={self.state_channels}, c={self.coeff:g}, a={self.step:g}"


class InjectionEntry(nn.Module):
    """The start of an injected stage: ``x = transition(h_prev)``, then ``z_0 = [x, x]`` (``h_0 = x``).

    ``take``: how many leading channels of the incoming tensor are the
    previous stage's state ``h`` (None: all of it, after the stem).
    """

    def __init__(self, transition: nn.Module | None, take: int | None = None):
        super().__init__()
        self.transition = transition
        self.take = take

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = z if self.take is None else z[:, :self.take]
        x = h if self.transition is None else self.transition(h)
        return torch.cat([x, x], 1)
