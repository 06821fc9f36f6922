"""Checkpoints: a plain dict that ``torch.load(weights_only=True)`` reads, validated on the way in.

Layout (format ``stability-checkpoint``, version 1)::

    {"format": "stability-checkpoint", "version": 1, "stability_version": "0.1.0",
     "model": {"arch": str, "kwargs": dict, "input_shape": [int, ...], "num_classes": int},
     "state_dict": {name: Tensor},
     "data": DataSpec.to_dict(),          # rebuilds the exact, possibly corrupted, splits
     "training": TrainSpec.to_dict() | None,
     "epoch": int,
     "metrics": {name: float},            # the last epoch's metrics
     "resume": {...} | None}              # optimizer and RNG state, present while a run can continue

Nothing but tensors and plain containers is stored, so loading never runs code. A file that needs more
(an arbitrary pickle) is refused unless the caller passes ``unsafe_pickle=True`` — which runs whatever code
the file contains, and is only for files the user made themselves.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from stability import __version__
from stability.data.spec import DataSpec
from stability.errors import BadInputError, CheckpointError
from stability.files import atomic_write, check_checkpoint_path
from stability.models.spec import ModelSpec
from stability.training.spec import TrainSpec

FORMAT = "stability-checkpoint"


VERSION = 1


UNSAFE_FLAG = "--unsafe-pickle"


@dataclass(frozen=True)
class Checkpoint:
    """A validated checkpoint. ``input_shape`` is per sample, without the batch dimension."""

    model: ModelSpec
    input_shape: tuple[int, ...]
    num_classes: int
    state_dict: dict[str, Tensor]
    data: DataSpec
    training: TrainSpec | None = None
    epoch: int = 0
    metrics: Mapping[str, float] | None = None
    resume: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "stability_version": __version__,
            "model": {
                **self.model.to_dict(),
                "input_shape": list(self.input_shape),
                "num_classes": self.num_classes,
            },
            "state_dict": dict(self.state_dict),
            "data": self.data.to_dict(),
            "training": self.training.to_dict() if self.training is not None else None,
            "epoch": self.epoch,
            "metrics": dict(self.metrics or {}),
            "resume": dict(self.resume) if self.resume is not None else None,
        }


def save_checkpoint(path: str | Path, checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` to ``path`` atomically; returns the path."""
    atomic_write(path, lambda fh: torch.save(checkpoint.to_dict(), fh))
    return Path(path)


def read_checkpoint_file(path: str | Path, *, unsafe_pickle: bool = False, map_location: Any = "cpu") -> Any:
    """Read a ``.pt`` file into plain Python objects, refusing anything that could run code.

    Raises:
        CheckpointError: missing, unreadable, truncated, corrupt, or (without ``unsafe_pickle``) a file
            holding objects other than tensors and plain containers.
    """
    path = check_checkpoint_path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about pickle protocols; our error says it all
            return torch.load(path, map_location=map_location, weights_only=not unsafe_pickle)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc):
            raise CheckpointError(
                f"{path} holds Python objects other than tensors and plain containers, and unpickling them "
                f"can run arbitrary code; refusing. Re-save it as a state_dict, or pass {UNSAFE_FLAG} if "
                "you made the file yourself and trust it"
            ) from None
        raise CheckpointError(
            f"{path} is not a readable checkpoint (corrupt, or a raw pickle, which is never unpickled by "
            f"default: pass {UNSAFE_FLAG} only if you made it yourself and trust it)"
        ) from None
    except (EOFError, RuntimeError, zipfile.BadZipFile, OSError, ValueError, KeyError) as exc:
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated or corrupt: {_first_line(exc)}); "
            "rewrite it or resume the run that wrote it"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def is_checkpoint(obj: Any) -> bool:
    return isinstance(obj, Mapping) and obj.get("format") == FORMAT


def is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()
    )


def load_checkpoint(path: str | Path, *, unsafe_pickle: bool = False) -> Checkpoint:
    """Load and validate a checkpoint written by :func:`save_checkpoint` (tensors land on the CPU).

    Raises:
        CheckpointError: see :func:`read_checkpoint_file`, plus a wrong format or version, missing or
            mistyped fields, a bare state_dict (which needs its architecture and dataset named), or
            non-finite weights.
    """
    obj = read_checkpoint_file(path, unsafe_pickle=unsafe_pickle)
    return checkpoint_from_dict(obj, source=str(path))


def checkpoint_from_dict(obj: Any, *, source: str = "checkpoint") -> Checkpoint:
    """Validate the dict form of a checkpoint (see the module docstring)."""
    if is_state_dict(obj):
        raise CheckpointError(
            f"{source} is a bare state_dict with no model or data spec; pass --model package.module:factory "
            "(your own model) or --arch and --arch-kwargs (a registry architecture), and --dataset"
        )
    if not isinstance(obj, Mapping) or "format" not in obj:
        raise CheckpointError(f"{source} is not a stability checkpoint (no 'format' field); write it with stability train")
    if obj["format"] != FORMAT:
        raise CheckpointError(f"{source} has format {obj['format']!r}, expected {FORMAT!r}")
    if obj.get("version") != VERSION:
        raise CheckpointError(
            f"{source} is format version {obj.get('version')!r}; this stability reads version {VERSION} — "
            "upgrade stability or re-save the checkpoint"
        )
    try:
        model = dict(_field(obj, "model", Mapping, source))
        input_shape = tuple(int(s) for s in model.pop("input_shape"))
        num_classes = int(model.pop("num_classes"))
        model_spec = ModelSpec.from_dict(model)
        data_spec = DataSpec.from_dict(dict(_field(obj, "data", Mapping, source)))
        training = obj.get("training")
        train_spec = TrainSpec.from_dict(dict(training)) if training is not None else None
    except BadInputError as exc:
        raise CheckpointError(f"{source}: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: malformed model spec ({_first_line(exc)})") from None
    state_dict = _field(obj, "state_dict", Mapping, source)
    if not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state_dict.items()):
        raise CheckpointError(f"{source}: state_dict must map parameter names to tensors")
    check_finite(state_dict, source)
    metrics = obj.get("metrics") or {}
    return Checkpoint(
        model=model_spec,
        input_shape=input_shape,
        num_classes=num_classes,
        state_dict=dict(state_dict),
        data=data_spec,
        training=train_spec,
        epoch=int(obj.get("epoch", 0)),
        metrics={k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))},
        resume=obj.get("resume"),
    )


def _field(obj: Mapping, name: str, kind: type, source: str) -> Any:
    if name not in obj:
        raise CheckpointError(f"{source} has no {name!r} field; it was not written by stability train")
    value = obj[name]
    if not isinstance(value, kind):
        raise CheckpointError(f"{source}: field {name!r} should be a {kind.__name__}, got {type(value).__name__}")
    return value


def check_finite(state_dict: Mapping[str, Tensor], source: str) -> None:
    """Raise if any floating tensor holds NaN or infinity (analysis of such a model is meaningless)."""
    bad = [k for k, v in state_dict.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(
            f"{source} has non-finite weights in {', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}; "
            "the run diverged — lower the learning rate and retrain"
        )


def build_model_from_checkpoint(checkpoint: Checkpoint) -> nn.Module:
    """Rebuild the architecture and load the weights (strictly), in eval mode."""
    from stability.models.registry import build_model

    model = build_model(checkpoint.model, checkpoint.input_shape, checkpoint.num_classes)
    load_weights(model, checkpoint.state_dict, source=f"{checkpoint.model.arch} checkpoint")
    return model.eval()


def load_weights(
    model: nn.Module, state_dict: Mapping[str, Tensor], *, source: str,
    hint: str = "check --arch, --arch-kwargs and the dataset's input shape",
) -> None:
    """``model.load_state_dict(strict=True)`` with a one-line error naming what does not fit, then ``hint``."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:3])}{' ...' if len(unexpected) > 3 else ''}")
        if shapes:
            parts.append(f"shape mismatch {'; '.join(shapes[:2])}{' ...' if len(shapes) > 2 else ''}")
        raise CheckpointError(
            f"{source} does not fit the architecture ({'; '.join(parts)}); {hint}"
        )
    model.load_state_dict(state_dict, strict=True)
