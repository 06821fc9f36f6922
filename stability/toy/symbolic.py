"""Toy models declared once in sympy, and what gradient descent needs derived from the declaration.

A toy model is a scalar model ``f(θ; x)`` with parameter symbols ``θ = (θ_1, ..., θ_P)``, input symbols
``x = (x_1, ..., x_D)`` and data points ``(x_i, y_i)``, ``i = 1..n``. Unless the declaration overrides it,
the loss is the weighted squared error

    L(θ) = Σ_i c_i · ½ (f(θ; x_i) − y_i)²,     c_i = 1/n by default (the mean),

and everything below is derived from it symbolically:

    ∇L (P,),  H = ∇²L (P, P),  G(θ) = θ − η ∇L(θ),  ∂G/∂θ = I − η H (P, P),
    ∂f/∂x (D,),  ∂G/∂x_i = −η ∂(∇L)/∂x_i (P, D).

At an interpolating point (all residuals zero) of the default loss, ``H = Σ_i c_i g_i g_iᵀ`` with
``g_i = ∇_θ f(θ; x_i)`` and ``∂G/∂x_i = −η c_i g_i ∇_x f(x_i)ᵀ``. Linear stability of a fixed point θ* of
``G`` asks that the eigenvalues ``1 − η λ_k`` of ``∂G/∂θ`` lie inside the unit circle, i.e.
``0 < η λ_k < 2`` for every eigenvalue ``λ_k`` of the symmetric ``H`` (:func:`stable_learning_rates`).

The numeric twins live in :mod:`stability.toy.twins`: ``sympy.lambdify`` of these expressions, and
``torch.func`` applied to the same model written as a torch function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import sympy as sp
from torch import Tensor

from stability.errors import BadInputError

Point = tuple[tuple[sp.Expr, ...], sp.Expr]


TorchOutput = Callable[[Tensor, Tensor], Tensor]


TorchLoss = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class FixedSet:
    """A closed-form parametrization ``s ↦ θ(s)`` of (part of) the set of interpolating fixed points.

    Attributes:
        coords: the free coordinates ``s`` of the set (e.g. ``(w,)`` for a curve).
        point: ``θ(s)``, one expression per parameter, in the model's parameter order.
        domain: a one-line description of where the parametrization is valid (e.g. ``"w ≠ 0"``).
    """

    coords: tuple[sp.Symbol, ...]
    point: tuple[sp.Expr, ...]
    domain: str = ""


@dataclass(frozen=True)
class ToyModel:
    """A scalar model and its data, declared once in sympy; the torch twin of the same model beside it.

    Attributes:
        name: catalog name.
        params: parameter symbols ``θ`` (P of them), in the order every vector/matrix uses.
        inputs: input symbols ``x`` (D of them) of the model ``output``.
        output: ``f(θ; x)`` as a sympy expression in ``params`` and ``inputs``.
        points: data ``((x_i1, ..., x_iD), y_i)``; numbers or sympy expressions (symbolic data).
        weights: ``c_i`` of the loss, one per point; ``None`` means ``1/n`` each. A negative weight ascends
            on that point's loss (gradient splitting).
        loss_override: a loss written directly in ``params`` (no data), replacing the squared error.
        torch_output: ``f(theta: (P,), x: (D,)) -> ()``, the same model in torch (for the autodiff twin).
        torch_loss: ``L(theta: (P,)) -> ()`` in torch, required with ``loss_override``.
        fixed_set: a closed-form parametrization of the interpolating fixed points, where one is known.
    """

    name: str
    params: tuple[sp.Symbol, ...]
    inputs: tuple[sp.Symbol, ...] = ()
    output: sp.Expr = sp.Integer(0)
    points: tuple[Point, ...] = ()
    weights: tuple[sp.Expr, ...] | None = None
    loss_override: sp.Expr | None = None
    torch_output: TorchOutput | None = field(default=None, compare=False)
    torch_loss: TorchLoss | None = field(default=None, compare=False)
    fixed_set: FixedSet | None = None

    def __post_init__(self) -> None:
        if not self.params:
            raise BadInputError(f"toy model {self.name!r} declares no parameters; pass params=(symbols...)")
        if self.loss_override is None and not self.points:
            raise BadInputError(f"toy model {self.name!r} has no data points; pass points=(((x...), y), ...)")
        for i, (x, _) in enumerate(self.points):
            if len(x) != len(self.inputs):
                raise BadInputError(
                    f"toy model {self.name!r}: point {i} has {len(x)} coordinates but the model has "
                    f"{len(self.inputs)} inputs; give each point one value per input symbol"
                )
        if self.weights is not None and len(self.weights) != len(self.points):
            raise BadInputError(
                f"toy model {self.name!r}: {len(self.weights)} loss weights for {len(self.points)} points; "
                "give one weight per point or None for the mean"
            )
        if self.fixed_set is not None and len(self.fixed_set.point) != len(self.params):
            raise BadInputError(
                f"toy model {self.name!r}: the fixed set gives {len(self.fixed_set.point)} coordinates for "
                f"{len(self.params)} parameters; give one expression per parameter"
            )

    @property
    def n_points(self) -> int:
        return len(self.points)

    @property
    def loss_weights(self) -> tuple[sp.Expr, ...]:
        """``c_i``: the declared weights, or ``1/n`` each."""
        if self.weights is not None:
            return tuple(sp.sympify(c) for c in self.weights)
        return tuple(sp.Rational(1, self.n_points) for _ in self.points)

    def with_points(self, points: Sequence[tuple[Sequence[float | sp.Expr], float | sp.Expr]]) -> ToyModel:
        """The same model on other data (numbers or sympy expressions)."""
        return replace(self, points=as_points(points))

    def output_at(self, x: Sequence[sp.Expr]) -> sp.Expr:
        """``f(θ; x)`` with the input symbols replaced by ``x``."""
        return self.output.subs(dict(zip(self.inputs, x)), simultaneous=True)


def as_points(points: Sequence[tuple[Sequence[float | sp.Expr], float | sp.Expr]]) -> tuple[Point, ...]:
    """Normalize ``[((x_1, ..., x_D), y), ...]`` to sympy numbers or expressions (Python floats become sympy
    ``Float``; pass ``sympy.Rational`` for exact data)."""
    return tuple((tuple(sp.sympify(v) for v in x), sp.sympify(y)) for x, y in points)


def residuals(model: ToyModel, point_inputs: Sequence[Sequence[sp.Expr]] | None = None) -> tuple[sp.Expr, ...]:
    """``r_i = f(θ; x_i) − y_i`` for every point (``point_inputs`` replaces the ``x_i`` if given)."""
    xs = point_inputs if point_inputs is not None else [x for x, _ in model.points]
    return tuple(model.output_at(x) - y for x, (_, y) in zip(xs, model.points))


def loss(model: ToyModel, point_inputs: Sequence[Sequence[sp.Expr]] | None = None) -> sp.Expr:
    """``L(θ) = Σ_i c_i ½ r_i²``, or the declared ``loss_override``."""
    if model.loss_override is not None:
        return model.loss_override
    return sp.Add(*(c * r**2 / 2 for c, r in zip(model.loss_weights, residuals(model, point_inputs))))


def gradient(model: ToyModel) -> sp.Matrix:
    """``∇L``: a (P, 1) column."""
    L = loss(model)
    return sp.Matrix([sp.diff(L, p) for p in model.params])


def hessian(model: ToyModel) -> sp.Matrix:
    """``H = ∇²L``: (P, P), symmetric."""
    return sp.hessian(loss(model), model.params)


def gauss_newton(model: ToyModel) -> sp.Matrix:
    """``Σ_i c_i g_i g_iᵀ`` with ``g_i = ∇_θ f(θ; x_i)``: the Hessian of the squared error at interpolation."""
    if model.loss_override is not None:
        raise BadInputError(f"toy model {model.name!r} has a custom loss, so it has no Gauss-Newton matrix")
    total = sp.zeros(len(model.params), len(model.params))
    for c, g in zip(model.loss_weights, parameter_gradients(model)):
        total += c * g * g.T
    return total


def parameter_gradients(model: ToyModel) -> list[sp.Matrix]:
    """``g_i = ∇_θ f(θ; x_i)``, one (P, 1) column per data point."""
    return [sp.Matrix([sp.diff(model.output_at(x), p) for p in model.params]) for x, _ in model.points]


def gd_map(model: ToyModel, eta: sp.Expr) -> sp.Matrix:
    """``G(θ) = θ − η ∇L(θ)``: a (P, 1) column."""
    return sp.Matrix(model.params) - eta * gradient(model)


def gd_jacobian(model: ToyModel, eta: sp.Expr) -> sp.Matrix:
    """``∂G/∂θ``, differentiated from :func:`gd_map` (equal to ``I − η H``)."""
    return gd_map(model, eta).jacobian(model.params)


def input_gradient(model: ToyModel) -> sp.Matrix:
    """``∇_x f(θ; x)``: a (D, 1) column in the input symbols."""
    return sp.Matrix([sp.diff(model.output, x) for x in model.inputs])


def gd_input_jacobian(model: ToyModel, eta: sp.Expr, i: int) -> sp.Matrix:
    """``∂G/∂x_i = −η ∂(∇L)/∂x_i``: (P, D), how one GD step moves when training input ``i`` moves.

    The point's coordinates are replaced by fresh symbols, differentiated, and substituted back, so it works
    for numeric and symbolic data alike.
    """
    if model.loss_override is not None:
        raise BadInputError(f"toy model {model.name!r} has a custom loss without data inputs to differentiate")
    if not 0 <= i < model.n_points:
        raise BadInputError(f"point index {i} out of range; the model has {model.n_points} points")
    fresh = tuple(sp.Dummy(f"xi{k}") for k in range(len(model.inputs)))
    xs = [list(x) for x, _ in model.points]
    xs[i] = list(fresh)
    L = loss(model, xs)
    grad = sp.Matrix([sp.diff(L, p) for p in model.params])
    jac = -eta * grad.jacobian(fresh)
    return jac.subs(dict(zip(fresh, model.points[i][0])), simultaneous=True)


def on_fixed_set(model: ToyModel, expr: sp.Expr | sp.Matrix) -> sp.Expr | sp.Matrix:
    """``expr`` evaluated on the closed-form fixed set ``θ = θ(s)``."""
    if model.fixed_set is None:
        raise BadInputError(f"toy model {model.name!r} declares no closed-form fixed set")
    return expr.subs(dict(zip(model.params, model.fixed_set.point)), simultaneous=True)


def stable_learning_rates(eigenvalues: Sequence[sp.Expr], *, transverse: bool = True) -> sp.Set:
    """The learning rates ``η > 0`` for which ``|1 − η λ_k| < 1`` for every eigenvalue ``λ_k`` of ``H``.

    ``|1 − ηλ| < 1 ⇔ 0 < ηλ < 2``, so the set is ``(0, 2/λ_max)`` when every ``λ_k > 0`` and empty if some
    ``λ_k < 0``. With ``transverse=True`` zero eigenvalues are skipped: along a manifold of minima they belong
    to directions inside the manifold, where the multiplier 1 neither attracts nor repels, and stability is
    the statement about the remaining (normal) directions. Symbolic eigenvalues need a known sign
    (declare symbols ``positive=True``); the upper end is then ``Min(2/λ_1, 2/λ_2, ...)``.
    """
    bounds = []
    for lam in eigenvalues:
        lam = sp.sympify(lam)
        if lam.is_zero:
            if transverse:
                continue
            return sp.EmptySet
        if lam.is_negative:
            return sp.EmptySet
        if not lam.is_positive:
            raise BadInputError(
                f"cannot decide the sign of eigenvalue {lam}; declare its symbols positive=True or substitute numbers"
            )
        bounds.append(2 / lam)
    return sp.Interval.open(0, sp.Min(*bounds) if bounds else sp.oo)
