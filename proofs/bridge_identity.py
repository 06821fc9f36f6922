"""The bridge identity between input and first-layer gradients.

Statement. Let ``f(x) = h(W x + b)`` for any differentiable ``h: R^m → R`` (the rest of the network), first-layer
weights ``W: (m, d)`` and bias ``b``. With ``δ = ∂f/∂z`` at ``z = Wx + b`` (equal to ``∇_b f``),

    ∇_W f = δ xᵀ,     ∇_x f = Wᵀ δ,     hence     xᵀ ∇_x f(x) = ⟨W, ∇_W f(x)⟩ = δᵀ W x,

and ``‖∇_W f‖_F = ‖δ‖ ‖x‖``. The identity turns a directional input derivative (along the data point itself)
into a parameter-space inner product — the quantity curvature controls.

Checks: sympy with ``h`` an undefined function of ``m = 2`` arguments and ``d = 3``; autodiff on a random
tanh network (two hidden layers) at random inputs, per sample with ``vmap``. Last, the library's ``first_layer_identity`` returns both sides as derived.
"""

from __future__ import annotations

import sympy as sp
import torch
from torch.func import grad, vmap

from proofs._common import Steps, check, check_close, check_zero, generator, main, mlp, mlp_module, mlp_params
from stability.dynamics.bounds import first_layer_identity


def verify(verbose: bool = False) -> None:
    step = Steps(verbose)
    m, d = 2, 3
    W = sp.Matrix(m, d, lambda i, j: sp.Symbol(f"W{i}{j}", real=True))
    x = sp.Matrix(sp.symbols(f"x0:{d}", real=True))
    b = sp.Matrix(sp.symbols(f"b0:{m}", real=True))
    f = sp.Function("h")(*(W * x + b))
    delta = sp.Matrix([sp.diff(f, bi) for bi in b])
    grad_W = sp.Matrix(m, d, lambda i, j: sp.diff(f, W[i, j]))
    grad_x = sp.Matrix([sp.diff(f, xi) for xi in x])
    check_zero(grad_W - delta * x.T, "∇_W f = δ xᵀ")
    step("symbolic: ∇_W f = δ xᵀ with δ = ∂f/∂z = ∇_b f (h undefined)")
    check_zero(grad_x - W.T * delta, "∇_x f = Wᵀ δ")
    step("symbolic: ∇_x f = Wᵀ δ")
    lhs = (x.T * grad_x)[0]
    rhs = sum(W[i, j] * grad_W[i, j] for i in range(m) for j in range(d))
    check_zero(lhs - rhs, "xᵀ∇_x f = ⟨W, ∇_W f⟩")
    step("symbolic: xᵀ ∇_x f = ⟨W, ∇_W f⟩")
    check_zero(sum(e**2 for e in grad_W) - (delta.T * delta)[0] * (x.T * x)[0], "‖∇_W f‖_F² = ‖δ‖²‖x‖²")
    step("symbolic: ‖∇_W f‖_F² = ‖δ‖² ‖x‖²")

    g = generator(1)
    dn, n = 5, 16
    params = mlp_params(g, dn)
    X = torch.randn(n, dn, generator=g, dtype=torch.float64)
    gx = vmap(grad(mlp, argnums=1), in_dims=(None, 0))(params, X)
    gp = vmap(grad(mlp), in_dims=(None, 0))(params, X)
    W0 = params["W0"]
    check_close((X * gx).sum(1), (W0 * gp["W0"]).sum((1, 2)), "autodiff: xᵀ∇_x f = ⟨W, ∇_W f⟩")
    check_close(gp["W0"], gp["b0"][:, :, None] * X[:, None, :], "autodiff: ∇_W f = δ xᵀ")
    check_close(gx, gp["b0"] @ W0, "autodiff: ∇_x f = Wᵀ δ")
    step(f"autodiff on a tanh network, {n} random inputs: all three identities to 1e-12")

    identity = first_layer_identity(mlp_module(params), X)
    check(identity.layer.acts_on_input and identity.layer.weight == "0.weight", "the library finds the first layer")
    check_close(identity.lhs[:, 0], (X * gx).sum(1), "stability.first_layer_identity: xᵀ∇_x f")
    check_close(identity.rhs[:, 0], (W0 * gp["W0"]).sum((1, 2)), "stability.first_layer_identity: ⟨W, ∇_W f⟩")
    step("the library's first_layer_identity returns both sides as derived here")


if __name__ == "__main__":
    main(verify)
