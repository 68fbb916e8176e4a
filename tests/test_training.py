"""The training loop (itercourse.training): what it minimises, its schedules, resuming an interrupted run
without losing anything, its checks, and its pace on the device (no host reads per step, safe defaults,
the fast and compiled paths train like the plain one).

(``--lr-scaling`` of the command line is tested in ``tests/test_cli.py``.)
"""

import subprocess
import sys
import textwrap

import pytest
import torch

import itercourse.training as train_module  # (itercourse.train is the function)
from itercourse.data import load_dataset
from itercourse.io import CorruptFileError, torch_load_verified
from itercourse.models import ResNetConfig, build_resnet
from itercourse.objectives import count_correct, task_loss
from itercourse.training import (REFERENCE_BATCH, TrainConfig, channels_last_ok, evaluate, learning_rate, linear_lr,
                                 train)

torch.set_num_threads(1)
HOST_READS = ("item", "tolist", "numpy", "__float__", "__int__", "__bool__", "__index__")
TINY_MODEL = ResNetConfig(in_channels=1, widths=(4, 8), blocks=(2, 1), shortcut="dropout")  # stochastic on purpose
TINY_TRAIN = dict(epochs=3, batch_size=32, lr=0.05, fast=False, augment=True, seed=3)


@pytest.fixture(scope="module")
def data():
    return load_dataset("digitclutter", train_size=256, test_size=64, seed=0)


@pytest.fixture(scope="module")
def small_data():
    """96 training images: the loop, resume and checkpoint tests (three batches of 32 an epoch)."""
    return load_dataset("digitclutter", train_size=96, test_size=32, seed=0)


# ---------------------------------------------------------------- what the loop minimises and counts

def test_multilabel_accuracy_needs_all_digits_in_the_top_k():
    y = torch.tensor([[1.0, 1, 0, 0], [0, 1, 1, 0]])
    logits = torch.tensor([[5.0, 4, 3, 0], [5.0, 4, 3, 0]])  # top-2 = {0, 1}
    assert count_correct(logits, y) == 1
    assert task_loss(logits, y).shape == ()


def test_single_label_loss_matches_cross_entropy():
    logits, y = torch.randn(5, 3), torch.tensor([0, 2, 1, 1, 0])
    torch.testing.assert_close(task_loss(logits, y), torch.nn.functional.cross_entropy(logits, y))
    assert count_correct(logits, y) == int((logits.argmax(1) == y).sum())


# ---------------------------------------------------------------- learning-rate schedules

def test_schedules():
    cfg = TrainConfig(lr=0.1, schedule="step", milestones=(0.5, 0.75))
    assert [learning_rate(cfg, s, 100) for s in (0, 50, 75)] == pytest.approx([0.1, 0.01, 0.001])
    cfg = TrainConfig(lr=0.1, schedule="cosine", warmup_steps=10)
    assert learning_rate(cfg, 0, 100) == pytest.approx(0.01)
    assert learning_rate(cfg, 100, 100) == pytest.approx(0.0, abs=1e-12)


def test_linear_lr_scaling_keeps_the_recipe_of_batch_128():
    assert linear_lr(0.1, REFERENCE_BATCH) == 0.1
    assert linear_lr(0.1, 512) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="batch_size"):
        linear_lr(0.1, 0)


# ---------------------------------------------------------------- the loop learns, resumes, refuses a bad checkpoint

def test_training_improves_the_loss(small_data):
    model = build_resnet(TINY_MODEL, seed=0)
    before = evaluate(model, small_data.loader("train", batch_size=96))["loss"]
    train(model, small_data, TrainConfig(**{**TINY_TRAIN, "epochs": 4}), progress=False)
    assert evaluate(model, small_data.loader("train", batch_size=96))["loss"] < before


def test_interrupted_training_resumes_to_the_same_weights(small_data, tmp_path, monkeypatch):
    reference = build_resnet(TINY_MODEL, seed=0)
    ref_hist = train(reference, small_data, TrainConfig(**TINY_TRAIN), progress=False)

    # Interrupt during epoch 2's evaluation: epoch 1 is checkpointed, epoch 2's work is lost.
    ckpt = tmp_path / "run.pt"
    calls = {"n": 0}
    real_evaluate = train_module.evaluate

    def flaky_evaluate(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated Ctrl-C / lost Colab session")
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(train_module, "evaluate", flaky_evaluate)
    with pytest.raises(KeyboardInterrupt):
        train(build_resnet(TINY_MODEL, seed=0), small_data, TrainConfig(**TINY_TRAIN), checkpoint=ckpt, progress=False)
    assert torch_load_verified(ckpt)["epoch"] == 0
    monkeypatch.setattr(train_module, "evaluate", real_evaluate)

    resumed = build_resnet(TINY_MODEL, seed=0)
    messages = []
    hist = train(resumed, small_data, TrainConfig(**TINY_TRAIN), checkpoint=ckpt, progress=False, log=messages.append)
    assert any("resumed" in m for m in messages)
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert hist.test_acc == ref_hist.test_acc and hist.train_loss == ref_hist.train_loss


def test_corrupt_checkpoint_is_detected_not_used(small_data, tmp_path):
    ckpt = tmp_path / "run.pt"
    train(build_resnet(TINY_MODEL, seed=0), small_data, TrainConfig(**{**TINY_TRAIN, "epochs": 1}),
          checkpoint=ckpt, progress=False)
    ckpt.write_bytes(ckpt.read_bytes()[:-100])            # truncated, as by a full disk
    with pytest.raises(CorruptFileError, match="checksum"):
        torch_load_verified(ckpt)
    messages = []
    train(build_resnet(TINY_MODEL, seed=0), small_data, TrainConfig(**{**TINY_TRAIN, "epochs": 1}),
          checkpoint=ckpt, progress=False, log=messages.append)
    assert any("ignoring unusable checkpoint" in m for m in messages)


# ---------------------------------------------------------------- bad configs and inputs

@pytest.mark.parametrize("kwargs,exc,words", [
    (dict(epochs=0), ValueError, ["epochs", "0", ">= 1"]),
    (dict(batch_size=12.5), TypeError, ["batch_size", "12.5", "integer"]),
    (dict(lr=-0.1), ValueError, ["lr", "-0.1"]),
    (dict(coupling=1.5), ValueError, ["coupling", "1.5", "[0.0, 1.0]"]),
    (dict(coupling=-0.1), ValueError, ["coupling", "-0.1"]),
    (dict(schedule="linear"), ValueError, ["schedule", "'linear'", "cosine"]),
    (dict(momentum=1.0), ValueError, ["momentum", "1.0", "[0.0, 1.0)"]),
])
def test_bad_train_configs(kwargs, exc, words):
    with pytest.raises(exc) as info:
        TrainConfig(**kwargs)
    for w in words:
        assert w in str(info.value)


def test_batch_larger_than_dataset_and_empty_loader(small_data):
    model = build_resnet(TINY_MODEL, seed=0)
    with pytest.raises(ValueError, match="batch_size=1000"):
        train(model, small_data, TrainConfig(batch_size=1000, epochs=1, fast=False), progress=False)
    with pytest.raises(ValueError, match="no examples"):
        evaluate(model, [])


# ---------------------------------------------------------------- at the device's pace

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
# ---------------------------------------------------------------- names

def test_the_module_and_the_function_have_their_own_names():
    import types

    import itercourse
    import itercourse.training as module
    assert isinstance(module, types.ModuleType)
    assert itercourse.train is module.train and callable(itercourse.train)


def _trained_weights(data, threads: int) -> torch.Tensor:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = build_resnet(TINY_MODEL, seed=0)
        train(model, data, TrainConfig(**TINY_TRAIN), progress=False)
        return torch.cat([p.detach().flatten() for p in model.parameters()])
    finally:
        torch.set_num_threads(before)


def test_a_run_repeats_bit_for_bit_at_the_same_number_of_threads(small_data):
    """Same seed, same code, same thread count: the same weights. (Across thread counts the float
    reductions are split differently and the weights differ in the last bits, then more as training
    amplifies them: why two sittings of a chapter at different thread counts print different numbers.)"""
    assert torch.equal(_trained_weights(small_data, 1), _trained_weights(small_data, 1))
