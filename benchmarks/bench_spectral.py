"""Spectral normalisation: what it costs per training step, and how far the reshaped norm is from the true one.

Claim: constraining every residual branch of a ResNet-20 costs little per
training step, and the cheap "reshaped" norm that torch's spectral_norm uses
underestimates a 3x3 conv's true operator norm by ~1.5x at He initialisation
and by 3x (= sqrt(k*k)) for spatially constant kernels.

Evidence (one run of this script, CPU, 1 thread, batch 32, 32x32 RGB inputs,
ResNet-20 with branch_norm="none", median of 15 timed steps after 3 warm-up steps):
{EVIDENCE}

Run: ``python benchmarks/bench_spectral.py`` (add ``--steps 30 --threads 2`` to change the
measurement; ``--batch`` sets the batch size). The numbers depend on the machine; the
ratios are what carry over.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from itercourse.lipschitz import conv_operator_norm, conv_operator_norm_fft, reshaped_norm
from itercourse.models import ResNetConfig, build_resnet


def step_seconds(model: nn.Module, batch: int, steps: int, warmup: int, seed: int = 0) -> list[float]:
    """Wall time of ``steps`` SGD training steps (forward, backward, update) after ``warmup`` untimed ones."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, 32, 32, generator=gen)
    y = torch.randint(0, 10, (batch,), generator=gen)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def eval_seconds(model: nn.Module, batch: int) -> tuple[float, float]:
    """Eval forward time: the first after a weight change (operator flavour re-converges) and a repeat."""
    x = torch.randn(batch, 3, 32, 32)
    model.eval()
    out = []
    with torch.no_grad():
        for _ in range(2):
            t0 = time.perf_counter()
            model(x)
            out.append(time.perf_counter() - t0)
    return out[0], out[1]


def cost_table(batch: int, steps: int, warmup: int) -> list[str]:
    base = ResNetConfig.cifar(20, branch_norm="none")
    rows, ref = [], None
    for name, kw in [("none (no constraint)", {}),
                     ("reshaped (torch spectral_norm)", dict(spectral_coeff=0.9, spectral_flavour="reshaped")),
                     ("operator (power iteration)", dict(spectral_coeff=0.9, spectral_flavour="operator"))]:
        model = build_resnet(base, seed=0, **kw)
        med = statistics.median(step_seconds(model, batch, steps, warmup))
        first, again = eval_seconds(model, batch)
        ref = med if ref is None else ref
        rows.append(f"| {name:31s} | {1000 * med:8.1f} | {med / ref:5.2f}x | {1000 * first:9.1f} | {1000 * again:8.1f} |")
    head = ["| flavour                         | ms/step  | ratio  | eval 1st ms | eval ms |",
            "|---------------------------------|----------|--------|-------------|---------|"]
    return head + rows


def gap_table(seeds: int = 3) -> list[str]:
    rows = ["| kernel                     | feature map | reshaped | operator (zeros pad) | ratio | circular (FFT) ratio |",
            "|----------------------------|-------------|----------|----------------------|-------|----------------------|"]
    for c, hw in [(16, 32), (32, 16), (64, 8)]:
        ratios, fft_ratios, rn, on = [], [], [], []
        for seed in range(seeds):
            torch.manual_seed(seed)
            conv = nn.Conv2d(c, c, 3, padding=1, bias=False)
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")   # He init, as in models.py
            r, o = reshaped_norm(conv.weight), conv_operator_norm(conv, (c, hw, hw))
            rn.append(r), on.append(o), ratios.append(o / r)
            fft_ratios.append(conv_operator_norm_fft(conv.weight, (hw, hw)) / r)
        rows.append(f"| He init 3x3, {c:2d}->{c:2d} ({seeds} seeds) | {c:3d}x{hw:2d}x{hw:<2d}   | "
                    f"{statistics.mean(rn):8.3f} | {statistics.mean(on):20.3f} | "
                    f"{statistics.mean(ratios):5.2f} | {statistics.mean(fft_ratios):20.2f} |")
    for c, hw in [(16, 32), (16, 8)]:
        conv = nn.Conv2d(c, c, 3, padding=1, bias=False)
        nn.init.constant_(conv.weight, 1.0 / (9 * c))                                 # spatially constant
        r, o = reshaped_norm(conv.weight), conv_operator_norm(conv, (c, hw, hw))
        rows.append(f"| constant 3x3, {c:2d}->{c:2d}          | {c:3d}x{hw:2d}x{hw:<2d}   | {r:8.3f} | {o:20.3f} | "
                    f"{o / r:5.2f} | {conv_operator_norm_fft(conv.weight, (hw, hw)) / r:20.2f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch {args.batch}, ResNet-20 (branch_norm='none'), "
          f"median of {args.steps} steps after {args.warmup} warm-up steps\n")
    print("Cost per training step (coefficient c = 0.9; 'eval 1st' = first eval forward after a step):")
    print("\n".join(cost_table(args.batch, args.steps, args.warmup)))
    print("\nNorm gap, reshaped matrix vs. true operator norm:")
    print("\n".join(gap_table()))


if __name__ == "__main__":
    main()
