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
from .data import DATASETS, DataBundle, Split, download_dataset, load_data
from .models import ARCHITECTURES, accepted_kwargs, build_model, count_parameters, describe_architectures
from .functional import FunctionalModel, functionalize
from .checkpoint import Checkpoint, build_model_from_checkpoint, load_checkpoint, save_checkpoint
from .train import TrainResult, evaluate, read_metrics, train

__all__ = [
    "ARCHITECTURES",
    "DATASETS",
    "ArchitectureError",
    "Checkpoint",
    "DataBundle",
    "FunctionalModel",
    "Split",
    "TrainResult",
    "accepted_kwargs",
    "build_model",
    "build_model_from_checkpoint",
    "count_parameters",
    "describe_architectures",
    "download_dataset",
    "evaluate",
    "functionalize",
    "load_checkpoint",
    "load_data",
    "read_metrics",
    "save_checkpoint",
    "train",
    "BadInputError",
    "CheckpointError",
    "DataSpec",
    "DatasetError",
    "ModelSpec",
    "NonDeterministicModelError",
    "StabilityError",
    "TrainSpec",
]
