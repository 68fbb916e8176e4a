"""What one training step costs, and the run time it implies on a GPU we do not have (chapter 8).

A step of :func:`itercourse.train` is counted two ways on the CPU:

- its floating-point operations (``torch.utils.flop_counter.FlopCounterMode``);
- the ATen operations it dispatches (:class:`CountOps`), a proxy for the
  kernels it would launch on a GPU, each with a fixed launch cost.

A small network on a GPU is bound by whichever is slower, so the model is

    step seconds = max(FLOPs / rate, ops * launch),
    run seconds  = epochs * (train steps + test images / batch / 3) * step seconds

(evaluation is a forward pass, about a third of a training step). ``RATE``
and ``LAUNCH`` are assumptions, optimistic and pessimistic, for a Colab T4;
the chapter labels every number they produce an ESTIMATE.
"""
from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from .coupling import GradientCoupling
from .data import DATASET_SPECS, ImageData
from .models import ResNetConfig, build_resnet
from .training import autocast_dtype, channels_last_ok, make_step

RATE = (10e12, 2e12)          # assumed sustained FLOP/s: optimistic, pessimistic (T4, fp16, small convs)
LAUNCH = (5e-6, 10e-6)        # assumed seconds per kernel launch: optimistic, pessimistic
SIZES = {name: (DATASET_SPECS[name].train_images, DATASET_SPECS[name].test_images)   # the GPU grids' datasets
         for name in ("mnist", "cifar10", "cifar100")}


class CountOps(TorchDispatchMode):
    """Counts the ATen operations dispatched inside the ``with``: a proxy for GPU kernel launches."""

    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.n += 1
        return func(*args, **(kwargs or {}))


def step_counts(model_cfg: ResNetConfig, batch: int = 128, coupling: float = 0.5) -> tuple[int, int]:
    """``(FLOPs, ATen ops)`` of one SGD step of ``train()`` (its own :func:`itercourse.training.make_step`:
    autocast, channels-last, coupling) on random 32x32 images on the CPU."""
    device = torch.device("cpu")
    model = build_resnet(model_cfg, seed=0)
    layout = torch.channels_last if channels_last_ok(model, device) else torch.contiguous_format
    model = model.to(memory_format=layout)                      # as train() lays it out on the CPU
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    amp = autocast_dtype(device, True)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    step = make_step(model, opt, scaler, GradientCoupling(model, coupling) if coupling > 0 else None, amp, device)
    x = torch.randn(batch, model_cfg.in_channels, 32, 32).contiguous(memory_format=layout)
    y = torch.randint(0, model_cfg.num_classes, (batch,))
    step(x, y)                                       # warm-up: optimizer state exists from here on
    with FlopCounterMode(display=False) as flops:
        step(x, y)
    with CountOps() as ops:
        step(x, y)
    return flops.get_total_flops(), ops.n


@torch.no_grad()
def forward_flops(model_cfg: ResNetConfig, image_size: int = 32) -> int:
    """FLOPs of one forward pass of one ``image_size`` x ``image_size`` image (eval mode, float32)."""
    model = build_resnet(model_cfg, seed=0).eval()
    with FlopCounterMode(display=False) as flops:
        model(torch.zeros(1, model_cfg.in_channels, image_size, image_size))
    return flops.get_total_flops()


def step_seconds(flops: float, ops: int, rate: float, launch: float) -> float:
    """One step on the GPU: bound by arithmetic or by kernel launches, whichever is slower."""
    return max(flops / rate, ops * launch)


def run_seconds(cfg, counts, n_train: int, n_test: int, rate: float, launch: float) -> float:
    """Seconds of one run of ``cfg`` (an ExperimentConfig), averaged over the ``(flops, ops)`` in ``counts``."""
    steps = n_train // cfg.train.batch_size
    per_run = [cfg.train.epochs * (steps + n_test / cfg.train.batch_size / 3)
               * step_seconds(flops, ops, rate, launch) for flops, ops in counts]
    return sum(per_run) / len(per_run)


def synthetic_cifar(n: int, seed: int = 0) -> ImageData:
    """``n`` random CIFAR-shaped training images (and 128 test images): for timing, not learning."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n + 128, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (n + 128,), generator=g)
    return ImageData("cifar10", x[:n], y[:n], x[n:], y[n:], num_classes=10, in_channels=3,
                     multilabel=False, mean=(0.5,) * 3, std=(0.25,) * 3)
