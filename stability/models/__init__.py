"""Architectures by name: a :class:`ModelSpec` becomes an ``nn.Module``.

- :mod:`.spec` — :class:`ModelSpec`.
- :mod:`.registry` — the registry and the plain architectures (linear, MLP, ConvNet).
- :mod:`.zhang2017` — Zhang et al.'s (2017) small AlexNet and small Inception.
- :mod:`.layers` — layers and argument checks the architectures share.
"""

from stability.models.registry import (
    ARCHITECTURES,
    accepted_kwargs,
    build_model,
    count_parameters,
    describe_architectures,
)
from stability.models.spec import ModelSpec

__all__ = ["ARCHITECTURES", "ModelSpec", "accepted_kwargs", "build_model", "count_parameters", "describe_architectures"]
