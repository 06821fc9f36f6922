"""What a run trains on: :class:`DataSpec`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stability.checks import check_choice, check_count, check_optional_positive_int, check_range
from stability.config import MAX_SEED, _Spec
from stability.errors import BadInputError

CORRUPTIONS = ("true", "partial-labels", "random-labels", "shuffled-pixels", "random-pixels", "gaussian")


PREPROCESSING = ("none", "standardize", "whiten")


MAX_MNIST1D_SAMPLES = 10_000_000  # generated in memory: about 40 bytes per sample and position


@dataclass(frozen=True)
class DataSpec(_Spec):
    """Which data a run sees; enough to rebuild the exact (possibly corrupted) splits.

    Attributes:
        dataset: ``digits`` and ``mnist-5k`` (embedded), ``mnist1d`` (generated), ``mnist``, ``fashion-mnist``,
            ``cifar10``, ``cifar100`` (read from ``data_root``).
        data_root: folder holding on-disk datasets (the layouts torchvision writes). Not part of the
            data's identity: analysis may override it on another machine.
        n_train: size of the seeded training subset (``None``: the whole training pool less held-out).
        n_test: size of the seeded test subset (``None``: the whole test split).
        n_heldout: size of the held-out split (disjoint from train and test), used by gradient splitting.
        corruption: one of Zhang et al.'s randomization tests (``true``, ``partial-labels``,
            ``random-labels``, ``shuffled-pixels``, ``random-pixels``, ``gaussian``).
        corruption_prob: p for ``partial-labels``.
        noise_fraction: Badger's noise mixing with ``phi = 1 - noise_fraction``:
            ``x' = phi * x + (1 - phi) * eps``, ``eps ~ N(0.5, (1/3)^2)`` per pixel, on inputs in [0, 1].
        preprocess: applied last: ``none`` (pixels in [0, 1]), ``standardize`` (per-channel mean and std of
            the clean training pool), ``whiten`` (per-image zero mean, unit variance, as Zhang et al.).
        center_crop: side of a centre crop applied to image inputs (Zhang et al. use 28 on CIFAR-10).
        mnist1d_samples: total samples generated for ``mnist1d`` (train pool + test).
        seed: seeds every random choice above; the same spec always gives the same tensors.
    """

    dataset: str = "digits"
    data_root: str | None = None
    n_train: int | None = None
    n_test: int | None = None
    n_heldout: int = 0
    corruption: str = "true"
    corruption_prob: float = 0.0
    noise_fraction: float = 0.0
    preprocess: str = "standardize"
    center_crop: int | None = None
    mnist1d_samples: int = 5000
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.dataset, str) or not self.dataset:
            raise BadInputError(f"dataset must be a dataset name such as 'digits', got {self.dataset!r}")
        if self.data_root is not None and not isinstance(self.data_root, str):
            raise BadInputError(f"data_root must be a folder path or None, got {self.data_root!r}")
        check_choice("corruption", self.corruption, CORRUPTIONS)
        check_choice("preprocess", self.preprocess, PREPROCESSING)
        check_range("corruption_prob", self.corruption_prob, 0.0, 1.0)
        check_range("noise_fraction", self.noise_fraction, 0.0, 1.0)
        for name in ("n_train", "n_test", "center_crop"):
            check_optional_positive_int(name, getattr(self, name))
        check_count("n_heldout", self.n_heldout, 0)
        check_count("mnist1d_samples", self.mnist1d_samples, 2, most=MAX_MNIST1D_SAMPLES)
        check_count("seed", self.seed, 0, most=MAX_SEED)

    @property
    def phi(self) -> float:
        """Badger's mixing weight of the clean image: ``1 - noise_fraction``."""
        return 1.0 - self.noise_fraction

    @property
    def identity(self) -> dict[str, Any]:
        """The fields that determine the data (everything but where it is stored)."""
        out = self.to_dict()
        out.pop("data_root")
        return out
