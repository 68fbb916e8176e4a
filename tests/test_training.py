"""The training loop at the device's pace: no host reads per step, safe defaults, same results.

(``--lr-scaling`` of the command line is tested in ``tests/test_cli.py``.)
"""

import subprocess
import sys
import textwrap

import pytest
import torch

from itercourse.data import load_dataset
from itercourse.models import ResNetConfig, build_resnet
import itercourse.training as train_module
from itercourse.training import (REFERENCE_BATCH, TrainConfig, channels_last_ok, linear_lr, train)

torch.set_num_threads(1)
HOST_READS = ("item", "tolist", "numpy", "__float__", "__int__", "__bool__", "__index__")


@pytest.fixture(scope="module")
def data():
    return load_dataset("digitclutter", train_size=256, test_size=64, seed=0)


def test_default_training_of_a_tiny_model_does_not_crash():
    """torch 2.14's oneDNN corrupted the heap on a channels_last strided conv with < 8 input channels."""
    script = textwrap.dedent("""
        import torch
        from itercourse.data import load_dataset
        from itercourse.models import ResNetConfig, build_resnet
        from itercourse.training import TrainConfig, train
        torch.set_num_threads(1)
        data = load_dataset("digitclutter", train_size=256, test_size=64, seed=0)
        model = build_resnet(ResNetConfig(in_channels=1, widths=(4, 8, 8), blocks=(2, 2, 2)), seed=0)
        train(model, data, TrainConfig(epochs=1, batch_size=64, augment=False), progress=False)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_channels_last_is_avoided_only_where_onednn_breaks():
    tiny = build_resnet(ResNetConfig(in_channels=1, widths=(4, 8, 8), blocks=(1, 1, 1)), seed=0)
    ch7 = build_resnet(ResNetConfig(in_channels=1, widths=(8, 16, 32), blocks=(1, 1, 1)), seed=0)
    assert not channels_last_ok(tiny, torch.device("cpu"))
    assert channels_last_ok(ch7, torch.device("cpu"))
    assert channels_last_ok(tiny, torch.device("cuda"))


class HostReads:
    """Counts calls that read a tensor's value back to Python (``.item()``, ``float(t)``, ``if t:`` ...),
    except inside ``evaluate`` (once per epoch; the constraint's eval-mode power iteration checks its
    convergence there)."""

    def __init__(self, monkeypatch):
        self.n, self.paused = 0, False
        for name in HOST_READS:
            original = getattr(torch.Tensor, name)

            def counted(t, *args, _original=original, **kwargs):
                self.n += not self.paused
                return _original(t, *args, **kwargs)
            monkeypatch.setattr(torch.Tensor, name, counted)
        evaluate = train_module.evaluate

        def uncounted(*args, **kwargs):
            self.paused = True
            try:
                return evaluate(*args, **kwargs)
            finally:
                self.paused = False
        monkeypatch.setattr(train_module, "evaluate", uncounted)


def test_an_epoch_of_many_steps_reads_the_device_only_a_few_times(data, monkeypatch):
    model = build_resnet(ResNetConfig(in_channels=1, widths=(8, 8), blocks=(1, 1), branch_norm="none",
                                      spectral_coeff=0.9), seed=0)
    cfg = TrainConfig(epochs=2, batch_size=8, coupling=0.5, augment=True)      # 32 steps an epoch
    counter = HostReads(monkeypatch)
    train(model, data, cfg, progress=False)
    monkeypatch.undo()
    assert counter.n <= 2 * 4, f"{counter.n} host reads in two epochs of 32 steps"


def test_evaluate_reads_the_device_once_per_sum(data, monkeypatch):
    model = build_resnet(ResNetConfig(in_channels=1, widths=(8, 8), blocks=(1, 1)), seed=0)
    counter = HostReads(monkeypatch)
    train_module.evaluate(model, data.loader("test", batch_size=8))           # 8 batches
    assert counter.n <= 2


def test_linear_lr_scaling_keeps_the_recipe_of_batch_128():
    assert linear_lr(0.1, REFERENCE_BATCH) == 0.1
    assert linear_lr(0.1, 512) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="batch_size"):
        linear_lr(0.1, 0)


def test_fast_path_trains_like_the_plain_path(data):
    """fp32 NCHW vs the default fast path: the same loss curve up to float rounding."""
    cfg = ResNetConfig(in_channels=1, widths=(8, 16), blocks=(1, 1))
    runs = [train(build_resnet(cfg, seed=0), data, TrainConfig(epochs=2, batch_size=32, fast=fast),
                  progress=False) for fast in (False, True)]
    assert runs[0].train_loss == pytest.approx(runs[1].train_loss, rel=1e-2)
    assert abs(runs[0].test_acc[-1] - runs[1].test_acc[-1]) <= 0.1


def test_compiled_step_runs_on_the_cpu_and_trains_like_the_eager_step(data, monkeypatch):
    """``graphs=True``: the step of train() under torch.compile (on a GPU: CUDA graphs, untested there)."""
    cfg = ResNetConfig(in_channels=1, widths=(8, 8), blocks=(1, 1), branch_norm="none", spectral_coeff=0.9)
    tcfg = TrainConfig(epochs=1, batch_size=32, coupling=0.5, augment=False)
    compile_step = train_module.compile_step        # inductor's code generation takes minutes on 1 CPU
    monkeypatch.setattr(train_module, "compile_step",
                        lambda step, device: compile_step(step, device, backend="aot_eager"))
    try:
        compiled = train(build_resnet(cfg, seed=0), data, tcfg, progress=False, graphs=True)
    finally:
        torch._dynamo.reset()
    eager = train(build_resnet(cfg, seed=0), data, tcfg, progress=False)
    assert compiled.train_loss == pytest.approx(eager.train_loss, rel=1e-3)
    assert compiled.lr == pytest.approx(eager.lr)           # the schedule reaches the lr tensor
