"""The stage contract: one walk over a residual network, used by every measurement.

A network of the course is ``stem -> stages -> readout``; a stage is a
(possibly absent) *transition* unit that changes the shape of the residual
stream, followed by ``n`` same-shape *blocks*:

    h_0 = transition(x),    h_{t+1} = block_{i_t}(h_t),   t = 0 .. len(schedule) - 1

A *schedule* is the list of block indices a stage runs. The trained network
runs ``range(n)``; :func:`without` drops one block (Jastrzębski et al. 2018,
Sec. 4.3; Veit et al. 2016) and :func:`unrolled` applies the last block ``k``
more times (Jastrzębski et al. Sec. 4.4; the convergence and divergence
indices of Lippl et al. 2021). The measurements that iterate the last block
beyond the trained depth (the indices, the unrolling of chapters 2 and 5) run
that iteration through :func:`iterate_last_block`, one state at a time. Any
module with ``stem``, ``stages`` (each a :class:`Stage`, or anything with
``transition`` and ``blocks``) and ``readout`` follows the contract:
:func:`itercourse.models.build_resnet`'s networks, the toys of
:mod:`itercourse.toys` and torchvision ResNets adapted by
:func:`itercourse.adapters.from_torchvision`.
"""
from __future__ import annotations

import contextlib
import itertools
from typing import Iterator

import torch
from torch import nn


def unrolled(n: int, k: int) -> list[int]:
    """The schedule of ``n`` trained blocks followed by ``k`` extra applications of the last one."""
    return list(range(n)) + [n - 1] * k


def iterate_last_block(stage, h: torch.Tensor, k: int, *,
                       scale: float | None = None) -> Iterator[torch.Tensor]:
    """The states ``h_{n+1} .. h_{n+k}``: a stage's last block applied ``k`` more times to its output ``h = h_n``.

        h_{t+1} = B_{n-1}(h_t)                               scale=None: the block itself
        h_{t+1} = h_t + scale * (B_{n-1}(h_t) - h_t)         a scaled step, h <- h + scale * Δ(h)

    ``scale=None`` gives the states of the schedule :func:`unrolled` ``(n, k)``
    (``scale=1.0`` gives the same up to float rounding). A generator: it holds
    one state at a time, so a stage iterated to many times its depth costs the
    memory of one state. Source: Jastrzębski et al. (2018), Sec. 4.4.
    """
    block = stage.blocks[-1]
    for _ in range(k):
        h = block(h) if scale is None else h + scale * (block(h) - h)
        yield h


def depth_schedule(n: int, t: int) -> list[int]:
    """The schedule of ``t`` block applications: blocks ``0 .. n-1`` in order, then the last block again.

    ``t <= n`` runs the first ``t`` blocks; ``t > n`` is ``unrolled(n, t - n)``.
    """
    return list(range(min(t, n))) + [n - 1] * max(0, t - n)


def check_schedules(schedules, n_stages: int) -> None:
    """Raise unless ``schedules`` is a dict whose keys are stage indices in ``0..n_stages-1``.

    A key out of range (``{7: [0]}`` for a three-stage network, or ``{-1: ...}``) would be ignored
    silently: refuse it. The schedules themselves are checked by each stage.
    """
    if not isinstance(schedules, dict):
        raise TypeError(f"schedules={schedules!r} must be a dict {{stage index: list of block indices}}, "
                        "e.g. {2: [0, 1, 2, 2]}")
    bad = [k for k in schedules if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < n_stages]
    if bad:
        raise ValueError(f"schedules has stage key(s) {bad}; allowed: stage indices 0..{n_stages - 1} for this "
                         f"network of {n_stages} stages")


def without(n: int, i: int) -> list[int]:
    """The schedule of ``n`` blocks with block ``i`` left out."""
    return [j for j in range(n) if j != i]


class Stage(nn.Module):
    """A transition unit (or none) followed by same-shape blocks run on a schedule."""

    def __init__(self, transition: nn.Module | None, blocks: list[nn.Module]):
        super().__init__()
        self.transition = transition
        self.blocks = nn.ModuleList(blocks)

    def _check_schedule(self, schedule) -> list[int]:
        n = len(self.blocks)
        schedule = list(range(n)) if schedule is None else list(schedule)
        for i in schedule:
            if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n:
                raise ValueError(f"schedule={schedule!r} contains {i!r}; block indices must be integers "
                                 f"in 0..{n - 1} for this stage of {n} blocks")
        return schedule

    def run_blocks(self, h: torch.Tensor, schedule=None) -> list[torch.Tensor]:
        """States ``[h_0, h_1, ...]`` from running the blocks named by ``schedule`` on ``h = h_0``."""
        states = [h]
        for i in self._check_schedule(schedule):
            h = self.blocks[i](h)               # h_{t+1} = block_i(h_t)
            states.append(h)
        return states

    def enter(self, x: torch.Tensor) -> torch.Tensor:
        """The stage's first state ``h_0``: its input after the transition unit."""
        return x if self.transition is None else self.transition(x)

    def forward(self, x: torch.Tensor, schedule=None) -> torch.Tensor:
        h = self.enter(x)
        if schedule is None:                    # the training hot path: every block once, no checks
            for block in self.blocks:
                h = block(h)
            return h
        for i in self._check_schedule(schedule):
            h = self.blocks[i](h)
        return h


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Eval mode inside the ``with``; every submodule's previous mode restored after, even on an exception.

    Batch norm then uses its running statistics, so each example's numbers
    depend on that example only.
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, was_training in modes:
            m.training = was_training


def device_of(model: nn.Module, device=None) -> torch.device:
    """``device`` if given, else the device of the model's first parameter or buffer (CPU if it has none)."""
    if device is not None:
        return torch.device(device)
    for t in itertools.chain(model.parameters(), model.buffers()):
        return t.device
    return torch.device("cpu")


def check_model(model, *, every_stage: bool = False) -> None:
    """Raise unless ``model`` follows the stage contract and has at least one same-shape block.

    ``every_stage=True`` also requires a block in every stage (the indices
    compare blocks within each stage).
    """
    stages = getattr(model, "stages", None)
    ok = (isinstance(model, nn.Module) and stages is not None and hasattr(model, "stem")
          and callable(getattr(model, "readout", None))
          and all(hasattr(s, "blocks") and hasattr(s, "transition") for s in stages))
    if not ok:
        raise TypeError(f"model={type(model).__name__} does not follow the stage contract: the measurements "
                        "need model.stem, model.stages[s].transition, model.stages[s].blocks and "
                        "model.readout, as built by itercourse.build_resnet (or adapted by "
                        "itercourse.from_torchvision)")
    if any(p.is_meta for p in itertools.chain(model.parameters(), model.buffers())):
        raise ValueError(f"model={type(model).__name__} has parameters on the meta device (shapes without "
                         "values); allowed: a model with real weights, e.g. model.to_empty(device='cpu') and "
                         "then load_state_dict(...)")
    if sum(len(s.blocks) for s in stages) == 0:
        raise ValueError(f"model={type(model).__name__} has no same-shape blocks in any stage; "
                         "the measurements need at least one block")
    if every_stage:
        for s, stage in enumerate(stages):
            if len(stage.blocks) == 0:
                raise ValueError(f"model.stages[{s}] has 0 blocks; every stage needs at least one block")


def enter(stage, h: torch.Tensor) -> torch.Tensor:
    """A stage's first state ``h_0``: ``h`` after the stage's transition (if it has one)."""
    return h if stage.transition is None else stage.transition(h)


def run_schedule(stage, h: torch.Tensor, schedule=None) -> list[torch.Tensor]:
    """States ``[h_0, h_1, ...]`` from running ``stage``'s blocks named by ``schedule`` (default: all) on ``h_0``."""
    if isinstance(stage, Stage):
        return stage.run_blocks(h, schedule)
    states = [h]
    for i in range(len(stage.blocks)) if schedule is None else schedule:
        states.append(stage.blocks[i](states[-1]))
    return states


def stage_states(model, x: torch.Tensor, schedules: dict | None = None, *,
                 upto: int | None = None) -> list[list[torch.Tensor]]:
    """Per stage, the block-boundary states ``[h_0, ..., h_n]`` (``h_0`` after the transition).

    ``schedules`` maps a stage index to the block schedule it runs (default:
    all blocks in order); ``upto=s`` stops after stage ``s``.
    """
    if schedules:
        check_schedules(schedules, len(model.stages))
    schedules = schedules or {}
    stages = list(model.stages)
    stages = stages if upto is None else stages[:upto % len(stages) + 1]
    h, out = model.stem(x), []
    for s, stage in enumerate(stages):
        states = run_schedule(stage, enter(stage, h), schedules.get(s))
        out.append(states)
        h = states[-1]
    return out


def trajectory(model, x: torch.Tensor) -> list[torch.Tensor]:
    """Every residual-stream state in order: the stem's output, then after each transition and block."""
    h = model.stem(x)
    out = [h]
    for stage in model.stages:
        states = run_schedule(stage, enter(stage, h))
        out += states if stage.transition is not None else states[1:]
        h = states[-1]
    return out


def finish(model, h: torch.Tensor, stage: int, block: int | None = None) -> torch.Tensor:
    """Logits from a state inside the network: the rest of stage ``stage``, the later stages, the read-out.

    ``block=None``: ``h`` leaves stage ``stage``. ``block=i``: ``h`` is the
    input of block ``i`` of that stage, so blocks ``i .. n-1`` run first.
    """
    stages = list(model.stages)
    if block is not None:
        for blk in stages[stage].blocks[block:]:
            h = blk(h)
    for st in stages[stage + 1:]:
        h = run_schedule(st, enter(st, h))[-1]
    return model.readout(h)
