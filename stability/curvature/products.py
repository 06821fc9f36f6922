"""Curvature of the training loss as a matrix-free operator: Hessian- and Gauss-Newton-vector products.

For a model ``f(θ, x)`` and per-sample loss ``ℓ``, the training loss is ``L(θ) = (1/n) Σ_i ℓ(f(θ, x_i), y_i)``
(the conventions of :mod:`stability.losses`: mean cross-entropy, or ``(1/2n) Σ ‖f − t‖²``). Two curvature
matrices of size ``D × D`` (``D`` = number of parameters):

- Hessian ``H = ∇²_θ L``; ``H v = jvp(grad(L), θ, v)`` (forward-over-reverse, one product costs about
  two to three gradients).
- Generalized Gauss-Newton ``G = (1/n) Σ_i J_iᵀ Λ_i J_i`` with ``J_i = ∂f(θ, x_i)/∂θ`` and the output
  Hessian ``Λ_i = ∇²_f ℓ`` from the loss registry (:data:`stability.losses.LOSSES`): ``Λ = I`` for MSE,
  ``Λ = diag(p) − p pᵀ`` (``p = softmax f``) for cross-entropy. ``G v`` = one ``jvp`` (``J v``), ``Λ u`` in
  closed form, one ``vjp`` (``Jᵀ ·``). For a loss convex in the outputs ``G ⪰ 0`` always (the operator
  refuses the others); at an interpolating minimum of MSE (zero residuals) ``G = H``.

Both are summed over chunks of ``chunk_size`` samples (weight ``b_c / n`` each). Products either
recompute each chunk's forward pass and gradient every time (``primal="recompute"``: the formulas above,
memory that of one chunk whatever ``n`` is) or build each chunk's graph once and differentiate it again
for every product (``primal="retain"``, :mod:`stability.curvature.retained`: 1.3x–2.1x a gradient per
Hessian product instead of 3.1x–6.6x in ``docs/performance.md``, at the memory of the whole evaluation
set's graph). The default
``"auto"`` retains unless ``chunk_size`` asks to bound memory below the evaluation set. :class:`CurvatureOperator` fixes the evaluation set (optionally a seeded
subset, so estimates are comparable across a run) and exposes ``v ↦ C v`` on flat vectors for the
solvers of :mod:`stability.curvature.lanczos` and :mod:`stability.curvature.trace`;
:func:`hessian_vector_product` and :func:`ggn_vector_product` are one product each, in the calling
convention of every measure, ``(model, x, y, v, *, params=None, ...)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping

import torch
from torch import Tensor, nn
from torch.func import grad, jvp, vjp, vmap

from stability.checks import check_choice, check_chunk_size, check_optional_positive_int
from stability.curvature.operators import Operator
from stability.curvature.retained import RetainedGraph
from stability.errors import BadInputError
from stability.functional import FunctionalModel, ModelFn, Params, _at_point, as_functional, flatten, unflatten
from stability.losses import check_loss, check_targets, get_loss, mean_loss

CURVATURES = ("hessian", "ggn")
PRIMALS = ("auto", "retain", "recompute")


def _hvp_chunk(f: ModelFn, loss: str, params: Params, xb: Tensor, yb: Tensor, v: Params) -> Params:
    """``∇²_θ L_b v`` for the chunk's mean loss ``L_b``."""
    return jvp(grad(lambda p: mean_loss(loss, f(p, xb), yb)), (params,), (v,))[1]


def _ggn_chunk(f: ModelFn, loss: str, params: Params, xb: Tensor, yb: Tensor, v: Params) -> Params:
    """``(1/b) Σ_i J_iᵀ Λ_i J_i v`` over the chunk."""
    out, pullback = vjp(lambda p: f(p, xb), params)
    _, jv = jvp(lambda p: f(p, xb), (params,), (v,))
    return pullback(get_loss(loss).output_hessian_product(out, yb, jv) / xb.shape[0])[0]


CHUNK_PRODUCTS = {"hessian": _hvp_chunk, "ggn": _ggn_chunk}


def _chunks(x: Tensor, y: Tensor, chunk_size: int | None) -> list[tuple[Tensor, Tensor]]:
    size = chunk_size or x.shape[0]
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
    model: nn.Module | FunctionalModel, x: Tensor, y: Tensor, v: Params | Tensor, *, params: Params | None = None,
    loss: str = "cross-entropy", chunk_size: int | None = None,
) -> Params | Tensor:
    """``H v`` with ``H = ∇²_θ L(θ)``, ``L = (1/n) Σ_i ℓ(f(θ, x_i), y_i)``.

    ``model``: an ``nn.Module`` or :class:`~stability.functional.FunctionalModel`; ``params``: the point
    ``θ`` (a dict keyed like the model's parameters; default: its own). ``x: (n, *input_shape)``, ``y: (n,)``
    labels (or real targets for MSE); ``v`` a dict shaped like the parameters (returns a dict) or a flat
    vector ``(D,)`` / matrix ``(D, k)`` (returns the same shape). Cost: about 2–3 gradient evaluations over
    the ``n`` samples per vector, in chunks of ``chunk_size`` samples.
    """
    return CurvatureOperator(model, x, y, loss=loss, params=params, chunk_size=chunk_size) @ v


def ggn_vector_product(
    model: nn.Module | FunctionalModel, x: Tensor, y: Tensor, v: Params | Tensor, *, params: Params | None = None,
    loss: str = "cross-entropy", chunk_size: int | None = None,
) -> Params | Tensor:
    """``G v`` with ``G = (1/n) Σ_i J_iᵀ Λ_i J_i`` (see module docstring); arguments as :func:`hessian_vector_product`.

    Cost: two forwards, one ``jvp`` and one ``vjp`` over the ``n`` samples per vector (cheaper than ``H v``).
    """
    op = CurvatureOperator(model, x, y, loss=loss, curvature="ggn", params=params, chunk_size=chunk_size)
    return op @ v


def seeded_subset(n: int, subset: int | None, seed: int) -> Tensor | None:
    """Sorted indices of a fixed ``subset``-sized sample of ``range(n)`` (``None``: use all)."""
    if check_optional_positive_int("subset", subset) is None or subset >= n:
        return None
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=gen)[:subset].sort().values


class CurvatureOperator(Operator):
    """``v ↦ C v`` on flat vectors ``(D,)`` for the Hessian or GGN of the loss on a fixed evaluation set.

    ``op @ v`` for ``v: (D,)``, ``op @ V`` for ``V: (D, k)`` (the ``k`` products batched with ``vmap``) and
    ``op @ v_dict`` for a parameter-shaped dict all equal the dense product ``C v``.

    Args:
        model: an ``nn.Module`` (refused in training mode with batch norm or dropout; call ``eval()``)
            or a :class:`~stability.functional.FunctionalModel`.
        x: ``(N, *input_shape)`` inputs; ``y: (N,)`` integer labels (or real targets for ``mse``).
        loss: ``cross-entropy``, ``mse`` or ``bounded-cross-entropy`` (conventions of
            :mod:`stability.losses`; the last with ``curvature="hessian"`` only).
        curvature: ``hessian`` or ``ggn``.
        params: the point ``θ`` (a dict with the model's parameter names); default: the model's own.
        param_filter: restrict to some parameters (names or a predicate): ``C`` is then the diagonal
            block of those parameters, the per-layer curvature.
        subset, seed: evaluate on a fixed seeded subset of ``subset`` samples (all if ``None`` or
            ``subset ≥ N``); the same ``seed`` gives the same subset, so estimates compare across a run.
        chunk_size: samples per chunk (memory bound); ``None``: all at once.
        dtype: cast parameters, buffers and inputs (``torch.float64`` for reference numbers).
        primal: ``retain`` (build each chunk's graph once, on the first product, and reuse it: about
            1.3x–2.1x a gradient per product, memory of the graph over all ``n`` samples), ``recompute``
            (forward-over-reverse per product: 3x–6x a gradient, memory of one chunk) or ``auto``
            (``retain`` unless ``chunk_size`` is below ``n``). Both give the same products.

    Attributes: ``dim`` (``D``), ``dtype``, ``device``, ``n`` (evaluation samples), ``indices`` (the subset
    or ``None``), ``num_products`` (products applied so far; ``matmat`` counts one per column), ``primal``
    (``retain`` or ``recompute``), ``retained_bytes`` (bytes the retained graph holds; 0 before the first
    product, after :meth:`release`, or when recomputing).

    Data stay on their own device and each chunk is moved to the parameters' device when used.
    """

    def __init__(
        self,
        model: nn.Module | FunctionalModel,
        x: Tensor,
        y: Tensor,
        *,
        loss: str = "cross-entropy",
        curvature: str = "hessian",
        params: Params | None = None,
        param_filter: Callable[[str], bool] | Iterable[str] | None = None,
        subset: int | None = None,
        seed: int = 0,
        chunk_size: int | None = None,
        dtype: torch.dtype | None = None,
        allow_stochastic: bool = False,
        primal: str = "auto",
    ) -> None:
        check_choice("curvature", curvature, CURVATURES)
        check_choice("primal", primal, PRIMALS)
        if curvature == "ggn" and not check_loss(loss, y).convex:
            raise BadInputError(
                f"the Gauss-Newton matrix needs a loss convex in the outputs; {loss} is not: use curvature='hessian'"
            )
        if x.shape[0] != y.shape[0] or x.shape[0] == 0:
            raise BadInputError(
                f"x and y must hold the same positive number of samples, got {x.shape[0]} and {y.shape[0]}"
            )
        chunk_size = check_chunk_size(chunk_size)
        fmodel = as_functional(model, dtype, param_filter, allow_stochastic)
        if params is not None:
            fmodel = _at_point(fmodel, params, dtype)
        check_targets(fmodel, x, y, loss)
        self.model = fmodel
        self.params = fmodel.params
        first = next(iter(self.params.values()))
        self.dtype, self.device = first.dtype, first.device
        self.dim = sum(t.numel() for t in self.params.values())
        self.loss, self.curvature, self.chunk_size = loss, curvature, chunk_size
        self.indices = seeded_subset(x.shape[0], subset, seed)
        if self.indices is not None:
            x, y = x[self.indices.to(x.device)], y[self.indices.to(y.device)]
        if x.is_floating_point():
            x = x.to(self.dtype)
        if y.is_floating_point():
            y = y.to(self.dtype)
        self.x, self.y, self.n = x, y, x.shape[0]
        self._chunks = _chunks(x, y, chunk_size)
        self._product = CHUNK_PRODUCTS[curvature]
        self.num_products = 0
        if primal == "auto":
            primal = "retain" if chunk_size is None or chunk_size >= self.n else "recompute"
        self.primal = primal
        self.batched_matmat = self.device.type == "cuda"
        self._retained = (RetainedGraph(curvature, fmodel, loss, self.params, self.batches, self.n)
                          if primal == "retain" else None)  # fmt: skip

    @property
    def retained_bytes(self) -> int:
        return 0 if self._retained is None else self._retained.saved_bytes

    def release(self) -> None:
        """Free the retained graph (with ``primal="retain"``); the next product rebuilds it."""
        if self._retained is not None:
            self._retained.release()

    def batches(self) -> Iterator[tuple[Tensor, Tensor]]:
        """The evaluation set in chunks, each moved to the parameters' device."""
        for xb, yb in self._chunks:
            yield xb.to(self.device, non_blocking=True), yb.to(self.device, non_blocking=True)

    def apply(self, v: Params) -> Params:
        """``C v`` on a parameter-shaped dict (not counted)."""
        if self._retained is not None:
            return self._retained.product(v)
        return _accumulate(self._product, self.model, self.loss, self.params, self.batches(), v, self.n)

    def __call__(self, v: Tensor) -> Tensor:
        if v.shape != (self.dim,):
            raise BadInputError(f"vector has shape {tuple(v.shape)}, expected ({self.dim},)")
        self.num_products += 1
        return flatten(self.apply(unflatten(v.to(device=self.device, dtype=self.dtype), self.params)))

    def matmat(self, V: Tensor) -> Tensor:
        """``C V`` for ``V: (D, k)``.

        Recomputing, the ``k`` products are batched with ``vmap`` (``k``× the memory of one). With a retained
        graph, on CUDA they are one batched backward pass (``is_grads_batched``; attribute ``batched_matmat``);
        on CPU the columns run in turn, which measured faster there in our runs (``benchmarks/bench_gpu.py``
        times both on either device).
        """
        if V.ndim != 2 or V.shape[0] != self.dim:
            raise BadInputError(f"matrix has shape {tuple(V.shape)}, expected ({self.dim}, k)")
        self.num_products += V.shape[1]
        V = V.to(device=self.device, dtype=self.dtype)
        one = lambda v: flatten(self.apply(unflatten(v, self.params)))  # noqa: E731
        if self._retained is None:
            return vmap(one, in_dims=1, out_dims=1)(V)
        if not self.batched_matmat:
            return torch.stack([one(V[:, j]) for j in range(V.shape[1])], dim=1)
        k, sizes = V.shape[1], [t.numel() for t in self.params.values()]
        rows = {name: part.T.reshape(k, *t.shape) for (name, t), part in zip(self.params.items(), V.split(sizes))}
        out = self._retained.product(rows, batched=True)
        return torch.cat([t.reshape(k, -1) for t in out.values()], dim=1).T

    def __matmul__(self, v: Params | Tensor) -> Params | Tensor:
        if isinstance(v, Mapping):
            bad = [k for k, t in self.params.items() if k not in v or tuple(v[k].shape) != tuple(t.shape)]
            if bad:
                raise BadInputError(f"v lacks or misshapes {', '.join(bad[:3])}; pass a dict shaped like the parameters")
            self.num_products += 1
            return self.apply({k: v[k].to(device=self.device, dtype=self.dtype) for k in self.params})
        return super().__matmul__(v)

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
        return f"CurvatureOperator(curvature={self.curvature!r}, loss={self.loss!r}, dim={self.dim}, n={self.n})"
