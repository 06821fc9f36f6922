"""Executable derivations: one statement per module.

Each module states its statement in its docstring, derives it with sympy (mostly from the declarations in
``stability.toy.catalog``), cross-checks it numerically by autodiff (``torch.func``, float64) at random
points, and exposes ``verify(verbose=False)``, which raises ``AssertionError`` on any failure. Run one with
``python -m proofs.<name>`` to see each step; it ends by printing ``verified``.
"""

from __future__ import annotations

STATEMENTS = (
    "gd_linear_stability",
    "momentum_linear_stability",
    "sgd_wu_ma_e",
    "sgd_scalar_false_alarm",
    "sgd_scalar_missed",
    "bridge_identity",
    "first_layer_bound",
    "gd_trace_bound",
    "gd_input_jacobian",
    "fixed_point_displacement",
    "zhang_min_norm",
    "zhang_theorem1",
    "t1_two_layer_scalar",
    "t2_linear_min_norm",
    "t3_diagonal_net",
    "t4_tanh_two_point",
    "t5_gradient_splitting",
    "t5_needs_few_samples",
    "quartic_period_doubling",
)
