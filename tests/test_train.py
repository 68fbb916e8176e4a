"""The training loop: objectives, schedules, and resuming an interrupted run without losing anything."""

import pytest
import torch

from itercourse.data import load_dataset
from itercourse.io import CorruptFileError, torch_load_verified
from itercourse.models import ResNetConfig, build_resnet
from itercourse.objectives import count_correct, task_loss
from itercourse.training import TrainConfig, evaluate, learning_rate, train

import itercourse.training as train_module  # noqa: E402  (itercourse.train is the function)
torch.set_num_threads(1)
TINY_MODEL = ResNetConfig(in_channels=1, widths=(4, 8), blocks=(2, 1), shortcut="dropout")  # stochastic on purpose
TINY_TRAIN = dict(epochs=3, batch_size=32, lr=0.05, fast=False, augment=True, seed=3)


@pytest.fixture(scope="module")
def data():
    return load_dataset("digitclutter", train_size=96, test_size=32, seed=0)


def test_multilabel_accuracy_needs_all_digits_in_the_top_k():
    y = torch.tensor([[1.0, 1, 0, 0], [0, 1, 1, 0]])
    logits = torch.tensor([[5.0, 4, 3, 0], [5.0, 4, 3, 0]])  # top-2 = {0, 1}
    assert count_correct(logits, y) == 1
    assert task_loss(logits, y).shape == ()


def test_single_label_loss_matches_cross_entropy():
    logits, y = torch.randn(5, 3), torch.tensor([0, 2, 1, 1, 0])
    torch.testing.assert_close(task_loss(logits, y), torch.nn.functional.cross_entropy(logits, y))
    assert count_correct(logits, y) == int((logits.argmax(1) == y).sum())


def test_schedules():
    cfg = TrainConfig(lr=0.1, schedule="step", milestones=(0.5, 0.75))
    assert [learning_rate(cfg, s, 100) for s in (0, 50, 75)] == pytest.approx([0.1, 0.01, 0.001])
    cfg = TrainConfig(lr=0.1, schedule="cosine", warmup_steps=10)
    assert learning_rate(cfg, 0, 100) == pytest.approx(0.01)
    assert learning_rate(cfg, 100, 100) == pytest.approx(0.0, abs=1e-12)


def test_training_improves_the_loss(data):
    model = build_resnet(TINY_MODEL, seed=0)
    before = evaluate(model, data.loader("train", batch_size=96))["loss"]
    train(model, data, TrainConfig(**{**TINY_TRAIN, "epochs": 4}), progress=False)
    assert evaluate(model, data.loader("train", batch_size=96))["loss"] < before


def test_interrupted_training_resumes_to_the_same_weights(data, tmp_path, monkeypatch):
    reference = build_resnet(TINY_MODEL, seed=0)
    ref_hist = train(reference, data, TrainConfig(**TINY_TRAIN), progress=False)

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
        train(build_resnet(TINY_MODEL, seed=0), data, TrainConfig(**TINY_TRAIN), checkpoint=ckpt, progress=False)
    assert torch_load_verified(ckpt)["epoch"] == 0
    monkeypatch.setattr(train_module, "evaluate", real_evaluate)

    resumed = build_resnet(TINY_MODEL, seed=0)
    messages = []
    hist = train(resumed, data, TrainConfig(**TINY_TRAIN), checkpoint=ckpt, progress=False, log=messages.append)
    assert any("resumed" in m for m in messages)
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert hist.test_acc == ref_hist.test_acc and hist.train_loss == ref_hist.train_loss


def test_corrupt_checkpoint_is_detected_not_used(data, tmp_path):
    ckpt = tmp_path / "run.pt"
    train(build_resnet(TINY_MODEL, seed=0), data, TrainConfig(**{**TINY_TRAIN, "epochs": 1}),
          checkpoint=ckpt, progress=False)
    ckpt.write_bytes(ckpt.read_bytes()[:-100])            # truncated, as by a full disk
    with pytest.raises(CorruptFileError, match="checksum"):
        torch_load_verified(ckpt)
    messages = []
    train(build_resnet(TINY_MODEL, seed=0), data, TrainConfig(**{**TINY_TRAIN, "epochs": 1}),
          checkpoint=ckpt, progress=False, log=messages.append)
    assert any("ignoring unusable checkpoint" in m for m in messages)


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


def test_batch_larger_than_dataset_and_empty_loader(data):
    model = build_resnet(TINY_MODEL, seed=0)
    with pytest.raises(ValueError, match="batch_size=1000"):
        train(model, data, TrainConfig(batch_size=1000, epochs=1, fast=False), progress=False)
    with pytest.raises(ValueError, match="no examples"):
        evaluate(model, [])


def test_the_module_and_the_function_have_their_own_names():
    import types

    import itercourse
    import itercourse.training as module
    assert isinstance(module, types.ModuleType)
    assert itercourse.train is module.train and callable(itercourse.train)
