"""Configuration as data: the dict round-trip every spec dataclass shares (value checks: :mod:`stability.checks`)."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from stability.errors import BadInputError

T = TypeVar("T")


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
