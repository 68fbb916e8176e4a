"""Do residual blocks refine? The iterative-inference metrics of Jastrzębski et al. (2018).

A block moves the residual stream by a step ``Δ_i = h_{i+1} - h_i``. For a
small step, a first-order Taylor expansion of the loss around ``h_i`` gives

    L(h_i + Δ_i) ≈ L(h_i) + Δ_i · ∂L/∂h_i                    (Jastrzębski et al. 2018)

so the step lowers the loss when its cosine with the loss gradient is negative,
and the step of a given norm that lowers it most points along ``-∂L/∂h_i``:
the block then acts like a gradient-descent step in activation space. This
module measures, per same-shape block of any network that follows the stage
contract of :mod:`itercourse.walk` (``build_resnet``'s, the toys, a torchvision
ResNet adapted by :func:`itercourse.from_torchvision`):

- :func:`gradient_alignment`: ``cos(Δ_i, ∂L/∂h_i)``, averaged over examples;
- :func:`norm_ratios`: ``||Δ_i|| / ||h_i||`` (large = representation learning,
  small = refinement);
- :func:`drop_block_accuracy`: accuracy and loss with one block removed;
- :func:`unroll_accuracy`: accuracy, loss and state norm when a stage's last
  block is applied ``k`` more times, ``h <- h + scale * Δ(h)``;
- :func:`borderline_examples`: how the examples close to flipping class change.

The step is ``Δ_i = block(h_i) - h_i`` (``block.update``). For the
pre-activation unit with identity shortcut it equals the paper's ``F_i(h_i)``;
for other units it is the step the block actually takes (a post-activation
unit's ReLU after the addition, a gate or a scaled shortcut all change it).

All metrics run the network in eval mode (batch norm uses its running
statistics, so each example's numbers depend on that example only) and
restore the previous mode afterwards.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from numbers import Integral

import torch

from .errors import check_choice, check_int, check_positive, check_range
from .objectives import check_labels, correct_mask, flip_margin, task_loss
from .training import evaluate
from .walk import check_model, device_of, eval_mode, finish, iterate_last_block, stage_states, without

COMPARISONS = ("unroll", "last_block")
MAX_EXTRA_STEPS = 10_000     # extra block applications an unrolling may ask for (each is a forward pass)


# ---------------------------------------------------------------- results

@dataclass(frozen=True)
class PerBlock:
    """One number per same-shape block, in network order, labelled by (stage, block).

    Every per-block metric of this module returns one; ``per_stage()`` splits
    it by stage, ``labels()`` names the blocks ("s1.b2" = stage 1, block 2).
    """

    values: tuple     # the metric, one float per block, in the order the network applies them
    stage: tuple      # stage index of each value
    block: tuple      # index of each block within its stage
    metric: str = ""  # what the values are (used as a plot label)

    def __len__(self) -> int:
        return len(self.values)

    def per_stage(self) -> list[list[float]]:
        """The values grouped by stage: ``out[s][i]`` is block ``i`` of stage ``s``."""
        out: dict[int, list[float]] = {}
        for s, v in zip(self.stage, self.values):
            out.setdefault(s, []).append(v)
        return [out[s] for s in sorted(out)]

    def labels(self) -> list[str]:
        """``"s{stage}.b{block}"`` for every value."""
        return [f"s{s}.b{b}" for s, b in zip(self.stage, self.block)]

    def as_dict(self) -> dict:
        """Plain lists, ready for JSON."""
        return {"values": list(self.values), "stage": list(self.stage), "block": list(self.block),
                "metric": self.metric}

    @classmethod
    def from_dict(cls, d: dict) -> "PerBlock":
        return cls(tuple(d["values"]), tuple(d["stage"]), tuple(d["block"]), d.get("metric", ""))


@dataclass(frozen=True)
class DropBlockResult:
    """Test accuracy and loss of the intact network and with each single block removed."""

    intact_acc: float          # accuracy of the full network
    intact_loss: float         # mean loss of the full network
    acc: PerBlock              # accuracy with block (stage, block) removed
    loss: PerBlock             # mean loss with block (stage, block) removed
    not_droppable: tuple       # the parts that change the shape, so cannot be removed (stem, transitions)
    n: int                     # number of test examples

    @property
    def acc_cost(self) -> PerBlock:
        """Accuracy lost by removing each block: ``intact_acc - acc``."""
        return PerBlock(tuple(self.intact_acc - a for a in self.acc.values), self.acc.stage,
                        self.acc.block, "accuracy lost when the block is dropped")

    def as_dict(self) -> dict:
        d = asdict(self)
        d["acc"], d["loss"] = self.acc.as_dict(), self.loss.as_dict()
        d["not_droppable"] = list(self.not_droppable)
        return d


@dataclass(frozen=True)
class UnrollResult:
    """Accuracy, loss and state norm after applying a stage's last block ``k`` extra times."""

    stage: int                 # the stage whose last block is unrolled
    scale: float               # factor on the extra steps: h <- h + scale * Δ(h)
    extra_steps: tuple         # k values, sorted ascending (k = 0: the trained network)
    acc: tuple                 # accuracy for each k
    loss: tuple                # mean loss for each k
    state_norm: tuple          # mean per-example ||h|| of the unrolled stage's state for each k
    n: int                     # number of test examples

    def as_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class BorderlineResult:
    """Examples close to flipping class, and how a change of the network moves them."""

    threshold: float           # an example is borderline when its flip margin is below this
    compare: str               # "unroll" (extra steps of the last block) or "last_block" (without vs with it)
    stage: int                 # the stage whose last block is involved
    extra_steps: int           # extra steps ("unroll" only; 0 for "last_block")
    scale: float               # factor on the extra steps ("unroll" only)
    n_total: int               # examples seen
    n_borderline: int          # borderline examples (margin < threshold before the change)
    acc_before: float          # fraction correct among borderline examples, before the change
    acc_after: float           # the same, after the change
    fixed: int                 # borderline examples wrong before and right after
    broken: int                # borderline examples right before and wrong after
    acc_all_before: float      # accuracy over all examples, before
    acc_all_after: float       # accuracy over all examples, after

    def as_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------- checks and helpers

def _check_batch(x, y=None, *, need_y: bool = True, classes: int | None = None) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() < 2:
        raise ValueError(f"x must be a batch tensor of shape (B, ...); got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if len(x) == 0:
        raise ValueError("x is an empty batch (B = 0); pass at least one example")
    if y is None:
        if need_y:
            raise ValueError("y=None: pass the labels of the batch x (len(y) == len(x)), "
                             "or a loss_fn that does not need them")
        return
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"y must be a tensor of labels; got {type(y).__name__}")
    if len(y) != len(x):
        raise ValueError(f"x has {len(x)} examples but y has {len(y)}; x and y must be the same batch "
                         "(len(y) == len(x))")
    if classes is not None:
        check_labels(y, classes)


def _check_images(model, x) -> None:
    """``x`` as the model takes it (4-d, its channels and dtype) and finite: NaN in, NaN out, silently."""
    check = getattr(model, "_check_input", None)
    if check is not None:
        check(x)
    elif x.dim() != 4:
        raise ValueError(f"x must be a 4-d image batch (B, C, H, W); got shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x holds NaN or inf values; allowed: finite images (check the data and its "
                         "normalisation)")


def _check_stage(model, stage) -> int:
    """A valid stage index (negative counts from the end) whose stage has at least one block."""
    n = len(model.stages)
    check_int("stage", stage, minimum=-n)
    if stage >= n:
        raise ValueError(f"stage={stage!r} is out of range; this model has {n} stages, use -{n}..{n - 1}")
    s = stage % n
    if len(model.stages[s].blocks) == 0:
        raise ValueError(f"stage={stage!r} has no blocks to unroll; choose a stage with blocks")
    return s


def _check_steps(extra_steps) -> tuple:
    if isinstance(extra_steps, Integral) and not isinstance(extra_steps, bool):
        extra_steps = (extra_steps,)
    try:
        steps = tuple(extra_steps)
    except TypeError:
        raise TypeError(f"extra_steps={extra_steps!r} must be an integer >= 0 or a sequence of them, "
                        "e.g. (0, 1, 5, 20)") from None
    if not steps:
        raise ValueError("extra_steps=() is empty; give at least one integer >= 0, e.g. (0, 1, 5, 20)")
    for k in steps:
        check_int("extra_steps[i]", k, minimum=0, maximum=MAX_EXTRA_STEPS)
    return tuple(sorted(set(int(k) for k in steps)))


def _labelled(values, model, metric: str) -> PerBlock:
    stage = [s for s, st in enumerate(model.stages) for _ in st.blocks]
    block = [i for st in model.stages for i in range(len(st.blocks))]
    return PerBlock(tuple(float(v) for v in values), tuple(stage), tuple(block), metric)


def _per_example_norm(t: torch.Tensor) -> torch.Tensor:
    return t.detach().flatten(1).double().norm(dim=1)                # (B,)


# ---------------------------------------------------------------- the metrics

def gradient_alignment(model, x: torch.Tensor, y: torch.Tensor | None, *, loss_fn=None) -> PerBlock:
    """Per block, the cosine between its step and the loss gradient at its input, averaged over examples.

        cos_i = mean_b  <Δ_i, ∂L/∂h_i> / (||Δ_i|| ||∂L/∂h_i||),   Δ_i = h_{i+1} - h_i

    Jastrzębski et al. (2018) ("cosine loss"; their F_i(h_i) is our
    Δ_i for pre-activation units). Negative: the block moves the state downhill.
    ``∂L/∂h_i`` is the full backpropagated gradient (through every later block,
    transition and the read-out), obtained for all blocks at once with one
    backward pass (``torch.autograd.grad`` with respect to all block inputs).
    ``L`` is ``task_loss`` summed over the batch (or ``loss_fn(logits, y)``,
    which must return a scalar), so each example's gradient is that of its own
    loss. An example whose gradient or step is exactly zero contributes 0.
    """
    check_model(model)
    _check_batch(x, y, need_y=loss_fn is None, classes=getattr(getattr(model, "fc", None), "out_features", None))
    _check_images(model, x)
    y = y.to(device_of(model)) if isinstance(y, torch.Tensor) else y        # labels follow the model
    loss_fn = loss_fn or (lambda logits, target: task_loss(logits, target, reduction="sum"))
    with eval_mode(model), torch.enable_grad():
        x = x.detach().to(device_of(model)).requires_grad_(True)   # the graph exists even for frozen weights
        states = stage_states(model, x)
        loss = loss_fn(model.readout(states[-1][-1]), y)
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            raise ValueError(f"loss_fn must return a scalar tensor; got "
                             f"{tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__}")
        inputs = [st[i] for st in states for i in range(len(st) - 1)]          # h_i of every block
        steps = [st[i + 1] - st[i] for st in states for i in range(len(st) - 1)]
        grads = torch.autograd.grad(loss, inputs)                              # one backward pass
    cosines = []
    for d, g in zip(steps, grads):
        d, g = d.detach().flatten(1).double(), g.flatten(1).double()          # (B, D)
        denom = d.norm(dim=1) * g.norm(dim=1)
        cos = (d * g).sum(1) / denom.clamp_min(1e-300)
        cosines.append(torch.where(denom > 0, cos, torch.zeros_like(cos)).mean().item())
    return _labelled(cosines, model, "cos(Δ_i, ∂L/∂h_i)")


@torch.no_grad()
def norm_ratios(model, x: torch.Tensor) -> PerBlock:
    """Per block, the relative size of its step, averaged over examples.

        r_i = mean_b ||Δ_i|| / ||h_i||,   Δ_i = h_{i+1} - h_i

    Jastrzębski et al. (2018): large ratios (the paper sees up to ~2
    in the first blocks) mean the block changes the representation; small
    ratios in higher blocks mean it only refines it. A zero state gives inf.
    The mean of the per-example ratios, as in the paper: not the relative update
    size ``||Δ||_rms / ||h||_rms`` of the iteration beyond the trained depth
    (:func:`itercourse.fixedpoint.relative_update_size`).
    """
    check_model(model)
    _check_batch(x, need_y=False)
    _check_images(model, x)
    with eval_mode(model):
        states = stage_states(model, x.to(device_of(model)))
    ratios = []
    for st in states:
        for h, h_next in zip(st[:-1], st[1:]):
            r = _per_example_norm(h_next - h) / _per_example_norm(h)           # (B,)
            ratios.append(r.mean().item())
    return _labelled(ratios, model, "||Δ_i|| / ||h_i||")


def drop_block_accuracy(model, loader) -> DropBlockResult:
    """Accuracy and loss of the network with each single same-shape block removed at test time.

        acc_{-i} = accuracy of  ... -> block_{i-1} -> block_{i+1} -> ...   (schedule without i)

    Jastrzębski et al. (2018), after Veit et al. (2016): removing an
    early block is catastrophic, removing a later one costs little. Only
    same-shape blocks can be removed: the stem and every stage transition
    change the number of channels or the resolution, so the next layer could
    not read their input; they are listed in ``not_droppable``. Uses
    :func:`itercourse.training.evaluate` with ``schedules={s: [...]}``.
    """
    check_model(model)
    if iter(loader) is loader:
        raise TypeError(f"loader={type(loader).__name__} is a one-shot iterator, but the network is evaluated "
                        "once per block; pass a re-iterable loader, e.g. data.loader('test') or a list of "
                        "(x, y) batches")
    intact = evaluate(model, loader)                     # raises on an empty loader
    accs, losses = [], []
    for s, stage in enumerate(model.stages):
        n = len(stage.blocks)
        for i in range(n):
            r = evaluate(model, loader, schedules={s: without(n, i)})
            accs.append(r["acc"])
            losses.append(r["loss"])
    not_droppable = ["stem (maps the input image to the first stage's channels)"]
    not_droppable += [f"stage {s} transition (changes the shape of the residual stream)"
                      for s, st in enumerate(model.stages) if st.transition is not None]
    return DropBlockResult(intact["acc"], intact["loss"], _labelled(accs, model, "accuracy with the block dropped"),
                           _labelled(losses, model, "loss with the block dropped"), tuple(not_droppable),
                           intact["n"])


def _unrolled_logits(model, x: torch.Tensor, stage: int, steps: tuple, scale: float):
    """For each k in ``steps`` (sorted): (logits, per-example ||h||) after k extra scaled steps."""
    h = stage_states(model, x, upto=stage)[-1][-1]          # the trained schedule
    extra = iterate_last_block(model.stages[stage], h, steps[-1], scale=scale)   # h <- h + scale * Δ(h)
    k, out = 0, []
    for target in steps:
        while k < target:
            h = next(extra)
            k += 1
        out.append((finish(model, h, stage), _per_example_norm(h)))
    return out


def _iterate(loader, device):
    n_batches = 0
    for x, y in loader:
        _check_batch(x, y)
        n_batches += 1
        yield x.to(device), y.to(device)
    if n_batches == 0:
        raise ValueError("loader yielded no batches (it is empty); pass a loader with at least one "
                         "batch, e.g. data.loader('test')")


@torch.no_grad()
def unroll_accuracy(model, loader, extra_steps=(0, 1, 2, 5, 10, 20), scale: float = 1.0, *,
                    stage: int = -1) -> UnrollResult:
    """Accuracy, loss and state norm when a stage's last block is applied ``k`` more times.

        h_n^{(0)} = h_n,   h_n^{(t+1)} = h_n^{(t)} + scale * Δ_{n-1}(h_n^{(t)}),   Δ(h) = block_{n-1}(h) - h

    and the rest of the network (later stages, read-out) runs on ``h_n^{(k)}``.
    Jastrzębski et al. (2018): unrolled plainly (``scale=1``) the
    activations explode; with the block's output scaled down they stay put and
    borderline examples improve. The paper's scaling factor is not in our
    reference; ``scale`` is the factor on the extra steps' update, so
    ``scale=1`` is plain unrolling. ``extra_steps`` is an integer or a
    sequence of them; results are for the sorted distinct values.
    """
    check_model(model)
    s = _check_stage(model, stage)
    steps = _check_steps(extra_steps)
    check_positive("scale", scale)
    device = device_of(model)
    loss_sum = [0.0] * len(steps)
    correct = [0] * len(steps)
    norm_sum = [0.0] * len(steps)
    n = 0
    with eval_mode(model):
        for x, y in _iterate(loader, device):
            for j, (logits, norms) in enumerate(_unrolled_logits(model, x, s, steps, scale)):
                loss_sum[j] += float(task_loss(logits, y, reduction="sum"))
                correct[j] += int(correct_mask(logits, y).sum())
                norm_sum[j] += float(norms.sum())
            n += len(y)
    return UnrollResult(s, float(scale), steps, tuple(c / n for c in correct), tuple(v / n for v in loss_sum),
                        tuple(v / n for v in norm_sum), n)


@torch.no_grad()
def borderline_examples(model, loader, *, threshold: float = 0.1, compare: str = "unroll",
                        extra_steps: int = 20, scale: float = 1.0, stage: int = -1) -> BorderlineResult:
    """The examples within ``threshold`` probability of flipping, and whether a change fixes them.

        borderline = { b : flip_margin(logits_before_b, y_b) < threshold }
        acc_before = mean_{b in borderline} correct(before),  acc_after likewise

    ``compare="unroll"``: before = the trained network, after = the stage's
    last block applied ``extra_steps`` more times, ``h <- h + scale * Δ(h)``
    (Jastrzębski et al. 2018: 43% -> 53% of ~51 borderline CIFAR-10
    test images for ResNet-110, 20 extra steps). ``compare="last_block"``:
    before = the network without the stage's last block, after = the intact
    network: what the final refinement step does to the undecided examples.
    See :func:`flip_margin` for the margin of single- and multi-label tasks.
    If no example is borderline, ``acc_before``/``acc_after`` are ``nan``.
    """
    check_model(model)
    check_range("threshold", threshold, 0.0, 1.0, low_open=True)
    check_choice("compare", compare, COMPARISONS)
    s = _check_stage(model, stage)
    check_int("extra_steps", extra_steps, minimum=1 if compare == "unroll" else 0, maximum=MAX_EXTRA_STEPS)
    check_positive("scale", scale)
    if compare == "last_block":
        extra_steps, scale = 0, 1.0
    device = device_of(model)
    n_total = n_border = ok_before = ok_after = fixed = broken = all_before = all_after = 0
    with eval_mode(model):
        for x, y in _iterate(loader, device):
            if compare == "unroll":
                (before, _), (after, _) = _unrolled_logits(model, x, s, (0, extra_steps), scale)
            else:
                n = len(model.stages[s].blocks)
                before = model(x, schedules={s: without(n, n - 1)})
                after = model(x)
            c0, c1 = correct_mask(before, y), correct_mask(after, y)            # (B,) bool
            border = flip_margin(before, y) < threshold
            n_total += len(y)
            n_border += int(border.sum())
            ok_before += int((c0 & border).sum())
            ok_after += int((c1 & border).sum())
            fixed += int((~c0 & c1 & border).sum())
            broken += int((c0 & ~c1 & border).sum())
            all_before += int(c0.sum())
            all_after += int(c1.sum())
    frac = (lambda k: k / n_border) if n_border else (lambda k: float("nan"))
    return BorderlineResult(float(threshold), compare, s, int(extra_steps), float(scale), n_total, n_border,
                            frac(ok_before), frac(ok_after), fixed, broken, all_before / n_total,
                            all_after / n_total)


def _loader_mean(fn, loader, device) -> PerBlock:
    """A per-example-mean PerBlock metric averaged over every batch of ``loader`` (weighted by batch size)."""
    total, n, first = None, 0, None
    for x, y in _iterate(loader, device):
        r = fn(x, y)
        first = r if first is None else first
        vals = [v * len(x) for v in r.values]
        total = vals if total is None else [a + b for a, b in zip(total, vals)]
        n += len(x)
    return PerBlock(tuple(v / n for v in total), first.stage, first.block, first.metric)


def refinement_report(model, loader, *, extra_steps=(0, 1, 2, 5, 10, 20), scales=(1.0, 0.1),
                      threshold: float = 0.1, stage: int = -1) -> dict:
    """Every metric of this module for one network on one (test) loader, as chapter 2 shows them.

    Returns ``{"alignment", "norm_ratio"}`` (:class:`PerBlock`, averaged over all
    examples of ``loader``), ``"drop"`` (:class:`DropBlockResult`), ``"unroll"``
    (one :class:`UnrollResult` per scale) and ``"borderline"`` (one
    :class:`BorderlineResult` per scale, ``max(extra_steps)`` extra steps, then
    the ``"last_block"`` comparison).
    """
    check_model(model)
    device = device_of(model)
    steps = _check_steps(extra_steps)
    if not scales:
        raise ValueError("scales=() is empty; give at least one positive factor, e.g. (1.0, 0.1)")
    return {
        "alignment": _loader_mean(lambda x, y: gradient_alignment(model, x, y), loader, device),
        "norm_ratio": _loader_mean(lambda x, y: norm_ratios(model, x), loader, device),
        "drop": drop_block_accuracy(model, loader),
        "unroll": [unroll_accuracy(model, loader, steps, scale, stage=stage) for scale in scales],
        "borderline": [borderline_examples(model, loader, threshold=threshold, extra_steps=max(max(steps), 1),
                                           scale=scale, stage=stage) for scale in scales]
                      + [borderline_examples(model, loader, threshold=threshold, compare="last_block", stage=stage)],
    }
