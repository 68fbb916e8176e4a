"""Soft gradient coupling: a dial between an ordinary ResNet and a recurrent one.

The blocks of a stage all map the residual stream to the same space, so
block ``i`` of a stage has a parameter called, say, ``residual.2.weight`` with
the same shape as block ``j``'s. Such a set of *corresponding* parameters
``W_1 .. W_n`` (one per block) is a *group*. After ``loss.backward()`` soft
gradient coupling replaces every gradient in a group by a blend of itself
and the group's mean gradient:

    g_i <- (1 - lam) g_i + lam * mean_j g_j,        lam in [0, 1]

- ``lam = 0``: ordinary training, every block on its own;
- ``lam = 1``: every block of a stage receives the *same* gradient. If the
  blocks start from the same weights (:func:`make_blocks_identical`), SGD with
  momentum and weight decay then gives them the same update at every step,
  so they stay identical for ever: the stage is one block iterated ``n`` times,
  a recurrent network;
- in between, the mean of the gradients is untouched and the deviations
  ``g_i - mean_j g_j`` are scaled by ``1 - lam``: a recurrence regulariser.

Source: Lippl, Peters & Kriegeskorte 2021 (soft gradient coupling); the exact
rule of the paper was not available to us, this is the natural reading of its
description in the abstract. Only parameters are coupled: batch-norm
*running statistics* are buffers, so at ``lam = 1`` each step keeps its own
statistics (Jastrzębski et al. 2018's "unshared" statistics).

Along the dial the network has more than one block's worth of parameters but
fewer than ``n`` independent blocks' worth. :func:`effective_parameters`
measures where it sits; :func:`block_spread` measures how far the blocks of
each stage are from being identical.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .errors import check_range

# Normalisation layers: their parameters are coupled only with include_norm=True.
NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


@dataclass(frozen=True, eq=False)
class ParameterGroup:
    """The corresponding parameters of one stage: the same name in each of its n blocks."""

    stage: int            # stage index s in model.stages
    name: str             # parameter name inside a block, e.g. "residual.2.weight"
    params: tuple         # one tensor per block, in block order; a shared tensor appears once per block
    is_norm: bool         # True when it belongs to a normalisation layer (batch norm scale / shift)

    @property
    def unique(self) -> list:
        """The distinct tensors of the group (weights shared between blocks counted once)."""
        seen, out = set(), []
        for p in self.params:
            if id(p) not in seen:
                seen.add(id(p))
                out.append(p)
        return out

    @property
    def n(self) -> int:
        """Number of blocks (steps) the group spans."""
        return len(self.params)

    @property
    def numel(self) -> int:
        """Entries of one member tensor."""
        return self.params[0].numel()


def _stages(model: nn.Module) -> list:
    stages = getattr(model, "stages", None)
    if stages is None or not all(hasattr(s, "blocks") for s in stages):
        raise TypeError(f"model={type(model).__name__} has no .stages with .blocks; coupling needs a model whose "
                        "stages hold same-shape blocks, e.g. one from itercourse.models.build_resnet")
    return list(stages)


def _norm_names(block: nn.Module) -> set:
    """Names (inside ``block``) of the parameters that belong to normalisation layers."""
    names = set()
    for mname, m in block.named_modules():
        if isinstance(m, NORM_TYPES):
            names.update(f"{mname}.{p}" if mname else p for p, _ in m.named_parameters())
    return names


def _matched(stage_index: int, blocks, named) -> list[dict]:
    """Per block, ``named(block)`` as a dict; checks every block has block 0's names and shapes."""
    tables = [dict(named(b)) for b in blocks]
    ref = tables[0]
    for i, table in enumerate(tables[1:], start=1):
        if set(table) != set(ref):
            odd = sorted(set(table) ^ set(ref))
            raise ValueError(f"stage {stage_index}: block {i} and block 0 differ in their parameters/buffers "
                             f"{odd}; corresponding parameters must have the same name in every block of a stage")
        for name, t in table.items():
            if t.shape != ref[name].shape:
                raise ValueError(f"stage {stage_index}, parameter {name!r}: block 0 has shape {tuple(ref[name].shape)} "
                                 f"but block {i} has {tuple(t.shape)}; only blocks of identical shape can be coupled")
    return tables


def corresponding_parameters(model: nn.Module) -> list[ParameterGroup]:
    """Every group of corresponding trainable parameters: per stage, one group per parameter name.

    Names are matched as written inside a block, so spectral-normalised convs
    (``residual.2.parametrizations.weight.original``) pair up like plain ones.
    Raises ``ValueError`` naming the stage and parameter where blocks differ.
    """
    groups, owner = [], {}
    for s, stage in enumerate(_stages(model)):
        blocks = list(stage.blocks)
        if not blocks:
            continue
        tables = _matched(s, blocks, lambda b: b.named_parameters())
        norm = _norm_names(blocks[0])
        for name, p0 in tables[0].items():
            if not p0.requires_grad:
                continue
            group = ParameterGroup(s, name, tuple(t[name] for t in tables), name in norm)
            for p in group.unique:
                if id(p) in owner and owner[id(p)] != (s, name):
                    raise ValueError(f"stage {s}, parameter {name!r} is the same tensor as {owner[id(p)]}; "
                                     "a parameter may belong to one group of corresponding parameters only")
                owner[id(p)] = (s, name)
            groups.append(group)
    return groups


class GradientCoupling:
    """Soft gradient coupling of corresponding block parameters (Lippl et al. 2021).

        g_i <- (1 - lam) g_i + lam * mean_j g_j     for every group W_1 .. W_n

    Call :meth:`apply` after ``loss.backward()`` and before ``optimizer.step()``.
    ``include_norm`` also couples batch-norm scales and shifts. Weights shared
    between blocks (``ResNetConfig(share=True)``) are one tensor and are
    counted once; a group whose blocks all share one tensor has nothing to couple.
    A block whose gradient is ``None`` (not used in the forward pass) counts as a zero gradient.

    Cost: the groups are bucketed by (members, shape, dtype, device) once; each
    call stacks each bucket's gradients into a persistent buffer, takes one
    mean per bucket and blends all gradients with a single
    ``torch._foreach_lerp_``, so the number of kernel launches does not grow
    with the number of blocks (and nothing is allocated after the first call).
    """

    def __init__(self, model: nn.Module, strength: float, include_norm: bool = True):
        check_range("strength", strength, 0.0, 1.0)
        if not isinstance(include_norm, bool):
            raise TypeError(f"include_norm={include_norm!r} must be True or False")
        self.strength = float(strength)
        self.include_norm = include_norm
        self.groups = [g for g in corresponding_parameters(model)
                       if len(g.unique) > 1 and (include_norm or not g.is_norm)]
        buckets: dict[tuple, list[list]] = {}
        for g in self.groups:
            p = g.unique[0]
            buckets.setdefault((len(g.unique), tuple(p.shape), p.dtype, p.device), []).append(g.unique)
        # per bucket: K groups of m members, flattened name-major: [g0_b0, g0_b1, ..., g1_b0, ...]
        self._buckets = [(m, shape, len(members), [p for ps in members for p in ps])
                         for (m, shape, _, _), members in buckets.items()]
        self.params = [p for *_, ps in self._buckets for p in ps]
        self._means = self._stacks = self._mean_bufs = None   # work buffers, made on the first apply()

    def __repr__(self) -> str:
        return (f"GradientCoupling(strength={self.strength}, include_norm={self.include_norm}, "
                f"groups={len(self.groups)}, tensors={len(self.params)}, buckets={len(self._buckets)})")

    @torch.no_grad()
    def apply(self) -> None:
        """Blend every coupled gradient with its group's mean gradient, in place."""
        if not self.params:
            return
        for p in self.params:                           # unused blocks: a zero gradient, so the blend is defined
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        if self._means is None:                         # persistent work buffers: no allocation per call
            self._stacks = [torch.empty((k * m, *shape), dtype=ps[0].dtype, device=ps[0].device)
                            for m, shape, k, ps in self._buckets]
            mean_bufs = [torch.empty((k, *shape), dtype=ps[0].dtype, device=ps[0].device)
                         for m, shape, k, ps in self._buckets]
            self._mean_bufs = mean_bufs
            self._means = [mu for (m, _, _, _), buf in zip(self._buckets, mean_bufs)
                           for mu in buf.unbind(0) for _ in range(m)]
        grads = [p.grad for p in self.params]
        start = 0
        for (m, shape, k, params), stack, mean in zip(self._buckets, self._stacks, self._mean_bufs):
            torch.stack(grads[start:start + k * m], out=stack)                   # (K*m, *shape)
            torch.mean(stack.view(k, m, -1), dim=1, out=mean.view(k, -1))       # (K, D): mean_j g_j per group
            start += k * m
        torch._foreach_lerp_(grads, self._means, self.strength)  # g + lam (mean - g) = (1 - lam) g + lam mean


@torch.no_grad()
def make_blocks_identical(model: nn.Module) -> nn.Module:
    """Copy block 0's parameters and buffers into every other block of each stage, in place.

    The "start from identical weights" option: together with coupling strength
    1 it keeps every stage exactly recurrent. Returns ``model``.
    """
    for s, stage in enumerate(_stages(model)):
        blocks = list(stage.blocks)
        if len(blocks) < 2:
            continue
        named = lambda b: list(b.named_parameters()) + list(b.named_buffers())  # noqa: E731
        tables = _matched(s, blocks, named)
        for table in tables[1:]:
            for name, t in table.items():
                src = tables[0][name]
                if t is not src:
                    t.copy_(src)
    return model


# ------------------------------------------------------------------ where on the dial is a network?

def _spread_terms(tensors) -> tuple[float, float]:
    """``(sum_i ||W_i - W_bar||^2, sum_i ||W_i||^2)`` of n same-shape tensors, in float64."""
    w = torch.stack([t.detach().reshape(-1) for t in tensors]).double()   # (n, D)
    dev = (w - w.mean(0, keepdim=True)).pow(2).sum()
    return float(dev), float(w.pow(2).sum())


def group_spread(tensors) -> float:
    """Normalised between-block spread ``rho`` of n corresponding tensors, in [0, n/(n-1)].

        rho = n/(n-1) * sum_i ||W_i - W_bar||^2 / sum_i ||W_i||^2 = 1 - r_bar,
        r_bar = sum_{i != j} <W_i, W_j> / ((n - 1) sum_i ||W_i||^2)

    ``rho = 0`` exactly when the tensors are identical, ``rho = 1`` exactly
    when they are mutually orthogonal (uncorrelated), e.g. independently
    initialised blocks up to sampling noise; above 1 means anti-correlated.
    All-zero tensors and single tensors have ``rho = 0``.
    """
    n = len(tensors)
    if n < 2:
        return 0.0
    dev, total = _spread_terms(tensors)
    return 0.0 if total == 0.0 else n / (n - 1) * dev / total


def effective_parameters(model: nn.Module, include_norm: bool = True) -> float:
    """Effective number of parameters of a network between ordinary (independent) and recurrent (tied) blocks.

        P_eff = P_outside + sum_groups numel * (1 + (n - 1) * clip(rho, 0, 1))

    For each group of n corresponding tensors, the part the blocks have in
    common counts once and the remaining ``n - 1`` copies count in proportion
    to their normalised spread ``rho`` (:func:`group_spread`): ``n * numel``
    for uncorrelated blocks, ``numel`` for identical or shared ones.
    Parameters outside the blocks (stem, transitions, read-out) count normally,
    ``P_outside`` = their number. With ``include_norm=False`` normalisation
    parameters are counted normally too (each distinct tensor in full).
    Our definition (Lippl et al. measure an effective parameter count; their formula was not available).
    """
    groups = corresponding_parameters(model)
    grouped = {id(p) for g in groups for p in g.unique}
    seen, total = set(), 0.0
    for p in model.parameters():
        if p.requires_grad and id(p) not in grouped and id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    for g in groups:
        if g.is_norm and not include_norm:
            total += g.numel * len(g.unique)
        else:
            rho = min(1.0, max(0.0, group_spread(g.params)))
            total += g.numel * (1 + (g.n - 1) * rho)
    return total


def block_spread(model: nn.Module, include_norm: bool = True) -> list[float]:
    """Per stage, how far its blocks are from identical: 0 = identical, ~1 = independent.

        spread_s = n/(n-1) * sum_groups sum_i ||W_i - W_bar||^2 / sum_groups sum_i ||W_i||^2

    i.e. :func:`group_spread` of the blocks' whole parameter vectors (all
    groups of the stage concatenated). ``include_norm=False`` leaves the
    normalisation parameters out. Stages of one block score 0.
    """
    out, all_groups = [], corresponding_parameters(model)
    for s, stage in enumerate(_stages(model)):
        groups = [g for g in all_groups if g.stage == s and (include_norm or not g.is_norm)]
        n = len(stage.blocks)
        dev = total = 0.0
        for g in groups:
            d, t = _spread_terms(g.params)
            dev, total = dev + d, total + t
        out.append(0.0 if n < 2 or total == 0.0 else n / (n - 1) * dev / total)
    return out


@torch.no_grad()
def block_difference(model: nn.Module) -> list[float]:
    """Per stage, the largest ``|W_i - W_0|`` over every block i and coupled parameter: 0.0 = exactly recurrent."""
    out, groups = [], corresponding_parameters(model)
    for s, _ in enumerate(_stages(model)):
        diffs = [float((p - g.params[0]).abs().max()) for g in groups if g.stage == s for p in g.params[1:]]
        out.append(max(diffs, default=0.0))
    return out


def block_similarity(model: nn.Module, stage: int, include_norm: bool = True) -> torch.Tensor:
    """(n, n) cosine similarities between the whole parameter vectors of a stage's blocks."""
    groups = [g for g in corresponding_parameters(model) if g.stage == stage and (include_norm or not g.is_norm)]
    if not groups:
        raise ValueError(f"stage={stage!r} has no parameters to compare; allowed stages are "
                         f"0..{len(_stages(model)) - 1} of a model whose blocks have parameters")
    w = torch.cat([torch.stack([p.detach().reshape(-1) for p in g.params]).double() for g in groups], 1)  # (n, D)
    w = w / w.norm(dim=1, keepdim=True).clamp_min(1e-30)
    return (w @ w.T).float()
