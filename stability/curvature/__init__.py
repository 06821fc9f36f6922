"""Curvature of the training loss, seen through matrix-free products, and the solvers that read it.

- :mod:`.products` — Hessian- and Gauss-Newton-vector products and :class:`CurvatureOperator` (``op @ v``).
- :mod:`.operators` — the operator protocol, dense and callable operators, random probes.
- :mod:`.lanczos` — top eigenvalues by thick-restart Lanczos, and power iteration as the baseline.
- :mod:`.trace` — Hutchinson and Hutch++ trace estimates.
- :mod:`.density` — the spectral density by stochastic Lanczos quadrature.
"""

from stability.curvature.density import SpectralDensity, spectral_density
from stability.curvature.lanczos import EigenResult, power_iteration, top_eigenvalues
from stability.curvature.operators import MatrixOperator, SymmetricOperator
from stability.curvature.products import CurvatureOperator, ggn_vector_product, hessian_vector_product
from stability.curvature.trace import TraceResult, hutchinson_trace, hutchpp_trace

__all__ = [
    "CurvatureOperator", "EigenResult", "MatrixOperator", "SpectralDensity", "SymmetricOperator",
    "TraceResult", "ggn_vector_product", "hessian_vector_product", "hutchinson_trace", "hutchpp_trace",
    "power_iteration", "spectral_density", "top_eigenvalues",
]
