"""Cost of the three indices of iterative convergence, as a multiple of one plain forward pass.

Claim: `iterative_convergence_indices` on a ResNet-56 (3 stages of 9/8/8 blocks,
He et al.'s CIFAR layout) costs at most 20 plain forward passes over the same
images with its default settings, because every batch's block-boundary states
are computed once and reused: a recurrence pair costs one block application
(B_j(h_i)), and the extra iterations of each stage's last block are run once
and read out at every depth factor. The script measures, in one run:

1. the time of one plain forward pass over the images (`model(x)`, eval mode,
   no grad; median of --repeats after a warm-up),
2. the time of the indices on the same images (median of --repeats),
3. the number of block and transition applications the indices make, counted
   with forward hooks, next to the count `indices.evaluation_cost` predicts
   (the ratio of counts is the ideal time ratio: every unit of a CIFAR ResNet
   costs about the same FLOPs, since channels double when the map halves).

Run: `python benchmarks/bench_indices.py` (add `--kind performance --max-pairs 4`
for the performance-based recurrence, whose pairs each re-run the rest of the net).
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

from itercourse.blocks import ResidualUnit
from itercourse.indices import MAX_PAIRS, evaluation_cost, iterative_convergence_indices
from itercourse.models import ResNetConfig, build_resnet


def count_units(model) -> tuple[dict, list]:
    """Forward hooks that count every residual unit (block or transition) application."""
    counter = {"units": 0}
    hooks = [m.register_forward_hook(lambda *_: counter.__setitem__("units", counter["units"] + 1))
             for m in model.modules() if isinstance(m, ResidualUnit)]
    return counter, hooks


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depth", type=int, default=56, help="CIFAR ResNet depth (6m+2)")
    ap.add_argument("--images", type=int, default=256, help="images in the loader")
    ap.add_argument("--batch", type=int, default=128, help="batch size")
    ap.add_argument("--kind", default="state", choices=("state", "performance"))
    ap.add_argument("--max-pairs", type=int, default=MAX_PAIRS, help="block pairs per stage (0 = all)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    max_pairs = args.max_pairs or None

    cfg = ResNetConfig.cifar(args.depth)
    model = build_resnet(cfg, seed=0).to(args.device).eval()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.images, 3, 32, 32, generator=gen)
    y = torch.randint(10, (args.images,), generator=gen)
    loader = [(x[k:k + args.batch].to(args.device), y[k:k + args.batch].to(args.device))
              for k in range(0, args.images, args.batch)]
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    @torch.no_grad()
    def forward():
        for xb, _ in loader:
            model(xb)
        sync()

    def indices():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")          # an untrained net sits at chance: divergence is degenerate
            out = iterative_convergence_indices(model, loader, kind=args.kind, max_pairs=max_pairs)
        sync()
        return out

    forward()                                         # warm-up (allocator, kernels)
    t_forward = timed(forward, args.repeats)
    counter, hooks = count_units(model)
    forward()
    units_forward = counter["units"] // len(loader)
    counter["units"] = 0
    indices()
    units_indices = counter["units"] // len(loader)
    for h in hooks:
        h.remove()
    t_indices = timed(indices, args.repeats)
    predicted = evaluation_cost(cfg.blocks, kind=args.kind, max_pairs=max_pairs)

    print(f"ResNet-{args.depth}, blocks per stage {cfg.blocks} + 2 transitions, {args.images} random 32x32 images "
          f"in batches of {args.batch}, {args.device}, {args.threads} thread(s), kind={args.kind!r}, "
          f"max_pairs={max_pairs}, depth factors (2, 4)")
    print(f"units per example   forward {units_forward:4d}   indices {units_indices:5d} (hooks)   "
          f"predicted {predicted['forward']} / {predicted['total']} = {predicted['recurrence']} recurrence "
          f"+ {predicted['iteration']} iteration + {predicted['forward']} base pass")
    print(f"time                forward {t_forward:.3f} s   indices {t_indices:.3f} s   (median of {args.repeats})")
    print(f"cost                {t_indices / t_forward:.1f}x one forward pass measured, "
          f"{units_indices / units_forward:.1f}x counted, {predicted['ratio']:.1f}x predicted "
          f"(target <= 20x)")
    return {"time_ratio": t_indices / t_forward, "unit_ratio": units_indices / units_forward,
            "predicted": predicted, "units_indices": units_indices}


if __name__ == "__main__":
    main()
