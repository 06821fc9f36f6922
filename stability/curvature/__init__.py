"""Curvature of the training loss, seen through matrix-free products, and the solvers that read it.

Measures, in the calling convention ``(model, x, y, *, params=None, ...)``:

- :mod:`.measures` — :func:`hessian_eigenvalues`, :func:`hessian_trace`, :func:`hessian_density`
  (``curvature="hessian"`` or ``"ggn"``).
- :mod:`.products` — :func:`hessian_vector_product`, :func:`ggn_vector_product` and
  :class:`CurvatureOperator` (``op @ v``, ``op @ V``).

The linear-algebra layer, for any symmetric operator (a :class:`CurvatureOperator`, a dense matrix,
a :class:`LambdaOperator` around a product function):

- :mod:`.operators` — the operator protocol, dense and callable operators, random probes.
- :mod:`.lanczos` — :func:`top_eigenvalues` by thick-restart Lanczos, :func:`power_iteration` as the baseline.
- :mod:`.trace` — :func:`hutchinson_trace`, :func:`hutchpp_trace` and :func:`adaptive_trace` (one of the
  two, chosen by a spectrum check).
- :mod:`.retained` — the retained-graph products behind :class:`CurvatureOperator` (``primal="retain"``).
- :mod:`.density` — :func:`spectral_density` by stochastic Lanczos quadrature.
"""

from stability.curvature.density import SpectralDensity, spectral_density
from stability.curvature.lanczos import EigenResult, power_iteration, top_eigenvalues
from stability.curvature.measures import hessian_density, hessian_eigenvalues, hessian_trace
from stability.curvature.operators import LambdaOperator, MatrixOperator, SymmetricOperator
from stability.curvature.products import CurvatureOperator, ggn_vector_product, hessian_vector_product
from stability.curvature.trace import TraceResult, adaptive_trace, hutchinson_trace, hutchpp_trace

__all__ = [
    "CurvatureOperator", "EigenResult", "adaptive_trace", "LambdaOperator", "MatrixOperator", "SpectralDensity",
    "SymmetricOperator", "TraceResult", "ggn_vector_product", "hessian_density", "hessian_eigenvalues",
    "hessian_trace", "hessian_vector_product", "hutchinson_trace", "hutchpp_trace", "power_iteration",
    "spectral_density", "top_eigenvalues",
]
