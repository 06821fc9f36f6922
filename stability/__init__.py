"""stability: measures of input and parameter stability for the question of why trained networks generalize.

The measures below take a plain ``nn.Module`` (or a :class:`FunctionalModel`) and a batch, in the order
``(model, x, [y], *, params=None, ...)``. Specs, training, checkpoints, sweeps and the analysis report live
in their subpackages (:mod:`stability.training`, :mod:`stability.data`, :mod:`stability.models`,
:mod:`stability.analysis`, :mod:`stability.sweeps`); toy models in :mod:`stability.toy`.

Names are imported on first use, so ``import stability`` stays light (no sympy, no matplotlib).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    # models as functions
    "FunctionalModel": "functional", "functionalize": "functional",
    # input sensitivity
    "input_jacobian": "sensitivity.jacobian", "jacobian_frobenius": "sensitivity.jacobian",
    "jacobian_frobenius_estimate": "sensitivity.jacobian", "jacobian_spectral": "sensitivity.jacobian",
    "directional_derivative": "sensitivity.jacobian", "data_direction": "sensitivity.jacobian",
    "FrobeniusEstimate": "sensitivity.jacobian", "SpectralNormResult": "sensitivity.jacobian",
    "loss_input_gradient": "sensitivity.loss_gradient", "loss_input_gradient_norm": "sensitivity.loss_gradient",
    "noise_sensitivity": "sensitivity.noise", "prediction_stability": "sensitivity.noise",
    "NoiseResult": "sensitivity.noise",
    "update_input_sensitivity": "sensitivity.one_step", "gd_map_input_jacobian": "sensitivity.one_step",
    "UpdateSensitivity": "sensitivity.one_step",
    "fixed_point_displacement": "sensitivity.fixed_point", "FixedPointDisplacement": "sensitivity.fixed_point",
    "minres": "sensitivity.fixed_point", "MinresResult": "sensitivity.fixed_point",
    # curvature
    "hessian_eigenvalues": "curvature.measures", "hessian_trace": "curvature.measures",
    "hessian_density": "curvature.measures",
    "CurvatureOperator": "curvature.products", "hessian_vector_product": "curvature.products",
    "ggn_vector_product": "curvature.products", "LambdaOperator": "curvature.operators",
    "MatrixOperator": "curvature.operators",
    "top_eigenvalues": "curvature.lanczos", "power_iteration": "curvature.lanczos", "EigenResult": "curvature.lanczos",
    "hutchinson_trace": "curvature.trace", "hutchpp_trace": "curvature.trace", "TraceResult": "curvature.trace",
    "spectral_density": "curvature.density", "SpectralDensity": "curvature.density",
    # dynamics: linear stability, tracking, bounds
    "gd_stability": "dynamics.verdicts", "sgd_stability": "dynamics.sgd", "SGDStability": "dynamics.sgd",
    "SGDStatement": "dynamics.sgd", "linear_stability": "dynamics.optimizers",
    "OptimizerSetting": "dynamics.optimizers", "LinearStability": "dynamics.optimizers",
    "stability_threshold": "dynamics.optimizers", "setting_from_optimizer": "dynamics.optimizers",
    "gd_criterion": "dynamics.verdicts", "sgd_criterion": "dynamics.verdicts", "GDVerdict": "dynamics.verdicts",
    "SGDVerdict": "dynamics.verdicts", "nonuniformity": "dynamics.wu_ma_e",
    "NonUniformity": "dynamics.wu_ma_e", "StabilityTracker": "dynamics.tracking",
    "first_layer_bound": "dynamics.bounds", "first_layer_identity": "dynamics.bounds",
    # analysis of a model on its data
    "analyze": "analysis.run",
    "analyze_model": "analysis.splits", "Analysis": "analysis.splits", "AnalysisOptions": "analysis.options",
    "analyze_curvature": "analysis.curvature", "CurvatureOptions": "analysis.options",
    "CurvatureAnalysis": "analysis.curvature", "summarize": "analysis.summary",
    # toy models
    "DEMOS": "toy.demos", "DemoInfo": "toy.demos", "run_demo": "toy.demos",
    # errors
    "StabilityError": "errors", "BadInputError": "errors", "CheckpointError": "errors", "DatasetError": "errors",
    "ArchitectureError": "errors", "NonDeterministicModelError": "errors",
}  # fmt: skip

__all__ = ["__version__", *_EXPORTS]


def load_export(package: str, exports: dict[str, str], name: str) -> Any:
    """PEP 562 ``__getattr__`` of a package whose names load on first use: ``name`` from its module, cached."""
    if name not in exports:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
    setattr(sys.modules[package], name, value)
    return value


def __getattr__(name: str) -> Any:
    return load_export(__name__, _EXPORTS, name)


def __dir__() -> list[str]:
    return sorted(__all__)
