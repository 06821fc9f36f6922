"""Curvature of a model's loss in the calling convention of every measure: ``(model, x, y, *, ...)``.

Each function builds a :class:`~stability.curvature.products.CurvatureOperator` for the Hessian
(``curvature="hessian"``) or the Gauss-Newton matrix (``"ggn"``) of ``L(θ) = (1/n) Σ_i ℓ(f(θ, x_i), y_i)``
and hands it to a solver of the linear-algebra layer (:func:`~stability.curvature.lanczos.top_eigenvalues`,
:func:`~stability.curvature.trace.hutchinson_trace`, :func:`~stability.curvature.trace.hutchpp_trace`,
:func:`~stability.curvature.density.spectral_density`), which take any operator instead of a model.

Arguments shared by all of them:

- ``model``: an ``nn.Module`` (in eval mode if it has batch norm or dropout) or a
  :class:`~stability.functional.FunctionalModel`; ``x: (n, *input_shape)``; ``y: (n,)`` labels, or real
  targets for ``mse``.
- ``loss``: ``cross-entropy``, ``mse`` or ``bounded-cross-entropy`` (Hessian only); ``curvature``.
- ``params``: the point ``θ`` (a dict keyed like the model's parameters); default: the model's own.
- ``chunk_size``: samples per product chunk (memory); ``subset``: evaluate on a seeded subset of that
  many samples; ``seed``: seeds the subset and the solver's random start or probes.
- ``**options``: passed to :class:`~stability.curvature.products.CurvatureOperator` (``param_filter``,
  ``dtype``, ``allow_stochastic``).

Example::

    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    >>> x, y = torch.randn(16, 3), torch.randint(0, 2, (16,))
    >>> hessian_eigenvalues(model, x, y, k=2).eigenvalues.shape
    torch.Size([2])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from stability.checks import as_generator, check_choice
from stability.curvature.density import SpectralDensity, spectral_density
from stability.curvature.lanczos import EigenResult, top_eigenvalues
from stability.curvature.products import CurvatureOperator
from stability.curvature.trace import TraceResult, adaptive_trace, hutchinson_trace, hutchpp_trace
from stability.functional import FunctionalModel, Params

TRACE_METHODS = {"hutchinson": hutchinson_trace, "hutch++": hutchpp_trace, "auto": adaptive_trace}


def seed_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``: the same probes on every device."""
    return as_generator(seed, "cpu", "seed")


def hessian_eigenvalues(
    model: nn.Module | FunctionalModel, x: Tensor, y: Tensor, *, k: int = 1, which: str = "LA",
    curvature: str = "hessian", loss: str = "cross-entropy", params: Params | None = None,
    chunk_size: int | None = None, subset: int | None = None, seed: int = 0, tol: float = 1e-4,
    max_iter: int = 300, v0: Tensor | None = None, **options: Any,
) -> EigenResult:
    """The ``k`` extreme eigenpairs of the curvature by thick-restart Lanczos.

    ``which="LA"``: the largest (the sharpness ``λ_max`` first); ``"SA"``: the most negative curvature
    first; ``"LM"``: by magnitude. ``tol`` is the relative residual ``‖C v − λ v‖ ≤ tol · ‖C‖``. Cost: the
    solver's iterations plus ``k`` residual checks, each one product over the ``n`` (or ``subset``) samples.
    """
    op = CurvatureOperator(model, x, y, loss=loss, curvature=curvature, params=params, chunk_size=chunk_size,
                           subset=subset, seed=seed, **options)  # fmt: skip
    return top_eigenvalues(op, k, which=which, tol=tol, max_iter=max_iter, v0=v0, generator=seed_generator(seed))


def hessian_trace(
    model: nn.Module | FunctionalModel, x: Tensor, y: Tensor, *, num_probes: int = 32, method: str = "hutchinson",
    curvature: str = "hessian", loss: str = "cross-entropy", params: Params | None = None,
    chunk_size: int | None = None, subset: int | None = None, seed: int = 0, block_size: int = 8, **options: Any,
) -> TraceResult:
    """``tr C`` by Hutchinson (``num_probes`` Rademacher probes), Hutch++ (a budget of ``num_probes``
    products), or ``method="auto"``: whichever of the two a spectrum check after the sketch predicts to
    have the smaller variance (:func:`~stability.curvature.trace.adaptive_trace`; ``method`` of the
    result says which ran).

    The estimate is unbiased and carries its standard error; ``block_size`` probes go to the operator's
    ``matmat`` together (see :meth:`CurvatureOperator.matmat`; memory may grow with it). Cost:
    ``num_probes`` products.
    """
    estimate = TRACE_METHODS[check_choice("method", method, tuple(TRACE_METHODS))]
    op = CurvatureOperator(model, x, y, loss=loss, curvature=curvature, params=params, chunk_size=chunk_size,
                           subset=subset, seed=seed, **options)  # fmt: skip
    return estimate(op, num_probes, generator=seed_generator(seed), block_size=block_size)


def hessian_density(
    model: nn.Module | FunctionalModel, x: Tensor, y: Tensor, *, num_probes: int = 4, lanczos_steps: int = 40,
    curvature: str = "hessian", loss: str = "cross-entropy", params: Params | None = None,
    chunk_size: int | None = None, subset: int | None = None, seed: int = 0, **options: Any,
) -> SpectralDensity:
    """The curvature's eigenvalue density by stochastic Lanczos quadrature (``num_probes`` Rademacher
    probes, ``lanczos_steps`` steps each); see :class:`~stability.curvature.density.SpectralDensity`.

    Cost: ``num_probes · lanczos_steps`` products.
    """
    op = CurvatureOperator(model, x, y, loss=loss, curvature=curvature, params=params, chunk_size=chunk_size,
                           subset=subset, seed=seed, **options)  # fmt: skip
    return spectral_density(op, num_probes, lanczos_steps, generator=seed_generator(seed))
