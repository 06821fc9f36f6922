"""Input sensitivity of a trained model, per sample: how much its output moves when its input does.

- :mod:`.jacobian` — the input Jacobian ``J(x) = ∂f(x)/∂x`` and its norms (Frobenius, spectral, along
  the data direction), exact or by random projections.
- :mod:`.loss_gradient` — the input gradient of the loss, ``∇_x ℓ(f(x), y)``.
- :mod:`.noise` — finite-noise measures: ``E‖f(x + σε) − f(x)‖/σ`` and the fraction of unchanged predictions.
- :mod:`.one_step` — how one gradient-descent step responds to a training input, ``∂G/∂x_i``.
- :mod:`.fixed_point` — how far the fixed point itself moves, ``dθ*/dx_i = −H⁺ M_i`` (MINRES on ``H``).
- :mod:`.batching` — model and input resolution and the ``vmap`` plumbing they share.

Every measure is called as ``measure(model, x, [y], *, params=None, ...)`` with ``model`` a plain
``nn.Module`` or a :class:`~stability.functional.FunctionalModel`; ``chunk_size`` bounds the samples
processed at once (memory) and ``num_probes`` counts random draws.
"""

from stability.sensitivity.fixed_point import FixedPointDisplacement, MinresResult, fixed_point_displacement, minres
from stability.sensitivity.jacobian import (
    FrobeniusEstimate,
    SpectralNormResult,
    data_direction,
    directional_derivative,
    input_jacobian,
    jacobian_frobenius,
    jacobian_frobenius_estimate,
    jacobian_spectral,
)
from stability.sensitivity.loss_gradient import loss_input_gradient, loss_input_gradient_norm
from stability.sensitivity.noise import NoiseResult, noise_sensitivity, prediction_stability
from stability.sensitivity.one_step import UpdateSensitivity, gd_map_input_jacobian, update_input_sensitivity

__all__ = [
    "FixedPointDisplacement", "FrobeniusEstimate", "MinresResult", "NoiseResult", "SpectralNormResult",
    "UpdateSensitivity", "data_direction", "directional_derivative", "fixed_point_displacement",
    "gd_map_input_jacobian", "input_jacobian", "jacobian_frobenius", "jacobian_frobenius_estimate",
    "jacobian_spectral", "loss_input_gradient", "loss_input_gradient_norm", "minres", "noise_sensitivity",
    "prediction_stability", "update_input_sensitivity",
]
