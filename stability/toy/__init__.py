"""Symbolic toy models of gradient descent, their numeric twins, and the demos that show them.

``DEMOS`` and ``run_demo`` load without sympy or matplotlib; every other name is imported on first use,
so ``import stability`` stays light.

- Declarations and derivations: :class:`ToyModel`, :data:`CATALOG` (:mod:`.catalog`), ``loss``,
  ``gradient``, ``hessian``, ``gd_map``, ``gd_jacobian``, ``input_gradient``, ``gd_input_jacobian``,
  ``gauss_newton``, ``stable_learning_rates`` (:mod:`.symbolic`); closed forms in :mod:`.facts`.
- Numeric twins: ``lambdify_twin`` (sympy → NumPy) and ``torch_twin`` (torch.func) (:mod:`.twins`).
- Batched gradient descent on a toy loss: ``gradient_descent``, ``GDRun``, ``sharpness`` (:mod:`.gd`).
- Zhang et al. Theorem 1, constructively: ``fit_finite_sample``, ``FiniteSampleFit`` (:mod:`.expressivity`).
"""

from __future__ import annotations

import importlib
from typing import Any

from stability.toy.demos import DEMOS, DemoInfo, run_demo

_LAZY = {
    "ToyModel": "symbolic", "FixedSet": "symbolic", "loss": "symbolic", "gradient": "symbolic",
    "hessian": "symbolic", "gauss_newton": "symbolic", "gd_map": "symbolic", "gd_jacobian": "symbolic",
    "input_gradient": "symbolic", "gd_input_jacobian": "symbolic", "parameter_gradients": "symbolic",
    "residuals": "symbolic", "on_fixed_set": "symbolic", "stable_learning_rates": "symbolic",
    "CATALOG": "catalog", "two_layer_scalar": "catalog", "linear_regression": "catalog",
    "diagonal_net": "catalog", "tanh_two_point": "catalog", "gradient_splitting": "catalog",
    "quartic": "catalog", "finite_sample_network": "catalog",
    "NumpyTwin": "twins", "TorchTwin": "twins", "lambdify_twin": "twins", "torch_twin": "twins",
    "GDRun": "gd", "gradient_descent": "gd", "sharpness": "gd",
    "FiniteSampleFit": "expressivity", "fit_finite_sample": "expressivity",
    "facts": None,
}  # fmt: skip

__all__ = ["DEMOS", "DemoInfo", "run_demo", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'stability.toy' has no attribute {name!r}")
    module = _LAZY[name]
    if module is None:
        return importlib.import_module(f".{name}", __name__)
    return getattr(importlib.import_module(f".{module}", __name__), name)


def __dir__() -> list[str]:
    return sorted(__all__)
