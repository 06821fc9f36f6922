"""Gradient descent as a dynamical system: when a minimum is a stable fixed point, and what that implies
for the inputs.

- :mod:`.verdicts` — the GD verdict for a step size, measured on a model (:func:`gd_stability`) or
  evaluated for numbers (:func:`gd_criterion`), and the one-dimensional SGD identity (:func:`sgd_criterion`).
- :mod:`.optimizers` — the verdict for the optimizer actually used: heavy ball, Nesterov, Adam and RMSProp
  (frozen preconditioner), each against its own threshold (:func:`linear_stability`).
- :mod:`.sgd` — SGD's three statements, necessary, sufficient (Wu–Ma–E's matrix condition) and exact
  (the second-moment spectral radius), with their logical status (:func:`sgd_stability`).
- :mod:`.wu_ma_e` — Wu, Ma & E's (2018) non-uniformity of the per-sample curvatures.
- :mod:`.tracking` — a training callback recording sharpness and trace as a run goes.
- :mod:`.bounds` — the first-layer identity and inequality that tie curvature to input sensitivity.
"""

from stability.dynamics.bounds import (
    FirstLayer,
    FirstLayerBound,
    LayerIdentity,
    find_first_layer,
    first_layer_bound,
    first_layer_identity,
)
from stability.dynamics.optimizers import (
    LinearStability,
    OptimizerSetting,
    linear_stability,
    linear_stability_criterion,
    setting_from_optimizer,
    setting_from_state,
    sgd_setting,
    stability_threshold,
)
from stability.dynamics.sgd import SGDStability, SGDStatement, dense_statements, sgd_stability
from stability.dynamics.tracking import StabilityTracker
from stability.dynamics.verdicts import GDVerdict, SGDVerdict, gd_criterion, gd_stability, sgd_criterion
from stability.dynamics.wu_ma_e import NonUniformity, NonUniformityOperator, nonuniformity

__all__ = [
    "FirstLayer", "FirstLayerBound", "GDVerdict", "LayerIdentity", "LinearStability", "NonUniformity",
    "NonUniformityOperator", "OptimizerSetting", "SGDStability", "SGDStatement", "SGDVerdict", "StabilityTracker",
    "dense_statements", "find_first_layer", "first_layer_bound", "first_layer_identity", "gd_criterion",
    "gd_stability", "linear_stability", "linear_stability_criterion", "nonuniformity", "setting_from_optimizer",
    "setting_from_state", "sgd_criterion", "sgd_setting", "sgd_stability", "stability_threshold",
]
