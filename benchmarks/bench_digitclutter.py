"""Digitclutter generation speed.

Claim: ``make_digitclutter`` produces at least 5,000 32x32 images per second on
one CPU core (the generator is single-threaded numpy), with and without digit
debris, so a 100k/10k train/test set takes well under a minute and never needs
to be shipped.

Evidence format: one line per setting, ``setting  images  seconds  images/s``,
best of ``--repeats`` timed runs after one untimed warm-up that builds the
glyph tables (its time is printed separately), preceded by the machine, the
library versions and the thread settings. All figures come from this one run.

Usage: ``python benchmarks/bench_digitclutter.py [--n 20000] [--repeats 3]``
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from itercourse.digitclutter import _glyph_bank, make_digitclutter


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="images per timed run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per setting (best is reported)")
    args = parser.parse_args()

    torch.set_num_threads(1)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs visible")
    print(f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}")
    print(f"threads: torch.get_num_threads()={torch.get_num_threads()}, "
          + ", ".join(f"{v}={os.environ.get(v, 'unset')}" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")))
    print(f"glyph tables built once per size: {timed(lambda: _glyph_bank(32)):.2f} s (size 32)")

    settings = {
        "3 digits": dict(num_digits=3),
        "2-5 digits": dict(num_digits=(2, 5)),
        "3 digits + debris (10 fragments)": dict(num_digits=3, debris=True, n_debris=10),
        "3 digits + debris (50 fragments)": dict(num_digits=3, debris=True, n_debris=50),
    }
    print(f"{'setting':36s} {'images':>8s} {'seconds':>8s} {'images/s':>9s}")
    for label, kwargs in settings.items():
        make_digitclutter(1000, seed=1, **kwargs)                      # warm-up
        best = min(timed(lambda: make_digitclutter(args.n, seed=0, **kwargs)) for _ in range(args.repeats))
        print(f"{label:36s} {args.n:8d} {best:8.2f} {args.n / best:9.0f}")


if __name__ == "__main__":
    main()
