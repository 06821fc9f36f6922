"""Curvature of the training loss as a matrix-free operator: Hessian- and Gauss-Newton-vector products.

For a model ``f(θ, x)`` and per-sample loss ``ℓ``, the training loss is ``L(θ) = (1/n) Σ_i ℓ(f(θ, x_i), y_i)``
(the conventions of :mod:`stability.losses`: mean cross-entropy, or ``(1/2n) Σ ‖f − t‖²``). Two curvature
matrices of size ``D × D`` (``D`` = number of parameters):

- Hessian ``H = ∇²_θ L``; ``H v = jvp(grad(L), θ, v)`` (forward-over-reverse, one product costs about
  two to three gradients).
- Generalized Gauss-Newton ``G = (1/n) Σ_i J_iᵀ Λ_i J_i`` with ``J_i = ∂f(θ, x_i)/∂θ`` and the output
  Hessian ``Λ_i = ∇²_f ℓ``: ``Λ = I`` for MSE, ``Λ = diag(p) − p pᵀ`` (``p = softmax f``) for cross-entropy.
  ``G v`` = one ``jvp`` (``J v``), ``Λ`` in closed form, one ``vjp`` (``Jᵀ ·``). ``G ⪰ 0`` always; at an
  interpolating minimum of MSE (zero residuals) ``G = H``.

Both are summed over chunks of ``batch_size`` samples (weight ``b_c / n`` each), so memory is that of
one chunk whatever ``n`` is. :class:`CurvatureOperator` fixes the evaluation set (optionally a seeded
subset, so estimates are comparable across a run) and exposes ``v ↦ C v`` on flat vectors for the
solvers of :mod:`stability.linalg` and :mod:`stability.spectral`, re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import grad, jvp, vjp, vmap

from .errors import BadInputError
from .functional import FunctionalModel, Params, functionalize
from .linalg import EigenResult, MatrixOperator, SymmetricOperator, power_iteration, top_eigenvalues
from .spectral import SpectralDensity, TraceResult, hutchinson_trace, hutchpp_trace, spectral_density

__all__ = [
    "CurvatureOperator", "EigenResult", "MatrixOperator", "SpectralDensity", "SymmetricOperator",
    "TraceResult", "flatten", "ggn_vector_product", "hessian_vector_product", "hutchinson_trace",
    "hutchpp_trace", "power_iteration", "spectral_density", "top_eigenvalues", "unflatten",
]

CURVATURES = ("hessian", "ggn")
LOSS_NAMES = ("cross-entropy", "mse", "bounded-cross-entropy")
ModelFn = Callable[[Params, Tensor], Tensor]


def flatten(tensors: dict[str, Tensor]) -> Tensor:
    """Concatenate a parameter-shaped dict into one vector ``(D,)`` (in the dict's order)."""
    return torch.cat([t.reshape(-1) for t in tensors.values()])


def unflatten(vec: Tensor, like: dict[str, Tensor]) -> dict[str, Tensor]:
    """Inverse of :func:`flatten`: split ``vec: (D,)`` into tensors shaped like ``like``'s values."""
    sizes = [t.numel() for t in like.values()]
    if vec.shape != (sum(sizes),):
        raise BadInputError(f"vector has shape {tuple(vec.shape)}, expected ({sum(sizes)},) for the parameters")
    return {name: part.view_as(t) for (name, t), part in zip(like.items(), vec.split(sizes))}


def check_loss(loss: str, y: Tensor) -> None:
    """Refuse a loss the curvature code has no output Hessian for, or labels that do not fit it."""
    if loss not in LOSS_NAMES:
        raise BadInputError(f"loss {loss!r} is not one of: {', '.join(LOSS_NAMES)}")
    if loss != "mse" and y.is_floating_point():
        raise BadInputError(f"{loss} needs integer class labels y; use loss='mse' for real targets")


def mean_loss(loss: str, out: Tensor, y: Tensor) -> Tensor:
    """``(1/B) Σ_i ℓ(out_i, y_i)`` for ``out: (B, C)``.

    ``mse`` takes integer labels (one-hot targets, as :func:`stability.losses.mse`) or real targets
    ``y`` with ``out.numel()`` entries (regression: ``(1/2B) Σ ‖out_i − y_i‖²``).
    """
    out = out.reshape(out.shape[0], -1)
    if loss == "cross-entropy":
        return F.cross_entropy(out, y)
    if loss == "bounded-cross-entropy":
        return F.cross_entropy(torch.softmax(out, -1), y)
    return 0.5 * (out - targets(y, out)).pow(2).sum(-1).mean()


def targets(y: Tensor, out: Tensor) -> Tensor:
    """MSE targets shaped like ``out: (B, C)``: real ``y`` reshaped, or one-hot rows of integer labels.

    The one-hot is built by comparison rather than ``F.one_hot``, which ``vmap`` cannot batch.
    """
    if y.is_floating_point():
        return y.reshape(out.shape).to(out.dtype)
    return (y[:, None] == torch.arange(out.shape[1], device=out.device)).to(out.dtype)


def output_hessian_product(loss: str, out: Tensor, u: Tensor) -> Tensor:
    """``Λ_i u_i`` per row for ``out, u: (B, C)``: ``u`` for MSE, ``p ⊙ u − p (pᵀ u)`` for cross-entropy."""
    if loss == "mse":
        return u
    p = torch.softmax(out.reshape(out.shape[0], -1), dim=-1).reshape(out.shape)
    return p * u - p * (p * u).sum(-1, keepdim=True)


def _hvp_chunk(f: ModelFn, loss: str, params: Params, xb: Tensor, yb: Tensor, v: Params) -> Params:
    """``∇²_θ L_b v`` for the chunk's mean loss ``L_b``."""
    return jvp(grad(lambda p: mean_loss(loss, f(p, xb), yb)), (params,), (v,))[1]


def _ggn_chunk(f: ModelFn, loss: str, params: Params, xb: Tensor, yb: Tensor, v: Params) -> Params:
    """``(1/b) Σ_i J_iᵀ Λ_i J_i v`` over the chunk."""
    out, pullback = vjp(lambda p: f(p, xb), params)
    _, jv = jvp(lambda p: f(p, xb), (params,), (v,))
    return pullback(output_hessian_product(loss, out, jv) / xb.shape[0])[0]


CHUNK_PRODUCTS = {"hessian": _hvp_chunk, "ggn": _ggn_chunk}


def _chunks(x: Tensor, y: Tensor, batch_size: int | None) -> list[tuple[Tensor, Tensor]]:
    size = batch_size or x.shape[0]
    return list(zip(x.split(size), y.split(size)))


def _accumulate(
    product: Callable[..., Params], f: ModelFn, loss: str, params: Params,
    chunks: Iterable[tuple[Tensor, Tensor]], v: Params, n: int,
) -> Params:
    total: Params | None = None
    for xb, yb in chunks:
        part = product(f, loss, params, xb, yb, v)
        w = xb.shape[0] / n
        if total is None:
            total = {k: t * w for k, t in part.items()}
        else:
            total = {k: total[k] + t * w for k, t in part.items()}
    assert total is not None
    return total


def hessian_vector_product(
    f: ModelFn, params: Params, x: Tensor, y: Tensor, v: Params, *, loss: str = "cross-entropy",
    batch_size: int | None = None,
) -> Params:
    """``H v`` with ``H = ∇²_θ L(θ)``, ``L = (1/n) Σ_i ℓ(f(θ, x_i), y_i)``, on parameter dicts.

    ``x: (n, *input_shape)``, ``y: (n,)`` labels (or real targets for MSE), ``v`` shaped like ``params``.
    Cost: about 2–3 gradient evaluations over the ``n`` samples, in chunks of ``batch_size``.
    """
    check_loss(loss, y)
    return _accumulate(_hvp_chunk, f, loss, params, _chunks(x, y, batch_size), v, x.shape[0])


def ggn_vector_product(
    f: ModelFn, params: Params, x: Tensor, y: Tensor, v: Params, *, loss: str = "cross-entropy",
    batch_size: int | None = None,
) -> Params:
    """``G v`` with ``G = (1/n) Σ_i J_iᵀ Λ_i J_i`` (see module docstring), on parameter dicts.

    Cost: two forwards, one ``jvp`` and one ``vjp`` over the ``n`` samples (cheaper than ``H v``).
    """
    check_loss(loss, y)
    return _accumulate(_ggn_chunk, f, loss, params, _chunks(x, y, batch_size), v, x.shape[0])


def seeded_subset(n: int, subset: int | None, seed: int) -> Tensor | None:
    """Sorted indices of a fixed ``subset``-sized sample of ``range(n)`` (``None``: use all)."""
    if subset is None:
        return None
    if not (isinstance(subset, int) and subset >= 1):
        raise BadInputError(f"subset must be a positive integer or None, got {subset!r}")
    if subset >= n:
        return None
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=gen)[:subset].sort().values


def _predicate(param_filter: Callable[[str], bool] | Iterable[str] | None) -> Callable[[str], bool]:
    if param_filter is None:
        return lambda name: True
    if callable(param_filter):
        return param_filter
    names = frozenset([param_filter] if isinstance(param_filter, str) else param_filter)
    return names.__contains__


def as_functional(
    model: nn.Module | FunctionalModel, dtype: torch.dtype | None,
    param_filter: Callable[[str], bool] | Iterable[str] | None, allow_stochastic: bool,
) -> FunctionalModel:
    """``model`` as a :class:`FunctionalModel` whose differentiable parameters pass ``param_filter``."""
    keep = _predicate(param_filter)
    if isinstance(model, nn.Module):
        names = [name for name, _ in model.named_parameters()]
    elif isinstance(model, FunctionalModel):
        names = list(model.params)
    else:
        raise BadInputError(f"model must be an nn.Module or a FunctionalModel, got {type(model).__name__}")
    if not any(keep(name) for name in names):
        have = ", ".join(names[:4]) or "none"
        raise BadInputError(f"no differentiable parameters selected (the model has: {have}); check param_filter")
    if isinstance(model, nn.Module):
        return functionalize(model, dtype=dtype, param_filter=keep, allow_stochastic=allow_stochastic)

    def cast(t: Tensor) -> Tensor:
        return t.to(dtype) if dtype is not None and t.is_floating_point() else t

    params, constants = {}, {k: cast(t) for k, t in model.constants.items()}
    for name, t in model.params.items():
        (params if keep(name) else constants)[name] = cast(t)
    return FunctionalModel(module=model.module, params=params, constants=constants)


def check_targets(model: FunctionalModel, x: Tensor, y: Tensor, loss: str) -> None:
    """One forward pass on ``x[:1]`` to check that the outputs fit the labels (or real targets)."""
    first = next(iter(model.params.values()))
    x1 = x[:1].to(device=first.device, dtype=first.dtype if x.is_floating_point() else None)
    with torch.no_grad():
        out = model(model.params, x1)
    if y.is_floating_point():
        if y[:1].numel() != out.numel():
            raise BadInputError(f"real targets have {y[:1].numel()} entries per sample but the model outputs "
                                f"{out.numel()}; give y the shape of the outputs")
        return
    if out.ndim != 2:
        raise BadInputError(f"class labels need outputs of shape (B, C), the model gives {tuple(out.shape)}")
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= out.shape[1]:
        raise BadInputError(f"labels span [{lo}, {hi}] but the model has {out.shape[1]} outputs")


def _at_point(fmodel: FunctionalModel, params: Params, dtype: torch.dtype | None) -> FunctionalModel:
    """The same function with its differentiable parameters (and any others given) taken from ``params``."""
    missing = sorted(set(fmodel.params) - set(params))
    if missing:
        raise BadInputError(f"params lacks {', '.join(missing[:3])}; pass a dict keyed like model.params")

    def cast(t: Tensor) -> Tensor:
        t = t.detach()
        return t.to(dtype) if dtype is not None and t.is_floating_point() else t

    chosen = {k: cast(params[k]) for k in fmodel.params}
    constants = {**fmodel.constants, **{k: cast(t) for k, t in params.items() if k not in chosen}}
    return FunctionalModel(fmodel.module, chosen, constants)


class CurvatureOperator:
    """``v ↦ C v`` on flat vectors ``(D,)`` for the Hessian or GGN of the loss on a fixed evaluation set.

    Args:
        model: an ``nn.Module`` (refused in training mode with batch norm or dropout; call ``eval()``)
            or a :class:`~stability.functional.FunctionalModel`.
        x: ``(N, *input_shape)`` inputs; ``y: (N,)`` integer labels (or real targets for ``mse``).
        loss: ``cross-entropy``, ``mse`` or ``bounded-cross-entropy`` (conventions of
            :mod:`stability.losses`; the last with ``which="hessian"`` only).
        which: ``hessian`` or ``ggn``.
        params: the point ``θ`` (a dict with the model's parameter names); default: the model's own.
        param_filter: restrict to some parameters (names or a predicate): ``C`` is then the diagonal
            block of those parameters, the per-layer curvature.
        subset, seed: evaluate on a fixed seeded subset of ``subset`` samples (all if ``None`` or
            ``subset ≥ N``); the same ``seed`` gives the same subset, so estimates compare across a run.
        batch_size: samples per chunk (memory bound); ``None``: all at once.
        dtype: cast parameters, buffers and inputs (``torch.float64`` for reference numbers).

    Attributes: ``dim`` (``D``), ``dtype``, ``device``, ``n`` (evaluation samples), ``indices`` (the subset
    or ``None``), ``num_products`` (products applied so far; ``matmat`` counts one per column).

    Data stay on their own device and each chunk is moved to the parameters' device when used.
    """

    def __init__(
        self,
        model: nn.Module | FunctionalModel,
        x: Tensor,
        y: Tensor,
        *,
        loss: str = "cross-entropy",
        which: str = "hessian",
        params: Params | None = None,
        param_filter: Callable[[str], bool] | Iterable[str] | None = None,
        subset: int | None = None,
        seed: int = 0,
        batch_size: int | None = None,
        dtype: torch.dtype | None = None,
        allow_stochastic: bool = False,
    ) -> None:
        if which not in CURVATURES:
            raise BadInputError(f"which={which!r} is not one of: {', '.join(CURVATURES)}")
        check_loss(loss, y)
        if which == "ggn" and loss == "bounded-cross-entropy":
            raise BadInputError(
                "the Gauss-Newton matrix needs a convex loss of the outputs; bounded-cross-entropy is not: use which='hessian'"
            )
        if x.shape[0] != y.shape[0] or x.shape[0] == 0:
            raise BadInputError(
                f"x and y must hold the same positive number of samples, got {x.shape[0]} and {y.shape[0]}"
            )
        if batch_size is not None and not (isinstance(batch_size, int) and batch_size >= 1):
            raise BadInputError(f"batch_size must be a positive integer or None, got {batch_size!r}")
        fmodel = as_functional(model, dtype, param_filter, allow_stochastic)
        if params is not None:
            fmodel = _at_point(fmodel, params, dtype)
        check_targets(fmodel, x, y, loss)
        self.model = fmodel
        self.params = fmodel.params
        first = next(iter(self.params.values()))
        self.dtype, self.device = first.dtype, first.device
        self.dim = sum(t.numel() for t in self.params.values())
        self.loss, self.which, self.batch_size = loss, which, batch_size
        self.indices = seeded_subset(x.shape[0], subset, seed)
        if self.indices is not None:
            x, y = x[self.indices.to(x.device)], y[self.indices.to(y.device)]
        if x.is_floating_point():
            x = x.to(self.dtype)
        if y.is_floating_point():
            y = y.to(self.dtype)
        self.x, self.y, self.n = x, y, x.shape[0]
        self._chunks = _chunks(x, y, batch_size)
        self._product = CHUNK_PRODUCTS[which]
        self.num_products = 0

    def batches(self) -> Iterator[tuple[Tensor, Tensor]]:
        """The evaluation set in chunks, each moved to the parameters' device."""
        for xb, yb in self._chunks:
            yield xb.to(self.device, non_blocking=True), yb.to(self.device, non_blocking=True)

    def apply(self, v: Params) -> Params:
        """``C v`` on a parameter-shaped dict (not counted)."""
        return _accumulate(self._product, self.model, self.loss, self.params, self.batches(), v, self.n)

    def __call__(self, v: Tensor) -> Tensor:
        if v.shape != (self.dim,):
            raise BadInputError(f"vector has shape {tuple(v.shape)}, expected ({self.dim},)")
        self.num_products += 1
        return flatten(self.apply(unflatten(v.to(device=self.device, dtype=self.dtype), self.params)))

    def matmat(self, V: Tensor) -> Tensor:
        """``C V`` for ``V: (D, k)``, the ``k`` products batched with ``vmap`` (``k``× the memory of one)."""
        if V.ndim != 2 or V.shape[0] != self.dim:
            raise BadInputError(f"matrix has shape {tuple(V.shape)}, expected ({self.dim}, k)")
        self.num_products += V.shape[1]
        one = lambda v: flatten(self.apply(unflatten(v, self.params)))  # noqa: E731
        return vmap(one, in_dims=1, out_dims=1)(V.to(device=self.device, dtype=self.dtype))

    def loss_value(self) -> float:
        """``L(θ)`` on the evaluation set."""
        with torch.no_grad():
            total = sum(float(mean_loss(self.loss, self.model(self.params, xb), yb)) * xb.shape[0]
                        for xb, yb in self.batches())
        return total / self.n

    def flatten(self, tensors: dict[str, Tensor]) -> Tensor:
        return flatten({k: tensors[k] for k in self.params})

    def unflatten(self, vec: Tensor) -> dict[str, Tensor]:
        return unflatten(vec, self.params)

    def __repr__(self) -> str:
        return f"CurvatureOperator(which={self.which!r}, loss={self.loss!r}, dim={self.dim}, n={self.n})"
