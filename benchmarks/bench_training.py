"""Training throughput of itercourse.training (fast path) vs a plain PyTorch loop, same model, same run.

Claim: on a GPU, ``train(..., TrainConfig(fast=True))`` (data resident on the
device, channels_last, bf16/fp16 autocast, optionally torch.compile) trains
a CIFAR ResNet at >= 1.5x the images/s of a plain fp32 NCHW loop; on a CPU
it is not slower.
Evidence: run this script; it prints both throughputs and their ratio for
ResNet-20 and ResNet-110 on whatever device it finds. Measured on the
course's build machine (AMD EPYC with avx512_bf16, 2 cores shared with other
jobs, torch 2.14, 512 images per pass, best of 2; no GPU was available):

    CPU, 1 thread   ResNet-20    plain  275 img/s   itercourse  900 img/s   3.27x
    CPU, 1 thread   ResNet-110   plain   77 img/s   itercourse  161 img/s   2.10x
    CPU, 2 threads  ResNet-20    plain  690 img/s   itercourse 1803 img/s   2.61x

Most of the CPU gain is bf16 autocast (this CPU has native bf16) plus
channels_last; on a CPU without bf16 the fast path is channels_last only.

The plain loop is what a first PyTorch script looks like without a
DataLoader: slice a batch from a float tensor, forward, cross-entropy,
backward, SGD step, all in fp32 NCHW, no augmentation. Both sides see the
same synthetic CIFAR-shaped data (random uint8 images, 10 classes), the
same batch size and the same number of steps, after the same warm-up.

    python benchmarks/bench_training.py                    # auto device, ResNet-20 and ResNet-110
    python benchmarks/bench_training.py --depths 20 --threads 2 --images 1024
    python benchmarks/bench_training.py --device cuda --compile --images 20000
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from itercourse.data import ImageData
from itercourse.models import ResNetConfig, build_resnet
from itercourse.training import TrainConfig, autocast_dtype, resolve_device, train


def synthetic(n: int, seed: int = 0) -> ImageData:
    """CIFAR-shaped random uint8 images and labels (n train, 256 test)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n + 256, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (n + 256,), generator=g)
    return ImageData("cifar10", x[:n], y[:n], x[n:], y[n:], num_classes=10, in_channels=3, multilabel=False,
                     mean=(0.5, 0.5, 0.5), std=(0.29, 0.29, 0.29))


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def plain_loop(model, x, y, batch_size: int, device) -> float:
    """Seconds for one pass of a plain fp32 NCHW SGD loop over (x, y)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    model.train()
    sync(device)
    t0 = time.perf_counter()
    for i in range(0, len(x) - batch_size + 1, batch_size):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(device)
    return time.perf_counter() - t0


def fast_train(model, data, batch_size: int, device, compile_: bool) -> float:
    """Seconds of training (evaluation excluded) for one epoch of itercourse.train() with fast=True."""
    cfg = TrainConfig(epochs=1, batch_size=batch_size, lr=0.05, augment=True, fast=True, compile=compile_,
                      schedule="constant")
    sync(device)
    t0 = time.perf_counter()
    train(model, data, cfg, device=device, progress=False, log=lambda *a: None)
    sync(device)
    total = time.perf_counter() - t0
    # train() also evaluates the 256 test images once; time that alone and take it off.
    t1 = time.perf_counter()
    from itercourse.training import evaluate
    evaluate(model, data.loader("test", batch_size=512), device)
    sync(device)
    return total - (time.perf_counter() - t1)


def bench(depth: int, n: int, batch_size: int, device, compile_: bool, repeats: int) -> dict:
    cfg = ResNetConfig.cifar(depth)
    data = synthetic(n).to(device)
    xf = ((data.train_images.float() / 255 - 0.5) / 0.29).contiguous()      # (N, 3, 32, 32) fp32 NCHW
    yf = data.train_labels
    warm = synthetic(2 * batch_size, seed=1).to(device)
    rates = {"plain": [], "fast": []}
    for r in range(repeats):                                   # interleave: both see the same machine load
        m = build_resnet(cfg, seed=r).to(device)
        plain_loop(m, xf[: 2 * batch_size], yf[: 2 * batch_size], batch_size, device)      # warm-up
        rates["plain"].append((n // batch_size) * batch_size / plain_loop(m, xf, yf, batch_size, device))
        m = build_resnet(cfg, seed=r)
        fast_train(m, warm, batch_size, device, compile_)                                  # warm-up (and compile)
        rates["fast"].append((n // batch_size) * batch_size / fast_train(m, data, batch_size, device, compile_))
    best = {k: max(v) for k, v in rates.items()}
    return {"depth": depth, **best, "ratio": best["fast"] / best["plain"], "all": rates}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default: auto)")
    p.add_argument("--depths", type=int, nargs="+", default=[20, 110], help="CIFAR ResNet depths (default: 20 110)")
    p.add_argument("--images", type=int, default=None, help="images per timed pass (default: 512 CPU, 25600 GPU)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--repeats", type=int, default=2, help="timed passes per side; the best is reported (default 2)")
    p.add_argument("--compile", action="store_true", help="also torch.compile the fast path")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(None if args.device == "auto" else args.device)
    n = args.images or (25_600 if device.type == "cuda" else 512)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} thread(s)"
    amp = autocast_dtype(device, True)
    print(f"device: {name}; fast path: channels_last + autocast {amp}"
          f"{' + torch.compile' if args.compile else ''}; {n} images per pass, batch {args.batch_size}, "
          f"best of {args.repeats}; torch {torch.__version__}")
    print(f"{'model':<12}{'plain img/s':>14}{'itercourse img/s':>19}{'ratio':>8}")
    for depth in args.depths:
        r = bench(depth, n, args.batch_size, device, args.compile, args.repeats)
        print(f"ResNet-{depth:<5}{r['plain']:>14.0f}{r['fast']:>19.0f}{r['ratio']:>7.2f}x", flush=True)


if __name__ == "__main__":
    main()
