"""Architectures by name: a :class:`ModelSpec` becomes an ``nn.Module``.

- :mod:`.spec` — :class:`ModelSpec`.
- :mod:`.registry` — the registry and the plain architectures (linear, MLP, ConvNet).
- :mod:`.zhang2017` — Zhang et al.'s (2017) small AlexNet and small Inception.
- :mod:`.layers` — layers and argument checks the architectures share.

Names load on first use, so ``stability.models.spec`` imports without torch (the command line's start-up).
"""

from __future__ import annotations

from typing import Any

from stability import load_export

_EXPORTS = {
    "ARCHITECTURES": "registry", "accepted_kwargs": "registry", "build_model": "registry",
    "count_parameters": "registry", "describe_architectures": "registry", "ModelSpec": "spec",
}  # fmt: skip

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    return load_export(__name__, _EXPORTS, name)
