"""Training throughput of itercourse.train() against a plain loop and the previous loop, measured in one run.

Claim: on the CPU, ``train()`` (default ``fast=True``) is not slower than the
loop it replaced (issue 14: the step loop read the loss and the number
correct back to the host every step) and beats a plain fp32 NCHW loop; on a
GPU, the step loop no longer synchronises with the host, and ``graphs=True``
(``torch.compile(mode="reduce-overhead")``, CUDA graphs) removes launch
overhead.

Evidence on a GPU: not measured since issue 14; run
``PYTHONPATH=. python benchmarks/bench_training.py --device cuda``. The
``>= 1.5x on a GPU`` claimed here before issue 14 was false (an H100 measured
0.77x for ResNet-20 at batch 128), and ``graphs=True`` has never run on a GPU.

Evidence on the CPU (the course's build machine, "AMD EPYC" without
avx512_bf16, so no bf16 autocast: the fast path is channels_last only;
torch 2.14, 1 thread, batch 128, 1536 images per pass; a 2-core machine
shared with three other jobs, so the img/s are far below the uncontended
~1,350 (ch7-free) and ~930 (ch7) of issue 14: compare ratios, not img/s):

    PYTHONPATH=. python benchmarks/bench_training.py --device cpu --threads 1 --models ch7 ch7-free \
        --images 1536 --repeats 5

    model   plain img/s  previous img/s  fast img/s  fast/plain  fast/prev    (best of 5)
    ch7             324             376         385       1.19x      1.02x
    ch7-free        332             457         414       1.25x      0.91x
    (a run of the same command with --repeats 3: ch7 1.07x / 0.82x, ch7-free 1.25x / 1.01x)

So on this CPU the fast path is ~1.2x a plain loop (channels_last) and
equal to the previous loop within the machine's noise (+-15% between runs):
on a CPU a host read costs nothing, the loop does the same arithmetic, and
the default numerics are bit-identical to the previous loop's.

Columns: ``plain`` is what a first PyTorch script looks like (slice a batch
from a float tensor, forward, loss, backward, SGD, fp32 NCHW, no
augmentation); ``previous`` is ``train()`` with the per-step host reads of its loop
before issue 14 put back (the loss and the number correct read every step);
``fast`` is ``train()`` today; ``graphs`` is ``train(..., graphs=True)``
(CUDA only unless ``--graphs``). Ratios are to ``plain`` and to ``previous``.
Models: ``resnet20``/``resnet110`` (He et al., CIFAR-shaped random images,
``itercourse.costs.synthetic_cifar``), ``ch7`` (chapter 7's network: widths
8/16/32, 4 blocks a stage, ``branch_norm="none"``, ``spectral_coeff=0.9``,
one input channel) and ``ch7-free`` (the same without the constraint).
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from itercourse.costs import synthetic_cifar
from itercourse.data import ImageData
from itercourse.models import ResNetConfig, build_resnet
from itercourse import training
from itercourse.training import TrainConfig, autocast_dtype, resolve_device, train

CH7 = dict(in_channels=1, widths=(8, 16, 32), blocks=(4, 4, 4), branch_norm="none")
MODELS = {"resnet20": ResNetConfig.cifar(20), "resnet110": ResNetConfig.cifar(110),
          "ch7": ResNetConfig(**CH7, spectral_coeff=0.9), "ch7-free": ResNetConfig(**CH7)}


def images(cfg: ResNetConfig, n: int, seed: int = 0) -> ImageData:
    """``n`` random training images with ``cfg.in_channels`` channels (the first channels of synthetic CIFAR)."""
    d = synthetic_cifar(n, seed=seed)
    c = cfg.in_channels
    return ImageData("cifar10", d.train_images[:, :c], d.train_labels, d.test_images[:, :c], d.test_labels,
                     num_classes=10, in_channels=c, multilabel=False, mean=d.mean[:c], std=d.std[:c])


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def plain_loop(model, data, batch_size: int, device) -> float:
    """Seconds for one pass of a plain fp32 NCHW SGD loop over the training images."""
    x = ((data.train_images.float() / 255 - 0.5) / 0.25).contiguous()      # (N, C, 32, 32) fp32 NCHW
    y = data.train_labels
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    model.train()
    sync(device)
    t0 = time.perf_counter()
    for i in range(0, len(x) - batch_size + 1, batch_size):
        loss = F.cross_entropy(model(x[i:i + batch_size]), y[i:i + batch_size])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(device)
    return time.perf_counter() - t0


def with_host_reads(make_step):
    """``make_step`` whose steps read the loss and the number correct back every step, as before issue 14."""
    def make(*args, **kwargs):
        step = make_step(*args, **kwargs)

        def synced(x, y):
            loss, right = step(x, y)
            float(loss), int(right)                          # the per-step host reads of the old loop
            return loss, right
        return synced
    return make


def no_evaluation(*args, **kwargs) -> dict:
    """Stands in for ``evaluate`` while ``train()`` is timed: the step loop alone is measured."""
    return {"loss": 0.0, "acc": 0.0, "n": 0}


def train_seconds(model, data, cfg: TrainConfig, device, graphs: bool = False, previous: bool = False) -> float:
    """Seconds of one epoch of ``itercourse.train`` with its evaluation left out; ``previous``: with the
    per-step host reads of the loop before issue 14 put back."""
    evaluate, make_step = training.evaluate, training.make_step
    training.evaluate = no_evaluation
    if previous:
        training.make_step = with_host_reads(make_step)
    try:
        sync(device)
        t0 = time.perf_counter()
        train(model, data, cfg, device=device, progress=False, log=lambda *a: None, graphs=graphs)
        sync(device)
        return time.perf_counter() - t0
    finally:
        training.evaluate, training.make_step = evaluate, make_step


def bench(name: str, n: int, batch_size: int, device, graphs: bool, repeats: int) -> dict:
    """Best img/s of each loop over ``repeats`` interleaved passes (all loops see the same machine load)."""
    mcfg = MODELS[name]
    data, warm = images(mcfg, n).to(device), images(mcfg, 2 * batch_size, seed=1).to(device)
    tcfg = TrainConfig(epochs=1, batch_size=batch_size, lr=0.05, augment=True, schedule="constant")
    steps = n // batch_size * batch_size
    loops = {"plain": lambda m, d: plain_loop(m, d, batch_size, device),
             "previous": lambda m, d: train_seconds(m, d, tcfg, device, previous=True),
             "fast": lambda m, d: train_seconds(m, d, tcfg, device)}
    if graphs:
        loops["graphs"] = lambda m, d: train_seconds(m, d, tcfg, device, graphs=True)
    rates = {k: [] for k in loops}
    for r in range(repeats):
        for k, loop in loops.items():
            model = build_resnet(mcfg, seed=r).to(device)
            loop(model, warm)                                 # warm-up (and compile)
            rates[k].append(steps / loop(model, data))
        if graphs:
            torch._dynamo.reset()
    return {k: max(v) for k, v in rates.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default: auto)")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS),
                   help="default: all of them")
    p.add_argument("--images", type=int, default=None, help="images per timed pass (default: 512 CPU, 25600 GPU)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--repeats", type=int, default=3, help="timed passes per loop; the best is reported (default 3)")
    p.add_argument("--graphs", "--compile", action="store_true", dest="graphs",
                   help="also time train(graphs=True) on the CPU "
                   "(always on CUDA)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(None if args.device == "auto" else args.device)
    graphs = args.graphs or device.type == "cuda"
    n = args.images or (25_600 if device.type == "cuda" else 512)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} thread(s)"
    print(f"device: {name}; autocast {autocast_dtype(device, True)}; {n} images per pass, batch {args.batch_size}, "
          f"best of {args.repeats}; torch {torch.__version__}")
    cols = ["plain", "previous", "fast"] + (["graphs"] if graphs else [])
    print(f"{'model':<10}" + "".join(f"{c + ' img/s':>16}" for c in cols)
          + "".join(f"{c + '/plain':>14}{c + '/prev':>13}" for c in cols[2:]))
    for model in args.models:
        r = bench(model, n, args.batch_size, device, graphs, args.repeats)
        print(f"{model:<10}" + "".join(f"{r[c]:>16.0f}" for c in cols)
              + "".join(f"{r[c] / r['plain']:>13.2f}x{r[c] / r['previous']:>12.2f}x" for c in cols[2:]),
              flush=True)


if __name__ == "__main__":
    main()
