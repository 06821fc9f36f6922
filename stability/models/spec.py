"""What a run trains: :class:`ModelSpec`, an architecture name and its keyword arguments."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stability.config import _Spec


@dataclass(frozen=True)
class ModelSpec(_Spec):
    """An architecture by registry name and its keyword arguments (see :mod:`stability.models`).

    Attributes:
        arch: registry name of the architecture (``stability list`` shows them).
        kwargs: the architecture's keyword arguments, e.g. ``{"widths": [512]}``.
    """

    arch: str = "mlp"
    kwargs: dict[str, Any] = field(default_factory=dict)
