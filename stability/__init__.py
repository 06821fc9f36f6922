"""stability: measures of input and parameter stability for the question of why trained networks generalize."""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import (
    ArchitectureError,
    BadInputError,
    CheckpointError,
    DatasetError,
    NonDeterministicModelError,
    StabilityError,
)
from .specs import DataSpec, ModelSpec, TrainSpec

__all__ = [
    "ArchitectureError",
    "BadInputError",
    "CheckpointError",
    "DataSpec",
    "DatasetError",
    "ModelSpec",
    "NonDeterministicModelError",
    "StabilityError",
    "TrainSpec",
]
