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
from .sensitivity import (
    FrobeniusEstimate,
    NoiseResult,
    SpectralNormResult,
    data_direction,
    directional_derivative,
    loss_input_gradient,
    input_jacobian,
    jacobian_frobenius,
    jacobian_frobenius_estimate,
    jacobian_spectral,
    loss_input_gradient_norm,
    noise_sensitivity,
    prediction_stability,
    summarize,
)
from .analysis import Analysis, AnalysisOptions, analyze_model
from .curvature_report import CurvatureAnalysis, CurvatureOptions, analyze_curvature
from .curvature import CurvatureOperator, ggn_vector_product, hessian_vector_product
from .linalg import EigenResult, power_iteration, top_eigenvalues
from .spectral import SpectralDensity, TraceResult, hutchinson_trace, hutchpp_trace, spectral_density
from .dynamics import StabilityTracker, gd_stability, nonuniformity, sgd_stability
from .toy import DEMOS, DemoInfo, run_demo
from .bounds import first_layer_bound, first_layer_identity, update_input_sensitivity

__all__ = [
    "ARCHITECTURES",
    "Analysis",
    "AnalysisOptions",
    "ArchitectureError",
    "BadInputError",
    "Checkpoint",
    "CheckpointError",
    "CurvatureAnalysis",
    "CurvatureOperator",
    "CurvatureOptions",
    "DATASETS",
    "DEMOS",
    "DataBundle",
    "DataSpec",
    "DatasetError",
    "DemoInfo",
    "EigenResult",
    "FrobeniusEstimate",
    "FunctionalModel",
    "ModelSpec",
    "NoiseResult",
    "NonDeterministicModelError",
    "SpectralDensity",
    "SpectralNormResult",
    "Split",
    "StabilityError",
    "StabilityTracker",
    "TraceResult",
    "TrainResult",
    "TrainSpec",
    "accepted_kwargs",
    "analyze_curvature",
    "analyze_model",
    "build_model",
    "build_model_from_checkpoint",
    "count_parameters",
    "data_direction",
    "describe_architectures",
    "directional_derivative",
    "download_dataset",
    "evaluate",
    "first_layer_bound",
    "first_layer_identity",
    "functionalize",
    "gd_stability",
    "ggn_vector_product",
    "hessian_vector_product",
    "hutchinson_trace",
    "hutchpp_trace",
    "input_jacobian",
    "jacobian_frobenius",
    "jacobian_frobenius_estimate",
    "jacobian_spectral",
    "load_checkpoint",
    "load_data",
    "loss_input_gradient",
    "loss_input_gradient_norm",
    "noise_sensitivity",
    "nonuniformity",
    "power_iteration",
    "prediction_stability",
    "read_metrics",
    "run_demo",
    "save_checkpoint",
    "sgd_stability",
    "spectral_density",
    "summarize",
    "top_eigenvalues",
    "train",
    "update_input_sensitivity",
]
