"""Configuration as data: what a run trains on, what it trains, and how.

The three specs flow unchanged from the command line into training, into the checkpoint, and back out
into analysis, so a setting is typed in exactly one place. Each is a frozen dataclass with
``to_dict``/``from_dict``; ``from_dict`` rejects unknown keys and bad values with a one-line message.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from stability.checks import check_bool, check_choice, check_count, check_non_negative, check_range
from stability.config import MAX_SEED, _Spec
from stability.errors import BadInputError

OBJECTIVES = ("standard", "split")


OPTIMIZERS = ("sgd", "adam")


MAX_EPOCHS = 10_000_000


MAX_BATCH = 2**31 - 1


@dataclass(frozen=True)
class TrainSpec(_Spec):
    """How a model is trained.

    Attributes:
        loss: a name in the loss registry :mod:`stability.losses`: ``cross-entropy``, ``mse`` (half the
            squared error to one-hot targets, summed over classes, averaged over samples, as in the
            edge-of-stability literature) or ``bounded-cross-entropy`` (Badger's).
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
        momentum: SGD's heavy-ball momentum, in [0, 1].
        weight_decay: L2 weight decay, non-negative.
        lr_decay: learning-rate factor applied after every epoch, in [0, 1].
        batch_size: minibatch size; ``0`` means full batch (gradient descent).
        epochs: passes over the training split.
        augment: random crops (padding 2 for 8x8 inputs, 4 otherwise) and horizontal flips of images.
        augment_flip: whether ``augment`` flips; ``False`` is crops alone (the random-crop augmentation of Zhang et al.).
        checkpoint_every: write a resumable checkpoint every this many epochs (and always at the end); an
            interruption loses the epochs since the last one (recomputed identically on resume).
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
    checkpoint_every: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        from stability.losses import LOSS_NAMES  # the registry imports torch; the spec alone stays light

        check_choice("loss", self.loss, LOSS_NAMES)
        check_choice("objective", self.objective, OBJECTIVES)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        lr = self.lr if isinstance(self.lr, (int, float)) and not isinstance(self.lr, bool) else math.nan
        if not 0 < lr < math.inf:
            raise BadInputError(f"lr must be positive and finite, got {self.lr!r}")
        check_range("momentum", self.momentum, 0.0, 1.0)
        check_range("lr_decay", self.lr_decay, 0.0, 1.0)
        check_non_negative("weight_decay", self.weight_decay)
        check_count("batch_size", self.batch_size, 0, "0 = full batch", most=MAX_BATCH)
        check_count("epochs", self.epochs, 0, most=MAX_EPOCHS)
        check_count("checkpoint_every", self.checkpoint_every, 1, most=MAX_EPOCHS)
        check_count("seed", self.seed, 0, most=MAX_SEED)
        check_bool("augment", self.augment)
        check_bool("augment_flip", self.augment_flip)
        if self.split_threshold is not None:
            check_range("split_threshold", self.split_threshold, 0.0, 1.0)
        if self.split_stop is not None:
            check_count("split_stop", self.split_stop, 0, most=MAX_EPOCHS)
        check_count("split_start", self.split_start, 0, most=MAX_EPOCHS)
        stop = self.split_start if self.split_stop is None else self.split_stop
        if not self.split_start <= stop:
            raise BadInputError(
                f"split_start and split_stop must satisfy 0 <= split_start <= split_stop, got {self.split_start} and {self.split_stop}"
            )
