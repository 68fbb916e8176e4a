"""CIFAR-style ResNets whose stages can be run, re-ordered and iterated like recurrent networks.

A stage is a (possibly absent) *transition* unit that changes the shape of
the residual stream, followed by ``n`` same-shape *blocks*:

    h_0 = transition(x),    h_{i+1} = block_i(h_i),   i = 0 .. n-1

Because every block maps the stream to the same space, a stage can run its
blocks on any *schedule*: drop one (Jastrzębski et al. 2018, Sec. 4.3), swap
two (the recurrence index of chapter 6), or apply the last one k more times
(unrolling; Jastrzębski et al. Sec. 4.4). With ``share=True`` every block of
a stage is the same module, so the stage *is* a recurrent network run for n
steps (Liao & Poggio 2016; Lippl et al. 2021), optionally with a separate
batch norm for every step (Jastrzębski et al.'s unshared BN).

Depth: He et al.'s ResNet-(6m+2) has m units per stage, of which the first
unit of stages 2 and 3 is a transition; ``ResNetConfig.cifar(depth)`` builds it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from .blocks import BRANCH_NORMS, POST_ACTIVATED, SHORTCUTS, UNITS, ResidualUnit, conv3x3
from .contraction import InjectedContraction, InjectionEntry
from .errors import check_choice, check_finite, check_int, check_positive, check_positive_int, check_range
from .lipschitz import FLAVOURS, apply_spectral_norm
from .walk import Stage, check_schedules, stage_states, trajectory

# The most parameters a config may ask for (fp32: 4 GB of weights, about 16 GB to train with momentum):
# checked from the config before any tensor is allocated.
MAX_PARAMETERS = 1_000_000_000

# "zero": the last layer of every same-shape block's branch starts at zero (its conv's weight, or the
# weight of its batch norm when the branch ends with one), so each block starts as the identity map
# (SkipInit, De & Smith 2020; Fixup, Zhang et al. 2019). Stage transitions keep their He init.
BRANCH_INITS = ("default", "zero")

# "residual": the blocks of He et al., h <- h + F(h). "contraction": every stage converges by
# construction, h <- (1 - a) h + a G(h, x) with the stage input x injected and Lip_h(G) <= c < 1
# (itercourse.contraction); c is ``spectral_coeff``, a is ``contraction_step``.
BLOCK_MAPS = ("residual", "contraction")


@dataclass(frozen=True)
class ResNetConfig:
    """Everything that defines a ResNet of the course; saved next to every result."""

    in_channels: int = 3                 # image channels (1 for MNIST / Digitclutter, 3 for CIFAR)
    num_classes: int = 10                # outputs of the linear read-out
    widths: tuple = (16, 32, 64)         # channels of each stage (bottleneck: inner width, output is 4x)
    blocks: tuple = (3, 3, 3)            # same-shape blocks per stage, after the stage's transition unit
    unit: str = "preact"                 # activation placement, one of blocks.UNITS (He et al. Table 2)
    shortcut: str = "identity"           # shortcut of same-shape blocks, one of blocks.SHORTCUTS (Table 1)
    bottleneck: bool = False             # 1x1-3x3-1x1 units instead of 3x3-3x3
    share: bool = False                  # one set of conv weights per stage, applied at every step
    share_norm: bool = False             # with share=True: also share BN (False = unshared BN per step)
    ubn_gamma: float = 0.1               # initial BN scale in shared stages (Jastrzębski et al.: 0.1)
    branch_norm: str = "bn"              # "bn", or "none" to build branches without batch norm
    spectral_coeff: float | None = None  # Lipschitz bound c on every block's branch; None = unconstrained
    spectral_flavour: str = "operator"   # "operator" (true conv norm) or "reshaped" (torch's spectral_norm)
    input_size: int = 32                 # image height = width, needed for operator norms
    shortcut_scale: float = 0.5          # "scaled" shortcut: factor on x
    branch_scale: float = 1.0            # "scaled" shortcut: factor on F
    gate_bias: float = -6.0              # gated shortcuts: initial gate bias b_g
    dropout_p: float = 0.5               # "dropout" shortcut: drop probability
    branch_init: str = "default"         # "default" (He init), or "zero": each block starts as the identity
    block_map: str = "residual"          # "residual" (h + F(h)) or "contraction" (input injection, BLOCK_MAPS)
    contraction_step: float = 1.0        # "contraction": the step a in h <- (1 - a) h + a G(h, x), in (0, 1]

    def __post_init__(self):
        check_positive_int("in_channels", self.in_channels)
        check_positive_int("num_classes", self.num_classes)
        for name in ("widths", "blocks"):
            value = getattr(self, name)
            if not isinstance(value, (tuple, list)) or len(value) == 0:
                raise TypeError(f"{name}={value!r} must be a non-empty tuple of integers, e.g. (16, 32, 64)")
            object.__setattr__(self, name, tuple(value))
        for w in self.widths:
            check_positive_int("widths[i]", w)
        for b in self.blocks:
            check_int("blocks[i]", b, minimum=1)
        if len(self.widths) != len(self.blocks):
            raise ValueError(f"widths={self.widths!r} and blocks={self.blocks!r} must have the same length "
                             "(one entry per stage)")
        check_choice("unit", self.unit, UNITS)
        check_choice("shortcut", self.shortcut, SHORTCUTS)
        check_choice("branch_norm", self.branch_norm, BRANCH_NORMS)
        check_choice("spectral_flavour", self.spectral_flavour, FLAVOURS)
        if self.spectral_coeff is not None:
            check_positive("spectral_coeff", self.spectral_coeff)
            if self.branch_norm != "none":
                raise ValueError(f"spectral_coeff={self.spectral_coeff!r} needs branch_norm='none', got "
                                 f"branch_norm={self.branch_norm!r}: batch norm in a residual branch scales it by "
                                 "the unbounded |gamma|/sqrt(var+eps), so the branch has no Lipschitz bound")
        check_positive("ubn_gamma", self.ubn_gamma)
        check_int("input_size", self.input_size, minimum=4)
        check_range("dropout_p", self.dropout_p, 0.0, 1.0, high_open=True)
        check_choice("branch_init", self.branch_init, BRANCH_INITS)
        check_choice("block_map", self.block_map, BLOCK_MAPS)
        check_range("contraction_step", self.contraction_step, 0.0, 1.0, low_open=True)
        if self.block_map == "contraction":
            wrong = {k: v for k, v in (("branch_norm", self.branch_norm), ("shortcut", self.shortcut),
                                       ("bottleneck", self.bottleneck), ("branch_init", self.branch_init),
                                       ("spectral_flavour", self.spectral_flavour))
                     if v != {"branch_norm": "none", "shortcut": "identity", "bottleneck": False,
                              "branch_init": "default", "spectral_flavour": "operator"}[k]}
            if wrong:
                raise ValueError(f"block_map='contraction' builds its own blocks and needs branch_norm='none', "
                                 f"shortcut='identity', bottleneck=False, branch_init='default', "
                                 f"spectral_flavour='operator'; got {wrong}")
            if self.spectral_coeff is None or not 0 < self.spectral_coeff < 1:
                raise ValueError(f"block_map='contraction' needs spectral_coeff=c in (0, 1) (the contraction "
                                 f"rate bound of G); got spectral_coeff={self.spectral_coeff!r}")
        for name in ("shortcut_scale", "branch_scale", "gate_bias"):
            check_finite(name, getattr(self, name))
        size = estimated_parameters(self)
        if size > MAX_PARAMETERS:
            raise ValueError(f"widths={self.widths!r} with blocks={self.blocks!r} would need about {size:.3g} "
                             f"parameters ({4 * size / 2**30:.3g} GiB in fp32) before training; allowed: at most "
                             f"{MAX_PARAMETERS:.0e} (CIFAR ResNets use widths like (16, 32, 64))")

    @classmethod
    def cifar(cls, depth: int = 20, **overrides) -> "ResNetConfig":
        """He et al.'s CIFAR ResNet-``depth`` (basic: 6m+2, e.g. 20/56/110; bottleneck: 9m+2, e.g. 164)."""
        check_int("depth", depth, minimum=8)
        bottleneck = overrides.get("bottleneck", False)
        per_unit = 9 if bottleneck else 6
        if (depth - 2) % per_unit:
            allowed = "9m+2 (e.g. 164)" if bottleneck else "6m+2 (e.g. 20, 56, 110)"
            raise ValueError(f"depth={depth!r} is not a CIFAR ResNet depth; use {allowed}")
        m = (depth - 2) // per_unit
        # Bottleneck stage 1 also changes width (16 -> 64), so it has a transition too.
        blocks = (m - 1, m - 1, m - 1) if bottleneck else (m, m - 1, m - 1)
        return cls(**{"blocks": blocks, **overrides})

    @property
    def depth(self) -> int:
        """Weighted layers: stem + read-out + the convs of every unit (He et al.'s count)."""
        convs = 3 if self.bottleneck else 2
        units = sum(self.blocks) + sum(1 for s in range(len(self.blocks)) if _has_transition(self, s))
        return 2 + convs * units


def estimated_parameters(cfg: ResNetConfig) -> int:
    """About how many parameters ``cfg``'s convolutions hold (an upper estimate), computed without allocating."""
    per_unit = lambda c: 9 * (c // 4) ** 2 + 2 * (c // 4) * c if cfg.bottleneck else 18 * c * c  # noqa: E731
    total, c_in = 9 * cfg.in_channels * cfg.widths[0], cfg.widths[0]
    for s, n in enumerate(cfg.blocks):
        c = _stage_channels(cfg, s)
        total += (n + 1) * per_unit(c) + c_in * c          # n blocks, a transition and its projection
        c_in = c
    return total + c_in * cfg.num_classes


def _stage_channels(cfg: ResNetConfig, s: int) -> int:
    return cfg.widths[s] * (4 if cfg.bottleneck else 1)


def _stage_size(cfg: ResNetConfig, s: int) -> int:
    """Height = width of stage s's feature maps for ``cfg.input_size`` images (stride-2 transitions, padding 1)."""
    size = cfg.input_size
    for _ in range(s):
        size = (size + 1) // 2
    return size


def _has_transition(cfg: ResNetConfig, s: int) -> bool:
    c_in = cfg.widths[0] if s == 0 else _stage_channels(cfg, s - 1)
    return s > 0 or c_in != _stage_channels(cfg, s)


class ResNet(nn.Module):
    """Stem -> stages -> read-out (final norm, ReLU, global average pool, linear)."""

    def __init__(self, cfg: ResNetConfig):
        super().__init__()
        self.cfg = cfg
        post = cfg.unit in POST_ACTIVATED
        stem = [conv3x3(cfg.in_channels, cfg.widths[0])]
        if post:  # post-activation nets normalise and rectify right after the first conv
            stem += [nn.BatchNorm2d(cfg.widths[0]), nn.ReLU()]
        self.stem = nn.Sequential(*stem)
        unit_kw = dict(unit=cfg.unit, bottleneck=cfg.bottleneck, branch_norm=cfg.branch_norm,
                       shortcut_scale=cfg.shortcut_scale, branch_scale=cfg.branch_scale,
                       gate_bias=cfg.gate_bias, dropout_p=cfg.dropout_p)
        stages, c_in = [], cfg.widths[0]
        injected = cfg.block_map == "contraction"
        self.state_channels = None               # "contraction": the read-out sees h = z[:, :C] only
        for s, n in enumerate(cfg.blocks):
            c_out = _stage_channels(cfg, s)
            transition = None
            if _has_transition(cfg, s):
                transition = ResidualUnit(c_in, c_out, stride=1 if s == 0 else 2, **unit_kw)
            if injected:
                size = _stage_size(cfg, s)
                transition = InjectionEntry(transition, take=c_in if s > 0 else None)
                make = lambda: InjectedContraction(c_out, size, cfg.spectral_coeff,   # noqa: E731
                                                   cfg.contraction_step, cap=False)      # capped after init
                first = make()
                blocks = [first] * n if cfg.share else [first] + [make() for _ in range(n - 1)]
                self.state_channels = c_out
            else:
                blocks = self._make_blocks(cfg, c_out, n, unit_kw)
            stages.append(Stage(transition, blocks))
            c_in = c_out
        self.stages = nn.ModuleList(stages)
        # He et al.: units with nothing after the addition need a final BN-ReLU before pooling.
        self.final_norm = nn.Identity() if post else nn.BatchNorm2d(c_in)
        self.final_relu = nn.Identity() if post else nn.ReLU()
        self.fc = nn.Linear(c_in, cfg.num_classes)
        self._init_weights()
        if cfg.share and not cfg.share_norm:
            for stage in self.stages:
                for m in stage.blocks.modules():
                    if isinstance(m, nn.BatchNorm2d):
                        nn.init.constant_(m.weight, cfg.ubn_gamma)
        if cfg.branch_init == "zero":
            zero_init_branches(self)
        for block in {id(b): b for stage in self.stages for b in stage.blocks}.values():
            if isinstance(block, InjectedContraction):
                block.cap()                      # the cap sees the initialised weights

    @staticmethod
    def _make_blocks(cfg: ResNetConfig, c: int, n: int, unit_kw: dict) -> list[nn.Module]:
        """n independent blocks, or n steps of one shared block (BN shared or one per step)."""
        first = ResidualUnit(c, c, shortcut=cfg.shortcut, **unit_kw)
        if not cfg.share:
            return [first] + [ResidualUnit(c, c, shortcut=cfg.shortcut, **unit_kw) for _ in range(n - 1)]
        if cfg.share_norm:
            return [first] * n                  # literally one module, applied n times
        steps = [first]
        for _ in range(n - 1):                  # own BN per step, convs (and gates) tied to the first
            step = ResidualUnit(c, c, shortcut=cfg.shortcut, **unit_kw)
            for name, mod in first.named_modules():
                if isinstance(mod, nn.Conv2d):
                    parent, _, leaf = name.rpartition(".")
                    setattr(step.get_submodule(parent) if parent else step, leaf, mod)
            steps.append(step)
        return steps

    def _init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")  # He init
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():  # gates keep their chosen bias after the generic init
            if isinstance(m, ResidualUnit) and hasattr(m, "gate"):
                nn.init.constant_(m.gate.bias, self.cfg.gate_bias)

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            raise ValueError(f"x must be a 4-d image batch (B, C, H, W); got shape "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        if x.shape[1] != self.cfg.in_channels:
            raise ValueError(f"x has {x.shape[1]} channels but the model was built with "
                             f"in_channels={self.cfg.in_channels}; pass images with {self.cfg.in_channels} "
                             "channel(s) or build the model with a matching ResNetConfig(in_channels=...)")
        dtype = next((p.dtype for p in self.parameters() if p.is_floating_point()), torch.float32)
        if x.dtype != dtype and not torch.is_autocast_enabled():
            raise TypeError(f"x has dtype {x.dtype} but the model's weights are {dtype}; allowed: {dtype} "
                            f"(uint8 images: normalise them first, e.g. data.loader(...); float64: x.to({dtype}))")

    def readout(self, h: torch.Tensor) -> torch.Tensor:
        """Logits from a last-stage state: final norm, ReLU, global average pool, linear."""
        if self.state_channels is not None:                      # injected stage: z = [h, x]
            h = h[:, :self.state_channels]
        h = self.final_relu(self.final_norm(h))                  # (B, C, H, W)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(h, 1), 1))  # (B, classes)

    def forward(self, x: torch.Tensor, schedules: dict | None = None) -> torch.Tensor:
        """Logits; ``schedules`` maps a stage index to the block schedule it should run."""
        self._check_input(x)
        h = self.stem(x)
        if not schedules:                        # the training hot path: no schedule look-ups
            for stage in self.stages:
                h = stage(h)
            return self.readout(h)
        check_schedules(schedules, len(self.stages))
        for s, stage in enumerate(self.stages):
            h = stage(h, schedules.get(s))
        return self.readout(h)

    def stage_states(self, x: torch.Tensor, schedules: dict | None = None) -> list[list[torch.Tensor]]:
        """Per stage, the block-boundary states ``[h_0, ..., h_n]`` (``h_0`` after the transition)."""
        self._check_input(x)
        return stage_states(self, x, schedules)

    def trajectory(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every residual-stream state in order: stem output, then after each transition and block."""
        self._check_input(x)
        return trajectory(self, x)

    @property
    def stage_input_shapes(self) -> list[tuple[int, int, int]]:
        """(C, H, W) of the blocks' input in every stage, for ``cfg.input_size`` images."""
        shapes = [(_stage_channels(self.cfg, s), _stage_size(self.cfg, s), _stage_size(self.cfg, s))
                  for s in range(len(self.stages))]
        return shapes


@torch.no_grad()
def zero_init_branches(model: nn.Module) -> int:
    """Zero the last conv (or last batch norm's weight) of every same-shape block's branch; return the count.

    Afterwards ``block(h) == h`` for every block with an identity shortcut: the
    network starts as its stem, transitions and read-out (SkipInit/Fixup-style).
    """
    n = 0
    for stage in model.stages:
        for block in stage.blocks:
            last = [m for m in block.residual.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))][-1]
            nn.init.zeros_(last.weight)
            n += 1
    return n


def count_parameters(model: nn.Module) -> int:
    """Number of distinct trainable parameters (shared weights counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def build_resnet(cfg: ResNetConfig | None = None, *, seed: int | None = None, **overrides) -> ResNet:
    """Build the ResNet a config describes; keyword overrides replace config fields.

    With ``seed`` the initial weights depend on that seed only (the global
    random state is left untouched); without it they come from torch's global RNG.
    """
    if seed is not None:
        check_int("seed", seed, minimum=0)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return build_resnet(cfg, **overrides)
    if cfg is None:
        cfg = ResNetConfig(**overrides)
    elif overrides:
        cfg = replace(cfg, **overrides)
    if not isinstance(cfg, ResNetConfig):
        raise TypeError(f"cfg={cfg!r} must be a ResNetConfig")
    model = ResNet(cfg)
    if cfg.spectral_coeff is not None and cfg.block_map == "residual":   # contraction blocks cap their own
        apply_spectral_norm(model, cfg.spectral_coeff, flavour=cfg.spectral_flavour)
    return model
