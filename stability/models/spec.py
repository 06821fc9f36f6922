"""What a run trains: :class:`ModelSpec`, an architecture name and its keyword arguments."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stability.config import _Spec, check_json_value
from stability.errors import BadInputError


@dataclass(frozen=True)
class ModelSpec(_Spec):
    """An architecture by registry name and its keyword arguments (see :mod:`stability.models`).

    Attributes:
        arch: registry name of the architecture (``stability list`` shows them).
        kwargs: the architecture's keyword arguments, e.g. ``{"widths": [512]}``.
    """

    arch: str = "mlp"
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.arch, str) or not self.arch:
            raise BadInputError(f"arch must be an architecture name such as 'mlp', got {self.arch!r}")
        if not isinstance(self.kwargs, dict):
            raise BadInputError(f"kwargs must be a mapping of keyword arguments, got {type(self.kwargs).__name__}")
        check_json_value("kwargs", self.kwargs)
