"""Whether a point meets the assumptions under which the stability verdicts were proved.

Every verdict of :mod:`stability.dynamics.optimizers` and :mod:`stability.dynamics.sgd` linearizes the
optimizer at a fixed point; the SGD statements also need every per-sample loss to be minimized there
(interpolation). :func:`applicability` checks three things on measured numbers:

- ``loss``: a loss with a finite minimizer (``mse``). Cross-entropy is minimized only at infinity, so on it
  the verdicts describe the linearization at the current iterate, not the stability of a minimum.
- ``interpolation``: every per-sample residual ``‖∇_f ℓ_i‖`` at most ``residual_tol``.
- ``near_minimum``: no negative curvature beyond the solve's accuracy, and a gradient small on the curvature
  scale: the distance a quadratic model would still travel along the top direction, ``‖∇L‖ / λ_max``, is at
  most ``distance_tol · ‖θ‖`` (this project's convention for "near").
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Assumption:
    """One assumption: whether it ``holds`` (``None``: not checked) and the ``evidence`` in words."""

    holds: bool | None
    evidence: str


@dataclass(frozen=True)
class Applicability:
    """The assumptions behind the verdicts at one point, and a sentence on what the verdicts then mean."""

    loss: Assumption
    interpolation: Assumption
    near_minimum: Assumption
    gradient_norm: float
    param_norm: float
    note: str


def applicability(
    *, loss: str, gradient_norm: float, param_norm: float, sharpness: float, lambda_min: float | None,
    lambda_min_slack: float = 0.0, max_residual: float | None = None, residual_tol: float = 1e-3,
    distance_tol: float = 1e-3,
) -> Applicability:  # fmt: skip
    """Check the three assumptions (module docstring) from measured numbers."""
    finite = loss == "mse"
    loss_a = Assumption(finite, f"{loss} has a finite minimizer" if finite else
                        f"{loss} has no finite minimizer (it decreases as the logits grow)")  # fmt: skip
    if max_residual is None:
        interp = Assumption(None, "per-sample residuals not measured")
    else:
        ok = finite and max_residual <= residual_tol
        interp = Assumption(ok, f"largest per-sample residual ‖∇_f ℓ_i‖ = {max_residual:.3g} "
                                f"({'≤' if max_residual <= residual_tol else '>'} {residual_tol:g})")  # fmt: skip
    distance = gradient_norm / sharpness if sharpness > 0 else float("inf")
    saddle = lambda_min is not None and lambda_min + lambda_min_slack < 0
    near = distance <= distance_tol * param_norm and not saddle
    parts = [f"‖∇L‖ = {gradient_norm:.3g}, ‖∇L‖/λ_max = {distance:.3g} vs {distance_tol:g}·‖θ‖ = {distance_tol * param_norm:.3g}"]
    if saddle:
        parts.append(f"negative curvature λ_min = {lambda_min:.3g}")
    near_a = Assumption(near, "; ".join(parts))
    if finite and interp.holds and near:
        note = "the assumptions hold: the verdicts are about the stability of this minimum"
    else:
        note = ("the verdicts are about the linearization at the current iterate, not the stability of a minimum: "
                + "; ".join(a.evidence for a in (loss_a, interp, near_a) if a.holds is False))  # fmt: skip
    return Applicability(loss_a, interp, near_a, gradient_norm, param_norm, note)
