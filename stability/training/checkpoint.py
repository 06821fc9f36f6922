"""Checkpoints: a plain dict that ``torch.load(weights_only=True)`` reads, validated on the way in.

Layout (format ``stability-checkpoint``, version 2)::

    {"format": "stability-checkpoint", "version": 2, "stability_version": "0.1.0",
     "model": {"arch": str, "kwargs": dict, "input_shape": [int, ...], "num_classes": int},
     "state_dict": {name: Tensor},
     "data": DataSpec.to_dict(),          # rebuilds the exact, possibly corrupted, splits
     "training": TrainSpec.to_dict() | None,
     "epoch": int,
     "metrics": {name: float},            # the last epoch's metrics
     "resume": {...} | None,              # optimizer and RNG state (every checkpoint written since format 2)
     "digest": str}                       # SHA-256 of everything above (stability.training.integrity.digest)

Nothing but tensors and plain containers is stored, so loading never runs code. A file that needs more
(an arbitrary pickle) is refused unless the caller passes ``unsafe_pickle=True`` — which runs whatever code
the file contains, and is only for files the user made themselves.

On load, in order (each failure one :class:`CheckpointError` line naming the file): the archive is checked
before anything is unpickled (:func:`stability.training.integrity.check_archive`: zip CRCs, declared sizes,
nesting depth); the digest must match the content (version 2; version 1 files have none); every spec field
must be present (version 2; in version 1 at least the architecture and the dataset) and valid by type and
range; weights must be dense real tensors, finite (the first bad tensors are named); and the architecture
is sized on the ``meta`` device and compared with the weights before any memory is allocated for it.
"""

from __future__ import annotations

import math
import pickle
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from stability import __version__
from stability.checks import check_count
from stability.data.spec import DataSpec
from stability.errors import BadInputError, CheckpointError, first_line
from stability.files import atomic_write, check_checkpoint_path
from stability.models.spec import ModelSpec
from stability.training.integrity import UNSAFE_FLAG, check_archive, digest
from stability.training.spec import TrainSpec

FORMAT = "stability-checkpoint"


VERSION = 2


READABLE_VERSIONS = (1, 2)  # version 1 has no digest and may lack spec fields written later


MAX_INPUT_ELEMENTS = 2**26  # entries of one input sample


MAX_CLASSES = 1_000_000


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
        payload = {
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
        return {**payload, "digest": digest(payload)}


def save_checkpoint(path: str | Path, checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` to ``path`` atomically; returns the path."""
    atomic_write(path, lambda fh: torch.save(checkpoint.to_dict(), fh))
    return Path(path)


def read_checkpoint_file(path: str | Path, *, unsafe_pickle: bool = False, map_location: Any = "cpu") -> Any:
    """Read a ``.pt`` file into plain Python objects, refusing anything that could run code.

    Without ``unsafe_pickle`` the archive is checked first (:func:`~stability.training.integrity.check_archive`)
    and then read by ``torch.load(weights_only=True)``; any failure of either is one line.

    Raises:
        CheckpointError: missing, unreadable, truncated, corrupt, or (without ``unsafe_pickle``) a file
            holding objects other than tensors and plain containers.
    """
    path = check_checkpoint_path(path)
    if not unsafe_pickle:
        check_archive(path)
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
            f"{path} is not a readable checkpoint (corrupt: {first_line(exc)}; a raw pickle is never unpickled "
            f"by default: pass {UNSAFE_FLAG} only if you made it yourself and trust it)"
        ) from None
    except Exception as exc:  # noqa: BLE001 - a damaged stream raises almost anything; each is one line
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated or corrupt: {type(exc).__name__}: {first_line(exc)}); "
            "rewrite it or resume the run that wrote it"
        ) from None




def is_checkpoint(obj: Any) -> bool:
    return isinstance(obj, Mapping) and obj.get("format") == FORMAT


def is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()
    )


def load_checkpoint(path: str | Path, *, unsafe_pickle: bool = False) -> Checkpoint:
    """Load and validate a checkpoint written by :func:`save_checkpoint` (tensors land on the CPU).

    Raises:
        CheckpointError: see :func:`read_checkpoint_file`, plus a wrong format or version, a digest that
            does not match, missing or mistyped fields, a bare state_dict (which needs its architecture and
            dataset named), or weights that are not dense, real and finite.
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
        raise CheckpointError(f"{source} has format {_short(obj['format'])}, expected {FORMAT!r}")
    version = obj.get("version")
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        raise CheckpointError(
            f"{source} is format version {_short(version)}; this stability reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))} — upgrade stability or re-save the checkpoint"
        )
    try:
        if version >= 2:
            _verify_digest(obj, source)
        return _validated(obj, source, strict=version >= 2)
    except CheckpointError:
        raise
    except BadInputError as exc:
        raise CheckpointError(f"{source}: {exc}") from None
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError, RuntimeError) as exc:
        raise CheckpointError(f"{source}: malformed checkpoint ({type(exc).__name__}: {first_line(exc)})") from None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def seal(obj: Mapping[str, Any]) -> dict[str, Any]:
    """``obj`` (the dict form of a checkpoint) with its digest recomputed, for a tool or test that edits a
    checkpoint on purpose; the edited fields are then checked on their own merits."""
    body = {k: v for k, v in obj.items() if k != "digest"}
    return {**body, "digest": digest(body)}


def _verify_digest(obj: Mapping, source: str) -> None:
    stored = _field(obj, "digest", str, source)
    if digest({k: v for k, v in obj.items() if k != "digest"}) != stored:
        raise CheckpointError(
            f"{source} fails its integrity check (the digest of its weights and specs does not match); "
            "it was altered or damaged after it was written — use the original file or retrain"
        )


def _validated(obj: Mapping, source: str, *, strict: bool) -> Checkpoint:
    for name in ("training", "epoch", "metrics", "resume") if strict else ():
        if name not in obj:
            raise CheckpointError(f"{source} has no {name!r} field; it was not written whole")
    model = dict(_field(obj, "model", Mapping, source))
    data = dict(_field(obj, "data", Mapping, source))
    for name, part in (("arch", model), ("dataset", data)):
        if name not in part:
            raise CheckpointError(f"{source} names no {name}; it was not written by stability train")
    input_shape = model.pop("input_shape", None)
    if (not isinstance(input_shape, (list, tuple)) or not 1 <= len(input_shape) <= 4
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in input_shape)
            or math.prod(input_shape) > MAX_INPUT_ELEMENTS):  # fmt: skip
        raise CheckpointError(f"{source}: model input_shape must be 1 to 4 positive sizes of at most "
                              f"{MAX_INPUT_ELEMENTS} entries in all, got {_short(input_shape)}")  # fmt: skip
    num_classes = check_count("model num_classes", model.pop("num_classes", None), 1, most=MAX_CLASSES)
    model_spec = ModelSpec.from_dict(model, strict=strict)
    data_spec = DataSpec.from_dict(data, strict=strict)
    training = obj.get("training")
    if training is not None and not isinstance(training, Mapping):
        raise CheckpointError(f"{source}: field 'training' should be a mapping or None, got {type(training).__name__}")
    train_spec = TrainSpec.from_dict(dict(training), strict=strict) if training is not None else None
    epoch = check_count("epoch", obj.get("epoch", 0), 0, most=train_spec.epochs if train_spec else None)
    state_dict = _field(obj, "state_dict", Mapping, source)
    check_tensors(state_dict, source)
    metrics = obj.get("metrics") or {}
    if not isinstance(metrics, Mapping) or not all(
        isinstance(k, str) and (v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)))
        for k, v in metrics.items()
    ):
        raise CheckpointError(f"{source}: field 'metrics' must map names to numbers")
    resume = obj.get("resume")
    if resume is not None:
        check_resume_state(resume, source)
    return Checkpoint(
        model=model_spec,
        input_shape=tuple(input_shape),
        num_classes=num_classes,
        state_dict=dict(state_dict),
        data=data_spec,
        training=train_spec,
        epoch=epoch,
        metrics={k: float(v) for k, v in metrics.items() if v is not None},
        resume=resume,
    )


def check_resume_state(resume: Any, source: str) -> None:
    """The optimizer and RNG state a run resumes from, by kind and type (whether the optimizer state fits
    the model is checked when it is loaded)."""
    if not isinstance(resume, Mapping):
        raise CheckpointError(f"{source}: field 'resume' must be a mapping or None")
    for name, kind in (("optimizer", Mapping), ("generator", Tensor), ("torch_rng", Tensor), ("step", int),
                       ("seconds", float)):  # fmt: skip
        value = resume.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise CheckpointError(f"{source}: resume state {name!r} is missing or not a {kind.__name__}; "
                                  "the run cannot be resumed from it, start a new run")  # fmt: skip
    for name in ("generator", "torch_rng"):
        if resume[name].dtype != torch.uint8 or resume[name].ndim != 1:
            raise CheckpointError(f"{source}: resume state {name!r} is not a random generator's state; start a new run")
    if resume["step"] < 0 or not 0 <= resume["seconds"] < math.inf:
        raise CheckpointError(f"{source}: resume state has a negative step or time; start a new run")


def _field(obj: Mapping, name: str, kind: type, source: str) -> Any:
    if name not in obj:
        raise CheckpointError(f"{source} has no {name!r} field; it was not written by stability train")
    value = obj[name]
    if not isinstance(value, kind):
        raise CheckpointError(f"{source}: field {name!r} should be a {kind.__name__}, got {type(value).__name__}")
    return value


def check_tensors(state_dict: Mapping[Any, Any], source: str) -> None:
    """Weights must map names to dense real tensors (floating, or integer buffers) that are finite; else one
    line naming the first bad tensors."""
    if not state_dict or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state_dict.items()):
        raise CheckpointError(f"{source}: state_dict must map parameter names to tensors")
    for name, t in state_dict.items():
        if t.layout != torch.strided or t.is_complex() or t.dtype == torch.bool or t.is_quantized:
            raise CheckpointError(
                f"{source}: weight {name} is a {t.layout} {t.dtype} tensor; weights must be dense real numbers"
            )
    check_finite(state_dict, source)


def check_finite(state_dict: Mapping[str, Tensor], source: str) -> None:
    """Raise if any floating or complex tensor holds NaN or infinity, naming it (analysis of such a model is
    meaningless)."""
    bad = [k for k, v in state_dict.items()
           if (v.is_floating_point() or v.is_complex()) and not torch.isfinite(v).all()]  # fmt: skip
    if bad:
        raise CheckpointError(
            f"{source} has non-finite weights in {', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}; "
            "the run diverged — lower the learning rate and retrain"
        )


def build_model_from_checkpoint(checkpoint: Checkpoint) -> nn.Module:
    """Rebuild the architecture and load the weights (strictly), in eval mode.

    The architecture is first built on the ``meta`` device (no memory) and compared with the weights, so a
    spec that would need far more memory than its weights hold is refused before anything is allocated.
    """
    from stability.models.registry import build_model

    source = f"{checkpoint.model.arch} checkpoint"
    shape = build_model(checkpoint.model, checkpoint.input_shape, checkpoint.num_classes, device="meta")
    check_weights(shape.state_dict(), checkpoint.state_dict, source=source)
    model = build_model(checkpoint.model, checkpoint.input_shape, checkpoint.num_classes)
    load_weights(model, checkpoint.state_dict, source=source)
    return model.eval()


def check_weights(
    expected: Mapping[str, Tensor], state_dict: Mapping[str, Tensor], *, source: str,
    hint: str = "check --arch, --arch-kwargs and the dataset's input shape",
) -> None:
    """A one-line error naming what of ``state_dict`` does not fit ``expected`` (names, shapes, and the kind
    of dtype: floating where the model is floating), then ``hint``; non-finite weights are refused by name."""
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    kinds = [f"{k} {state_dict[k].dtype} vs {v.dtype}" for k, v in expected.items()
             if k in state_dict and _kind(state_dict[k]) != _kind(v)]  # fmt: skip
    if missing or unexpected or shapes or kinds:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
        if unexpected:
            parts.append(f"unexpected {', '.join(map(str, unexpected[:3]))}{' ...' if len(unexpected) > 3 else ''}")
        if shapes:
            parts.append(f"shape mismatch {'; '.join(shapes[:2])}{' ...' if len(shapes) > 2 else ''}")
        if kinds:
            parts.append(f"dtype mismatch {'; '.join(kinds[:2])}{' ...' if len(kinds) > 2 else ''}")
        raise CheckpointError(
            f"{source} does not fit the architecture ({'; '.join(parts)}); {hint}"
        )
    check_finite(state_dict, source)


def _kind(t: Tensor) -> str:
    return "complex" if t.is_complex() else "float" if t.is_floating_point() else "bool" if t.dtype == torch.bool else "int"


def load_weights(
    model: nn.Module, state_dict: Mapping[str, Tensor], *, source: str,
    hint: str = "check --arch, --arch-kwargs and the dataset's input shape",
) -> None:
    """``model.load_state_dict(strict=True)`` after :func:`check_weights` and its one-line errors."""
    check_weights(model.state_dict(), state_dict, source=source, hint=hint)
    model.load_state_dict(state_dict, strict=True)
