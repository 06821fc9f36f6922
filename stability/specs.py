"""Configuration as data: what a run trains on, what it trains, and how.

The three specs flow unchanged from the command line into training, into the checkpoint, and back out
into analysis, so a setting is typed in exactly one place. Each is a frozen dataclass with
``to_dict``/``from_dict``; ``from_dict`` rejects unknown keys and bad values with a one-line message.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .errors import BadInputError

CORRUPTIONS = ("true", "partial-labels", "random-labels", "shuffled-pixels", "random-pixels", "gaussian")
PREPROCESSING = ("none", "standardize", "whiten")
LOSSES = ("cross-entropy", "mse", "bounded-cross-entropy")
OBJECTIVES = ("standard", "split")
OPTIMIZERS = ("sgd", "adam")

T = TypeVar("T")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise BadInputError(f"{name} {value!r} is not one of: {', '.join(choices)}")


def _check_range(name: str, value: float, lo: float, hi: float) -> None:
    if not (lo <= value <= hi) or math.isnan(value):
        raise BadInputError(f"{name} must lie in [{lo}, {hi}], got {value}")


class _Spec:
    """Shared dict round-trip for the spec dataclasses."""

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)  # type: ignore[call-overload]
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        if not isinstance(data, dict):
            raise BadInputError(f"{cls.__name__} must be a mapping, got {type(data).__name__}")
        known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise BadInputError(
                f"{cls.__name__} has no field(s) {', '.join(unknown)}; known: {', '.join(known)}"
            )
        kwargs = {}
        for key, value in data.items():
            if isinstance(value, list) and key != "kwargs":
                value = tuple(value)
            kwargs[key] = value
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise BadInputError(f"{cls.__name__}: {exc}") from None


@dataclass(frozen=True)
class DataSpec(_Spec):
    """Which data a run sees; enough to rebuild the exact (possibly corrupted) splits.

    Attributes:
        dataset: ``digits`` (embedded), ``mnist1d`` (generated), ``mnist``, ``fashion-mnist``,
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
        _check_choice("corruption", self.corruption, CORRUPTIONS)
        _check_choice("preprocess", self.preprocess, PREPROCESSING)
        _check_range("corruption_prob", self.corruption_prob, 0.0, 1.0)
        _check_range("noise_fraction", self.noise_fraction, 0.0, 1.0)
        for name in ("n_train", "n_test", "center_crop"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise BadInputError(f"{name} must be a positive integer or None, got {value!r}")
        if not isinstance(self.n_heldout, int) or self.n_heldout < 0:
            raise BadInputError(f"n_heldout must be a non-negative integer, got {self.n_heldout!r}")
        if self.corruption == "partial-labels" and self.corruption_prob == 0.0:
            pass  # p = 0 is the clean baseline of a corruption sweep, not an error.

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


@dataclass(frozen=True)
class ModelSpec(_Spec):
    """An architecture by registry name and its keyword arguments (see :mod:`stability.models`)."""

    arch: str = "mlp"
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainSpec(_Spec):
    """How a model is trained.

    Attributes:
        loss: ``cross-entropy`` or ``mse`` (half the squared error to one-hot targets, summed over
            classes, averaged over samples, as in the edge-of-stability literature; see
            :mod:`stability.losses`).
        objective: ``standard`` (minimize the training loss) or ``split`` (Badger's gradient splitting:
            minimize ``L_train - L_heldout`` while held-out accuracy is at least ``split_threshold``,
            plain ``L_train`` otherwise).
        split_threshold: held-out accuracy below which splitting pauses; ``None`` means
            ``1.1 / num_classes`` (0.11 for ten classes, as in Badger's code).
        split_start, split_stop: with ``objective="split"``, the epochs ``split_start <= e < split_stop``
            (``None``: to the end) may split; the others train on plain ``L_train``. This switches the
            objective mid-run in either direction within one resumable run.
        optimizer: ``sgd`` (with ``momentum``) or ``adam``.
        lr: learning rate at epoch 0; multiplied by ``lr_decay`` after every epoch.
        batch_size: minibatch size; ``0`` means full batch (gradient descent).
        augment: random crops (padding 2 for 8x8 inputs, 4 otherwise) and horizontal flips of images.
        augment_flip: whether ``augment`` flips; ``False`` is crops alone (the random-crop augmentation of Zhang et al.).
        checkpoint_every: write a resumable checkpoint every this many epochs (and always at the end).
        seed: seeds initialization, batch order, augmentation; with the data seed the run is reproducible.
    """

    loss: str = "cross-entropy"
    objective: str = "standard"
    split_threshold: float | None = None
    split_start: int = 0
    split_stop: int | None = None
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_decay: float = 1.0
    batch_size: int = 64
    epochs: int = 10
    augment: bool = False
    augment_flip: bool = True
    checkpoint_every: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        _check_choice("loss", self.loss, LOSSES)
        _check_choice("objective", self.objective, OBJECTIVES)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        if not self.lr > 0:
            raise BadInputError(f"lr must be positive, got {self.lr}")
        _check_range("momentum", self.momentum, 0.0, 1.0)
        _check_range("lr_decay", self.lr_decay, 0.0, 1.0)
        if self.weight_decay < 0:
            raise BadInputError(f"weight_decay must be non-negative, got {self.weight_decay}")
        if self.batch_size < 0 or self.epochs < 0 or self.checkpoint_every < 1:
            raise BadInputError(
                "batch_size (0 = full batch) and epochs must be non-negative, checkpoint_every positive"
            )
        if self.split_threshold is not None:
            _check_range("split_threshold", self.split_threshold, 0.0, 1.0)
        stop = self.split_start if self.split_stop is None else self.split_stop
        if not (isinstance(self.split_start, int) and 0 <= self.split_start <= stop):
            raise BadInputError(
                f"split epochs must satisfy 0 <= split_start <= split_stop, got {self.split_start} and {self.split_stop}"
            )
