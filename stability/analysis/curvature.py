"""Curvature, linear stability and the parameter-to-input bridge of a checkpoint, for ``stability analyze``.

Everything is evaluated on a fixed, seeded subset of the training split (the data the model was trained
on, with its possibly corrupted labels), so numbers from checkpoints of one run compare. THEORY.md section 2:

- sharpness ``λ_max(H)`` and the top-k eigenvalues (Lanczos), ``tr H`` (Hutchinson), the spectral
  density (stochastic Lanczos quadrature), and the Gauss-Newton counterparts;
- the GD verdict ``η λ_max`` vs 2 and the SGD verdict of Wu, Ma & E (2018) with non-uniformity ``s``;
- both sides of the first-layer bound and the per-sample size of ``∂G/∂x_i``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from stability.analysis.summary import summarize
from stability.curvature.density import SpectralDensity, spectral_density
from stability.curvature.lanczos import top_eigenvalues
from stability.curvature.products import CurvatureOperator, seeded_subset
from stability.curvature.trace import hutchinson_trace
from stability.data.bundle import Split
from stability.dynamics.bounds import first_layer_bound
from stability.dynamics.nonuniformity import nonuniformity
from stability.dynamics.verdicts import gd_stability, sgd_stability
from stability.errors import BadInputError
from stability.sensitivity.one_step import update_input_sensitivity
from stability.serialize import to_json

CURVATURE_LOSSES = ("cross-entropy", "mse")


@dataclass(frozen=True)
class CurvatureOptions:
    """Budgets of :func:`analyze_curvature`.

    Attributes:
        subset: training samples the curvature is evaluated on (seeded; the edge-of-stability code uses 5,000).
        top_k, tol, max_iter: Lanczos for the top eigenvalues (relative residual tolerance, product cap).
        trace_samples: Hutchinson probes for ``tr H``.
        density_probes, density_steps: stochastic Lanczos quadrature budget.
        nonuniformity_subset: samples for ``s`` (each Σ-product costs two per-sample HVPs per sample).
        chunk_size: samples per chunk in every product (memory); ``None``: all at once.
        seed: subset and probes.
    """

    subset: int = 1000
    top_k: int = 3
    tol: float = 1e-3
    max_iter: int = 100
    trace_samples: int = 32
    density_probes: int = 4
    density_steps: int = 40
    nonuniformity_subset: int = 256
    chunk_size: int | None = None
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CurvatureAnalysis:
    """What ``stability analyze`` reports in its ``curvature`` and ``bounds`` sections, plus figure data."""

    curvature: dict[str, Any]
    bounds: dict[str, Any]
    eigenvalues: Tensor
    density: SpectralDensity
    lr: float

    @property
    def unconverged(self) -> list[str]:
        out = []
        if not self.curvature["hessian"]["top"]["converged"]:
            out.append("Hessian top eigenvalues (Lanczos)")
        if not self.curvature["nonuniformity"]["eigen_converged"]:
            out.append("non-uniformity s (Lanczos)")
        return out


def _eigen_dict(result: Any) -> dict[str, Any]:
    return {
        "eigenvalues": result.eigenvalues.tolist(), "residuals": result.residuals.tolist(),
        "iterations": result.iterations, "num_hvps": result.num_hvps, "converged": bool(result.converged),
        "tol": result.tol,
    }  # fmt: skip


def analyze_curvature(
    model: nn.Module, train: Split, *, loss: str, lr: float, batch_size: int, options: CurvatureOptions = CurvatureOptions()
) -> CurvatureAnalysis:
    """Curvature, verdicts and bounds of ``model`` on (a seeded subset of) its training split.

    ``lr`` and ``batch_size`` are the step size and minibatch size the verdicts are for (``batch_size`` of
    0 means full batch). A loss other than cross-entropy or MSE is analyzed as cross-entropy, and said so.
    """
    o = options
    if lr <= 0:
        raise BadInputError(f"--lr must be positive, got {lr}")
    note = None
    if loss not in CURVATURE_LOSSES:
        note = f"the model was trained with {loss}; its curvature is reported for cross-entropy"
        loss = "cross-entropy"
    model.eval()
    device = next(model.parameters()).device
    gen = lambda: torch.Generator(device=device).manual_seed(o.seed)  # noqa: E731
    x, y = train.x.to(device), train.y.to(device)
    common = dict(loss=loss, subset=o.subset, seed=o.seed, batch_size=o.chunk_size)
    H = CurvatureOperator(model, x, y, which="hessian", **common)
    G = CurvatureOperator(model, x, y, which="ggn", **common)
    top = top_eigenvalues(H, o.top_k, tol=o.tol, max_iter=o.max_iter, generator=gen())
    top_ggn = top_eigenvalues(G, 1, tol=o.tol, max_iter=o.max_iter, generator=gen())
    trace = hutchinson_trace(H, o.trace_samples, generator=gen())
    trace_ggn = hutchinson_trace(G, o.trace_samples, generator=gen())
    density = spectral_density(H, num_probes=o.density_probes, lanczos_steps=o.density_steps, generator=gen())
    S = CurvatureOperator(model, x, y, which="hessian", loss=loss, subset=o.nonuniformity_subset, seed=o.seed,
                          batch_size=o.chunk_size)  # fmt: skip
    nonu = nonuniformity(S, tol=o.tol, max_iter=o.max_iter, generator=gen())
    n = len(train)
    batch = n if batch_size == 0 else min(batch_size, n)
    sharp = float(top.eigenvalues[0])
    curvature = {
        "loss": loss,
        "note": note,
        "n_evaluated": H.n,
        "hessian": {"top": _eigen_dict(top), "sharpness": sharp, "trace": trace.to_dict()},
        "ggn": {"top": _eigen_dict(top_ggn), "sharpness": float(top_ggn.eigenvalues[0]), "trace": trace_ggn.to_dict()},
        "nonuniformity": {**nonu.to_dict(), "n_evaluated": S.n},
        "gd": gd_stability(sharp, lr).to_dict(),
        "sgd": sgd_stability(sharp, nonu.s, lr, batch, n).to_dict(),
        "options": o.to_dict(),
    }  # fmt: skip
    curvature["nonuniformity"].pop("eigen_eigenvectors", None)
    idx = seeded_subset(n, o.subset, o.seed)
    xs, ys = (x, y) if idx is None else (x[idx.to(device)], y[idx.to(device)])
    bound = first_layer_bound(model, xs, ys, loss=loss, chunk_size=o.chunk_size)
    update = update_input_sensitivity(model, xs, ys, lr=lr, loss=loss, chunk_size=o.chunk_size)
    bounds = {
        "first_layer": to_json(bound),
        "update_input_sensitivity": {
            "lr": lr,
            **{key: summarize(getattr(update, key)) for key in
               ("gauss_newton_fro", "gauss_newton_spectral", "param_factor", "input_factor", "product_bound")},
        },  # fmt: skip
    }
    return CurvatureAnalysis(curvature=_plain(curvature), bounds=bounds, eigenvalues=top.eigenvalues.cpu(),
                             density=density, lr=lr)  # fmt: skip


def _plain(obj: Any) -> Any:
    """Tensors to lists, recursively, so the result is JSON-able."""
    if isinstance(obj, Tensor):
        return obj.tolist()
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items() if not k.endswith("eigenvectors")}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj
