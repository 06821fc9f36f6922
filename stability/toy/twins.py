"""Two numeric twins of a :class:`~stability.toy.symbolic.ToyModel`, computed independently.

- :func:`lambdify_twin`: the symbolic derivations of :mod:`stability.toy.symbolic` turned into NumPy
  functions by ``sympy.lambdify``.
- :func:`torch_twin`: the model's own torch function differentiated by ``torch.func`` (``grad``,
  ``hessian``, ``jacrev``), never looking at the sympy expressions.

Both expose the same quantities with the same shapes (``θ: (P,)``, ``x: (D,)``, ``n`` data points):
``loss () | gradient (P,) | hessian (P, P) | gd_map (P,) | gd_jacobian (P, P) | output () |
input_gradient (D,) | gd_input_jacobian (n, P, D)``. Agreement of the two at random points (float64) is
the check that the symbolic derivation and the model's code describe the same thing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import sympy as sp
import torch
from torch import Tensor
from torch.func import grad, hessian, jacrev, vmap

from stability.errors import BadInputError
from stability.toy import symbolic as S
from stability.toy.symbolic import ToyModel

# The second derivative of max(z, 0) is a Dirac delta at the kink; away from it (almost everywhere, and
# where autodiff evaluates it) it is zero.
_MODULES = [{"DiracDelta": lambda z, *order: 0.0 * np.asarray(z, dtype=np.float64)}, "numpy"]


@dataclass(frozen=True)
class NumpyTwin:
    """Lambdified derivations; every function takes ``theta: (P,)`` (and ``eta``, ``x`` where named)."""

    loss: Callable[[np.ndarray], float]
    gradient: Callable[[np.ndarray], np.ndarray]
    hessian: Callable[[np.ndarray], np.ndarray]
    gd_map: Callable[[np.ndarray, float], np.ndarray]
    gd_jacobian: Callable[[np.ndarray, float], np.ndarray]
    output: Callable[[np.ndarray, np.ndarray], float] | None
    input_gradient: Callable[[np.ndarray, np.ndarray], np.ndarray] | None
    gd_input_jacobian: Callable[[np.ndarray, float], np.ndarray] | None


def lambdify_twin(model: ToyModel) -> NumpyTwin:
    """NumPy functions of the symbolic loss, gradient, Hessian, GD map and the input sensitivities.

    Cost: one symbolic differentiation per entry (``P² + P(1 + nD)``), paid once here.
    """
    _require_numeric_data(model)
    theta = list(model.params)
    eta = sp.Dummy("eta")
    x = list(model.inputs)

    def vec(expr: sp.Matrix, *args: object, column: bool = True) -> Callable[..., np.ndarray]:
        fn = sp.lambdify(list(args), expr, _MODULES)
        shape = (expr.shape[0],) if column else expr.shape
        # constant entries come back as Python scalars; broadcasting fixes their shape
        return lambda *a: np.broadcast_to(np.asarray(fn(*a), dtype=np.float64).reshape(shape), shape).copy()

    loss_fn = sp.lambdify([theta], S.loss(model), _MODULES)
    has_inputs = model.loss_override is None and bool(model.inputs)
    out_fn = sp.lambdify([theta, x], model.output, _MODULES) if has_inputs else None
    input_jacs = (
        [vec(S.gd_input_jacobian(model, eta, i), theta, eta, column=False) for i in range(model.n_points)]
        if has_inputs
        else []
    )
    return NumpyTwin(
        loss=lambda t: float(loss_fn(t)),
        gradient=vec(S.gradient(model), theta),
        hessian=vec(S.hessian(model), theta, column=False),
        gd_map=vec(S.gd_map(model, eta), theta, eta),
        gd_jacobian=vec(S.gd_jacobian(model, eta), theta, eta, column=False),
        output=(lambda t, xv: float(out_fn(t, xv))) if out_fn else None,
        input_gradient=vec(S.input_gradient(model), theta, x) if has_inputs else None,
        gd_input_jacobian=(lambda t, e: np.stack([j(t, e) for j in input_jacs])) if has_inputs else None,
    )


@dataclass(frozen=True)
class TorchTwin:
    """``torch.func`` derivatives of the model's torch function on its data.

    Attributes:
        output_fn: ``f(theta: (P,), x: (D,)) -> ()``; ``None`` for a loss declared without data.
        X: inputs ``(n, D)``; Y: labels ``(n,)``; c: loss weights ``(n,)``.
        loss_fn: ``L(theta) -> ()`` when the model overrides the squared error.
    """

    output_fn: Callable[[Tensor, Tensor], Tensor] | None
    X: Tensor
    Y: Tensor
    c: Tensor
    loss_fn: Callable[[Tensor], Tensor] | None = None

    def output(self, theta: Tensor, x: Tensor) -> Tensor:
        return self._f()(theta, x)

    def outputs(self, theta: Tensor, X: Tensor | None = None) -> Tensor:
        """``f(θ; x_i)`` for every row of ``X`` (default: the data), shape ``(n,)``."""
        return vmap(self._f(), in_dims=(None, 0))(theta, self.X if X is None else X)

    def loss_at(self, theta: Tensor, X: Tensor) -> Tensor:
        """``Σ_i c_i ½ (f(θ; X_i) − y_i)²`` with the inputs given explicitly (to differentiate in them)."""
        r = self.outputs(theta, X) - self.Y
        return 0.5 * (self.c * r * r).sum()

    def loss(self, theta: Tensor) -> Tensor:
        return self.loss_fn(theta) if self.loss_fn is not None else self.loss_at(theta, self.X)

    def gradient(self, theta: Tensor) -> Tensor:
        return grad(self.loss)(theta)

    def hessian(self, theta: Tensor) -> Tensor:
        return hessian(self.loss)(theta)

    def gd_map(self, theta: Tensor, eta: Tensor | float) -> Tensor:
        return theta - eta * self.gradient(theta)

    def gd_jacobian(self, theta: Tensor, eta: Tensor | float) -> Tensor:
        """``∂G/∂θ`` by reverse mode through the map itself (not assembled from the Hessian)."""
        return jacrev(self.gd_map)(theta, eta)

    def input_gradient(self, theta: Tensor, x: Tensor) -> Tensor:
        return grad(self._f(), argnums=1)(theta, x)

    def parameter_gradients(self, theta: Tensor) -> Tensor:
        """``g_i = ∇_θ f(θ; x_i)`` for every data point, shape ``(n, P)``."""
        return vmap(grad(self._f()), in_dims=(None, 0))(theta, self.X)

    def gd_input_jacobian(self, theta: Tensor, eta: Tensor | float) -> Tensor:
        """``∂G/∂x_i`` for every point, shape ``(n, P, D)``; one ``jacrev`` through ``θ − η∇L(θ; X)``."""

        def step(X: Tensor) -> Tensor:
            return theta - eta * grad(self.loss_at)(theta, X)

        return jacrev(step)(self.X).permute(1, 0, 2)

    def _f(self) -> Callable[[Tensor, Tensor], Tensor]:
        if self.output_fn is None:
            raise BadInputError("this toy model is declared by its loss alone; it has no inputs to differentiate")
        return self.output_fn


def torch_twin(
    model: ToyModel, *, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> TorchTwin:
    """The autodiff twin of ``model`` on its (numeric) data, as tensors of ``dtype`` on ``device``."""
    _require_numeric_data(model)
    if model.loss_override is not None and model.torch_loss is None:
        raise BadInputError(f"toy model {model.name!r} overrides the loss but gives no torch_loss; add one")
    if model.loss_override is None and model.torch_output is None:
        raise BadInputError(f"toy model {model.name!r} has no torch_output; add the model as a torch function")
    kw = {"dtype": dtype, "device": device}
    n, d = model.n_points, len(model.inputs)
    X = torch.tensor([[float(v) for v in x] for x, _ in model.points], **kw).reshape(n, d)
    Y = torch.tensor([float(y) for _, y in model.points], **kw).reshape(n)
    c = torch.tensor([float(w) for w in model.loss_weights], **kw).reshape(n)
    return TorchTwin(output_fn=model.torch_output, X=X, Y=Y, c=c, loss_fn=model.torch_loss)


def _require_numeric_data(model: ToyModel) -> None:
    for i, (x, y) in enumerate(model.points):
        free = set().union(*(sp.sympify(v).free_symbols for v in (*x, y)))
        if free:
            names = ", ".join(sorted(str(s) for s in free))
            raise BadInputError(
                f"toy model {model.name!r}: point {i} is symbolic ({names}); substitute numbers with "
                "model.with_points(...) before building a numeric twin"
            )
