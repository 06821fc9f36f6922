"""Symmetric operators seen only through products ``v ↦ A v``, and the random probes the solvers draw."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from stability.errors import BadInputError


@runtime_checkable
class SymmetricOperator(Protocol):
    """``v: (D,) -> A v: (D,)`` for a symmetric ``A``; ``dim`` is ``D``."""

    dim: int
    dtype: torch.dtype
    device: torch.device

    def __call__(self, v: Tensor) -> Tensor: ...


class MatrixOperator:
    """A dense symmetric matrix ``A: (D, D)`` as an operator; counts its products in ``num_products``."""

    def __init__(self, matrix: Tensor) -> None:
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise BadInputError(f"MatrixOperator needs a square matrix, got shape {tuple(matrix.shape)}")
        self.matrix = matrix
        self.dim = matrix.shape[0]
        self.dtype = matrix.dtype
        self.device = matrix.device
        self.num_products = 0

    def __call__(self, v: Tensor) -> Tensor:
        self.num_products += 1
        return self.matrix @ v

    def matmat(self, V: Tensor) -> Tensor:
        self.num_products += V.shape[1]
        return self.matrix @ V


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
    """``A V`` for ``V: (D, k)``, through ``op.matmat`` when the operator has one."""
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
    gen_device = generator.device if generator is not None else torch.device("cpu")
    if kind == "rademacher":
        draws = torch.randint(0, 2, (dim, k), generator=generator, device=gen_device).to(dtype) * 2 - 1
    elif kind == "gaussian":
        draws = torch.randn(dim, k, generator=generator, device=gen_device, dtype=dtype)
    else:
        raise BadInputError(f"probe distribution {kind!r} is not one of: gaussian, rademacher")
    return draws.to(device)
