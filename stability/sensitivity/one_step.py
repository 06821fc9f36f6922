"""How one gradient-descent step responds to a training input: ``∂G/∂x_i`` per sample (docs/theory.md §2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import grad, jacfwd, jacrev, vmap

from stability.errors import BadInputError
from stability.functional import FunctionalModel, Params, as_functional, flatten
from stability.losses import check_loss, check_targets, mean_loss, targets


def _output_hessian(loss: str, out: Tensor) -> Tensor:
    """``Λ_i: (b, C, C)``."""
    eye = torch.eye(out.shape[1], dtype=out.dtype, device=out.device).expand(out.shape[0], -1, -1)
    if loss == "mse":
        return eye
    p = torch.softmax(out, -1)
    return torch.diag_embed(p) - p[:, :, None] * p[:, None, :]


def _output_residual(loss: str, out: Tensor, y: Tensor) -> Tensor:
    """``r_i = ∇_f ℓ_i: (b, C)``: zero for every sample exactly at interpolation."""
    if loss == "mse":
        return out - targets(y, out)
    return torch.softmax(out, -1) - targets(y, out)


def _gram(jac: Tensor) -> Tensor:
    """``J Jᵀ: (b, C, C)`` for ``jac: (b, C, ...)``."""
    j = jac.reshape(jac.shape[0], jac.shape[1], -1)
    return j @ j.transpose(1, 2)


def _jacobians(fm: FunctionalModel, params: Params, xb: Tensor) -> tuple[Tensor, dict[str, Tensor], Tensor]:
    """Outputs ``(b, C)``, ``J_θ`` per parameter ``(b, C, *shape)``, ``J_x: (b, C, *input_shape)``."""

    def single(p: Params, xi: Tensor) -> Tensor:
        return fm.single(p, xi).reshape(-1)

    jp, jx = vmap(jacrev(single, argnums=(0, 1)), in_dims=(None, 0))(params, xb)
    return fm(params, xb).reshape(xb.shape[0], -1), jp, jx


def _prepare(
    model: nn.Module | FunctionalModel, x: Tensor, y: Tensor | None, loss: str | None, batch_size: int | None
) -> tuple[FunctionalModel, list[tuple[Tensor, Tensor | None]]]:
    """Validate, functionalize, move ``x`` (and ``y``) to the parameters' device and dtype, and chunk."""
    if y is not None:
        check_loss(loss or "", y)
        if x.shape[0] != y.shape[0]:
            raise BadInputError(f"x and y must hold the same number of samples, not {x.shape[0]} and {y.shape[0]}")
    if x.shape[0] == 0:
        raise BadInputError("x holds no samples")
    if batch_size is not None and not (isinstance(batch_size, int) and batch_size >= 1):
        raise BadInputError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    fm = as_functional(model, None, None, False)
    if y is not None:
        check_targets(fm, x, y, loss or "")
    first = next(iter(fm.params.values()))

    def to(t: Tensor) -> Tensor:
        return t.to(device=first.device, dtype=first.dtype if t.is_floating_point() else t.dtype)

    size = batch_size or x.shape[0]
    xs = to(x).split(size)
    ys = to(y).split(size) if y is not None else [None] * len(xs)
    return fm, list(zip(xs, ys))


def _positive_lr(lr: float) -> float:
    if not float(lr) > 0:
        raise BadInputError(f"lr must be positive, got {lr}")
    return float(lr)


@dataclass(frozen=True)
class UpdateSensitivity:
    """Per-sample norms of ``∂G/∂x_i`` (module docstring, item 1), each ``(n,)``.

    Attributes:
        gauss_newton_fro, gauss_newton_spectral: ``(η/n) ‖J_θᵀ Λ_i J_x‖`` (Frobenius, spectral); the
            exact ``‖∂G/∂x_i‖`` at interpolation.
        param_factor: ``‖Λ_i J_θ‖_F`` (``‖∇_θ f(x_i)‖`` for scalar MSE models).
        input_factor: ``‖J_x‖_F`` (``‖∇_x f(x_i)‖`` for scalar models).
        product_bound: ``(η/n) · param_factor · input_factor ≥ gauss_newton_fro ≥ gauss_newton_spectral``.
        residual: ``‖r_i‖ = ‖∇_f ℓ_i‖``; the residual term of ``∂G/∂x_i`` is proportional to it.
        exact_fro: ``‖∂G/∂x_i‖_F`` by forward-mode autodiff of the GD map (``None`` unless asked).
    """

    lr: float
    n: int
    gauss_newton_fro: Tensor
    gauss_newton_spectral: Tensor
    param_factor: Tensor
    input_factor: Tensor
    product_bound: Tensor
    residual: Tensor
    exact_fro: Tensor | None
    assumptions: dict[str, bool]
    note: str

    def to_dict(self) -> dict[str, Any]:
        out = {k: (v.tolist() if isinstance(v, Tensor) else v) for k, v in self.__dict__.items()}
        return out


def update_input_sensitivity(
    model: nn.Module | FunctionalModel, x: Tensor, y: Tensor, *, lr: float, loss: str = "mse",
    batch_size: int | None = None, exact: bool = False, interpolation_tol: float = 1e-3,
) -> UpdateSensitivity:
    """How much one GD step moves the parameters per unit change of each training input.

    Cost: per sample, ``C`` reverse passes for ``J_θ`` and ``J_x`` (``vmap(jacrev)``, memory
    ``batch_size · C · (D + d)``); with ``exact``, ``d`` forward-over-reverse passes more
    (memory ``batch_size · D · d``).
    """
    lr = _positive_lr(lr)
    fm, chunks = _prepare(model, x, y, loss, batch_size)
    n, params = x.shape[0], fm.params
    cols: dict[str, list[Tensor]] = {k: [] for k in ("fro", "spec", "pf", "inf", "res", "exact")}
    for xb, yb in chunks:
        out, jp, jx = _jacobians(fm, params, xb)
        lam = _output_hessian(loss, out)
        k_theta = sum(_gram(j) for j in jp.values())
        k_x = _gram(jx)
        p = lam @ k_theta @ lam
        evals, evecs = torch.linalg.eigh(p)
        root = evecs @ torch.diag_embed(evals.clamp_min(0).sqrt()) @ evecs.transpose(1, 2)
        cols["fro"].append((p * k_x).sum((1, 2)).clamp_min(0).sqrt())
        cols["spec"].append(torch.linalg.eigvalsh(root @ k_x @ root)[:, -1].clamp_min(0).sqrt())
        cols["pf"].append(torch.diagonal(p, dim1=1, dim2=2).sum(-1).clamp_min(0).sqrt())
        cols["inf"].append(torch.diagonal(k_x, dim1=1, dim2=2).sum(-1).sqrt())
        cols["res"].append(_output_residual(loss, out, yb).norm(dim=1))
        if exact:
            def grad_i(xi: Tensor, yi: Tensor) -> Tensor:
                return flatten(grad(lambda q: mean_loss(loss, fm(q, xi[None]), yi[None]))(params))

            jac = vmap(jacfwd(grad_i))(xb, yb)
            cols["exact"].append(jac.reshape(xb.shape[0], -1).norm(dim=1))
    cat = {k: torch.cat(v).detach() if v else None for k, v in cols.items()}
    scale = lr / n
    at_interp = bool(cat["res"].max() <= interpolation_tol)
    assumptions = {"loss_is_mse": loss == "mse", "at_interpolation": at_interp}
    if loss == "mse" and at_interp:
        note = "MSE at interpolation: the Gauss-Newton norms are the exact ‖∂G/∂x_i‖ (residual term ≈ 0)."
    else:
        note = ("residuals are not zero (or the loss is cross-entropy), so ∂G/∂x_i also has a residual term "
                "proportional to ‖∇_f ℓ_i‖; the Gauss-Newton norms describe only J_θᵀ Λ J_x"
                + ("; exact_fro includes everything." if exact else "; pass exact=True for the full norm."))
    return UpdateSensitivity(
        lr, n, scale * cat["fro"], scale * cat["spec"], cat["pf"], cat["inf"], scale * cat["pf"] * cat["inf"],
        cat["res"], None if cat["exact"] is None else scale * cat["exact"], assumptions, note,
    )


def gd_map_input_jacobian(
    model: nn.Module | FunctionalModel, x: Tensor, y: Tensor, index: int, *, lr: float, loss: str = "mse"
) -> Tensor:
    """``∂G/∂x_index: (D, *input_shape)`` for the full-batch GD map ``G(θ, X) = θ − η ∇_θ L(θ; X, y)``.

    Differentiates the whole map (every sample's loss) with forward mode over ``x_index``: the
    reference that :func:`update_input_sensitivity` is checked against. Cost: ``d`` full-batch HVP-like
    passes; memory ``D · d``.
    """
    lr = _positive_lr(lr)
    fm, ((x, y),) = _prepare(model, x, y, loss, None)
    if not (isinstance(index, int) and 0 <= index < x.shape[0]):
        raise BadInputError(f"index must be an integer in [0, {x.shape[0]}), got {index!r}")
    params = fm.params

    def gd_map(xi: Tensor) -> Tensor:
        X = torch.cat([x[:index], xi[None], x[index + 1:]])
        g = grad(lambda p: mean_loss(loss, fm(p, X), y))(params)
        return flatten({k: params[k] - lr * g[k] for k in params})

    return jacfwd(gd_map)(x[index])
