"""How one gradient-descent step responds to a training input: ``∂G/∂x_i`` per sample (docs/theory.md §2)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import grad, jacfwd, jacrev, vmap

from stability.checks import check_chunk_size, check_index, check_positive
from stability.errors import BadInputError
from stability.functional import FunctionalModel, Params, as_functional, flatten
from stability.losses import Loss, check_targets


def _eigh(m: Tensor) -> tuple[Tensor, Tensor]:
    """Eigenpairs of the symmetric part of ``m: (b, C, C)``, in ``m``'s dtype.

    ``eigh`` may fail to converge on ill-conditioned float32 input (LAPACK's ``syevd``); the matrix is then
    decomposed in float64, and if that fails too, with a relative jitter ``1e-12 max|m|`` on the diagonal
    (far below float32 resolution), so the measure returns a value instead of an error.
    """
    sym = (m + m.transpose(1, 2)) / 2
    for attempt in (sym, sym.double()):
        try:
            evals, evecs = torch.linalg.eigh(attempt)
            return evals.to(m.dtype), evecs.to(m.dtype)
        except torch.linalg.LinAlgError:
            continue
    scale = sym.double().abs().amax(dim=(1, 2), keepdim=True).clamp_min(1e-300)
    eye = torch.eye(sym.shape[-1], dtype=torch.float64, device=sym.device)
    evals, evecs = torch.linalg.eigh(sym.double() + 1e-12 * scale * eye)
    return evals.to(m.dtype), evecs.to(m.dtype)


def _psd_sqrt(p: Tensor) -> Tensor:
    """``P^{1/2}`` of positive semi-definite ``p: (b, C, C)``, eigenvalues clamped at 0 (see :func:`_eigh`)."""
    evals, evecs = _eigh(p)
    return evecs @ torch.diag_embed(evals.clamp_min(0).sqrt()) @ evecs.transpose(1, 2)


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
    model: nn.Module | FunctionalModel, x: Tensor, y: Tensor | None, loss: str | None, chunk_size: int | None,
    params: Params | None,
) -> tuple[FunctionalModel, Loss | None, list[tuple[Tensor, Tensor | None]]]:
    """Validate, functionalize (at ``params``), move ``x`` (and ``y``) to the parameters' device and dtype,
    and split into chunks of ``chunk_size`` samples."""
    if not isinstance(x, Tensor) or x.dim() == 0 or x.shape[0] == 0:
        raise BadInputError("x holds no samples; pass a batch of shape (n, *input_shape)")
    check_chunk_size(chunk_size)
    fm = as_functional(model, params=params)
    entry = None if y is None else check_targets(fm, x, y, loss or "")
    first = next(iter(fm.params.values()))

    def to(t: Tensor) -> Tensor:
        return t.to(device=first.device, dtype=first.dtype if t.is_floating_point() else t.dtype)

    size = chunk_size or x.shape[0]
    xs = to(x).split(size)
    ys = to(y).split(size) if y is not None else [None] * len(xs)
    return fm, entry, list(zip(xs, ys))


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


def update_input_sensitivity(
    model: nn.Module | FunctionalModel, x: Tensor, y: Tensor, *, lr: float, params: Params | None = None,
    loss: str = "mse", chunk_size: int | None = None, exact: bool = False, interpolation_tol: float = 1e-3,
) -> UpdateSensitivity:
    """How much one GD step moves the parameters per unit change of each training input.

    ``Λ_i`` and ``r_i`` are the registry's output Hessian and gradient (:mod:`stability.losses`), so any
    registered loss is measured as it is. Cost: per sample, ``C`` reverse passes for ``J_θ`` and ``J_x``
    (``vmap(jacrev)``, memory ``chunk_size · C · (D + d)``); with ``exact``, ``d`` forward-over-reverse
    passes more (memory ``chunk_size · D · d``).
    """
    lr = check_positive("lr", lr)
    fm, entry, chunks = _prepare(model, x, y, loss, chunk_size, params)
    n, params = x.shape[0], fm.params
    cols: dict[str, list[Tensor]] = {k: [] for k in ("fro", "spec", "pf", "inf", "res", "exact")}
    for xb, yb in chunks:
        out, jp, jx = _jacobians(fm, params, xb)
        lam = entry.output_hessian(out, yb)
        k_theta = sum(_gram(j) for j in jp.values())
        k_x = _gram(jx)
        p = lam @ k_theta @ lam
        root = _psd_sqrt(p)
        cols["fro"].append((p * k_x).sum((1, 2)).clamp_min(0).sqrt())
        cols["spec"].append(_eigh(root @ k_x @ root)[0][:, -1].clamp_min(0).sqrt())
        cols["pf"].append(torch.diagonal(p, dim1=1, dim2=2).sum(-1).clamp_min(0).sqrt())
        cols["inf"].append(torch.diagonal(k_x, dim1=1, dim2=2).sum(-1).sqrt())
        cols["res"].append(entry.output_gradient(out, yb).norm(dim=1))
        if exact:
            def grad_i(xi: Tensor, yi: Tensor) -> Tensor:
                return flatten(grad(lambda q: entry.mean(fm(q, xi[None]).flatten(1), yi[None]))(params))

            jac = vmap(jacfwd(grad_i))(xb, yb)
            cols["exact"].append(jac.reshape(xb.shape[0], -1).norm(dim=1))
    cat = {k: torch.cat(v).detach() if v else None for k, v in cols.items()}
    scale = lr / n
    at_interp = bool(cat["res"].max() <= interpolation_tol)
    assumptions = {"loss_is_mse": loss == "mse", "at_interpolation": at_interp}
    if loss == "mse" and at_interp:
        note = "MSE at interpolation: the Gauss-Newton norms are the exact ‖∂G/∂x_i‖ (residual term ≈ 0)."
    else:
        note = (f"residuals are not zero (or the loss is {loss}, not mse), so ∂G/∂x_i also has a residual term "
                "proportional to ‖∇_f ℓ_i‖; the Gauss-Newton norms describe only J_θᵀ Λ J_x"
                + ("; exact_fro includes everything." if exact else "; pass exact=True for the full norm."))
    return UpdateSensitivity(
        lr, n, scale * cat["fro"], scale * cat["spec"], cat["pf"], cat["inf"], scale * cat["pf"] * cat["inf"],
        cat["res"], None if cat["exact"] is None else scale * cat["exact"], assumptions, note,
    )


def gd_map_input_jacobian(
    model: nn.Module | FunctionalModel, x: Tensor, y: Tensor, *, index: int, lr: float,
    params: Params | None = None, loss: str = "mse",
) -> Tensor:
    """``∂G/∂x_index: (D, *input_shape)`` for the full-batch GD map ``G(θ, X) = θ − η ∇_θ L(θ; X, y)``.

    Differentiates the whole map (every sample's loss) with forward mode over ``x_index``: the
    reference that :func:`update_input_sensitivity` is checked against. Cost: ``d`` full-batch HVP-like
    passes; memory ``D · d``.
    """
    lr = check_positive("lr", lr)
    fm, entry, ((x, y),) = _prepare(model, x, y, loss, None, params)
    index = check_index("index", index, x.shape[0])
    params = fm.params

    def gd_map(xi: Tensor) -> Tensor:
        X = torch.cat([x[:index], xi[None], x[index + 1:]])
        g = grad(lambda p: entry.mean(fm(p, X).flatten(1), y))(params)
        return flatten({k: params[k] - lr * g[k] for k in params})

    return jacfwd(gd_map)(x[index])
