"""Datasets and the paper corruptions: one call turns a :class:`~stability.data.DataSpec` into tensors.

``load_data(spec)`` returns a :class:`DataBundle` of train / test (/ held-out) :class:`Split` s. The
pipeline, identical for every dataset and deterministic given the spec (see ``docs/data.md``):

1. raw train pool and test set, pixels in [0, 1] (:mod:`stability.data.sources`); optional centre crop;
2. a seeded permutation of the pool: the first ``n_heldout`` samples are held out, the next ``n_train``
   (``None``: all the rest) train; the test split is a seeded subset of ``n_test`` (``None``: all);
3. label corruption, training split only (``partial-labels`` with ``corruption_prob``, ``random-labels``);
4. input corruption, every split (``shuffled-pixels``, ``random-pixels``, ``gaussian``);
5. Badger's noise mixing ``x' = phi x + (1 - phi) eps``, ``eps ~ N(1/2, (1/3)^2)``, every split;
6. preprocessing: ``none``, ``standardize`` (clean training pool's per-channel statistics) or ``whiten``.

Randomness comes from streams named ``(spec.seed, purpose)`` and keyed by each sample's source index
(:mod:`stability.data.streams`), all drawn on the CPU, so the same spec gives bit-identical tensors on
any device, and changing ``n_train`` leaves the corruption of the samples that stay unchanged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from stability.data import corruptions as C
from stability.data.download import download_dataset
from stability.data.sources import DATASETS, ON_DISK, load_raw, missing_files, require_root
from stability.data.spec import DataSpec
from stability.data.streams import generator, permutation
from stability.errors import BadInputError, DatasetError


def _device(device: str | torch.device) -> torch.device:
    try:
        return torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise BadInputError(f"unknown device {device!r}; use e.g. 'cpu', 'cuda' or 'cuda:0'") from None


def _move(t: Tensor, device: torch.device) -> Tensor:
    try:
        return t.to(device)
    except (RuntimeError, AssertionError) as exc:
        raise BadInputError(f"cannot move data to {device} ({str(exc).splitlines()[0]}); use device='cpu'") from None


@dataclass(frozen=True)
class Split:
    """One split of a dataset, as a model sees it.

    Attributes:
        x: ``(N, *input_shape)`` float32 inputs after corruption, noise and preprocessing.
        y: ``(N,)`` int64 labels used for training (corrupted where the spec says so).
        y_true: ``(N,)`` int64 original labels.
        index: ``(N,)`` int64 position of each sample in its source (the training pool for train and
            held-out, the test set for test), for provenance.
    """

    x: Tensor
    y: Tensor
    y_true: Tensor
    index: Tensor

    def __post_init__(self) -> None:
        n = self.x.shape[0]
        for name in ("y", "y_true", "index"):
            t = getattr(self, name)
            if t.dim() != 1 or t.shape[0] != n:
                raise BadInputError(f"Split.{name} must have shape ({n},) to match x, got {tuple(t.shape)}")

    def to(self, device: str | torch.device) -> Split:
        """The same split on ``device``."""
        dev = _device(device)
        return Split(*(_move(t, dev) for t in (self.x, self.y, self.y_true, self.index)))

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass(frozen=True)
class DataBundle:
    """Everything a run trains and is evaluated on, rebuilt exactly from ``spec``.

    Attributes:
        spec: the :class:`DataSpec` it was built from (``None`` for tensors given directly, as by
            :func:`stability.analyze`).
        train, test: the splits (``test`` is ``None`` only for tensors given without a test batch);
            ``heldout``: the held-out split, ``None`` when ``spec.n_heldout == 0``.
        num_classes: number of classes (100 for ``cifar100``, 10 otherwise).
        input_shape: ``(1, 8, 8)`` digits, ``(1, 28, 28)`` MNIST, ``(3, 32, 32)`` CIFAR (``(3, s, s)`` after a
            centre crop of side ``s``), ``(1, 40)`` MNIST-1D.
    """

    spec: DataSpec | None
    train: Split
    test: Split | None
    heldout: Split | None
    num_classes: int
    input_shape: tuple[int, ...]

    def to(self, device: str | torch.device) -> DataBundle:
        """The same bundle with every split on ``device``."""
        test, heldout = (s.to(device) if s is not None else None for s in (self.test, self.heldout))
        return dataclasses.replace(self, train=self.train.to(device), test=test, heldout=heldout)


def _split_indices(spec: DataSpec, n_pool: int, n_test_all: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(heldout, train, test)`` source indices: prefixes of seeded permutations (see module docstring)."""
    n_held, name = spec.n_heldout, spec.dataset
    if spec.n_train is None:
        if n_held >= n_pool:
            raise DatasetError(
                f"n_heldout={n_held} leaves no training samples in the {n_pool}-sample training "
                f"pool of {name}; lower n_heldout"
            )
        n_train = n_pool - n_held
    else:
        n_train = spec.n_train
        if n_train + n_held > n_pool:
            raise DatasetError(
                f"n_train={n_train} + n_heldout={n_held} exceed the {n_pool}-sample training pool of {name}; lower them"
            )
    if spec.n_test is not None and spec.n_test > n_test_all:
        raise DatasetError(
            f"n_test={spec.n_test} exceeds the {n_test_all} test samples of {name}; lower it or leave it unset (all)"
        )
    perm = permutation(n_pool, generator(spec.seed, "split/train-pool"))
    if spec.n_test is None:
        test = torch.arange(n_test_all)
    else:
        test = permutation(n_test_all, generator(spec.seed, "split/test"))[: spec.n_test]
    return perm[:n_held], perm[n_held : n_held + n_train], test


def _make_split(
    spec: DataSpec,
    x_src: Tensor,
    y_src: Tensor,
    index: Tensor,
    pool: str,
    *,
    relabel: bool,
    num_classes: int,
    stats: tuple[Tensor, Tensor],
) -> Split:
    """Steps 3-6 of the pipeline for the samples ``index`` of ``pool`` (``"train"`` pool or ``"test"`` set).

    Stream purposes name the pool, not the split: train and held-out samples are disjoint indices of the
    same pool, while test indices overlap them and so need streams of their own.
    """
    seed, corruption = spec.seed, spec.corruption
    x, y_true = x_src[index], y_src[index]
    y = y_true.clone()
    if relabel and corruption in ("partial-labels", "random-labels"):
        p = 1.0 if corruption == "random-labels" else spec.corruption_prob
        y = C.corrupt_labels(y_true, index, p, num_classes, seed, "labels/train")
    if corruption == "shuffled-pixels":
        x = C.shuffled_pixels(x, seed)
    elif corruption == "random-pixels":
        x = C.random_pixels(x, index, seed, f"random-pixels/{pool}")
    elif corruption == "gaussian":
        x = C.gaussian_inputs(tuple(x.shape), index, *stats, seed, f"gaussian/{pool}")
    if spec.noise_fraction > 0.0:
        x = C.mix_noise(x, C.noise_eps(tuple(x.shape), index, seed, f"noise/{pool}"), spec.phi)
    if spec.preprocess == "standardize":
        x = C.standardize(x, *stats)
    elif spec.preprocess == "whiten":
        x = C.whiten(x)
    return Split(x=x.to(torch.float32).contiguous(), y=y, y_true=y_true, index=index)


def load_data(
    spec: DataSpec, *, data_root: str | Path | None = None, download: bool = False, device: str | torch.device = "cpu"
) -> DataBundle:
    """Build the train / test (/ held-out) splits that ``spec`` describes.

    Args:
        spec: the data specification; the same spec always gives identical tensors.
        data_root: folder of on-disk datasets, overriding ``spec.data_root`` (analysis on another machine).
        download: fetch missing files of on-disk datasets into the data folder first (:func:`download_dataset`).
        device: where the returned tensors live; everything is computed on the CPU first.

    Raises:
        DatasetError: unknown dataset, missing or malformed files, or sizes the dataset cannot satisfy.
        BadInputError: options that do not fit the dataset (e.g. a centre crop of 1-D MNIST-1D signals).

    Cost: one pass over the selected samples per enabled step. Keyed draws come in whole blocks of 512
    source indices, so a small subset scattered over a large pool draws up to 512 samples' worth per block.
    """
    if not isinstance(spec, DataSpec):
        raise BadInputError(f"load_data expects a DataSpec, got {type(spec).__name__}")
    name = spec.dataset
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    dev = _device(device)
    root = data_root if data_root is not None else spec.data_root
    if download and name in ON_DISK and missing_files(name, require_root(name, root)):
        download_dataset(name, require_root(name, root))
    raw = load_raw(name, root, mnist1d_samples=spec.mnist1d_samples)
    pool_x, test_x = raw.train_x, raw.test_x
    if spec.center_crop is not None:
        pool_x, test_x = C.center_crop(pool_x, spec.center_crop), C.center_crop(test_x, spec.center_crop)
    stats = C.channel_stats(pool_x)  # of the clean pool: independent of corruption, noise and n_train
    held_idx, train_idx, test_idx = _split_indices(spec, len(pool_x), len(test_x))
    common = {"num_classes": raw.num_classes, "stats": stats}
    bundle = DataBundle(
        spec=spec,
        train=_make_split(spec, pool_x, raw.train_y, train_idx, "train", relabel=True, **common),
        test=_make_split(spec, test_x, raw.test_y, test_idx, "test", relabel=False, **common),
        heldout=(
            _make_split(spec, pool_x, raw.train_y, held_idx, "train", relabel=False, **common)
            if spec.n_heldout > 0
            else None
        ),
        num_classes=raw.num_classes,
        input_shape=tuple(pool_x.shape[1:]),
    )
    return bundle if dev.type == "cpu" else bundle.to(dev)
