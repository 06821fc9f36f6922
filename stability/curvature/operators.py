"""Symmetric operators seen only through products ``v ↦ A v``, and the random probes the solvers draw.

An operator maps ``v: (D,) -> A v: (D,)`` and carries ``dim`` (``D``), ``dtype`` and ``device``; ``op @ v``
is ``A v`` and ``op @ V`` for ``V: (D, k)`` is ``A V`` (``matmat``). The solvers of
:mod:`stability.curvature.lanczos`, :mod:`.trace` and :mod:`.density` accept any of them:

- :class:`CurvatureOperator` (:mod:`.products`): the Hessian or Gauss-Newton matrix of a model's loss;
- :class:`MatrixOperator`: a dense matrix;
- :class:`LambdaOperator`: any product function, e.g. ``LambdaOperator(lambda v: A @ (A @ v), D, dtype, device)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from stability.checks import check_choice, check_positive_int
from stability.errors import BadInputError


@runtime_checkable
class SymmetricOperator(Protocol):
    """``v: (D,) -> A v: (D,)`` for a symmetric ``A``; ``dim`` is ``D``."""

    dim: int
    dtype: torch.dtype
    device: torch.device

    def __call__(self, v: Tensor) -> Tensor: ...


class Operator:
    """What every operator here shares: ``op @ v`` for ``v: (D,)`` and ``op @ V`` for ``V: (D, k)``.

    A subclass defines ``__call__(v)`` and may override ``matmat(V)`` with a batched product; the default
    applies ``__call__`` to the ``k`` columns in turn.
    """

    dim: int
    dtype: torch.dtype
    device: torch.device

    def __call__(self, v: Tensor) -> Tensor:
        raise NotImplementedError

    def matmat(self, V: Tensor) -> Tensor:
        return torch.stack([self(V[:, i]) for i in range(V.shape[1])], dim=1)

    def __matmul__(self, v: Tensor) -> Tensor:
        if isinstance(v, Tensor) and v.ndim == 1:
            return self(v)
        if isinstance(v, Tensor) and v.ndim == 2:
            return self.matmat(v)
        shape = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
        raise BadInputError(f"op @ v needs a vector ({self.dim},) or a matrix ({self.dim}, k), got {shape}")


class LambdaOperator(Operator):
    """Any product ``v ↦ A v`` as an operator: ``matvec: (D,) -> (D,)``, optionally ``matmat: (D, k) -> (D, k)``.

    Counts its products in ``num_products`` (``matmat`` counts one per column). Example::

        >>> import torch
        >>> A = torch.diag(torch.tensor([3.0, 1.0]))
        >>> op = LambdaOperator(lambda v: A @ v, 2, torch.float32, torch.device("cpu"))
        >>> (op @ torch.ones(2)).tolist()
        [3.0, 1.0]
    """

    def __init__(
        self, matvec: Callable[[Tensor], Tensor], dim: int, dtype: torch.dtype, device: torch.device | str,
        matmat: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        self._matvec, self._matmat = matvec, matmat
        self.dim = check_positive_int("dim", dim)
        self.dtype, self.device = dtype, torch.device(device)
        self.num_products = 0

    def __call__(self, v: Tensor) -> Tensor:
        self.num_products += 1
        return self._matvec(v)

    def matmat(self, V: Tensor) -> Tensor:
        if self._matmat is None:
            return super().matmat(V)
        self.num_products += V.shape[1]
        return self._matmat(V)


class MatrixOperator(LambdaOperator):
    """A dense symmetric matrix ``A: (D, D)`` as an operator; counts its products in ``num_products``."""

    def __init__(self, matrix: Tensor) -> None:
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise BadInputError(f"MatrixOperator needs a square matrix, got shape {tuple(matrix.shape)}")
        self.matrix = matrix
        super().__init__(matrix.__matmul__, matrix.shape[0], matrix.dtype, matrix.device, matmat=matrix.__matmul__)


def as_operator(op: Any) -> SymmetricOperator:
    """Accept an operator as is, or wrap a dense square tensor in :class:`MatrixOperator`."""
    if isinstance(op, Tensor):
        return MatrixOperator(op)
    if not callable(op) or not all(hasattr(op, a) for a in ("dim", "dtype", "device")):
        raise BadInputError(
            "expected an operator with dim, dtype and device attributes (a CurvatureOperator), "
            f"or a square tensor; got {type(op).__name__}"
        )
    return op


def apply_block(op: SymmetricOperator, V: Tensor) -> Tensor:
    """``A V`` for ``V: (D, k)``, through ``op.matmat`` when the operator has one (any callable may not)."""
    matmat = getattr(op, "matmat", None)
    if matmat is not None:
        return matmat(V)
    return torch.stack([op(V[:, i]) for i in range(V.shape[1])], dim=1)


def seeded(generator: torch.Generator | None) -> torch.Generator:
    """``generator``, or a fresh CPU generator seeded with 0: estimates never touch the global RNG."""
    return generator if generator is not None else torch.Generator().manual_seed(0)


def random_vectors(
    dim: int, k: int, *, dtype: torch.dtype, device: torch.device, generator: torch.Generator | None,
    kind: str = "gaussian",
) -> Tensor:
    """``(dim, k)`` Gaussian or Rademacher draws from ``generator``, moved to ``device``.

    Drawing on the generator's own device and then moving keeps one seeded stream valid for any target
    device (a CPU generator cannot fill a CUDA tensor).
    """
    check_choice("probe distribution", kind, ("gaussian", "rademacher"))
    gen_device = generator.device if generator is not None else torch.device("cpu")
    if kind == "rademacher":
        draws = torch.randint(0, 2, (dim, k), generator=generator, device=gen_device).to(dtype) * 2 - 1
    else:
        draws = torch.randn(dim, k, generator=generator, device=gen_device, dtype=dtype)
    return draws.to(device)
