"""Training and evaluation: the loop the whole course is about, written out in plain sight.

One ``train()`` function: SGD with momentum and weight decay (He et al. 2016's
CIFAR recipe), a learning-rate schedule, optional soft gradient coupling
between blocks (Lippl et al. 2021; chapter 4) applied between ``backward()``
and the optimiser step, a checkpoint after every epoch written atomically,
and resumption from the last checkpoint after an interruption.

The step loop never reads a tensor back to the host: the loss sum and the
number correct accumulate on the device and are read once per epoch.

Single-label tasks use softmax cross-entropy; multi-label tasks (Digitclutter,
labels are multi-hot) use one sigmoid per class, and an image counts as
correct when its k highest-scoring classes are exactly its k digits
(Spoerer et al. 2017).
"""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .coupling import GradientCoupling, make_blocks_identical
from .objectives import check_labels, correct_mask, task_loss
from .errors import (DivergedError, check_bool, check_choice, check_device, check_int, check_positive,  # noqa: F401
                     check_positive_int, check_range)
from .io import CorruptFileError, UnsafeFileError, atomic_torch_save, ensure_writable_folder, torch_load_verified
from .walk import device_of, eval_mode

SCHEDULES = ("cosine", "step", "constant")
REFERENCE_BATCH = 128         # linear_lr: the batch size a recipe's learning rate is stated for
# A mean loss above DIVERGED_FACTOR * max(1, ln C) (C classes; chance is ln C for softmax, C ln 2 for
# C sigmoids) is absurd: no run that learns passes through it, so training stops with DivergedError.
DIVERGED_FACTOR = 1e4


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained; saved next to every result."""

    epochs: int = 10                  # passes over the training set
    batch_size: int = 128             # images per SGD step
    lr: float = 0.1                   # peak learning rate (for another batch size: linear_lr)
    momentum: float = 0.9             # SGD momentum
    weight_decay: float = 1e-4        # L2 penalty (He et al. 2016)
    schedule: str = "cosine"          # "cosine", "step" (/10 at milestones) or "constant"
    milestones: tuple = (0.5, 0.75)   # step schedule: fractions of training where lr is divided by 10
    warmup_steps: int = 0             # linear warm-up steps (He et al.: 400 at lr 0.01 for ResNet-110)
    label_smoothing: float = 0.0      # softmax tasks only
    augment: bool = True              # per-batch random crop (+ flip where the dataset allows it)
    coupling: float = 0.0             # soft gradient coupling strength in [0, 1]; 0 = off (no coupling work)
    couple_norm: bool = True          # also couple batch-norm parameters
    identical_init: bool = False      # start every block of a stage from the same weights
    fast: bool = True                 # channels_last + bf16/fp16 autocast where the device supports it
    compile: bool = False             # torch.compile the model (GPU runs)
    seed: int = 0                     # data order, augmentation and stochastic layers

    def __post_init__(self):
        check_positive_int("epochs", self.epochs)
        check_positive_int("batch_size", self.batch_size)
        check_positive("lr", self.lr)
        check_range("momentum", self.momentum, 0.0, 1.0, high_open=True)
        check_range("weight_decay", self.weight_decay, 0.0, 1.0)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_int("warmup_steps", self.warmup_steps, minimum=0)
        check_range("label_smoothing", self.label_smoothing, 0.0, 1.0, high_open=True)
        if self.coupling is None:             # the spelling of "off" in files written before 0.2: read as 0.0
            object.__setattr__(self, "coupling", 0.0)
        check_range("coupling", self.coupling, 0.0, 1.0)
        check_int("seed", self.seed, minimum=0)
        for name in ("augment", "couple_norm", "identical_init", "fast", "compile"):
            if name == "identical_init" and self.identical_init == "coupled":
                raise TypeError("identical_init='coupled' is a grid spelling, resolved when a grid is expanded; "
                                "a TrainConfig takes True or False")
            if type(getattr(self, name)).__module__ == "numpy" and "bool" in type(getattr(self, name)).__name__:
                object.__setattr__(self, name, bool(getattr(self, name)))   # numpy's bool (lam > 0 on arrays)
            check_bool(name, getattr(self, name))
        milestones = self.milestones
        if isinstance(milestones, (int, float)) and not isinstance(milestones, bool):
            milestones = (milestones,)               # one milestone written as a number
        try:
            milestones = tuple(milestones)
        except TypeError:
            raise TypeError(f"milestones={self.milestones!r} must be a tuple of fractions of training in (0, 1), "
                            "e.g. (0.5, 0.75)") from None
        for m in milestones:
            check_range("milestones[i]", m, 0.0, 1.0, low_open=True, high_open=True)
        if list(milestones) != sorted(set(milestones)):
            raise ValueError(f"milestones={milestones!r} must be fractions of training in (0, 1) in increasing "
                             "order, e.g. (0.5, 0.75)")
        object.__setattr__(self, "milestones", milestones)


@dataclass
class History:
    """Per-epoch metrics of one training run."""

    epoch: list = field(default_factory=list)
    lr: list = field(default_factory=list)
    train_loss: list = field(default_factory=list)
    train_acc: list = field(default_factory=list)
    test_loss: list = field(default_factory=list)
    test_acc: list = field(default_factory=list)
    seconds: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------- helpers

def resolve_device(device=None) -> torch.device:
    """``None`` or ``"auto"`` picks CUDA when present, else the CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return check_device("device", device)


def autocast_dtype(device: torch.device, fast: bool) -> torch.dtype | None:
    """bf16 where the hardware has it natively, fp16 on older GPUs (Colab's T4), else none."""
    if not fast:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and getattr(torch.backends.mkldnn, "is_available", lambda: False)():
        try:
            if torch.ops.mkldnn._is_mkldnn_bf16_supported():
                return torch.bfloat16
        except (AttributeError, RuntimeError):
            pass
    return None


def channels_last_ok(model: torch.nn.Module, device: torch.device) -> bool:
    """Whether channels_last is safe for ``model`` on ``device`` (it is faster on both CPU and GPU).

    On the CPU, torch 2.14's oneDNN backward of a strided convolution with
    fewer than 8 input channels in channels_last corrupts the heap ("double
    free or corruption"); e.g. the 1x1 stride-2 projection of ``widths=(4, 8, 8)``.
    Such models train in NCHW on the CPU.
    """
    if device.type != "cpu":
        return True
    return not any(isinstance(m, torch.nn.Conv2d) and max(m.stride) > 1 and m.in_channels < 8
                   for m in model.modules())


def linear_lr(lr: float, batch_size: int, reference_batch: int = REFERENCE_BATCH) -> float:
    """The peak learning rate for ``batch_size`` of a recipe stated at ``reference_batch``: ``lr * B / 128``.

    Linear scaling (Goyal et al. 2017, "Accurate, Large Minibatch SGD", Sec. 2.1)
    keeps the recipe of batch 128 when a larger batch fills a GPU:
    ``TrainConfig(batch_size=512, lr=linear_lr(0.1, 512))`` trains at peak lr 0.4.
    The config stores the learning rate actually used (its hash changes with it).
    """
    check_positive("lr", lr)
    check_positive_int("batch_size", batch_size)
    check_positive_int("reference_batch", reference_batch)
    return lr * batch_size / reference_batch


def learning_rate(cfg: TrainConfig, step: int, total_steps: int) -> float:
    """The learning rate at a global step: warm-up, then cosine / step / constant (pure Python)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    frac = step / max(1, total_steps)
    if cfg.schedule == "cosine":
        return 0.5 * cfg.lr * (1 + math.cos(math.pi * frac))
    if cfg.schedule == "step":
        return cfg.lr * 0.1 ** sum(frac >= m for m in cfg.milestones)
    return cfg.lr


def eval_batch_size(device: torch.device) -> int:
    """Batch size of evaluation: large on a GPU, 512 on the CPU (as the committed results)."""
    return 1024 if device.type == "cuda" else 512


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader, device=None, **forward_kw) -> dict:
    """Mean loss and accuracy of ``model`` over every batch of ``loader`` (eval mode, previous mode restored)."""
    device = resolve_device(device) if device is not None else device_of(model)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)      # summed on the device,
    correct = torch.zeros((), dtype=torch.int64, device=device)         # read once at the end
    nonfinite = torch.zeros((), dtype=torch.int64, device=device)       # examples with a NaN/inf logit
    n, classes = 0, None
    with eval_mode(model):
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            logits = model(x, **forward_kw)
            if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
                raise ValueError(f"model(x) returned {tuple(getattr(logits, 'shape', ())) or type(logits).__name__}; "
                                 "evaluate() needs logits of shape (B, classes)")
            classes = logits.shape[1]
            check_labels(y, classes, len(logits))         # torch's own errors name no argument
            loss_sum += task_loss(logits, y, reduction="sum").double()
            correct += correct_mask(logits, y).sum()
            nonfinite += (~torch.isfinite(logits)).any(1).sum()
            n += len(y)
    if n == 0:
        raise ValueError("loader yielded no examples; evaluate() needs at least one batch")
    return {"loss": loss_sum.item() / n, "acc": correct.item() / n, "n": n,
            "nonfinite": int(nonfinite.item()), "classes": classes}


def loss_bound(num_classes: int) -> float:
    """The mean loss above which a run counts as diverged: ``DIVERGED_FACTOR * max(1, ln C)``."""
    return DIVERGED_FACTOR * max(1.0, math.log(max(1, num_classes)))


def check_not_diverged(what: str, loss: float, num_classes: int, *, nonfinite: int = 0, epoch=None,
                       lr=None) -> None:
    """Raise :class:`DivergedError` when ``loss`` is non-finite or above :func:`loss_bound`, or logits were NaN/inf."""
    bound = loss_bound(num_classes)
    where = f" in epoch {epoch}" if epoch is not None else ""
    if nonfinite:
        why = f"{nonfinite} example(s) have NaN or inf logits{where}"
    elif not math.isfinite(loss):
        why = f"the {what} loss is {loss}{where}"
    elif loss > bound:
        why = f"the {what} loss is {loss:.4g}{where}, above {bound:.4g} = {DIVERGED_FACTOR:g} x max(1, ln {num_classes})"
    else:
        return
    hint = f"Lower lr={lr:g} (or add warmup_steps)" if lr is not None else "Lower the learning rate"
    raise DivergedError(f"training diverged: {why}; allowed: a finite loss below {bound:.4g} and finite "
                        f"logits. {hint}")


def data_fingerprint(data) -> str:
    """What a checkpoint's data was: shapes, dtypes and a SHA-256 of up to 64 evenly spaced rows of each split."""
    h = hashlib.sha256()
    for name in ("train_images", "train_labels", "test_images", "test_labels"):
        t = getattr(data, name)
        rows = t[:: max(1, len(t) // 64)][:64].detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(rows.view(torch.uint8).numpy().tobytes() if rows.numel() else b"")
    return h.hexdigest()[:16]


def deviation_decay(cfg: TrainConfig, total_steps: int) -> float:
    """Factor by which training at coupling strength 1 shrinks the differences between blocks: ``D_T = c * D_0``.

    At ``lam = 1`` the deviations ``D_i = W_i - W_bar`` get no gradient, only
    weight decay ``omega``, through SGD with momentum ``mu`` (torch's rule,
    dampening 0) and the learning rates ``eta_t`` of ``cfg``'s schedule:

        b <- mu b + omega D,    D <- D - eta_t b        (so roughly c ~ exp(-omega sum_t eta_t / (1 - mu)))

    The recurrence is linear, so one scalar run of it gives ``c`` exactly.
    ``total_steps`` is the number of SGD steps.
    """
    check_positive_int("total_steps", total_steps)
    d, b = 1.0, 0.0
    for t in range(total_steps):
        b = cfg.momentum * b + cfg.weight_decay * d
        d -= learning_rate(cfg, t, total_steps) * b
    return d


# ---------------------------------------------------------------- the loop

def _checkpoint_owner(cfg: TrainConfig, model: torch.nn.Module, architecture, data=None) -> dict:
    """What a checkpoint belongs to: the recipe, the architecture (config, or parameter shapes) and the data."""
    recipe = asdict(cfg)
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    owner = {"train": repr(sorted(recipe.items())),
             "architecture": repr(sorted(architecture.items())) if architecture is not None else repr(shapes)}
    if data is not None:
        owner["data"] = data_fingerprint(data)
    return owner


def _resume(checkpoint, owner, model, optimizer, scaler, device, cfg: TrainConfig, log) -> tuple:
    """``(history, first epoch, rng state)`` restored from ``checkpoint`` into ``model``, ``optimizer`` and
    ``scaler``; a fresh start ``(History(), 0, None)`` when the file is unusable (said in ``log``). A checkpoint
    of another run (``owner``: recipe, architecture, data) is a ``ValueError``; an unsafe one is refused."""
    try:
        state = torch_load_verified(checkpoint, map_location=device)
    except UnsafeFileError:
        raise                                   # refused, not silently replaced: the user must look
    except CorruptFileError as err:
        log(f"ignoring unusable checkpoint ({err}); starting from scratch")
    except FileNotFoundError:
        pass
    else:
        stored = state.get("owner")
        if stored is None and "train_config" in state:      # written before checkpoints had an owner
            same_shapes = {k: tuple(v.shape) for k, v in state["model"].items()} == \
                {k: tuple(v.shape) for k, v in model.state_dict().items()}
            old = state["train_config"]
            stored = {"train": repr(sorted({**old, "coupling": old.get("coupling") or 0.0}.items())),
                      "architecture": owner["architecture"] if same_shapes else "other shapes"}
        if isinstance(stored, dict) and "data" not in stored:     # written before checkpoints owned data
            stored = {**stored, "data": owner["data"]}
        if stored != owner:
            which = "no record of its run" if not isinstance(stored, dict) else " and ".join(
                k for k in ("train", "architecture", "data") if stored.get(k) != owner[k]) + " differ"
            raise ValueError(f"checkpoint={str(checkpoint)!r} belongs to another run ({which}); "
                             "allowed: a checkpoint written by this TrainConfig, architecture and data. "
                             "Move or delete it, or pass another checkpoint path")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        log(f"resumed from {checkpoint} after epoch {state['epoch'] + 1}/{cfg.epochs}")
        return History(**state["history"]), state["epoch"] + 1, state["rng"]
    return History(), 0, None


def make_step(model, optimizer, scaler, coupling, amp_dtype, device, label_smoothing: float = 0.0):
    """One SGD step ``step(x, y) -> (loss, number correct)``, both device tensors (no host read).

    forward + loss (autocast where ``amp_dtype``), backward, soft coupling, optimiser step.
    The same function runs eagerly (the default) and under ``torch.compile`` (``train(graphs=True)``).
    """
    def step(x, y):
        # Phase 1: forward and loss (in bf16/fp16 where that is fast and safe).
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = model(x)
            loss = task_loss(logits, y, label_smoothing)
        # Phase 2: gradients, then soft coupling between the blocks of each stage.
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if coupling is not None:
            scaler.unscale_(optimizer)          # fp16 only; a no-op otherwise
            coupling.apply()                    # g_i <- (1 - lam) g_i + lam * mean_j g_j
        # Phase 3: the SGD step (momentum, weight decay); the fp16 scaler reads its inf check here.
        scaler.step(optimizer)
        scaler.update()
        return loss.detach(), correct_mask(logits.detach(), y).sum()
    return step


def compile_step(step, device: torch.device, backend: str = "inductor"):
    """``step`` under ``torch.compile``: ``mode="reduce-overhead"`` (CUDA graphs) on CUDA, default elsewhere.

    UNTESTED ON A GPU (issue 14: no GPU was available). On the CPU the unit
    tests trace it with ``backend="aot_eager"`` (graph capture and the compiled
    backward without code generation); the inductor compile ran once by hand.
    """
    mode = "reduce-overhead" if device.type == "cuda" and backend == "inductor" else None
    return torch.compile(step, backend=backend, mode=mode)


def train(model: torch.nn.Module, data, cfg: TrainConfig = TrainConfig(), *, device=None,
          checkpoint: str | Path | None = None, progress: bool = True, log=print,
          architecture: dict | None = None, graphs: bool = False) -> History:
    """Train ``model`` on ``data`` (an ``ImageData``) and return its per-epoch ``History``.

    With ``checkpoint`` set, the full training state is saved atomically after
    every epoch, and a run that finds a checkpoint there resumes from it, so
    an interrupted run ends with the same weights as an uninterrupted one.
    The checkpoint records the ``TrainConfig`` and the architecture
    (``architecture``, e.g. ``asdict(ResNetConfig)``, else the parameter
    shapes) it belongs to; a checkpoint of another run raises ``ValueError``
    (nothing is overwritten). A non-finite training loss stops training with
    :class:`DivergedError` at the end of that epoch (checked once per epoch).

    ``graphs=True`` (opt-in, off by default) compiles the whole step (forward,
    loss, backward, coupling, the constraint's power iteration, the optimiser)
    with ``torch.compile(mode="reduce-overhead")``, which captures it in CUDA
    graphs on a GPU. It is a speed option that does not change the recipe, so it
    is a keyword here, not a ``TrainConfig`` field (no config hash changes).
    UNTESTED ON A GPU: no GPU was available when it was written (issue 14); the
    unit tests run the compiled step on the CPU. The learning rate then lives in
    a tensor so that a new value does not recompile.
    """
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg={cfg!r} must be a TrainConfig")
    if not hasattr(data, "loader") or not hasattr(data, "to"):
        raise TypeError(f"data={type(data).__name__} must be an ImageData (from itercourse.load_dataset, or "
                        "ImageData(name, train_images, train_labels, test_images, test_labels, ...)), "
                        "not a tuple of tensors")
    if checkpoint is not None:                  # a bad path fails now, not after the first epoch
        ensure_writable_folder(checkpoint)
    multilabel = data.train_labels.is_floating_point() and data.train_labels.dim() == 2
    if multilabel and cfg.label_smoothing:
        raise ValueError(f"label_smoothing={cfg.label_smoothing!r} does nothing on multi-label data "
                         f"({getattr(data, 'name', 'these labels')}: one sigmoid per class); allowed: "
                         "label_smoothing=0.0 for multi-label data")
    device = resolve_device(device)
    model.to(device)
    data = data.to(device)
    train_loader = data.loader("train", batch_size=cfg.batch_size, shuffle=True,
                               augment=cfg.augment, seed=cfg.seed, drop_last=True)
    test_loader = data.loader("test", batch_size=eval_batch_size(device))
    if len(train_loader) == 0:
        raise ValueError(f"batch_size={cfg.batch_size} is larger than the training set "
                         f"({len(data.train_labels)} images); use a batch_size <= the training-set size")

    coupling = None
    if cfg.identical_init:
        make_blocks_identical(model)
    if cfg.coupling > 0:                     # strength 0 changes no gradient: nothing to do
        coupling = GradientCoupling(model, cfg.coupling, include_norm=cfg.couple_norm)

    amp_dtype = autocast_dtype(device, cfg.fast)
    channels_last = cfg.fast and channels_last_ok(model, device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if cfg.compile else model
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    # foreach SGD (one kernel per op for all parameters) on a GPU; on the CPU torch's default
    # keeps the committed results bit-identical. With graphs, lr is a tensor: no recompiles.
    optimizer = torch.optim.SGD(model.parameters(), lr=torch.tensor(cfg.lr) if graphs else cfg.lr,
                                momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                                foreach=True if device.type == "cuda" or graphs else None)
    step_fn = make_step(step_model, optimizer, scaler, coupling, amp_dtype, device, cfg.label_smoothing)
    if graphs:
        step_fn = compile_step(step_fn, device)
    history, start, rng_state = History(), 0, None
    owner_now = _checkpoint_owner(cfg, model, architecture, data) if checkpoint is not None else None
    total_steps = cfg.epochs * len(train_loader)

    # Phase 0: resume from the last complete epoch, if a checkpoint exists.
    if checkpoint is not None and Path(checkpoint).exists():
        history, start, rng_state = _resume(checkpoint, owner_now, model, optimizer, scaler, device, cfg, log)

    # Stochastic layers draw from torch's RNG: seed it from cfg.seed inside a fork,
    # so the caller's random state is untouched and a resumed run continues the same stream.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        if rng_state is not None:
            torch.set_rng_state(rng_state["cpu"])
            if device.type == "cuda" and rng_state.get("cuda") is not None:
                torch.cuda.set_rng_state(rng_state["cuda"], device)
        epochs = tqdm(range(start, cfg.epochs), desc="epochs", disable=not progress,
                      initial=start, total=cfg.epochs)
        for epoch in epochs:
            t0 = time.perf_counter()
            model.train()
            train_loader.set_epoch(epoch)           # data order depends on (seed, epoch) only
            # Sums stay on the device: nothing in the step loop reads a tensor back to the host.
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)
            correct = torch.zeros((), dtype=torch.int64, device=device)
            n = 0
            for b, (x, y) in enumerate(train_loader):
                step = epoch * len(train_loader) + b
                lr = learning_rate(cfg, step, total_steps)      # pure Python on ints
                for group in optimizer.param_groups:
                    if graphs:
                        group["lr"].fill_(lr)
                    else:
                        group["lr"] = lr
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                # Phases 1-3: forward + loss, backward + coupling, SGD step (make_step).
                loss, right = step_fn(x, y)
                loss_sum += loss.double() * len(y)
                correct += right
                n += len(y)

            # Phase 4: read the sums (once per epoch), evaluate, record, checkpoint.
            loss_sum, correct = loss_sum.item(), correct.item()
            if not math.isfinite(loss_sum):         # one check per epoch (no per-step host sync needed)
                raise DivergedError(f"training diverged: the train loss is {loss_sum / n} in epoch {epoch + 1}; "
                                    f"allowed: a finite loss. Lower lr={cfg.lr:g} (or add warmup_steps)")
            test = evaluate(model, test_loader, device)
            check_not_diverged("train", loss_sum / n, test["classes"], epoch=epoch + 1, lr=cfg.lr)
            check_not_diverged("test", test["loss"], test["classes"], nonfinite=test["nonfinite"],
                               epoch=epoch + 1, lr=cfg.lr)
            history.epoch.append(epoch + 1)
            history.lr.append(float(optimizer.param_groups[0]["lr"]))
            history.train_loss.append(loss_sum / n)
            history.train_acc.append(correct / n)
            history.test_loss.append(test["loss"])
            history.test_acc.append(test["acc"])
            history.seconds.append(time.perf_counter() - t0)
            epochs.set_postfix(train_acc=f"{correct / n:.3f}", test_acc=f"{test['acc']:.3f}")
            if checkpoint is not None:
                atomic_torch_save(checkpoint, {
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict(), "rng": {
                        "cpu": torch.get_rng_state(),
                        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None},
                    "history": history.as_dict(), "epoch": epoch, "train_config": asdict(cfg),
                    "owner": owner_now})
    if channels_last:
        model.to(memory_format=torch.contiguous_format)
    model.eval()
    return history
