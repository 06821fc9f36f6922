"""Argument checks shared by every public function: each names the parameter and says what it must be.

Each check returns the value in its normal form (``int``, ``float``, a ``torch.Generator``), so a call
site reads ``lr = check_positive("lr", lr)``, and raises :class:`~stability.errors.BadInputError` with a
one-line message otherwise. Booleans are refused where a number is asked for (``True`` is an ``int`` to
Python, never a count or a step size to a caller).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING

from stability.errors import BadInputError

if TYPE_CHECKING:
    import torch

__all__ = [
    "as_generator", "check_bool", "check_choice", "check_chunk_size", "check_count", "check_device", "check_index", "check_non_negative",
    "check_optional_positive_int", "check_positive", "check_positive_int", "check_range",
]


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _as_float(value: object) -> float | None:
    """``float(value)`` for a real number (Python, NumPy or a 0-d tensor); None for anything else."""
    if isinstance(value, (bool, str, bytes)):
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, RuntimeError):
        return None


def check_positive_int(name: str, value: object) -> int:
    """``value`` as an ``int >= 1``."""
    if not _is_int(value) or value < 1:  # type: ignore[operator]
        raise BadInputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)  # type: ignore[call-overload]


def check_optional_positive_int(name: str, value: object) -> int | None:
    """``None``, or ``value`` as an ``int >= 1``."""
    if value is not None and (not _is_int(value) or value < 1):  # type: ignore[operator]
        raise BadInputError(f"{name} must be a positive integer or None, got {value!r}")
    return None if value is None else int(value)  # type: ignore[call-overload]


def check_chunk_size(value: object, name: str = "chunk_size") -> int | None:
    """A memory bound: ``None`` (everything at once) or the number of items processed together."""
    return check_optional_positive_int(name, value)


def check_count(name: str, value: object, least: int, reason: str = "", most: int | None = None) -> int:
    """``value`` as an ``int >= least`` (and ``<= most``); ``reason`` says why the minimum (e.g. "for a standard error")."""
    if not _is_int(value) or value < least or (most is not None and value > most):  # type: ignore[operator]
        why = f" ({reason})" if reason else ""
        top = f" and at most {most}" if most is not None else ""
        raise BadInputError(f"{name} must be an integer of at least {least}{top}{why}, got {value!r}")
    return int(value)  # type: ignore[call-overload]


def check_bool(name: str, value: object) -> bool:
    """``value``, which must be ``True`` or ``False`` (not 0, 1 or a string)."""
    if not isinstance(value, bool):
        raise BadInputError(f"{name} must be true or false, got {value!r}")
    return value


def check_index(name: str, value: object, size: int) -> int:
    """``value`` as an ``int`` in ``[0, size)``."""
    if not _is_int(value) or not 0 <= value < size:  # type: ignore[operator]
        raise BadInputError(f"{name} must be an integer in [0, {size}), got {value!r}")
    return int(value)  # type: ignore[call-overload]


def check_positive(name: str, value: object) -> float:
    """``value`` as a finite ``float > 0``."""
    v = _as_float(value)
    if v is None or not (0 < v < math.inf):
        raise BadInputError(f"{name} must be a positive finite number, got {value!r}")
    return v


def check_non_negative(name: str, value: object) -> float:
    """``value`` as a finite ``float >= 0``."""
    v = _as_float(value)
    if v is None or not (0 <= v < math.inf):
        raise BadInputError(f"{name} must be a non-negative finite number, got {value!r}")
    return v


def check_range(name: str, value: object, lo: float, hi: float) -> float:
    """``value`` as a ``float`` in the closed interval ``[lo, hi]`` (a probability: ``[0, 1]``)."""
    v = _as_float(value)
    if v is None or not lo <= v <= hi:
        raise BadInputError(f"{name} must lie in [{lo}, {hi}], got {value}")
    return v


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    """``value``, one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise BadInputError(f"{name} {value!r} is not one of: {', '.join(choices)}")
    return value


def as_generator(
    generator: torch.Generator | int, device: torch.device | str, name: str = "generator"
) -> torch.Generator:
    """The caller's generator (checked to live on ``device``'s type), or a fresh one seeded with the integer."""
    import torch  # here, so that the specs can check their values without loading torch

    device = torch.device(device)
    if isinstance(generator, torch.Generator):
        if torch.device(generator.device).type != device.type:
            raise BadInputError(
                f"{name} is on {generator.device} but the data is on {device}; "
                f"create it with torch.Generator(device={str(device)!r})"
            )
        return generator
    if _is_int(generator):
        return torch.Generator(device=device).manual_seed(int(generator))
    raise BadInputError(f"{name} must be a torch.Generator or an integer seed, got {type(generator).__name__}")


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a ``torch.device`` that exists on this machine (``cpu``, an available ``cuda:i``, ``mps``, ...)."""
    import torch  # here, so that the specs can check their values without loading torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise BadInputError(f"device {device!r} is not a device name such as cpu, cuda or cuda:1") from None
    kind = parsed.type
    module = getattr(torch, kind, None) if kind != "cpu" else None
    if kind == "meta" or (kind != "cpu" and not (module is not None and hasattr(module, "is_available") and module.is_available())):
        raise BadInputError(f"device {str(parsed)!r} is not available on this machine; use cpu")
    if parsed.index is not None and kind != "cpu" and parsed.index >= module.device_count():
        raise BadInputError(f"device {str(parsed)!r} does not exist: this machine has {module.device_count()} {kind} device(s)")
    return parsed
