"""Wu, Ma & E's (2018) non-uniformity: ``Σ = (1/n) Σ_i H_i² − H²`` as an operator, and its top eigenvalue."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import vmap

from stability.curvature.lanczos import EigenResult, top_eigenvalues
from stability.curvature.measures import seed_generator
from stability.curvature.operators import Operator
from stability.curvature.products import CurvatureOperator
from stability.errors import BadInputError
from stability.functional import FunctionalModel, Params, flatten


class NonUniformityOperator(Operator):
    """``v ↦ Σ v = (1/n) Σ_i C_i (C_i v) − C (C v)`` for the per-sample curvatures ``C_i`` of an operator.

    With ``op.curvature == "hessian"``, ``C_i = H_i = ∇²_θ ℓ_i`` and ``Σ`` is Wu–Ma–E's; with ``ggn``,
    ``C_i = J_iᵀ Λ_i J_i``. ``Σ = (1/n) Σ_i (C_i − C)² ⪰ 0``.

    Per-sample products ``C_i v`` are taken with ``vmap`` over the samples of each chunk of ``op``
    (``per_sample_chunk`` of them at once: memory ``per_sample_chunk · D``). Cost of one application:
    ``2n`` per-sample products (the first pass also yields ``C v``) and one batched product ``C (C v)``.
    """

    def __init__(self, op: CurvatureOperator, *, per_sample_chunk: int | None = None) -> None:
        if not isinstance(op, CurvatureOperator):
            raise BadInputError(f"NonUniformityOperator needs a CurvatureOperator, got {type(op).__name__}")
        self.op, self.per_sample_chunk = op, per_sample_chunk
        self.dim, self.dtype, self.device = op.dim, op.dtype, op.device
        self.num_products = 0

    def moments(self, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(C v, C (C v), (1/n) Σ_i C_i (C_i v))`` as flat vectors: one pass gives every term of ``Σ v``
        and of Wu–Ma–E's matrix ``(I − ηC)² + η² c Σ`` (:mod:`stability.dynamics.sgd`)."""
        op = self.op
        if v.shape != (self.dim,):
            raise BadInputError(f"vector has shape {tuple(v.shape)}, expected ({self.dim},)")
        self.num_products += 1
        vd = op.unflatten(v.to(device=self.device, dtype=self.dtype))

        def single(xi: Tensor, yi: Tensor, vi: dict[str, Tensor]) -> dict[str, Tensor]:
            return op._product(op.model, op.loss, op.params, xi[None], yi[None], vi)

        first = {k: torch.zeros_like(t) for k, t in vd.items()}
        second = {k: torch.zeros_like(t) for k, t in vd.items()}
        for xb, yb in op.batches():
            u = vmap(single, in_dims=(0, 0, None), chunk_size=self.per_sample_chunk)(xb, yb, vd)
            w = vmap(single, in_dims=(0, 0, 0), chunk_size=self.per_sample_chunk)(xb, yb, u)
            first = {k: first[k] + u[k].sum(0) for k in first}
            second = {k: second[k] + w[k].sum(0) for k in second}
        cv = {k: t / op.n for k, t in first.items()}
        return flatten(cv), flatten(op.apply(cv)), flatten({k: t / op.n for k, t in second.items()})

    def __call__(self, v: Tensor) -> Tensor:
        _, ccv, mean_sq = self.moments(v)
        return mean_sq - ccv


@dataclass(frozen=True)
class NonUniformity:
    """``s = sqrt(λ_max(Σ))`` with the eigen-solve that produced it (``eigen.num_hvps`` counts Σ-products)
    and ``n_evaluated``, the number of samples ``Σ`` averages over."""

    s: float
    s_squared: float
    eigen: EigenResult = field(repr=False)
    n_evaluated: int = 0


def nonuniformity(
    model: nn.Module | FunctionalModel, x: Tensor, y: Tensor, *, curvature: str = "hessian",
    loss: str = "cross-entropy", params: Params | None = None, chunk_size: int | None = None,
    subset: int | None = None, seed: int = 0, tol: float = 1e-3, max_iter: int = 100,
    per_sample_chunk: int | None = None, **options: Any,
) -> NonUniformity:
    """Wu–Ma–E's non-uniformity ``s`` by Lanczos (``which="LA"``) on :class:`NonUniformityOperator`.

    Arguments as :func:`stability.curvature.hessian_eigenvalues`; ``per_sample_chunk`` bounds the
    per-sample products taken at once. Cost: ``iterations + 1`` applications of ``Σ``, each ``2n``
    per-sample products plus one batched one (``n`` = ``subset`` when given).
    """
    op = CurvatureOperator(model, x, y, loss=loss, curvature=curvature, params=params, chunk_size=chunk_size,
                           subset=subset, seed=seed, **options)  # fmt: skip
    sigma = NonUniformityOperator(op, per_sample_chunk=per_sample_chunk)
    result = top_eigenvalues(sigma, 1, which="LA", tol=tol, max_iter=max_iter, generator=seed_generator(seed))
    s2 = float(result.eigenvalues[0])
    return NonUniformity(math.sqrt(max(s2, 0.0)), s2, result, op.n)
