"""Gradient descent as a dynamical system: when a minimum is a stable fixed point, and what that implies
for the inputs.

- :mod:`.verdicts` — linear-stability verdicts for a step size (GD) and a batch size (SGD): measured on a
  model (:func:`gd_stability`, :func:`sgd_stability`) or evaluated for numbers (:func:`gd_criterion`,
  :func:`sgd_criterion`).
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
from stability.dynamics.tracking import StabilityTracker
from stability.dynamics.verdicts import (
    GDVerdict,
    SGDVerdict,
    gd_criterion,
    gd_stability,
    sgd_criterion,
    sgd_stability,
)
from stability.dynamics.wu_ma_e import NonUniformity, NonUniformityOperator, nonuniformity

__all__ = [
    "FirstLayer", "FirstLayerBound", "GDVerdict", "LayerIdentity", "NonUniformity", "NonUniformityOperator",
    "SGDVerdict", "StabilityTracker", "find_first_layer", "first_layer_bound", "first_layer_identity",
    "gd_criterion", "gd_stability", "nonuniformity", "sgd_criterion", "sgd_stability",
]
