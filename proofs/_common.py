"""What every proof script shares: step logging, exact and numeric checks, the ``__main__`` runner."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import sympy as sp
import torch


class Steps:
    """Prints numbered steps when verbose; silent otherwise."""

    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose
        self.n = 0

    def __call__(self, message: str) -> None:
        self.n += 1
        if self.verbose:
            print(f"[{self.n}] {message}")


def is_zero(expr: sp.Expr | sp.Matrix) -> bool:
    """Exact check that ``expr`` simplifies to zero (entrywise for matrices)."""
    if isinstance(expr, sp.MatrixBase):
        return all(is_zero(e) for e in expr)
    expr = sp.sympify(expr)
    return expr == 0 or sp.simplify(expr) == 0 or sp.simplify(sp.expand(expr.rewrite(sp.exp))) == 0


def check_zero(expr: sp.Expr | sp.Matrix, what: str) -> None:
    """Raise ``AssertionError`` naming ``what`` unless ``expr`` is identically zero."""
    if not is_zero(expr):
        raise AssertionError(f"{what}: expected 0, got {sp.simplify(expr)}")


def check_equal(a: sp.Expr | sp.Matrix, b: sp.Expr | sp.Matrix, what: str) -> None:
    check_zero(sp.Matrix(a) - sp.Matrix(b) if isinstance(a, sp.MatrixBase) else a - b, what)


def check_close(a: object, b: object, what: str, *, rtol: float = 1e-12, atol: float = 1e-12) -> None:
    """Numeric check ``|a − b| ≤ atol + rtol |b|`` entrywise (tensors, arrays or numbers)."""
    a_, b_ = _array(a), _array(b)
    if a_.shape != b_.shape:
        raise AssertionError(f"{what}: shapes differ, {a_.shape} vs {b_.shape}")
    err = np.abs(a_ - b_)
    if not np.all(err <= atol + rtol * np.abs(b_)):
        raise AssertionError(f"{what}: max error {err.max():.3e} exceeds atol={atol:g}, rtol={rtol:g}")


def check(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _array(x: object) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    if isinstance(x, sp.MatrixBase):
        return np.array(x.evalf(), dtype=np.float64)
    return np.asarray(x, dtype=np.float64)


def main(verify: Callable[..., None]) -> None:
    """The ``__main__`` block of every proof: run verbosely, then say so."""
    verify(verbose=True)
    print("verified")


def mlp_params(gen: torch.Generator, d: int, widths: tuple[int, ...] = (6, 4)) -> dict[str, torch.Tensor]:
    """Random float64 weights of a scalar tanh MLP whose first layer is linear in the input: ``z = W x + b``."""
    sizes = (d, *widths)
    params: dict[str, torch.Tensor] = {}
    for k, (m, n) in enumerate(zip(sizes[:-1], sizes[1:])):
        params[f"W{k}"] = torch.randn(n, m, generator=gen, dtype=torch.float64) / m**0.5
        params[f"b{k}"] = 0.1 * torch.randn(n, generator=gen, dtype=torch.float64)
    params["v"] = torch.randn(sizes[-1], generator=gen, dtype=torch.float64) / sizes[-1] ** 0.5
    return params


def mlp(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``f(x) = vᵀ tanh(W_L ... tanh(W_0 x + b_0) ... + b_L)`` for one sample ``x: (d,)``; returns ``()``."""
    h = x
    k = 0
    while f"W{k}" in params:
        h = torch.tanh(params[f"W{k}"] @ h + params[f"b{k}"])
        k += 1
    return params["v"] @ h


def mlp_module(params: dict[str, torch.Tensor]) -> torch.nn.Sequential:
    """The same network as :func:`mlp` as an ``nn.Module`` mapping ``(B, d)`` to ``(B, 1)``, for the library's
    measures (which take modules); its weights are copies of ``params``."""
    layers: list[torch.nn.Module] = []
    k = 0
    while f"W{k}" in params:
        W = params[f"W{k}"]
        linear = torch.nn.Linear(W.shape[1], W.shape[0], dtype=torch.float64)
        with torch.no_grad():
            linear.weight.copy_(W)
            linear.bias.copy_(params[f"b{k}"])
        layers += [linear, torch.nn.Tanh()]
        k += 1
    head = torch.nn.Linear(params["v"].numel(), 1, bias=False, dtype=torch.float64)
    with torch.no_grad():
        head.weight.copy_(params["v"][None])
    return torch.nn.Sequential(*layers, head)


def flatten(params: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Callable[[torch.Tensor], dict[str, torch.Tensor]]]:
    """A flat parameter vector and the map back to the dict (for dense Hessians over all parameters)."""
    names = list(params)
    shapes = [params[k].shape for k in names]
    sizes = [params[k].numel() for k in names]
    flat = torch.cat([params[k].reshape(-1) for k in names])

    def unflatten(vec: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: p.reshape(s) for k, p, s in zip(names, vec.split(sizes), shapes)}

    return flat, unflatten


def undefined_mse(n: int = 2, params: int = 2, dim: int = 2):
    """A scalar model ``F(θ; x)`` left undefined (sympy), ``n`` samples of ``dim`` inputs and the loss
    ``L = (1/n) Σ_i ½ (F(θ; x_i) − y_i)²``: returns ``(θ symbols, per-sample input symbols, labels, outputs, L)``."""
    t = sp.symbols(f"theta1:{params + 1}", real=True)
    X = [sp.symbols(f"x{i}_1:{dim + 1}", real=True) for i in range(n)]
    ys = sp.symbols(f"y0:{n}", real=True)
    F = sp.Function("F")
    outs = [F(*t, *x) for x in X]
    return t, X, ys, outs, sum((o - y) ** 2 / 2 for o, y in zip(outs, ys)) / n
