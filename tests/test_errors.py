"""Errors that teach, and no silent wrong results: every bad input gets a message a student can act on,
and what goes wrong during a run is recorded, refused or reported, never passed off as a result.

Two tables of bad inputs, the public API and the command line. Each row
calls the package the way a student would get it wrong and asserts

- the exception type (``ValueError``/``TypeError`` for bad arguments,
  ``FileNotFoundError`` for missing data, ``NotADirectoryError`` for a path
  that cannot be written, ``CorruptFileError`` for a damaged file);
- that the message names the argument, the value received and what is
  allowed (the row's ``says`` fragments, all of them);
- that the error is raised by our code, not from deep inside torch/numpy
  (the innermost frame of the traceback is not in those libraries);
- that nothing half-written is left behind (no temporary files; where a row
  writes, the target does not exist afterwards).

Then the behaviours a row cannot show, one section each: one canonical form per
config, checkpoints that know their run and cannot run code, failing and
diverging configs recorded while a sweep goes on, reports that say what they
drop, checks before expensive work, silent misreadings, one-line errors, file
modes, Ctrl-C and full disks. (Lock files of sweeps: ``tests/test_locks.py``.)

Rows reach the package through plain imports: a module that fails to import
fails the rows that use it, never skips them.

Unwritable folders: the tests run as root here, and root ignores permission
bits (``chmod 500`` does not stop it, ``os.access`` says yes), so a row that
needs "a folder you cannot write to" uses a path whose parent is a regular
*file*. That fails for every user, root included, and is exactly what
``itercourse.io.ensure_writable_folder`` reports.
"""
from __future__ import annotations

import dataclasses
import errno
import importlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from itercourse import __main__ as cli
from itercourse import config_id, sweeps, training
from itercourse import experiments as ex
from itercourse.data import BatchLoader, load_dataset
from itercourse.digitclutter import make_digitclutter
from itercourse.errors import DivergedError
from itercourse.config_id import config_hash, legacy_hash
from itercourse.experiments import ExperimentConfig, Result, load_result, load_results, result_path
from itercourse.indices import iterative_convergence_indices
from itercourse.io import UnsafeFileError, atomic_torch_save, atomic_write_bytes, atomic_write_json, read_json
from itercourse.models import ResNetConfig, build_resnet
from itercourse.refinement import gradient_alignment
from itercourse.report import cells, grid_table
from itercourse.sweeps import SweepFailed, expand_grid, grid_labels, load_grid, sweep
from itercourse.training import History, TrainConfig, check_not_diverged, evaluate, train

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "results"
NAN = float("nan")
NO_MPS_ONLY = pytest.mark.skipif(getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
                                 reason="checks the message for a machine without MPS")
NO_GPU_ONLY = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for a machine without a GPU")
FOREIGN = tuple(os.sep + p + os.sep for p in ("torch", "numpy", "torchvision"))   # "deep inside" libraries
pytestmark = pytest.mark.filterwarnings("ignore:accuracy .* is at or below chance:RuntimeWarning")


# ------------------------------------------------------------------ small things to get wrong

def tiny_model(in_channels: int = 1, **kw):
    from itercourse.models import ResNetConfig, build_resnet
    return build_resnet(ResNetConfig(in_channels=in_channels, widths=(4, 4), blocks=(2, 2), **kw), seed=0)


def tiny_data(t: Path):
    from itercourse.data import load_dataset
    return load_dataset("digitclutter", root=str(t / "data"), train_size=16, test_size=8)


def tiny_loader(t: Path):
    return tiny_data(t).loader("test", batch_size=8)


def a_file(t: Path, name: str = "a_file") -> Path:
    """A regular file where a folder is expected (unwritable even for root)."""
    p = t / name
    p.write_text("I am a file, not a folder\n")
    return p


def garbage(t: Path, name: str) -> Path:
    p = t / name
    p.write_bytes(b"\x00\x01 not what you think \xff")
    return p


def truncated(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def good_json(t: Path) -> Path:
    from itercourse.io import atomic_write_json
    return atomic_write_json(t / "result.json", {"acc": 0.5, "config": {"seed": 0}})


def good_pt(t: Path) -> Path:
    from itercourse.io import atomic_torch_save
    return atomic_torch_save(t / "ckpt.pt", {"w": torch.arange(1000.0)})


def good_npz(t: Path) -> Path:
    import numpy as np
    from itercourse.digitclutter import save_digitclutter
    return save_digitclutter(t / "clutter.npz", np.zeros((4, 1, 8, 8), np.uint8), np.zeros((4, 10), np.float32))


def tiny_experiment(**kw):
    from itercourse.experiments import ExperimentConfig
    from itercourse.models import ResNetConfig
    from itercourse.training import TrainConfig
    return ExperimentConfig(experiment="errors", dataset="digitclutter", train_size=16, test_size=8, index_size=8,
                            model=ResNetConfig(in_channels=1, widths=(4, 4), blocks=(2, 2), branch_norm="none"),
                            train=TrainConfig(epochs=1, batch_size=8, fast=False, augment=False), **kw)


def grid_file(t: Path, text: str) -> Path:
    p = t / "grid.yaml"
    p.write_text(text)
    return p


def train_twice(t: Path, **second):
    """Train with a checkpoint, then resume it with another recipe (issue 12, item 2)."""
    TrainConfig, train = _api(M("training"), "TrainConfig"), _api(M("training"), "train")
    cfg = TrainConfig(epochs=1, batch_size=8, fast=False, augment=False)
    data = tiny_data(t)
    train(tiny_model(), data, cfg, checkpoint=t / "ckpt.pt", progress=False, log=lambda *a: None)
    import dataclasses
    return train(tiny_model(), data, dataclasses.replace(cfg, **second), checkpoint=t / "ckpt.pt", progress=False)


def _api(module: str, name: str):
    return getattr(importlib.import_module(module), name)


def evil_pt(t: Path) -> Path:
    """A checkpoint whose unpickling would create a folder (any code at all); checksum trailer recomputed."""
    from itercourse.io import atomic_torch_save
    return atomic_torch_save(t / "ckpt.pt", {"model": Evil(str(t / "code-ran"))})


class Evil:
    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return os.mkdir, (self.target,)


def tv_resnet():
    import torchvision
    return torchvision.models.resnet18(num_classes=10)


def own_forward_resnet():
    import torchvision

    class OwnForward(torchvision.models.ResNet):
        def forward(self, x):
            return 2 * super().forward(x)
    return OwnForward(torchvision.models.resnet.BasicBlock, [1, 1, 1, 1])


def emptied_resnet():
    net = tv_resnet()
    net.layer3 = torch.nn.Sequential()
    return net


def train_on_other_data(t: Path):
    """Train with a checkpoint on one draw of images, then resume it on another (issue 25, item 4)."""
    from itercourse.data import load_dataset
    TrainConfig, train = _api(M("training"), "TrainConfig"), _api(M("training"), "train")
    cfg = TrainConfig(epochs=1, batch_size=8, fast=False, augment=False)
    train(tiny_model(), tiny_data(t), cfg, checkpoint=t / "ckpt.pt", progress=False, log=lambda *a: None)
    other = load_dataset("digitclutter", root=str(t / "data"), train_size=16, test_size=8, seed=1)
    return train(tiny_model(), other, cfg, checkpoint=t / "ckpt.pt", progress=False)


# ------------------------------------------------------------------ the table

@dataclass(frozen=True)
class Bad:
    id: str                                   # what the student got wrong
    call: Callable[[Path], object]            # does it, given an empty temporary folder
    exc: type | tuple                         # the exception it must raise
    says: tuple = ()                          # fragments the message must contain: argument, value, allowed
    absent: tuple = ()                        # paths (relative to the folder) that must not exist afterwards
    marks: tuple = field(default=())          # pytest marks for this row


def M(name):  # module path shorthand
    return f"itercourse.{name}"


CASES = [
    # ---- architecture: names, sizes, coefficients (models.py, blocks.py)
    Bad("unit-name", lambda t: _api(M("models"), "ResNetConfig")(unit="preactivation"),
        ValueError, ("unit=", "'preactivation'", "'preact'", "'relu_only_preact'")),
    Bad("shortcut-name", lambda t: _api(M("models"), "ResNetConfig")(shortcut="gate"),
        ValueError, ("shortcut=", "'gate'", "'exclusive_gate'", "'conv1x1'")),
    Bad("unit-name-of-a-single-unit", lambda t: _api(M("blocks"), "ResidualUnit")(16, 16, unit="pre-act"),
        ValueError, ("unit=", "'pre-act'", "'preact'")),
    Bad("branch-norm-name", lambda t: _api(M("models"), "ResNetConfig")(branch_norm="batchnorm"),
        ValueError, ("branch_norm=", "'batchnorm'", "'bn'", "'none'")),
    Bad("negative-width", lambda t: _api(M("models"), "ResNetConfig")(widths=(16, -32, 64)),
        ValueError, ("widths", "-32", ">= 1")),
    Bad("non-integer-blocks", lambda t: _api(M("models"), "ResNetConfig")(blocks=(3, 2.5, 3)),
        TypeError, ("blocks", "2.5", "integer")),
    Bad("zero-input-channels", lambda t: _api(M("models"), "ResNetConfig")(in_channels=0),
        ValueError, ("in_channels=0", ">= 1")),
    Bad("widths-blocks-length-mismatch", lambda t: _api(M("models"), "ResNetConfig")(widths=(16, 32), blocks=(3, 3, 3)),
        ValueError, ("widths=(16, 32)", "blocks=(3, 3, 3)", "same length")),
    Bad("cifar-depth-not-6m+2", lambda t: _api(M("models"), "ResNetConfig").cifar(21),
        ValueError, ("depth=21", "6m+2", "20, 56, 110")),
    Bad("spectral-coeff-zero", lambda t: _api(M("models"), "ResNetConfig")(spectral_coeff=0),
        ValueError, ("spectral_coeff=0", "(0.0, inf)")),
    Bad("spectral-coeff-negative", lambda t: _api(M("models"), "ResNetConfig")(spectral_coeff=-0.9),
        ValueError, ("spectral_coeff=-0.9", "(0.0, inf)")),
    Bad("spectral-coeff-nan", lambda t: _api(M("models"), "ResNetConfig")(spectral_coeff=NAN),
        ValueError, ("spectral_coeff=nan", "(0.0, inf)")),
    Bad("spectral-coeff-with-batch-norm-branches",
        lambda t: _api(M("models"), "build_resnet")(in_channels=1, widths=(4, 4), blocks=(1, 1), spectral_coeff=0.9),
        ValueError, ("batch norm", "branch")),
    Bad("dropout-p-one", lambda t: _api(M("models"), "ResNetConfig")(dropout_p=1.0),
        ValueError, ("dropout_p=1.0", "[0.0, 1.0)")),
    Bad("build-from-a-string", lambda t: _api(M("models"), "build_resnet")("resnet20"),
        TypeError, ("cfg='resnet20'", "ResNetConfig")),
    Bad("negative-seed", lambda t: _api(M("models"), "build_resnet")(seed=-1),
        ValueError, ("seed=-1", ">= 0")),
    # ---- running a model
    Bad("mismatched-input-channels", lambda t: tiny_model(in_channels=1)(torch.zeros(2, 3, 32, 32)),
        ValueError, ("x has 3 channels", "in_channels=1", "1 channel(s)")),
    Bad("image-not-a-batch", lambda t: tiny_model()(torch.zeros(1, 32, 32)),
        ValueError, ("x must be a 4-d image batch", "(B, C, H, W)", "(1, 32, 32)")),
    Bad("schedule-block-out-of-range", lambda t: tiny_model()(torch.zeros(1, 1, 32, 32), schedules={0: [0, 5]}),
        ValueError, ("schedule=[0, 5]", "5", "0..1")),
    # ---- training recipe (train.py)
    Bad("zero-epochs", lambda t: _api(M("training"), "TrainConfig")(epochs=0), ValueError, ("epochs=0", ">= 1")),
    Bad("fractional-epochs", lambda t: _api(M("training"), "TrainConfig")(epochs=2.5),
        TypeError, ("epochs=2.5", "integer")),
    Bad("negative-batch-size", lambda t: _api(M("training"), "TrainConfig")(batch_size=-4),
        ValueError, ("batch_size=-4", ">= 1")),
    Bad("zero-learning-rate", lambda t: _api(M("training"), "TrainConfig")(lr=0), ValueError, ("lr=0", "(0.0, inf)")),
    Bad("nan-learning-rate", lambda t: _api(M("training"), "TrainConfig")(lr=NAN), ValueError, ("lr=nan", "(0.0, inf)")),
    Bad("coupling-above-one", lambda t: _api(M("training"), "TrainConfig")(coupling=1.5),
        ValueError, ("coupling=1.5", "[0.0, 1.0]")),
    Bad("coupling-negative", lambda t: _api(M("training"), "TrainConfig")(coupling=-0.1),
        ValueError, ("coupling=-0.1", "[0.0, 1.0]")),
    Bad("coupling-as-text", lambda t: _api(M("training"), "TrainConfig")(coupling="0.5"),
        TypeError, ("coupling='0.5'", "[0.0, 1.0]")),
    Bad("schedule-name", lambda t: _api(M("training"), "TrainConfig")(schedule="linear"),
        ValueError, ("schedule='linear'", "'cosine'", "'step'")),
    Bad("train-config-as-dict", lambda t: _api(M("training"), "train")(tiny_model(), tiny_data(t), {"epochs": 1}),
        TypeError, ("cfg={'epochs': 1}", "TrainConfig")),
    Bad("batch-larger-than-training-set",
        lambda t: _api(M("training"), "train")(tiny_model(), tiny_data(t), _api(M("training"), "TrainConfig")(
            epochs=1, batch_size=64, fast=False), progress=False),
        ValueError, ("batch_size=64", "16 images", "<= the training-set size")),
    Bad("train-on-mismatched-channels",
        lambda t: _api(M("training"), "train")(tiny_model(in_channels=3), tiny_data(t), _api(M("training"), "TrainConfig")(
            epochs=1, batch_size=8, fast=False, augment=False), progress=False),
        ValueError, ("x has 1 channels", "in_channels=3")),
    Bad("checkpoint-where-a-file-is",
        lambda t: _api(M("training"), "train")(tiny_model(), tiny_data(t), _api(M("training"), "TrainConfig")(
            epochs=1, batch_size=8, fast=False), checkpoint=a_file(t) / "ckpt.pt", progress=False),
        NotADirectoryError, ("ckpt.pt", "a_file'", "is a file, not a folder"), absent=("a_file/ckpt.pt",)),
    Bad("device-name", lambda t: _api(M("training"), "train")(tiny_model(), tiny_data(t), device="gpu", progress=False),
        ValueError, ("device='gpu'", "'cpu'", "'cuda'", "'auto'")),
    Bad("cuda-without-a-gpu", lambda t: _api(M("training"), "evaluate")(tiny_model(), [], device="cuda"),
        ValueError, ("device='cuda'", "no CUDA GPU", "device='cpu'"), marks=(NO_GPU_ONLY,)),
    Bad("evaluate-empty-loader", lambda t: _api(M("training"), "evaluate")(tiny_model(), []),
        ValueError, ("loader", "no examples", "at least one batch")),
    Bad("loss-of-an-empty-batch", lambda t: _api(M("training"), "task_loss")(torch.zeros(0, 10), torch.zeros(0).long()),
        ValueError, ("empty batch", "B = 0", "at least one example")),
    Bad("loss-labels-of-another-batch", lambda t: _api(M("training"), "task_loss")(torch.zeros(4, 10), torch.zeros(3).long()),
        ValueError, ("4 rows", "3 labels", "same batch")),
    # ---- data (data.py, digitclutter.py)
    Bad("dataset-that-does-not-exist", lambda t: _api(M("data"), "load_dataset")("imagenet", root=str(t)),
        ValueError, ("name='imagenet'", "'mnist'", "'cifar10'", "'digitclutter'")),
    Bad("dataset-name-in-capitals", lambda t: _api(M("data"), "load_dataset")("CIFAR10", root=str(t)),
        ValueError, ("name='CIFAR10'", "'cifar10'")),
    Bad("cifar10-missing-offline", lambda t: _api(M("data"), "load_dataset")("cifar10", root=str(t), download=False),
        FileNotFoundError, ("'cifar10'", "cifar-10-batches-py", "download=True", "cifar-10-python.tar.gz")),
    Bad("cifar100-missing-offline", lambda t: _api(M("data"), "load_dataset")("cifar100", root=str(t), download=False),
        FileNotFoundError, ("'cifar100'", "cifar-100-python", "download=True", "cifar-100-python.tar.gz")),
    Bad("mnist-missing-offline", lambda t: _api(M("data"), "load_dataset")("mnist", root=str(t), download=False),
        FileNotFoundError, ("'mnist'", os.path.join("MNIST", "raw"), "download=True", "train-images-idx3-ubyte")),
    Bad("zero-train-size", lambda t: _api(M("data"), "load_dataset")("digitclutter", root=str(t), train_size=0),
        ValueError, ("train_size=0", ">= 1")),
    Bad("negative-test-size",
        lambda t: _api(M("data"), "load_dataset")("digitclutter", root=str(t), train_size=8, test_size=-5),
        ValueError, ("test_size=-5", ">= 1")),
    Bad("fractional-data-seed", lambda t: _api(M("data"), "load_dataset")("digitclutter", root=str(t), seed=1.5),
        TypeError, ("seed=1.5", "integer")),
    Bad("too-many-digits",
        lambda t: _api(M("data"), "load_dataset")("digitclutter", root=str(t), train_size=8, test_size=8, num_digits=11),
        ValueError, ("num_digits=11", "[1, 10]")),
    Bad("digitclutter-option-for-cifar",
        lambda t: _api(M("data"), "load_dataset")("cifar10", root=str(t), download=False, num_digits=3),
        TypeError, ("'cifar10'", "num_digits", "name='digitclutter'")),
    Bad("split-name", lambda t: tiny_data(t).loader("validation"),
        ValueError, ("split='validation'", "'train'", "'test'")),
    Bad("no-images", lambda t: _api(M("digitclutter"), "make_digitclutter")(0), ValueError, ("n=0", ">= 1")),
    Bad("digit-range-upside-down", lambda t: _api(M("digitclutter"), "make_digitclutter")(4, num_digits=(3, 2)),
        ValueError, ("num_digits=(3, 2)", "lo <= hi")),
    Bad("image-too-small", lambda t: _api(M("digitclutter"), "make_digitclutter")(4, size=4),
        ValueError, ("size=4", ">= 8")),
    Bad("debris-as-text", lambda t: _api(M("digitclutter"), "make_digitclutter")(4, debris="yes"),
        TypeError, ("debris='yes'", "True or False")),
    Bad("images-and-labels-of-different-length",
        lambda t: _api(M("data"), "BatchLoader")(torch.zeros(10, 1, 8, 8, dtype=torch.uint8), torch.zeros(9), (0.5,), (0.2,)),
        ValueError, ("10 items", "9", "must match")),
    # ---- files: unreadable, truncated, unwritable (io.py)
    Bad("result-file-is-garbage", lambda t: _api(M("io"), "read_json")(garbage(t, "r.json")),
        _api(M("io"), "CorruptFileError"), ("r.json", "not a readable itercourse JSON file")),
    Bad("result-file-truncated", lambda t: _api(M("io"), "read_json")(truncated(good_json(t))),
        _api(M("io"), "CorruptFileError"), ("result.json",)),
    Bad("result-file-missing", lambda t: _api(M("io"), "read_json")(t / "nope.json"),
        FileNotFoundError, ("nope.json", "does not exist")),
    Bad("checkpoint-truncated", lambda t: _api(M("io"), "torch_load_verified")(truncated(good_pt(t))),
        _api(M("io"), "CorruptFileError"), ("ckpt.pt", "checksum", "truncated or corrupted")),
    Bad("dataset-file-truncated", lambda t: _api(M("digitclutter"), "load_digitclutter")(truncated(good_npz(t))),
        _api(M("io"), "CorruptFileError"), ("clutter.npz", "checksum", "regenerated")),
    Bad("results-folder-is-a-file", lambda t: _api(M("io"), "atomic_write_json")(a_file(t, "results") / "r.json", {}),
        NotADirectoryError, ("r.json", "results'", "is a file, not a folder"), absent=("results/r.json",)),
    Bad("checkpoint-folder-under-a-file",
        lambda t: _api(M("io"), "atomic_torch_save")(a_file(t) / "run" / "ckpt.pt", {"w": 1}),
        NotADirectoryError, ("ckpt.pt", "a_file'", "is a file, not a folder")),
    Bad("dataset-file-under-a-file",
        lambda t: _api(M("digitclutter"), "save_digitclutter")(a_file(t) / "c.npz", [[0]], [[0]]),
        NotADirectoryError, ("c.npz", "a_file'", "is a file, not a folder")),
    # ---- soft gradient coupling (coupling.py)
    Bad("coupling-strength-above-one", lambda t: _api(M("coupling"), "GradientCoupling")(tiny_model(), 1.5),
        ValueError, ("strength=1.5", "[0.0, 1.0]")),
    Bad("coupling-strength-negative", lambda t: _api(M("coupling"), "GradientCoupling")(tiny_model(), -0.2),
        ValueError, ("strength=-0.2", "[0.0, 1.0]")),
    Bad("coupling-strength-nan", lambda t: _api(M("coupling"), "GradientCoupling")(tiny_model(), NAN),
        ValueError, ("strength=nan", "[0.0, 1.0]")),
    Bad("coupling-a-model-without-blocks",
        lambda t: _api(M("coupling"), "GradientCoupling")(torch.nn.Linear(2, 2), 0.5),
        TypeError, ("model=Linear", ".stages")),
    # ---- Lipschitz constraint (lipschitz.py)
    Bad("operator-norm-wrong-input-channels",
        lambda t: _api(M("opnorm"), "conv_operator_norm")(torch.nn.Conv2d(16, 16, 3), (3, 32, 32)),
        ValueError, ("input_shape=(3, 32, 32)", "3 channels", "16")),
    Bad("operator-norm-of-a-linear-layer",
        lambda t: _api(M("opnorm"), "conv_operator_norm")(torch.nn.Linear(2, 2), (2,)),
        TypeError, ("conv=Linear", "Conv2d")),
    Bad("spectral-norm-coefficient-zero",
        lambda t: _api(M("lipschitz"), "apply_spectral_norm")(tiny_model(branch_norm="none"), 0),
        ValueError, ("coeff=0", "(0.0, inf)")),
    Bad("spectral-norm-flavour",
        lambda t: _api(M("lipschitz"), "apply_spectral_norm")(tiny_model(branch_norm="none"), 0.9, flavour="fft"),
        ValueError, ("flavour='fft'", "'operator'", "'reshaped'")),
    # ---- refinement metrics (refinement.py)
    Bad("alignment-without-labels",
        lambda t: _api(M("refinement"), "gradient_alignment")(tiny_model(), torch.zeros(2, 1, 32, 32), None),
        ValueError, ("y=None", "labels")),
    Bad("norm-ratios-of-an-empty-batch",
        lambda t: _api(M("refinement"), "norm_ratios")(tiny_model(), torch.zeros(0, 1, 32, 32)),
        ValueError, ("x", "empty batch", "at least one example")),
    Bad("unroll-negative-steps",
        lambda t: _api(M("refinement"), "unroll_accuracy")(tiny_model(), tiny_loader(t), extra_steps=(0, -1)),
        ValueError, ("extra_steps[i]=-1", ">= 0")),
    Bad("unroll-empty-loader", lambda t: _api(M("refinement"), "unroll_accuracy")(tiny_model(), []),
        ValueError, ("loader", "no batches")),
    Bad("drop-block-one-shot-iterator",
        lambda t: _api(M("refinement"), "drop_block_accuracy")(tiny_model(), iter(tiny_loader(t))),
        TypeError, ("loader=", "one-shot iterator")),
    # ---- indices of iterative convergence (indices.py)
    Bad("indices-empty-loader", lambda t: _api(M("indices"), "iterative_convergence_indices")(tiny_model(), []),
        ValueError, ("loader", "no batches", "at least one batch")),
    Bad("indices-of-a-model-without-stages",
        lambda t: _api(M("indices"), "iterative_convergence_indices")(torch.nn.Linear(2, 2), []),
        TypeError, ("model=Linear", "stages")),
    Bad("indices-kind-name",
        lambda t: _api(M("indices"), "iterative_convergence_indices")(tiny_model(), tiny_loader(t), kind="states"),
        ValueError, ("kind='states'", "'state'", "'performance'")),
    # ---- experiments and results (experiments.py)
    Bad("experiment-dataset-name", lambda t: _api(M("experiments"), "ExperimentConfig")(dataset="imagenet"),
        ValueError, ("dataset='imagenet'", "'digitclutter'", "'cifar10'")),
    Bad("experiment-name-with-slash", lambda t: _api(M("experiments"), "ExperimentConfig")(experiment="a/b"),
        ValueError, ("experiment='a/b'", "without '/'")),
    Bad("sweep-executor-name", lambda t: _api(M("sweeps"), "sweep")([], executor="slurm"),
        ValueError, ("executor='slurm'", "'local'", "'submitit'")),
    Bad("result-file-unreadable", lambda t: _api(M("experiments"), "Result").from_json(garbage(t, "abc.json")),
        _api(M("io"), "CorruptFileError"), ("abc.json",)),
    Bad("results-folder-unwritable",
        lambda t: _api(M("experiments"), "run")(tiny_experiment(), results_dir=a_file(t, "results") / "sub",
                                                checkpoint_dir=t / "ck", data_root=str(t / "data"), progress=False,
                                                log=lambda *a: None),
        NotADirectoryError, ("results'", "is a file, not a folder"), absent=("results/sub",)),
    # ---- issue 12: silent misreadings, checks before expensive work, one-line errors
    Bad("bool-field-as-text", lambda t: _api(M("training"), "TrainConfig")(fast="False"),
        TypeError, ("fast='False'", "True or False")),
    Bad("identical-init-coupled-in-a-config", lambda t: _api(M("training"), "TrainConfig")(identical_init="coupled"),
        TypeError, ("identical_init='coupled'", "True or False")),
    Bad("milestones-in-epochs", lambda t: _api(M("training"), "TrainConfig")(milestones=(50, 75)),
        ValueError, ("milestones[i]=50", "(0.0, 1.0)")),
    Bad("milestones-decreasing", lambda t: _api(M("training"), "TrainConfig")(milestones=(0.75, 0.5)),
        ValueError, ("milestones=(0.75, 0.5)", "increasing order")),
    Bad("batch-loader-float-images",
        lambda t: _api(M("data"), "BatchLoader")(torch.rand(4, 1, 8, 8), torch.zeros(4), (0.5,), (0.2,)),
        TypeError, ("dtype torch.float32", "torch.uint8")),
    Bad("index-size-above-test-size", lambda t: _api(M("experiments"), "ExperimentConfig")(test_size=16, index_size=1000),
        ValueError, ("index_size=1000", "test_size=16", "index_size <= 16")),
    Bad("index-options-typo", lambda t: tiny_experiment(index_options={"max_pair": 3}),
        ValueError, ("index_options", "'max_pair'", "'max_pairs'")),
    Bad("model-channels-for-the-dataset",
        lambda t: _api(M("experiments"), "ExperimentConfig")(model=_api(M("models"), "ResNetConfig")(in_channels=3)),
        ValueError, ("model.in_channels=3", "dataset='digitclutter'", "in_channels=1")),
    Bad("experiment-train-size-huge", lambda t: _api(M("experiments"), "ExperimentConfig")(train_size=10 ** 9),
        ValueError, ("train_size=1000000000", "1..2000000")),
    Bad("digitclutter-too-many-images", lambda t: _api(M("digitclutter"), "make_digitclutter")(10 ** 9),
        ValueError, ("n=1000000000", "n * size^2", "n <= 2097152")),
    Bad("digitclutter-image-too-large", lambda t: _api(M("digitclutter"), "make_digitclutter")(4, size=256),
        ValueError, ("size=256", "8..128")),
    Bad("model-float64-images", lambda t: tiny_model()(torch.zeros(2, 1, 32, 32, dtype=torch.float64)),
        TypeError, ("dtype torch.float64", "torch.float32")),
    Bad("model-uint8-images", lambda t: tiny_model()(torch.zeros(2, 1, 32, 32, dtype=torch.uint8)),
        TypeError, ("dtype torch.uint8", "torch.float32", "normalise")),
    Bad("evaluate-on-mps-without-mps", lambda t: _api(M("training"), "evaluate")(tiny_model(), [], device="mps"),
        ValueError, ("device='mps'", "no Apple MPS", "device='cpu'"), marks=(NO_MPS_ONLY,)),
    Bad("load-dataset-on-cuda-without-a-gpu",
        lambda t: _api(M("data"), "load_dataset")("digitclutter", root=str(t), train_size=8, device="cuda"),
        ValueError, ("device='cuda'", "no CUDA GPU", "device='cpu'"), marks=(NO_GPU_ONLY,)),
    Bad("train-on-a-tuple", lambda t: _api(M("training"), "train")(tiny_model(), (torch.zeros(8, 1, 32, 32),
                                                                                  torch.zeros(8)), progress=False),
        TypeError, ("data=tuple", "ImageData")),
    Bad("checkpoint-of-another-recipe", lambda t: train_twice(t, lr=0.001),
        ValueError, ("checkpoint=", "another run", "train differ", "allowed")),
    Bad("training-diverges", lambda t: _api(M("training"), "train")(tiny_model(branch_norm="none"), tiny_data(t), _api(
        M("training"), "TrainConfig")(epochs=2, batch_size=8, lr=1e6, fast=False, augment=False), progress=False),
        ValueError, ("diverged", "epoch 1", "finite loss", "lr=1e+06")),
    Bad("indices-loader-of-images-only",
        lambda t: _api(M("indices"), "iterative_convergence_indices")(tiny_model(), [torch.zeros(2, 1, 32, 32)]),
        TypeError, ("loader must yield (x, y)", "Tensor of shape (2, 1, 32, 32)")),
    Bad("indices-rgb-for-a-grey-model",
        lambda t: _api(M("indices"), "iterative_convergence_indices")(
            tiny_model(), [(torch.zeros(2, 3, 32, 32), torch.zeros(2).long())]),
        ValueError, ("x has 3 channels", "in_channels=1")),
    Bad("indices-float64",
        lambda t: _api(M("indices"), "iterative_convergence_indices")(
            tiny_model(), [(torch.zeros(2, 1, 32, 32, dtype=torch.float64), torch.zeros(2).long())]),
        TypeError, ("dtype torch.float64", "torch.float32")),
    Bad("alignment-multi-hot-long-labels",
        lambda t: _api(M("refinement"), "gradient_alignment")(tiny_model(), torch.zeros(2, 1, 32, 32),
                                                               torch.zeros(2, 10, dtype=torch.long)),
        ValueError, ("shape (2, 10)", "class indices (B,) in 0..9", "multi-hot floats")),
    Bad("alignment-label-out-of-range",
        lambda t: _api(M("refinement"), "gradient_alignment")(tiny_model(), torch.zeros(2, 1, 32, 32),
                                                               torch.tensor([0, 12])),
        ValueError, ("values 0..12", "0..9")),
    Bad("grid-key-misspelled", lambda t: _api(M("sweeps"), "expand_grid")({"model": {"in_channels": 1}},
                                                                          {"train.lrr": [0.1]}),
        ValueError, ("grid key 'train.lrr'", "allowed", "'train.lr'")),
    Bad("preset-base-of-an-unknown-preset", lambda t: _api(M("sweeps"), "preset_base")("digitclutter_army"),
        ValueError, ("preset='digitclutter_army'", "'digitclutter_arms'")),
    Bad("grid-yaml-duplicate-key",
        lambda t: _api(M("sweeps"), "load_grid")(grid_file(t, "experiment: x\ngrid: {seed: [0]}\ngrid: {seed: [1]}\n")),
        ValueError, ("'grid' appears twice", "lines 2 and 3", "each key once")),
    Bad("grid-yaml-with-a-tab",
        lambda t: _api(M("sweeps"), "load_grid")(grid_file(t, "experiment: x\ngrid:\n\tseed: [0]\n")),
        ValueError, ("grid.yaml", "line 3", "no TABs")),
    Bad("grid-yaml-false-as-text",
        lambda t: _api(M("sweeps"), "load_grid")(grid_file(
            t, 'experiment: x\nmodel: {in_channels: 1}\ntrain: {fast: "false"}\ngrid: {seed: [0]}\n')),
        TypeError, ("fast='false'", "True or False")),
    Bad("load-results-of-a-missing-folder", lambda t: _api(M("experiments"), "load_results")("grid", t),
        FileNotFoundError, ("experiment='grid'", "no results folder", "sweep")),
    # ---- issue 25: no silent wrong results, round 3
    Bad("checkpoint-that-would-run-code", lambda t: _api(M("io"), "torch_load_verified")(evil_pt(t)),
        _api(M("io"), "UnsafeFileError"), ("ckpt.pt", "refused", "could run code", "Nothing in it was run"),
        absent=("code-ran",)),
    Bad("schedule-stage-key-out-of-range", lambda t: tiny_model()(torch.zeros(1, 1, 32, 32), schedules={7: [0]}),
        ValueError, ("stage key(s) [7]", "0..1")),
    Bad("schedule-stage-key-negative", lambda t: tiny_model()(torch.zeros(1, 1, 32, 32), schedules={-1: [0, 1]}),
        ValueError, ("stage key(s) [-1]", "0..1")),
    Bad("shortcut-scale-nan", lambda t: _api(M("models"), "ResNetConfig")(shortcut_scale=NAN),
        ValueError, ("shortcut_scale=nan", "finite")),
    Bad("branch-scale-inf", lambda t: _api(M("models"), "ResNetConfig")(branch_scale=float("inf")),
        ValueError, ("branch_scale=inf", "finite")),
    Bad("gate-bias-minus-inf", lambda t: _api(M("models"), "ResNetConfig")(gate_bias=float("-inf")),
        ValueError, ("gate_bias=-inf", "finite")),
    Bad("widths-a-million", lambda t: _api(M("models"), "ResNetConfig")(widths=(10**6,) * 3),
        ValueError, ("widths=(1000000, 1000000, 1000000)", "parameters", "at most 1e+09")),
    Bad("from-torchvision-own-forward", lambda t: _api(M("adapters"), "from_torchvision")(own_forward_resnet()),
        TypeError, ("OwnForward", "forward", "logits would differ")),
    Bad("from-torchvision-empty-layer", lambda t: _api(M("adapters"), "from_torchvision")(emptied_resnet()),
        ValueError, ("model.layer3 is empty", "at least one block")),
    Bad("adapter-wrong-channels", lambda t: _api(M("adapters"), "from_torchvision")(tv_resnet())(
        torch.zeros(1, 1, 32, 32)), ValueError, ("x has 1 channels", "conv1 takes 3")),
    Bad("adapter-fp16-input", lambda t: _api(M("adapters"), "from_torchvision")(tv_resnet())(
        torch.zeros(1, 3, 32, 32, dtype=torch.float16)), TypeError, ("torch.float16", "torch.float32")),
    Bad("norm-ratios-nan-input", lambda t: _api(M("refinement"), "norm_ratios")(
        tiny_model(), torch.full((2, 1, 32, 32), NAN)), ValueError, ("x holds NaN or inf", "finite images")),
    Bad("alignment-3d-input", lambda t: _api(M("refinement"), "gradient_alignment")(
        tiny_model(), torch.zeros(1, 32, 32), torch.tensor([0])), ValueError, ("4-d image batch", "(1, 32, 32)")),
    Bad("unroll-a-billion-steps", lambda t: _api(M("refinement"), "unroll_accuracy")(
        tiny_model(), tiny_loader(t), extra_steps=(10**9,)), ValueError, ("extra_steps[i]=1000000000", "..10000")),
    Bad("indices-depth-factor-huge", lambda t: _api(M("indices"), "iterative_convergence_indices")(
        tiny_model(), tiny_loader(t), depth_factors=(10**6,)), ValueError, ("depth_factors[i]=1000000", "..1000")),
    Bad("evaluate-label-out-of-range", lambda t: _api(M("training"), "evaluate")(
        tiny_model(), [(torch.zeros(2, 1, 32, 32), torch.tensor([0, 10]))]), ValueError, ("values 0..10", "0..9")),
    Bad("evaluate-float-class-indices", lambda t: _api(M("training"), "evaluate")(
        tiny_model(), [(torch.zeros(2, 1, 32, 32), torch.tensor([0.0, 3.0]))]),
        ValueError, ("dtype torch.float32, shape (2,)", "class indices (B,) in 0..9", "y.long()")),
    Bad("indices-label-out-of-range", lambda t: _api(M("indices"), "iterative_convergence_indices")(
        tiny_model(), [(torch.zeros(2, 1, 32, 32), torch.tensor([0, -1]))]), ValueError, ("values -1..0", "0..9")),
    Bad("model-on-the-meta-device", lambda t: _api(M("refinement"), "norm_ratios")(
        tiny_model().to("meta"), torch.zeros(1, 1, 32, 32)), ValueError, ("meta device", "to_empty")),
    Bad("label-smoothing-on-digitclutter-config", lambda t: dataclasses.replace(
        tiny_experiment(), train=_api(M("training"), "TrainConfig")(label_smoothing=0.1)),
        ValueError, ("train.label_smoothing=0.1", "multi-label", "label_smoothing=0.0")),
    Bad("label-smoothing-on-multi-label-data", lambda t: _api(M("training"), "train")(
        tiny_model(), tiny_data(t), _api(M("training"), "TrainConfig")(label_smoothing=0.1, epochs=1, batch_size=8),
        progress=False), ValueError, ("label_smoothing=0.1", "multi-label", "label_smoothing=0.0")),
    Bad("lipschitz-cap-for-other-image-size", lambda t: dataclasses.replace(
        tiny_experiment(), model=_api(M("models"), "ResNetConfig")(
            in_channels=1, widths=(4, 4), blocks=(2, 2), branch_norm="none", spectral_coeff=0.9),
        dataset_options={"size": 64}),
        ValueError, ("input_size=32", "64x64", "allowed: input_size=64")),
    Bad("grid-of-a-million-configs", lambda t: _api(M("sweeps"), "expand_grid")(
        {"model": {"in_channels": 1}}, {"seed": list(range(1000)), "train.lr": [0.1] * 1000}),
        ValueError, ("1000000 configs", "at most 10000")),
    Bad("resume-on-other-data", lambda t: train_on_other_data(t), ValueError, ("ckpt.pt", "data differ")),
]


TINY_RUN_WARNING = "ignore:accuracy .* is at or below chance:RuntimeWarning"   # a 1-epoch run on 16 images


@pytest.mark.filterwarnings(TINY_RUN_WARNING)
@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_bad_input_is_explained(case: Bad, tmp_path):
    torch.manual_seed(0)
    with pytest.raises(case.exc) as info:
        case.call(tmp_path)
    message = str(info.value)
    missing = [s for s in case.says if s not in message]
    assert not missing, f"the message lacks {missing}:\n  {type(info.value).__name__}: {message}"
    raised_in = str(info.traceback[-1].path)
    assert not any(lib in raised_in for lib in FOREIGN), \
        f"raised deep inside a library ({raised_in}), not by itercourse: {message}"
    leftovers = [p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers, f"temporary files left behind: {leftovers}"
    for rel in case.absent:
        assert not (tmp_path / rel).exists(), f"{rel} was (partly) written"


def test_the_table_is_big_enough():
    assert len(CASES) + len(CLI_CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES), "row ids must be unique"


def test_results_folder_is_checked_before_training(tmp_path, monkeypatch):
    """A results folder that cannot be written fails at once, not after hours of training."""
    experiments = importlib.import_module(M("experiments"))

    def no_training(*args, **kwargs):
        raise AssertionError("run() started training although its results folder cannot be written")
    monkeypatch.setattr(experiments, "train", no_training)
    with pytest.raises(OSError, match="is a file, not a folder"):
        experiments.run(tiny_experiment(), results_dir=a_file(tmp_path, "results"), checkpoint_dir=tmp_path / "ck",
                        data_root=str(tmp_path / "data"), progress=False, log=lambda *a: None)


# ------------------------------------------------------------------ the command line

@dataclass(frozen=True)
class BadCli:
    id: str
    argv: Callable[[Path], list]              # arguments after `python -m itercourse`
    says: tuple                               # fragments of stderr: the flag, the value, what is allowed
    marks: tuple = ()


TINY_RUN = ["run", "--train-size", "16", "--test-size", "8", "--epochs", "1", "--batch-size", "8",
            "--widths", "4", "4", "--blocks", "2", "2", "--no-fast", "--device", "cpu"]

CLI_CASES = [
    BadCli("run-coupling-above-one", lambda t: ["run", "--coupling", "1.5"], ("--coupling", "1.5", "[0.0, 1.0]")),
    BadCli("run-coupling-negative", lambda t: ["run", "--coupling", "-0.2"], ("--coupling", "-0.2", "[0.0, 1.0]")),
    BadCli("run-spectral-coeff-zero", lambda t: ["run", "--spectral-coeff", "0"], ("--spectral-coeff", "0.0", "(0.0, inf)")),
    BadCli("run-dataset-name", lambda t: ["run", "--dataset", "imagenet"],
           ("--dataset", "'imagenet'", "'cifar10'")),
    BadCli("run-unit-name", lambda t: ["run", "--unit", "preactivation"], ("--unit", "'preactivation'", "'preact'")),
    BadCli("run-negative-train-size", lambda t: ["run", "--train-size", "-5"], ("--train-size", "-5", ">= 1")),
    BadCli("run-fractional-epochs", lambda t: ["run", "--epochs", "2.5"], ("--epochs", "'2.5'", "int")),
    BadCli("run-depth-not-6m+2", lambda t: ["run", "--depth", "21"], ("--depth", "21", "6m+2")),
    BadCli("run-zero-width", lambda t: ["run", "--widths", "16", "0", "32"], ("--widths", "0", ">= 1")),
    BadCli("run-too-many-digits", lambda t: ["run", "--num-digits", "11"], ("--num-digits", "11", "1..10")),
    BadCli("run-cuda-without-a-gpu", lambda t: TINY_RUN + ["--device", "cuda", "--data-root", str(t / "data")],
           ("device='cuda'", "no CUDA GPU", "device='cpu'"), marks=(NO_GPU_ONLY,)),
    BadCli("run-zero-threads", lambda t: ["run", "--threads", "0"], ("--threads", "0", ">= 1")),
    BadCli("run-results-dir-is-a-file",
           lambda t: TINY_RUN + ["--results-dir", str(a_file(t, "results")), "--data-root", str(t / "data"),
                                 "--checkpoint-dir", str(t / "ck")],
           ("results", "is a file, not a folder")),
    BadCli("sweep-neither-grid-nor-preset", lambda t: ["sweep"], ("GRID/--preset", "exactly one")),
    BadCli("sweep-grid-file-missing", lambda t: ["sweep", str(t / "nope.yaml")], ("GRID", "nope.yaml", "--preset")),
    BadCli("sweep-preset-name", lambda t: ["sweep", "--preset", "cifar"], ("--preset", "'cifar'", "'cifar10'")),
    BadCli("sweep-executor-name", lambda t: ["sweep", "--preset", "smoke", "--executor", "slurm"],
           ("--executor", "'slurm'", "'submitit'")),
    BadCli("report-without-results",
           lambda t: ["report", "--experiment", "grid", "--results-dir", str(t / "empty"), "--out", str(t / "rep")],
           ("no results", "grid", "sweep")),
    BadCli("digitclutter-zero-images", lambda t: ["digitclutter", "--n", "0", "--out", str(t / "c.npz")],
           ("--n", "0", ">= 1")),
    BadCli("digitclutter-too-many-digits",
           lambda t: ["digitclutter", "--num-digits", "11", "--out", str(t / "c.npz")], ("--num-digits", "11", "1..10")),
    BadCli("digitclutter-without-out", lambda t: ["digitclutter", "--n", "4"], ("--out", "required")),
    BadCli("digitclutter-out-under-a-file",
           lambda t: ["digitclutter", "--n", "4", "--out", str(a_file(t) / "c.npz")],
           ("c.npz", "is a file, not a folder")),
    BadCli("run-device-mps-without-mps", lambda t: ["run", "--device", "mps"], ("device='mps'", "no Apple MPS"),
           marks=(NO_MPS_ONLY,)),
    BadCli("run-train-size-huge", lambda t: ["run", "--train-size", "1000000000"],
           ("--train-size", "1000000000", "1..2000000")),
    BadCli("run-checkpoint-dir-is-a-file", lambda t: ["run", "--checkpoint-dir", str(a_file(t, "ck"))],
           ("ck", "is a file, not a folder")),
    BadCli("digitclutter-too-many-images", lambda t: ["digitclutter", "--n", "1000000000", "--out", str(t / "c.npz")],
           ("--n", "1000000000", "n <= 2097152")),
    BadCli("digitclutter-size-256", lambda t: ["digitclutter", "--size", "256", "--out", str(t / "c.npz")],
           ("--size", "256", "8..128")),
    BadCli("digitclutter-size-100000", lambda t: ["digitclutter", "--size", "100000", "--out", str(t / "c.npz")],
           ("--size", "100000", "8..128")),
    BadCli("digitclutter-out-is-a-folder", lambda t: ["digitclutter", "--n", "4", "--out", str(t)],
           ("--out", "is a folder", ".npz")),
    BadCli("digitclutter-preview-not-png",
           lambda t: ["digitclutter", "--n", "4", "--out", str(t / "c.npz"), "--preview", str(t / "p.jpg")],
           ("--preview", "p.jpg", ".png")),
    BadCli("run-widths-a-million", lambda t: ["run", "--widths", "1000000", "1000000", "1000000"],
           ("--widths", "1000000", "parameters", "at most 1e+09")),
    BadCli("sweep-grid-too-large", lambda t: ["sweep", str(grid_file(
        t, "experiment: x\nmodel: {in_channels: 1}\ngrid: {seed: %s, train.lr: %s}\n"
        % (list(range(200)), [0.1 + i / 1000 for i in range(100)])))], ("20000 configs", "at most 10000")),
    BadCli("sweep-grid-with-a-tab", lambda t: ["sweep", str(grid_file(t, "experiment: x\ngrid:\n\tseed: [0]\n"))],
           ("grid.yaml", "line 3", "no TABs")),
]


@pytest.mark.filterwarnings(TINY_RUN_WARNING)
@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CLI_CASES])
def test_bad_command_line_is_explained(case: BadCli, tmp_path, capsys, monkeypatch):
    """``python -m itercourse ...`` with a bad flag: exit status 2 and a one-line reason, never a traceback."""
    main = _api(M("__main__"), "main")
    monkeypatch.chdir(tmp_path)                       # default results/, data/ stay out of the repository
    argv = case.argv(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2, f"exit status {info.value.code}, stderr:\n{err}"
    assert "Traceback" not in err
    missing = [s for s in case.says if s not in err]
    assert not missing, f"stderr lacks {missing}:\n{err}"
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_command_line_error_in_a_real_process(tmp_path):
    """The same through a real ``python -m itercourse`` process: no traceback reaches the terminal."""
    importlib.import_module(M("__main__"))
    proc = subprocess.run([sys.executable, "-m", "itercourse", "run", "--coupling", "2"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "--coupling" in proc.stderr and "[0.0, 1.0]" in proc.stderr, proc.stderr


# ================================================================== behaviours a row cannot show

def small_config(**kw) -> ExperimentConfig:
    """64 training images, widths (4, 8), two blocks per stage, batch 32."""
    train = kw.pop("train", {})
    model = kw.pop("model", {})
    return ExperimentConfig(
        experiment=kw.pop("experiment", "tiny"), train_size=kw.pop("train_size", 64), test_size=32, index_size=32,
        model=ResNetConfig(in_channels=1, widths=(4, 8), blocks=(2, 2), branch_norm="none", **model),
        train=TrainConfig(**{"epochs": 1, "batch_size": 32, "fast": False, "augment": False, **train}), **kw)


def tiny_config(**kw) -> ExperimentConfig:
    """32 training images, widths (4, 4), one block per stage, batch 16."""
    train = kw.pop("train", {})
    return ExperimentConfig(
        experiment=kw.pop("experiment", "tiny"), train_size=32, test_size=16, index_size=16,
        model=ResNetConfig(in_channels=1, widths=(4, 4), blocks=(1, 1), branch_norm="none"),
        train=TrainConfig(**{"epochs": 1, "batch_size": 16, "fast": False, "augment": False, **train}), **kw)


def fake_result(cfg: ExperimentConfig, acc: float = 0.5) -> Result:
    """A result written without training (the files the report and the sweep read)."""
    h = History(epoch=[1], lr=[0.1], train_loss=[1.0], train_acc=[acc], test_loss=[1.0], test_acc=[acc], seconds=[0.1])
    return Result(cfg, h, {"recurrence": 0.1, "convergence": 0.2, "divergence": 0.3}, acc, 1.0)


def write(res: Result, results_dir: Path, folder: str | None = None, name: str | None = None) -> Path:
    path = Path(results_dir) / (folder or res.config.experiment) / (name or f"{res.id}.json")
    atomic_write_json(path, res.to_json())
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return load_dataset("digitclutter", root=str(tmp_path_factory.mktemp("data")), train_size=32, test_size=16)


@pytest.fixture(autouse=True)
def quick_extras(monkeypatch):
    """The Lipschitz report of a finished run is not what these tests check: skipped, to save time."""
    monkeypatch.setattr(ex, "_lipschitz", lambda model, data: {})


def call(capsys, *argv):
    try:
        code = cli.main(list(argv))
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(capsys, *argv, says=()):
    code, out, err = call(capsys, *argv)
    assert code == 2, (code, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    missing = [s for s in says if s not in err]
    assert not missing, f"stderr lacks {missing}: {err}"
    return err


# ------------------------------------------------------------------ one canonical form per config

def test_no_coupling_has_one_id():
    assert small_config(train={"coupling": None}).id == small_config(train={"coupling": 0.0}).id == small_config(train={"coupling": 0}).id
    assert small_config(train={"coupling": None}).id != small_config(train={"coupling": 0.5}).id


def test_default_dataset_options_have_the_id_of_none():
    assert small_config(dataset_options={"num_digits": 3}).id == small_config(dataset_options={}).id
    assert small_config(dataset_options={"num_digits": 4}).id != small_config().id


def test_identical_init_is_a_bool_and_coupled_is_resolved_by_the_grid():
    with pytest.raises(TypeError, match="identical_init='coupled'.*True or False"):
        TrainConfig(identical_init="coupled")
    cfgs = expand_grid({"train": {"identical_init": "coupled"}, "model": {"in_channels": 1}},
                       {"coupling": [0.0, 0.5]})
    assert [c.train.identical_init for c in cfgs] == [False, True]


def test_committed_results_keep_their_ids():
    """Every committed result is named by its canonical id; results written before the canonical ids
    (no ``meta["code"]``: before provenance) also keep the id they were written under."""
    for path in sorted(COMMITTED.glob("*/*.json")):
        stored = read_json(path)
        assert stored["id"] == path.stem == config_hash(stored["config"]), path
        if not stored.get("meta", {}).get("code"):
            assert stored["id"] == legacy_hash(stored["config"]), path


def test_run_without_coupling_finds_the_committed_result(monkeypatch):
    """`run --experiment digitclutter_arms --seed 1` (no --coupling): the CLI's own lookup, no training."""
    monkeypatch.setattr(ex, "train", lambda *a, **k: pytest.fail("run() trained"))
    args = cli.build_parser().parse_args(["run", "--experiment", "digitclutter_arms", "--seed", "1"])
    cfg = cli.run_config(args)
    assert cfg.train.coupling == 0.0
    assert load_result(cfg, COMMITTED) is not None
    assert ex.run(cfg, COMMITTED).config.train.coupling == 0.0


def test_a_result_under_a_legacy_spelling_is_found_and_counted_once(tmp_path):
    src = sorted((COMMITTED / "digitclutter_grid").glob("*.json"))[0]
    stored = read_json(src)
    cfg = ExperimentConfig.from_dict(stored["config"])
    old = json.loads(json.dumps(stored))
    old["config"]["train"]["coupling"] = None if not cfg.train.coupling else cfg.train.coupling
    old["config"]["dataset_options"] = [["num_digits", 3]]
    old["id"] = legacy_hash(old["config"])
    assert old["id"] != cfg.id
    folder = tmp_path / "digitclutter_grid"
    atomic_write_json(folder / f"{old['id']}.json", old)
    assert load_result(cfg, tmp_path) is not None                  # found under the old id
    atomic_write_json(folder / f"{cfg.id}.json", stored)
    assert len(load_results("digitclutter_grid", tmp_path)) == 1  # both files: one config, counted once


def test_report_counts_no_config_twice():
    results = load_results("digitclutter_grid", COMMITTED)
    ids = [config_hash(dataclasses.asdict(r.config)) for r in results]
    assert len(ids) == len(set(ids)) == 20


def test_a_new_field_at_its_neutral_value_keeps_old_ids(monkeypatch):
    """How others register a field: NEUTRAL_FIELDS[(section, name)] = value that means 'as before'."""
    d = dataclasses.asdict(small_config())
    monkeypatch.setitem(config_id.NEUTRAL_FIELDS, ("train", "lr_scaling"), "none")
    grown = json.loads(json.dumps(d))
    grown["train"]["lr_scaling"] = "none"
    assert config_hash(grown) == config_hash(d)
    grown["train"]["lr_scaling"] = "linear"
    assert config_hash(grown) != config_hash(d)


# ------------------------------------------------------------------ checkpoints know their run

def test_checkpoint_of_another_train_config_is_refused(tmp_path, data):
    ckpt = tmp_path / "c.pt"
    cfg = TrainConfig(epochs=1, batch_size=8, lr=0.1, fast=False, augment=False)
    train(tiny_model(branch_norm="none"), data, cfg, checkpoint=ckpt, progress=False, log=lambda *a: None)
    with pytest.raises(ValueError, match=r"checkpoint=.*c\.pt.*another run \(train differ\).*allowed"):
        train(tiny_model(branch_norm="none"), data, dataclasses.replace(cfg, lr=0.001), checkpoint=ckpt, progress=False)
    assert train(tiny_model(branch_norm="none"), data, cfg, checkpoint=ckpt, progress=False, log=lambda *a: None).epoch == [1]


def test_checkpoint_of_another_architecture_is_refused(tmp_path, data):
    ckpt = tmp_path / "c.pt"
    cfg = TrainConfig(epochs=1, batch_size=8, fast=False, augment=False)
    train(tiny_model(branch_norm="none"), data, cfg, checkpoint=ckpt, progress=False, log=lambda *a: None)
    other = build_resnet(ResNetConfig(in_channels=1, widths=(8, 8), blocks=(2, 2), branch_norm="none"), seed=0)
    with pytest.raises(ValueError, match=r"another run \(architecture differ\)") as info:
        train(other, data, cfg, checkpoint=ckpt, progress=False)
    assert "size mismatch" not in str(info.value) and "\n" not in str(info.value)


def test_a_checkpoint_written_before_owners_still_resumes(tmp_path, data):
    """Checkpoints of 0.1.0 carry only ``train_config``: they resume for the same recipe and shapes."""
    from itercourse.io import atomic_torch_save, torch_load_verified
    ckpt = tmp_path / "c.pt"
    cfg = TrainConfig(epochs=1, batch_size=8, fast=False, augment=False)
    train(tiny_model(branch_norm="none"), data, cfg, checkpoint=ckpt, progress=False, log=lambda *a: None)
    state = torch_load_verified(ckpt)
    del state["owner"]
    atomic_torch_save(ckpt, state)
    logs = []
    assert train(tiny_model(branch_norm="none"), data, cfg, checkpoint=ckpt, progress=False, log=logs.append).epoch == [1]
    assert any("resumed" in m for m in logs)
    with pytest.raises(ValueError, match=r"another run \(train differ\)"):
        train(tiny_model(branch_norm="none"), data, dataclasses.replace(cfg, lr=0.01), checkpoint=ckpt, progress=False)


# ------------------------------------------------------------------ a failing config does not block a sweep

def test_sweep_records_a_failure_goes_on_and_does_not_loop(tmp_path, monkeypatch):
    bad, good = small_config(train={"lr": 1e6}, seed=0), small_config(seed=1)
    kw = dict(results_dir=tmp_path / "r", checkpoint_dir=tmp_path / "c", data_root=str(tmp_path / "d"),
              progress=False, log=lambda *a: None)
    with pytest.raises(SweepFailed) as info:
        sweep([bad, good], **kw)
    message = str(info.value)
    assert "1 of 2 configs failed" in message and bad.id in message and bad.label() in message
    assert "diverged" in message and "--retry-failed" in message
    assert load_result(good, tmp_path / "r") is not None          # the config after it ran
    record = read_json(sweeps.failure_path(bad, tmp_path / "r"))
    assert record["id"] == bad.id and "lr=" in record["error"]
    monkeypatch.setattr(ex, "train", lambda *a, **k: pytest.fail("a recorded failure was retried"))
    with pytest.raises(SweepFailed):
        sweep([bad, good], **kw)                                   # no retraining, same report


def test_retry_failed_tries_again(tmp_path, monkeypatch):
    bad = small_config(train={"lr": 1e6})
    kw = dict(results_dir=tmp_path / "r", checkpoint_dir=tmp_path / "c", data_root=str(tmp_path / "d"),
              progress=False, log=lambda *a: None)
    with pytest.raises(SweepFailed):
        sweep([bad], **kw)
    calls = []
    monkeypatch.setattr(ex, "train", lambda *a, **k: calls.append(1) or (_ for _ in ()).throw(ValueError("again")))
    with pytest.raises(SweepFailed, match="again"):
        sweep([bad], retry_failed=True, **kw)
    assert calls == [1]


def test_sweep_list_labels_tell_configs_apart(capsys, tmp_path):
    grid = tmp_path / "g.yaml"
    grid.write_text(textwrap.dedent("""\
        experiment: lr_grid
        model: {in_channels: 1, widths: [4], blocks: [1]}
        grid: {train.lr: [0.1, 0.01], seed: [0]}
        """))
    code, out, err = call(capsys, "sweep", str(grid), "--list", "--results-dir", str(tmp_path / "r"))
    assert code == 0, err
    labels = [line.split("lr_grid", 1)[1].strip() for line in out.splitlines()]
    assert len(set(labels)) == 2 and "train.lr=0.1" in labels[0] and "train.lr=0.01" in labels[1]


# ------------------------------------------------------------------ report and load_results say what they drop

def test_report_lists_skipped_files_and_exits_non_zero(tmp_path, capsys):
    folder = tmp_path / "digitclutter_grid"
    shutil.copytree(COMMITTED / "digitclutter_grid", folder)
    damaged = sorted(folder.glob("*.json"))[:2]
    for p in damaged:
        p.write_text(p.read_text()[:100])
    argv = ["report", "--experiment", "digitclutter_grid", "--results-dir", str(tmp_path), "--out", str(tmp_path / "rep")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        code, out, err = call(capsys, *argv)
        assert code == 1 and "2 result file(s) skipped" in err and "--allow-missing" in err
        assert all(p.name in out for p in damaged)
        report = (tmp_path / "rep" / "report.md").read_text()
        assert "2 result file(s) skipped" in report and all(p.name in report for p in damaged)
        assert "18 runs" in report
        code, out, err = call(capsys, *argv, "--allow-missing")
    assert code == 0 and damaged[0].name in out


def test_load_results_of_a_missing_or_file_folder_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="experiment='nope'.*no results folder.*sweep"):
        load_results("nope", tmp_path)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(NotADirectoryError, match="experiment='afile'.*is a file"):
        load_results("afile", tmp_path)


# ------------------------------------------------------------------ checks before expensive work

def test_index_options_are_checked_at_construction():
    with pytest.raises(ValueError, match=r"index_options has unknown keys \['max_pair'\]; allowed: .*'max_pairs'"):
        small_config(index_options={"max_pair": 3})


def test_model_channels_are_checked_against_the_dataset():
    with pytest.raises(ValueError, match=r"model.in_channels=3.*dataset='digitclutter'.*allowed: in_channels=1"):
        ExperimentConfig(model=ResNetConfig(in_channels=3))
    assert ExperimentConfig().model.in_channels == 1              # the default model fits the dataset
    assert ExperimentConfig(dataset="cifar100").model.num_classes == 100


def test_checkpoint_dir_that_is_a_file_fails_before_data(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(ex, "load_dataset", lambda *a, **k: pytest.fail("data was loaded"))
    (tmp_path / "ck").write_text("a file")
    one_line_error(capsys, "run", "--checkpoint-dir", str(tmp_path / "ck"), "--results-dir", str(tmp_path / "r"),
                   says=("ck", "is a file, not a folder"))


def test_divergence_stops_training_at_the_first_epoch(tmp_path, data):
    cfg = TrainConfig(epochs=3, batch_size=8, lr=1e6, fast=False, augment=False)
    with pytest.raises(DivergedError, match=r"diverged.*epoch 1.*allowed: a finite loss.*lr=1e\+06"):
        train(tiny_model(branch_norm="none"), data, cfg, progress=False)


# ------------------------------------------------------------------ sizes checked before generating

@pytest.mark.parametrize("kw, says", [
    ({"n": 10 ** 9}, ("n=1000000000", "n * size^2 <=", "n <= 2097152 at size=32")),
    ({"n": 4, "size": 256}, ("size=256", "8..128")),
    ({"n": 4, "size": 100_000}, ("size=100000", "8..128")),
])
def test_digitclutter_sizes(kw, says):
    with pytest.raises(ValueError) as info:
        make_digitclutter(**kw)
    assert all(s in str(info.value) for s in says), str(info.value)


@pytest.mark.parametrize("argv, says", [
    (["digitclutter", "--n", "1000000000", "--out", "c.npz"], ("--n", "1000000000", "n <= 2097152")),
    (["digitclutter", "--size", "256", "--out", "c.npz"], ("--size", "256", "8..128")),
    (["digitclutter", "--size", "100000", "--out", "c.npz"], ("--size", "100000", "8..128")),
    (["run", "--train-size", "1000000000"], ("--train-size", "1000000000", "1..2000000")),
])
def test_size_flags_fail_in_one_line(argv, says, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one_line_error(capsys, *argv, says=says)
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------ silent misreadings

@pytest.mark.parametrize("name", ["fast", "augment", "couple_norm", "compile", "identical_init"])
def test_bool_fields_refuse_strings(name):
    with pytest.raises(TypeError, match=f"{name}='False' must be True or False"):
        TrainConfig(**{name: "False"})


def test_a_yaml_string_false_is_refused(tmp_path):
    grid = tmp_path / "g.yaml"
    grid.write_text('experiment: x\nmodel: {in_channels: 1}\ntrain: {fast: "false"}\ngrid: {seed: [0]}\n')
    with pytest.raises(TypeError, match="fast='false' must be True or False"):
        load_grid(grid)


def test_milestones_are_increasing_fractions():
    with pytest.raises(ValueError, match=r"milestones\[i\]=50.*\(0.0, 1.0\)"):
        TrainConfig(milestones=(50, 75))
    with pytest.raises(ValueError, match=r"milestones=\(0.75, 0.5\).*increasing order"):
        TrainConfig(milestones=(0.75, 0.5))
    assert TrainConfig(milestones=0.5).milestones == (0.5,)


def test_batch_loader_refuses_float_images():
    with pytest.raises(TypeError, match=r"images has dtype torch.float32; allowed: torch.uint8"):
        BatchLoader(torch.rand(4, 1, 8, 8), torch.zeros(4), (0.5,), (0.2,))


def test_index_size_above_test_size_is_an_error():
    with pytest.raises(ValueError, match="index_size=1000 is larger than test_size=16.*index_size <= 16"):
        ExperimentConfig(test_size=16, index_size=1000)


def test_misspelled_grid_key_is_named():
    with pytest.raises(ValueError, match=r"grid key 'train.lrr' is not a config field; allowed: .*'train.lr'"):
        expand_grid({"model": {"in_channels": 1}}, {"train.lrr": [0.1]})
    with pytest.raises(ValueError, match=r"unknown fields \['sede'\]; a misspelling"):
        ExperimentConfig.from_dict({"sede": 1})


def test_duplicate_yaml_keys_are_an_error(tmp_path):
    grid = tmp_path / "g.yaml"
    grid.write_text("experiment: x\ngrid: {seed: [0]}\ngrid: {seed: [1]}\n")
    with pytest.raises(ValueError, match=r"key 'grid' appears twice \(lines 2 and 3\)"):
        load_grid(grid)


# ------------------------------------------------------------------ one-line errors, not tracebacks

@pytest.mark.parametrize("dtype", [torch.float64, torch.uint8])
def test_model_refuses_other_dtypes(dtype):
    with pytest.raises(TypeError, match=f"x has dtype {dtype}.*allowed: torch.float32"):
        tiny_model(branch_norm="none")(torch.zeros(2, 1, 32, 32, dtype=dtype))


@NO_MPS_ONLY
def test_mps_without_mps():
    with pytest.raises(ValueError, match="device='mps': no Apple MPS device.*device='cpu'"):
        evaluate(tiny_model(branch_norm="none"), [], device="mps")


@NO_GPU_ONLY
def test_load_dataset_on_cuda_without_a_gpu(tmp_path):
    with pytest.raises(ValueError, match="device='cuda': no CUDA GPU"):
        load_dataset("digitclutter", root=str(tmp_path), train_size=8, test_size=8, device="cuda")


@NO_MPS_ONLY
def test_run_device_mps_in_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one_line_error(capsys, "run", "--device", "mps", "--train-size", "64", "--test-size", "32",
                   says=("device='mps'", "no Apple MPS device"))


def test_grid_yaml_with_a_tab(tmp_path):
    grid = tmp_path / "g.yaml"
    grid.write_text("experiment: x\ngrid:\n\tseed: [0]\n")
    with pytest.raises(ValueError, match=r"g.yaml' is not valid YAML at line 3.*no TABs"):
        load_grid(grid)


def test_train_on_a_tuple(data):
    with pytest.raises(TypeError, match=r"data=tuple must be an ImageData"):
        train(tiny_model(branch_norm="none"), (data.train_images, data.train_labels), progress=False)


def test_indices_with_bad_loaders(data):
    x, y = next(iter(data.loader("test", batch_size=8)))
    with pytest.raises(TypeError, match=r"loader must yield \(x, y\) batches.*a Tensor of shape \(8, 1, 32, 32\)"):
        iterative_convergence_indices(tiny_model(branch_norm="none"), [x])
    with pytest.raises(ValueError, match="x has 3 channels.*in_channels=1"):
        iterative_convergence_indices(tiny_model(branch_norm="none"), [(x.repeat(1, 3, 1, 1), y)])
    with pytest.raises(TypeError, match="x has dtype torch.float64"):
        iterative_convergence_indices(tiny_model(branch_norm="none"), [(x.double(), y)])


def test_gradient_alignment_labels():
    x = torch.zeros(2, 1, 32, 32)
    with pytest.raises(ValueError, match=r"y \(dtype torch.int64, shape \(2, 10\).*class indices \(B,\) in 0..9"):
        gradient_alignment(tiny_model(branch_norm="none"), x, torch.zeros(2, 10, dtype=torch.long))
    with pytest.raises(ValueError, match=r"values 0..12\) is not allowed.*0..9"):
        gradient_alignment(tiny_model(branch_norm="none"), x, torch.tensor([0, 12]))
    assert len(gradient_alignment(tiny_model(branch_norm="none"), x, torch.tensor([0, 1]))) > 0   # labels follow the model's device


def test_numpy_integers_are_accepted():
    cfg = ExperimentConfig(seed=np.int64(1), train_size=np.int64(100), test_size=64, index_size=np.int32(32))
    assert type(cfg.seed) is int and cfg.id == ExperimentConfig(seed=1, train_size=100, test_size=64,
                                                                  index_size=32).id


def test_numpy_bools_become_bools():
    cfg = TrainConfig(identical_init=np.float64(0.5) > 0)
    assert cfg.identical_init is True


def test_digitclutter_out_folder_and_preview_suffix(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder").mkdir()
    one_line_error(capsys, "digitclutter", "--n", "4", "--out", "folder", says=("--out", "'folder' is a folder", ".npz"))
    one_line_error(capsys, "digitclutter", "--n", "4", "--out", "c.npz", "--preview", "p.jpg",
                   says=("--preview", "'p.jpg'", ".png"))
    assert not (tmp_path / "c.npz").exists()


# ------------------------------------------------------------------ file modes follow the umask

@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path, mask, mode):
    old = os.umask(mask)
    try:
        p = atomic_write_bytes(tmp_path / "f.bin", b"x")
    finally:
        os.umask(old)
    assert p.stat().st_mode & 0o777 == mode


# ------------------------------------------------------------------ checkpoints cannot run code

def test_a_crafted_checkpoint_is_refused_by_train_and_runs_nothing(tmp_path):
    ckpt = atomic_torch_save(tmp_path / "ckpt.pt", {"model": Evil(str(tmp_path / "code-ran"))})
    model = build_resnet(tiny_config().model, seed=0)
    data = ex.load_dataset("digitclutter", str(tmp_path / "data"), train_size=32, test_size=16)
    with pytest.raises(UnsafeFileError, match="could run code"):
        training.train(model, data, tiny_config().train, checkpoint=ckpt, progress=False, log=lambda *a: None)
    assert not (tmp_path / "code-ran").exists()
    assert ckpt.exists()                  # refused, not silently overwritten


def test_a_real_checkpoint_loads_with_weights_only(tmp_path):
    from itercourse.io import torch_load_verified
    data = ex.load_dataset("digitclutter", str(tmp_path / "data"), train_size=32, test_size=16)
    training.train(build_resnet(tiny_config().model, seed=0), data, tiny_config().train, checkpoint=tmp_path / "c.pt",
                   progress=False, log=lambda *a: None)
    state = torch_load_verified(tmp_path / "c.pt")
    assert state["epoch"] == 0 and "data" in state["owner"]


# ------------------------------------------------------------------ divergence is refused

def test_an_absurd_or_non_finite_test_loss_is_divergence():
    check_not_diverged("test", 2.3, 10)                                   # a normal loss passes
    with pytest.raises(DivergedError, match=r"test loss is 5.9e\+24 in epoch 2.*lr=100"):
        check_not_diverged("test", 5.9e24, 10, epoch=2, lr=100.0)
    with pytest.raises(DivergedError, match="test loss is nan"):
        check_not_diverged("test", float("nan"), 10)
    with pytest.raises(DivergedError, match="3 example.* NaN or inf logits"):
        check_not_diverged("test", 2.3, 10, nonfinite=3)


def test_train_stops_when_the_test_loss_diverges(tmp_path, monkeypatch):
    real = training.evaluate
    monkeypatch.setattr(training, "evaluate", lambda *a, **k: {**real(*a, **k), "loss": 4.8e27})
    data = ex.load_dataset("digitclutter", str(tmp_path / "data"), train_size=32, test_size=16)
    with pytest.raises(DivergedError, match="test loss is 4.8e\\+27 in epoch 1"):
        training.train(build_resnet(tiny_config().model, seed=0), data, tiny_config().train, progress=False)


def test_evaluate_counts_non_finite_logits():
    model = build_resnet(tiny_config().model, seed=0)
    with torch.no_grad():
        model.fc.bias.fill_(float("nan"))
    out = training.evaluate(model, [(torch.zeros(2, 1, 32, 32), torch.zeros(2, 10))])
    assert out["nonfinite"] == 2 and out["classes"] == 10


def test_a_diverged_config_is_recorded_skipped_by_the_sweep_and_one_line_in_the_cli(tmp_path, monkeypatch, capsys):
    real = training.evaluate
    monkeypatch.setattr(training, "evaluate", lambda *a, **k: {**real(*a, **k), "loss": float("inf")})
    cfg = tiny_config()
    with pytest.raises(SweepFailed, match="DivergedError"):
        sweep([cfg], results_dir=tmp_path / "r", checkpoint_dir=tmp_path / "ck", data_root=tmp_path / "d",
              progress=False, log=lambda *a: None)
    assert sweeps.failure_path(cfg, tmp_path / "r").exists() and not result_path(cfg, tmp_path / "r").exists()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        cli.main(["run", "--train-size", "32", "--test-size", "16", "--epochs", "1", "--batch-size", "16",
                  "--widths", "4", "4", "--blocks", "1", "1", "--no-fast", "--device", "cpu"])
    err = capsys.readouterr().err
    assert info.value.code != 0 and "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]        # (the rest is the progress bar)
    assert len(errors) == 1 and "training diverged" in errors[0] and "test loss is inf" in errors[0]


# ------------------------------------------------------------------ report cells are replicates

def test_report_cells_never_mix_configs_that_differ_beyond_the_seed():
    a, b = tiny_config(train={"lr": 0.05}), tiny_config(train={"lr": 0.01})
    results = [fake_result(a, 0.5), fake_result(b, 0.7), fake_result(dataclasses.replace(a, seed=1), 0.6)]
    table = cells(results)
    assert len(table) == 2 and sorted(c["n"] for c in table.values()) == [1, 2]
    assert "other fields" in grid_table(results) and "train.lr=0.05" in grid_table(results)


def test_results_are_checked_against_their_folder_and_file_name(tmp_path):
    good = fake_result(tiny_config(experiment="mine"))
    write(good, tmp_path)
    write(fake_result(tiny_config(experiment="other", seed=1)), tmp_path, folder="mine")         # copied in
    write(fake_result(tiny_config(experiment="mine", seed=2)), tmp_path, name="0123456789ab.json")   # renamed
    skipped = []
    with pytest.warns(RuntimeWarning):
        loaded = load_results("mine", tmp_path, skipped=skipped)
    assert [r.id for r in loaded] == [good.id]
    reasons = " ".join(why for _, why in skipped)
    assert "belongs to experiment 'other'" in reasons and "file is named '0123456789ab.json'" in reasons


# ------------------------------------------------------------------ checkpoints are owned by their data

def test_resuming_on_other_data_is_refused(tmp_path):
    model_cfg, cfg = tiny_config().model, tiny_config().train
    first = ex.load_dataset("digitclutter", str(tmp_path / "data"), train_size=32, test_size=16, seed=0)
    other = ex.load_dataset("digitclutter", str(tmp_path / "data"), train_size=32, test_size=16, seed=1)
    training.train(build_resnet(model_cfg, seed=0), first, cfg, checkpoint=tmp_path / "c.pt", progress=False,
                   log=lambda *a: None)
    with pytest.raises(ValueError, match="data differ"):
        training.train(build_resnet(model_cfg, seed=0), other, cfg, checkpoint=tmp_path / "c.pt", progress=False)
    assert training.data_fingerprint(first) == training.data_fingerprint(first.to("cpu"))


# ------------------------------------------------------------------ Lipschitz cap for the images given

def test_lipschitz_report_is_for_the_images_given():
    from itercourse.lipschitz import branch_lipschitz_report
    from torch.nn.utils import parametrize
    model = build_resnet(ResNetConfig(in_channels=1, widths=(4, 4), blocks=(1, 1), branch_norm="none",
                                      spectral_coeff=0.9, input_size=4), seed=0)
    with parametrize.cached():                               # as run() computes it
        rows = branch_lipschitz_report(model, torch.zeros(2, 1, 16, 16), n_iter=5)
    assert [r["input_shape"] for r in rows] == [[4, 16, 16], [4, 8, 8]]


# ------------------------------------------------------------------ grid sizes and an O(n) --list

def test_grid_labels_equal_the_per_config_labels():
    configs = expand_grid({"experiment": "g", "train_size": 32, "test_size": 16, "index_size": 16,
                           "model": {"in_channels": 1}},
                          {"seed": [0, 1], "coupling": [0.0, 1.0], "train.lr": [0.1, 0.05]})
    assert grid_labels(configs) == [c.label(configs) for c in configs]


def test_a_grid_is_size_checked_before_any_config_is_built(monkeypatch):
    monkeypatch.setattr(ExperimentConfig, "from_dict", lambda d: pytest.fail("built a config"))
    with pytest.raises(ValueError, match="1000000 configs"):
        expand_grid({}, {"seed": list(range(1000)), "train.lr": list(range(1, 1001))})


# ------------------------------------------------------------------ work is not redone or misreported

def test_a_result_with_an_unknown_neutral_field_loads(tmp_path):
    cfg = tiny_config()
    d = fake_result(cfg).to_json()
    d["config"]["model"]["future_field"] = "default"            # a newer version's field at its neutral value
    d["config"]["another_future_field"] = None
    atomic_write_json(result_path(cfg, tmp_path), d)
    assert load_result(cfg, tmp_path) is not None
    assert not list(tmp_path.rglob("*.corrupt"))
    assert len(load_results(cfg.experiment, tmp_path, skipped=[])) == 1


def test_report_ignores_failure_records(tmp_path, capsys):
    cfg = tiny_config()
    write(fake_result(cfg), tmp_path)
    atomic_write_json(sweeps.failure_path(tiny_config(seed=1), tmp_path), {"id": "x", "label": "x", "error": "E: e"})
    skipped = []
    assert len(load_results(cfg.experiment, tmp_path, skipped=skipped)) == 1 and skipped == []
    assert cli.main(["report", "--experiment", cfg.experiment, "--results-dir", str(tmp_path),
                     "--out", str(tmp_path / "rep")]) == 0
    assert "skipped" not in capsys.readouterr().err


def test_an_out_of_date_failure_record_does_not_fail_the_sweep(tmp_path):
    cfg = tiny_config()
    write(fake_result(cfg), tmp_path)
    atomic_write_json(sweeps.failure_path(cfg, tmp_path), {"id": cfg.id, "label": "x", "error": "E: old"})
    assert sweeps.failures([cfg], tmp_path) == []
    assert [r.id for r in sweep([cfg], results_dir=tmp_path, progress=False)] == [cfg.id]


# ------------------------------------------------------------------ Ctrl-C and full disks

def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt
    monkeypatch.setitem(cli.COMMANDS, "sweep", interrupted)
    assert cli.main(["sweep", "--preset", "smoke"]) == 130
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "interrupted" in err and "Traceback" not in err


def test_a_full_disk_names_the_file_and_leaves_nothing(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match=r"No space left on device while writing '.*result\.json'") as info:
        atomic_write_bytes(tmp_path / "result.json", b"{}")
    assert info.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ version floors

def test_version_floors():
    root = Path(__file__).resolve().parents[1]
    req, pyproject = (root / "requirements.txt").read_text(), (root / "pyproject.toml").read_text()
    assert "torch>=2.3" in req and "torchvision>=0.18" in req
    assert '"torch>=2.3"' in pyproject and '"torchvision>=0.18"' in pyproject
    assert 'license = "MIT"' in pyproject and '"setuptools>=77"' in pyproject
    assert hasattr(torch.amp, "GradScaler")              # what training.py needs (missing in torch 2.2)
