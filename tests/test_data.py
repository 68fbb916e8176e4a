"""Dataset loading through torchvision's own classes from tiny files in the genuine on-disk formats,
clear errors when files are missing, and the on-device batch loader.

Tiny files: MNIST as uncompressed idx-ubyte files in root/MNIST/raw/ (torchvision only checks that
they exist); CIFAR as the python pickles of cifar-10-batches-py/ and cifar-100-python/. torchvision's
CIFAR classes verify each file's MD5 against the real release, which a tiny file can never match, so
the tests set the classes' expected MD5s to those of the tiny files: the real check_integrity still
runs and the loading code path is the one users get.
"""
import hashlib
import pickle
import struct
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
import torchvision

from itercourse.data import DATASETS, BatchLoader, ImageData, channel_stats, load_dataset


def write_idx(path, array):
    """Write a uint8 array in the idx format (magic 0x08 type, ndim; big-endian sizes)."""
    header = struct.pack(">I", 0x0800 | array.ndim) + b"".join(struct.pack(">I", s) for s in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def make_mnist(root, n_train=20, n_test=10, seed=0):
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    arrays = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx(raw / f"{split}-images-idx3-ubyte", images)
        write_idx(raw / f"{split}-labels-idx1-ubyte", labels)
        arrays[split] = (images, labels)
    return arrays


def _pickle(path, obj):
    path.write_bytes(pickle.dumps(obj, protocol=2))
    return hashlib.md5(path.read_bytes()).hexdigest()


def make_cifar(root, monkeypatch, hundred=False, per_file=6, seed=0):
    """Tiny CIFAR-10 (5 train batches + test) or CIFAR-100 (train + test) pickles; MD5s registered."""
    rng = np.random.default_rng(seed)
    cls = torchvision.datasets.CIFAR100 if hundred else torchvision.datasets.CIFAR10
    folder = root / cls.base_folder
    folder.mkdir(parents=True)
    label_key, classes = ("fine_labels", 100) if hundred else ("labels", 10)
    train_names = ["train"] if hundred else [f"data_batch_{i}" for i in range(1, 6)]
    arrays = {"train": [], "test": []}
    lists = {"train": [], "test": []}
    for split, names in (("train", train_names), ("test", ["test"] if hundred else ["test_batch"])):
        for name in names:
            data = rng.integers(0, 256, (per_file, 3072), dtype=np.uint8)
            labels = rng.integers(0, classes, per_file).tolist()
            entry = {"data": data, label_key: labels, "batch_label": name, "filenames": [f"{i}.png" for i in range(per_file)]}
            if hundred:
                entry["coarse_labels"] = [0] * per_file
            lists[split].append([name, _pickle(folder / name, entry)])
            arrays[split].append((data, labels))
    meta_key = "fine_label_names" if hundred else "label_names"
    meta_md5 = _pickle(folder / cls.meta["filename"], {meta_key: [f"class{i}" for i in range(classes)]})
    monkeypatch.setattr(cls, "train_list", lists["train"])
    monkeypatch.setattr(cls, "test_list", lists["test"])
    monkeypatch.setattr(cls, "meta", dict(cls.meta, md5=meta_md5))
    return arrays


def test_mnist_from_idx_files(tmp_path):
    arrays = make_mnist(tmp_path)
    data = load_dataset("mnist", root=str(tmp_path), download=False)
    assert isinstance(data, ImageData) and not data.multilabel
    assert data.train_images.shape == (20, 1, 32, 32) and data.train_images.dtype == torch.uint8
    assert data.test_images.shape == (10, 1, 32, 32)
    assert data.train_labels.dtype == torch.int64 and data.num_classes == 10 and data.in_channels == 1
    images, labels = arrays["train"]
    assert torch.equal(data.train_images[:, 0, 2:30, 2:30], torch.from_numpy(images))   # padded 28 -> 32
    assert (data.train_images[:, :, :2] == 0).all() and (data.train_images[:, :, :, 30:] == 0).all()
    assert torch.equal(data.train_labels, torch.from_numpy(labels).long())
    assert len(data.mean) == 1 and 0 < data.mean[0] < 1


@pytest.mark.parametrize("hundred", [False, True])
def test_cifar_from_pickles(tmp_path, monkeypatch, hundred):
    arrays = make_cifar(tmp_path, monkeypatch, hundred=hundred)
    name = "cifar100" if hundred else "cifar10"
    data = load_dataset(name, root=str(tmp_path), download=False)
    n_train = 6 if hundred else 30
    assert data.train_images.shape == (n_train, 3, 32, 32) and data.test_images.shape == (6, 3, 32, 32)
    assert data.num_classes == (100 if hundred else 10) and data.in_channels == 3
    first, labels = arrays["train"][0]
    # CIFAR rows are 1024 red, 1024 green, 1024 blue values: exactly (3, 32, 32)
    assert torch.equal(data.train_images[:6], torch.from_numpy(first.reshape(6, 3, 32, 32)))
    assert data.train_labels[:6].tolist() == labels
    all_train = np.concatenate([d for d, _ in arrays["train"]]).reshape(-1, 3, 32, 32) / 255
    assert np.allclose(data.mean, all_train.mean((0, 2, 3)), atol=1e-6)
    assert np.allclose(data.std, all_train.std((0, 2, 3)), atol=1e-6)


def test_subsampling_is_deterministic(tmp_path, monkeypatch):
    make_cifar(tmp_path, monkeypatch)
    a = load_dataset("cifar10", root=str(tmp_path), download=False, train_size=12, test_size=3, seed=1)
    b = load_dataset("cifar10", root=str(tmp_path), download=False, train_size=12, test_size=3, seed=1)
    c = load_dataset("cifar10", root=str(tmp_path), download=False, train_size=12, seed=2)
    assert a.train_images.shape[0] == 12 and a.test_images.shape[0] == 3
    assert torch.equal(a.train_images, b.train_images) and torch.equal(a.test_labels, b.test_labels)
    assert not torch.equal(a.train_images, c.train_images)
    with pytest.raises(ValueError, match="train_size=31"):
        load_dataset("cifar10", root=str(tmp_path), download=False, train_size=31)


def test_validation_split_is_held_out_and_leaves_the_training_images_alone(tmp_path, monkeypatch):
    make_cifar(tmp_path, monkeypatch)
    plain = load_dataset("cifar10", root=str(tmp_path), download=False, train_size=12, seed=1)
    held = load_dataset("cifar10", root=str(tmp_path), download=False, train_size=12, seed=1, val_size=6)
    assert torch.equal(plain.train_images, held.train_images) and plain.mean == held.mean
    assert plain.val_images is None and held.val_images.shape[0] == 6
    rows = lambda x: {bytes(v.numpy().tobytes()) for v in x}          # noqa: E731
    assert not rows(held.train_images) & rows(held.val_images)         # never trained on
    assert sum(len(b[1]) for b in held.loader("val", batch_size=4)) == 6
    with pytest.raises(ValueError, match="val_size > 0"):
        plain.loader("val")
    with pytest.raises(ValueError, match="train_size \\+ val_size <= 30"):
        load_dataset("cifar10", root=str(tmp_path), download=False, train_size=25, val_size=6)
    with pytest.raises(ValueError, match="val_size=-1"):
        load_dataset("cifar10", root=str(tmp_path), download=False, val_size=-1)
    every = load_dataset("cifar10", root=str(tmp_path), download=False, val_size=6)   # the rest of the split
    assert every.train_images.shape[0] == 24 and every.val_images.shape[0] == 6
    dc_plain = load_dataset("digitclutter", train_size=40, test_size=8)
    dc_held = load_dataset("digitclutter", train_size=40, test_size=8, val_size=10)
    dc_more = load_dataset("digitclutter", train_size=50, test_size=8)
    assert torch.equal(dc_plain.train_images, dc_held.train_images)
    assert torch.equal(dc_held.val_images, dc_more.train_images[40:])   # the next images of the stream


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST/raw"), ("cifar10", "cifar-10-batches-py"),
                                          ("cifar100", "cifar-100-python")])
def test_missing_files_say_where_and_how(tmp_path, name, folder):
    with pytest.raises(FileNotFoundError) as info:
        load_dataset(name, root=str(tmp_path), download=False)
    message = str(info.value)
    assert name in message and str(tmp_path / folder) in message
    assert "https://" in message and "download=True" in message


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_failed_download_gives_the_same_clear_error(tmp_path, monkeypatch, name):
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network in this test")
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    with pytest.raises(FileNotFoundError, match="download failed") as info:
        load_dataset(name, root=str(tmp_path), download=True)
    assert str(tmp_path) in str(info.value)


def test_unknown_dataset_names_the_choices():
    with pytest.raises(ValueError) as info:
        load_dataset("imagenet")
    message = str(info.value)
    assert "name" in message and "imagenet" in message and all(d in message for d in DATASETS)


def test_digitclutter_dataset(tmp_path):
    data = load_dataset("digitclutter", root=str(tmp_path), train_size=64, test_size=32, num_digits=(2, 4))
    assert data.multilabel and data.num_classes == 10 and data.in_channels == 1
    assert data.train_images.shape == (64, 1, 32, 32) and data.train_labels.shape == (64, 10)
    assert data.train_labels.dtype == torch.float32
    assert not torch.equal(data.train_images[:32], data.test_images)        # distinct seeds
    sums = data.train_labels.sum(1)
    assert sums.min() >= 2 and sums.max() <= 4
    assert not list(tmp_path.iterdir())                                       # nothing cached by default
    cached = load_dataset("digitclutter", root=str(tmp_path), train_size=64, test_size=32,
                          num_digits=(2, 4), cache=True)
    files = list((tmp_path / "digitclutter").iterdir())
    assert len(files) == 2 and torch.equal(cached.train_images, data.train_images)
    files[0].write_bytes(b"garbage")                                          # damaged cache: regenerated
    again = load_dataset("digitclutter", root=str(tmp_path), train_size=64, test_size=32,
                         num_digits=(2, 4), cache=True)
    assert torch.equal(again.test_images, data.test_images) and torch.equal(again.train_images, data.train_images)
    with pytest.raises(TypeError, match="num_digits"):
        load_dataset("cifar10", root=str(tmp_path), num_digits=3)


def tiny_data():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (50, 3, 8, 8), generator=g, dtype=torch.uint8)
    labels = torch.arange(50) % 10
    mean, std = channel_stats(images)
    return ImageData("cifar10", images, labels, images[:20], labels[:20], 10, 3, False, mean, std)


def test_loader_batches_and_normalisation():
    data = tiny_data()
    loader = data.loader("train", batch_size=16)
    batches = list(loader)
    assert len(loader) == len(batches) == 4 and [len(x) for x, _ in batches] == [16, 16, 16, 2]
    assert len(data.loader("train", batch_size=16, drop_last=True)) == 3
    x = torch.cat([b[0] for b in batches])
    assert x.dtype == torch.float32 and x.shape == (50, 3, 8, 8)
    assert torch.allclose(x.mean((0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(x.std((0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)
    mean = torch.tensor(data.mean).view(1, 3, 1, 1)
    std = torch.tensor(data.std).view(1, 3, 1, 1)
    assert torch.allclose(x, (data.train_images / 255 - mean) / std, atol=1e-6)
    assert torch.equal(torch.cat([b[1] for b in batches]), data.train_labels)


def test_shuffle_is_reproducible_per_epoch():
    data = tiny_data()
    first = data.loader("train", batch_size=10, shuffle=True, seed=3)
    epochs = [torch.cat([y for _, y in first]) for _ in range(3)]
    assert sorted(epochs[0].tolist()) == sorted(data.train_labels.tolist())     # a permutation
    assert not torch.equal(epochs[0], epochs[1])                                # epochs differ
    resumed = data.loader("train", batch_size=10, shuffle=True, seed=3)
    resumed.set_epoch(2)
    assert torch.equal(torch.cat([y for _, y in resumed]), epochs[2])
    other = data.loader("train", batch_size=10, shuffle=True, seed=4)
    assert not torch.equal(torch.cat([y for _, y in other]), epochs[0])


def test_augment_is_a_padded_crop_and_flip():
    data = tiny_data()
    plain = torch.cat([x for x, _ in data.loader("train", batch_size=50)])
    loader = data.loader("train", batch_size=50, augment=True, seed=1)
    assert loader.flip                                      # CIFAR flips by default
    aug, _ = next(iter(loader))
    assert aug.shape == plain.shape and aug.dtype == torch.float32
    padded = torch.nn.functional.pad(plain, (4, 4, 4, 4))   # zero = the mean after normalisation
    for i in range(len(aug)):
        crops = [padded[i, :, dy:dy + 8, dx:dx + 8] for dy in range(9) for dx in range(9)]
        assert any(torch.equal(aug[i], c) or torch.equal(aug[i], c.flip(2)) for c in crops)
    again, _ = next(iter(data.loader("train", batch_size=50, augment=True, seed=1)))
    assert torch.equal(aug, again)
    assert not torch.equal(aug, plain)


def test_flip_default_by_dataset():
    data = tiny_data()
    assert data.loader("train").flip
    import dataclasses
    digits = dataclasses.replace(data, name="digitclutter", multilabel=True)
    assert not digits.loader("train").flip and not dataclasses.replace(data, name="mnist").loader("test").flip
    assert digits.loader("train", flip=True).flip
    with pytest.raises(ValueError, match="split"):
        data.loader("validation")


def test_to_device_copies_and_repr():
    data = tiny_data()
    moved = data.to("cpu")
    assert moved.device.type == "cpu" and torch.equal(moved.train_images, data.train_images)
    assert "train=(50, 3, 8, 8)" in repr(data)
    with pytest.raises(ValueError, match="labels"):
        BatchLoader(data.train_images, data.train_labels[:3], data.mean, data.std)
