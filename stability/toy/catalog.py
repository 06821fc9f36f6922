"""The toy models, each declared once in sympy with its torch twin beside it.

| name | model | data | loss |
|---|---|---|---|
| ``two-layer-scalar`` (T1) | ``f = a b x`` | one point ``(x0, y0)`` | ``½ r²``, ``r = a b x0 − y0`` |
| ``linear-min-norm`` (T2) | ``f = wᵀx`` | ``X: (n, d)``, ``y`` | mean ``½ r_i²`` |
| ``diagonal-net`` (T3) | ``f = Σ_k u_k v_k x_k`` | ``X: (n, d)``, ``y`` | mean ``½ r_i²`` |
| ``tanh-two-point`` (T4) | ``f = a tanh(w x + b)`` | ``(−1, −1), (1, 1)`` | mean ``½ r_i²`` |
| ``gradient-splitting`` (T5) | ``f = θᵀφ`` | train ``(φ1, y1)``, held-out ``(φ2, y2)`` | ``½ r_1² − ½ r_2²`` |
| ``quartic`` | — | — | ``L(θ) = (θ² − 1)² / 4`` |
| ``finite-sample-expressivity`` | ``f = Σ_j w_j max(aᵀx − b_j, 0)`` | ``X: (n, d)``, ``y`` | mean ``½ r_i²`` |

Factories take numbers or sympy expressions for the data, so the same declaration serves the symbolic
proofs (symbolic data) and the numeric twins (numbers).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sympy as sp
import torch
from torch import Tensor

from stability.errors import BadInputError
from stability.toy.symbolic import FixedSet, ToyModel, as_points

Number = float | int | sp.Expr


def two_layer_scalar(x0: Number = 1, y0: Number = 1) -> ToyModel:
    """T1: ``f = a b x`` on one point ``(x0, y0)``; fixed set ``a b = y0/x0``, parametrized ``(s, y0/(x0 s))``."""
    a, b, x, s = sp.symbols("a b x s", real=True)
    x0, y0 = sp.sympify(x0), sp.sympify(y0)
    return ToyModel(
        name="two-layer-scalar",
        params=(a, b),
        inputs=(x,),
        output=a * b * x,
        points=as_points([((x0,), y0)]),
        torch_output=lambda th, xv: th[0] * th[1] * xv[0],
        fixed_set=FixedSet(coords=(s,), point=(s, y0 / (x0 * s)), domain="s ≠ 0"),
    )


def linear_regression(X: Sequence[Sequence[Number]], y: Sequence[Number]) -> ToyModel:
    """T2: ``f = wᵀx`` on the rows of ``X: (n, d)``; interpolants form the affine set ``{w : X w = y}``."""
    X, y, d = _data(X, y, "linear-min-norm")
    w = sp.symbols(f"w1:{d + 1}", real=True)
    x = sp.symbols(f"x1:{d + 1}", real=True)
    return ToyModel(
        name="linear-min-norm",
        params=w,
        inputs=x,
        output=sum(wk * xk for wk, xk in zip(w, x)),
        points=as_points(list(zip(X, y))),
        torch_output=lambda th, xv: th @ xv,
    )


def diagonal_net(X: Sequence[Sequence[Number]], y: Sequence[Number]) -> ToyModel:
    """T3: ``f = Σ_k u_k v_k x_k``, parameters ``(u_1..u_d, v_1..v_d)``; input gradient ``β_k = u_k v_k``."""
    X, y, d = _data(X, y, "diagonal-net")
    u = sp.symbols(f"u1:{d + 1}", real=True)
    v = sp.symbols(f"v1:{d + 1}", real=True)
    x = sp.symbols(f"x1:{d + 1}", real=True)
    return ToyModel(
        name="diagonal-net",
        params=(*u, *v),
        inputs=x,
        output=sum(uk * vk * xk for uk, vk, xk in zip(u, v, x)),
        points=as_points(list(zip(X, y))),
        torch_output=lambda th, xv: (th[:d] * th[d:] * xv).sum(),
    )


def tanh_two_point() -> ToyModel:
    """T4: ``f = a tanh(w x + b)`` on ``(−1, −1), (1, 1)``; fixed branch ``(coth w, w, 0)``, ``w ≠ 0``."""
    a, w, b, x = sp.symbols("a w b x", real=True)
    return ToyModel(
        name="tanh-two-point",
        params=(a, w, b),
        inputs=(x,),
        output=a * sp.tanh(w * x + b),
        points=as_points([((-1,), -1), ((1,), 1)]),
        torch_output=lambda th, xv: th[0] * torch.tanh(th[1] * xv[0] + th[2]),
        fixed_set=FixedSet(coords=(w,), point=(sp.coth(w), w, sp.Integer(0)), domain="w ≠ 0"),
    )


def gradient_splitting(angle: Number = sp.pi / 3, y_train: Number = 1, y_heldout: Number = 1) -> ToyModel:
    """T5: ``f = θᵀφ`` with unit features ``φ1 = (1, 0)`` (trained) and ``φ2 = (cos α, sin α)`` (anti-trained).

    ``J(θ) = ½ (θᵀφ1 − y1)² − ½ (θᵀφ2 − y2)²`` (loss weights ``+1, −1``). Its only critical point for
    ``sin α ≠ 0`` fits both points: ``θ* = (y1, (y2 − y1 cos α) / sin α)``.
    """
    t1, t2, x1, x2 = sp.symbols("theta1 theta2 x1 x2", real=True)
    al, y1, y2 = sp.sympify(angle), sp.sympify(y_train), sp.sympify(y_heldout)
    return ToyModel(
        name="gradient-splitting",
        params=(t1, t2),
        inputs=(x1, x2),
        output=t1 * x1 + t2 * x2,
        points=as_points([((1, 0), y1), ((sp.cos(al), sp.sin(al)), y2)]),
        weights=(sp.Integer(1), sp.Integer(-1)),
        torch_output=lambda th, xv: th @ xv,
        fixed_set=FixedSet(coords=(), point=(y1, (y2 - y1 * sp.cos(al)) / sp.sin(al)), domain="sin α ≠ 0"),
    )


def quartic() -> ToyModel:
    """``L(θ) = (θ² − 1)² / 4``: minima ``θ = ±1`` (curvature 2), GD map ``θ − η θ (θ² − 1)``."""
    th = sp.Symbol("theta", real=True)
    return ToyModel(
        name="quartic",
        params=(th,),
        loss_override=(th**2 - 1) ** 2 / 4,
        torch_loss=lambda t: (t[0] ** 2 - 1) ** 2 / 4,
        fixed_set=FixedSet(coords=(), point=(sp.Integer(1),), domain="θ = 1; θ = −1 by symmetry"),
    )


def finite_sample_network(X: Sequence[Sequence[Number]], y: Sequence[Number]) -> ToyModel:
    """Zhang et al.'s depth-2 ReLU net ``f = Σ_j w_j max(aᵀx − b_j, 0)`` with ``n`` units: ``2n + d`` weights,
    parameters ordered ``(a_1..a_d, b_1..b_n, w_1..w_n)``. The interpolating point is constructed by
    :func:`stability.toy.expressivity.fit_finite_sample`."""
    X, y, d = _data(X, y, "finite-sample-expressivity")
    n = len(X)
    a = sp.symbols(f"a1:{d + 1}", real=True)
    b = sp.symbols(f"b1:{n + 1}", real=True)
    w = sp.symbols(f"w1:{n + 1}", real=True)
    x = sp.symbols(f"x1:{d + 1}", real=True)
    z = sum(ak * xk for ak, xk in zip(a, x))

    def torch_output(th: Tensor, xv: Tensor) -> Tensor:
        return (th[d + n :] * torch.relu(th[:d] @ xv - th[d : d + n])).sum()

    return ToyModel(
        name="finite-sample-expressivity",
        params=(*a, *b, *w),
        inputs=x,
        output=sum(wj * sp.Max(z - bj, 0) for wj, bj in zip(w, b)),
        points=as_points(list(zip(X, y))),
        torch_output=torch_output,
    )


def _data(X: Sequence[Sequence[Number]], y: Sequence[Number], name: str) -> tuple[list, list, int]:
    """Rows of ``X`` and labels ``y`` as Python lists (tensors and arrays accepted), and the width ``d``."""
    X = X.tolist() if hasattr(X, "tolist") else list(X)
    y = y.tolist() if hasattr(y, "tolist") else list(y)
    if any(not isinstance(row, Sequence) for row in X):
        raise BadInputError(f"{name}: X must be an (n, d) array (a list of rows), not a flat list")
    X = [list(row) for row in X]
    if len(X) == 0 or len(X) != len(y):
        raise BadInputError(f"{name}: X has {len(X)} rows and y has {len(y)} labels; give one label per row (n ≥ 1)")
    widths = {len(row) for row in X}
    if len(widths) != 1 or 0 in widths:
        raise BadInputError(f"{name}: the rows of X have lengths {sorted(widths)}; give an (n, d) array with d ≥ 1")
    return X, y, widths.pop()


CATALOG: dict[str, Callable[..., ToyModel]] = {
    "two-layer-scalar": two_layer_scalar,
    "linear-min-norm": linear_regression,
    "diagonal-net": diagonal_net,
    "tanh-two-point": tanh_two_point,
    "gradient-splitting": gradient_splitting,
    "quartic": quartic,
    "finite-sample-expressivity": finite_sample_network,
}
