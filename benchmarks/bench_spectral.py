"""Spectral normalisation: what it costs per training step, and how far the reshaped norm is from the true one.

Claim: bounding every residual branch of a ResNet-20 with the true operator norm
costs about a quarter more CPU time per training step (torch's reshaped
spectral_norm: under a tenth), plus about one second, once per weight update,
for the first evaluation after training steps (the power iteration is re-run
to convergence there). The reshaped norm underestimates a 3x3 conv's true
operator norm by 1.5x at He initialisation and by up to 3x (= k) for
spatially constant kernels.

Evidence (two runs of this script on the course's shared 2-core CPU machine,
1 thread, batch 32, 32x32 RGB inputs, ResNet-20 with branch_norm="none",
c = 0.9, median CPU time of 15 interleaved steps after 3 warm-up steps):

    flavour      CPU ms/step   ratio         first eval after a step
    none         84.2 / 86.4   1.00x         22-26 ms
    reshaped     92.2 / 93.5   1.09x/1.08x   25 ms
    operator    105.0 / 107.3  1.25x/1.24x   1.04 s / 1.24 s (converging power iteration, 18 convs)

    operator / reshaped norm, He init 3x3 (3 seeds): 1.56 (16 ch, 32x32), 1.49 (32 ch, 16x16),
    1.50 (64 ch, 8x8); constant 3x3 kernel: 2.98 (32x32) and 2.76 (8x8) with zero padding,
    exactly 3.00 with circular padding (FFT, Sedghi et al. 2019).

Run: ``python benchmarks/bench_spectral.py`` (``--steps``, ``--warmup``, ``--batch``,
``--threads`` change the measurement). Absolute times depend on the machine; the
ratios are what carry over.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from itercourse.opnorm import conv_operator_norm, conv_operator_norm_fft, reshaped_norm
from itercourse.models import ResNetConfig, build_resnet


class Stepper:
    """One model with its optimiser and a fixed random batch: ``step()`` returns the CPU seconds of one SGD step."""

    def __init__(self, model: nn.Module, batch: int, seed: int = 0):
        gen = torch.Generator().manual_seed(seed)
        self.model, self.x = model.train(), torch.randn(batch, 3, 32, 32, generator=gen)
        self.y = torch.randint(0, 10, (batch,), generator=gen)
        self.opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    def step(self) -> float:
        t0 = time.process_time()                    # CPU time: robust to other jobs sharing the machine
        loss = nn.functional.cross_entropy(self.model(self.x), self.y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return time.process_time() - t0

    def eval_seconds(self) -> tuple[float, float]:
        """CPU seconds of the first eval forward after a step (the operator flavour re-converges) and of a repeat."""
        self.model.eval()
        out = []
        with torch.no_grad():
            for _ in range(2):
                t0 = time.process_time()
                self.model(self.x)
                out.append(time.process_time() - t0)
        self.model.train()
        return out[0], out[1]


FLAVOURS = [("none (no constraint)", {}),
            ("reshaped (torch spectral_norm)", dict(spectral_coeff=0.9, spectral_flavour="reshaped")),
            ("operator (power iteration)", dict(spectral_coeff=0.9, spectral_flavour="operator"))]


def cost_table(batch: int, steps: int, warmup: int) -> list[str]:
    base = ResNetConfig.cifar(20, branch_norm="none")
    steppers = [Stepper(build_resnet(base, seed=0, **kw), batch) for _, kw in FLAVOURS]
    times = [[] for _ in steppers]
    for i in range(warmup + steps):                 # interleaved, so drifts in machine load hit all alike
        for st, t in zip(steppers, times):
            dt = st.step()
            if i >= warmup:
                t.append(dt)
    rows, ref = [], statistics.median(times[0])
    for (name, _), st, t in zip(FLAVOURS, steppers, times):
        med = statistics.median(t)
        first, again = st.eval_seconds()
        rows.append(f"| {name:31s} | {1000 * med:11.1f} | {med / ref:5.2f}x | {1000 * first:11.1f} | {1000 * again:7.1f} |")
    head = ["| flavour                         | CPU ms/step | ratio  | eval 1st ms | eval ms |",
            "|---------------------------------|-------------|--------|-------------|---------|"]
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
    print("CPU time per training step (coefficient c = 0.9; 'eval 1st' = first eval forward after a step):")
    print("\n".join(cost_table(args.batch, args.steps, args.warmup)))
    print("\nNorm gap, reshaped matrix vs. true operator norm:")
    print("\n".join(gap_table()))


if __name__ == "__main__":
    main()
