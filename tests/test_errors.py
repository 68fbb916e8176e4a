"""Errors that teach: every bad input gets a message a student can act on.

A table of bad inputs across the public API and the command line. Each row
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
import importlib
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
NAN = float("nan")
NO_MPS_ONLY = pytest.mark.skipif(getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
                                 reason="checks the message for a machine without MPS")
NO_GPU_ONLY = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for a machine without a GPU")
FOREIGN = tuple(os.sep + p + os.sep for p in ("torch", "numpy", "torchvision"))   # "deep inside" libraries


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
