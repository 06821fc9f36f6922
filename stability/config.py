"""Configuration as data: the dict round-trip every spec dataclass shares (value checks: :mod:`stability.checks`).

Each spec validates its fields by type and range in ``__post_init__`` — the one validator per spec, run
alike when the command line builds it and when a checkpoint or ``config.json`` is read back.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, TypeVar

from stability.errors import BadInputError

T = TypeVar("T")


MAX_SEED = 2**63 - 1  # torch's and numpy's generators take seeds below 2**64; a signed 64-bit bound is safe for both


class _Spec:
    """Shared dict round-trip for the spec dataclasses."""

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)  # type: ignore[call-overload]
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any], *, strict: bool = False) -> T:
        """The spec from its dict form; with ``strict`` every field must be present (no silent defaults)."""
        if not isinstance(data, dict):
            raise BadInputError(f"{cls.__name__} must be a mapping, got {type(data).__name__}")
        known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(known), key=repr)
        if unknown:
            raise BadInputError(
                f"{cls.__name__} has no field(s) {', '.join(map(str, unknown))}; known: {', '.join(known)}"
            )
        missing = [name for name in known if name not in data]
        if strict and missing:
            raise BadInputError(f"{cls.__name__} lacks the field(s) {', '.join(missing)}; it was not written whole")
        kwargs = {}
        for key, value in data.items():
            if isinstance(value, list) and key != "kwargs":
                value = tuple(value)
            kwargs[key] = value
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise BadInputError(f"{cls.__name__}: {exc}") from None


def check_json_value(name: str, value: Any, depth: int = 0) -> None:
    """``value`` must be JSON data (``None``, a bool, a finite number, a string, a list or a string-keyed dict),
    nested at most 16 deep."""
    if depth > 16:
        raise BadInputError(f"{name} nests more than 16 levels deep")
    if isinstance(value, (list, tuple)):
        for item in value:
            check_json_value(name, item, depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise BadInputError(f"{name} must have string keys, got {key!r}")
            check_json_value(name, item, depth + 1)
    elif isinstance(value, float) and not math.isfinite(value):
        raise BadInputError(f"{name} must hold finite numbers, got {value}")
    elif not isinstance(value, (type(None), bool, int, float, str)):
        raise BadInputError(f"{name} must hold JSON values (numbers, strings, lists), got a {type(value).__name__}")
