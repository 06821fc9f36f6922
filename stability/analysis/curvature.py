"""Curvature, linear stability and the parameter-to-input bridge of a trained model, for ``stability analyze``.

Everything is evaluated on a fixed, seeded subset of the training split (the data the model was trained
on, with its possibly corrupted labels), so numbers from checkpoints of one run compare. THEORY.md section 2:

- sharpness ``λ_max(H)``, the top-k eigenvalues and ``λ_min(H)`` (Lanczos), ``tr H`` (Hutchinson), the
  spectral density (stochastic Lanczos quadrature), and the Gauss-Newton counterparts;
- the GD verdict ``η λ_max`` vs 2 and the SGD verdict of Wu, Ma & E (2018) with non-uniformity ``s``;
- both sides of the first-layer bound and the per-sample size of ``∂G/∂x_i``.

The curvature is that of the loss the model was trained with, from the loss registry. A loss that is not
convex in the outputs (``bounded-cross-entropy``) has no positive semi-definite Gauss-Newton matrix and
no first-layer bound; those sections are then ``None`` and :attr:`CurvatureAnalysis.note` says why.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from stability.analysis.options import CurvatureOptions
from stability.analysis.summary import summarize
from stability.checks import check_positive
from stability.curvature.density import SpectralDensity
from stability.curvature.lanczos import EigenResult
from stability.curvature.measures import hessian_density, hessian_eigenvalues, hessian_trace
from stability.curvature.products import seeded_subset
from stability.curvature.trace import TraceResult
from stability.data.bundle import Split
from stability.dynamics.bounds import FirstLayerBound, first_layer_bound
from stability.dynamics.verdicts import GDVerdict, SGDVerdict, gd_criterion, sgd_criterion
from stability.dynamics.wu_ma_e import NonUniformity, nonuniformity
from stability.losses import get_loss
from stability.sensitivity.one_step import UpdateSensitivity, update_input_sensitivity
from stability.serialize import omitted


@dataclass(frozen=True)
class CurvatureSpectrum:
    """One curvature matrix on the evaluation subset: its top eigenpairs, its trace and (for the Hessian)
    its most negative eigenvalue ``bottom`` (``which="SA"``); ``sharpness`` is ``top.eigenvalues[0]``."""

    top: EigenResult
    trace: TraceResult
    bottom: EigenResult | None = None

    __json_properties__ = ("sharpness",)

    @property
    def sharpness(self) -> float:
        return float(self.top.eigenvalues[0])


SUMMARIZED = ("gauss_newton_fro", "gauss_newton_spectral", "param_factor", "input_factor", "product_bound")


@dataclass(frozen=True)
class UpdateSummary:
    """Summaries (:func:`~stability.analysis.summary.summarize`) of the per-sample ``‖∂G/∂x_i‖`` of
    :class:`~stability.sensitivity.one_step.UpdateSensitivity` and its factors, at step size ``lr``."""

    lr: float
    gauss_newton_fro: dict[str, float]
    gauss_newton_spectral: dict[str, float]
    param_factor: dict[str, float]
    input_factor: dict[str, float]
    product_bound: dict[str, float]

    @classmethod
    def of(cls, update: UpdateSensitivity) -> UpdateSummary:
        return cls(update.lr, *(summarize(getattr(update, key)) for key in SUMMARIZED))


@dataclass(frozen=True)
class Bounds:
    """The parameter-to-input bridge: the first-layer bound (``None`` for a non-convex loss) and ``∂G/∂x_i``."""

    first_layer: FirstLayerBound | None
    update_input_sensitivity: UpdateSummary


@dataclass(frozen=True)
class CurvatureAnalysis:
    """What ``stability analyze`` reports in its ``curvature`` section, plus ``bounds`` (its own section of
    the report) and the spectral density (figure data).

    Attributes:
        loss: the training loss whose curvature this is.
        note: why a section is missing (``None`` when none is).
        n_evaluated: samples of the evaluation subset.
        hessian, ggn: the two curvature matrices (``ggn`` is ``None`` for a loss not convex in the outputs).
        nonuniformity: Wu–Ma–E's ``s`` on ``options.nonuniformity_subset`` samples.
        gd: the GD verdict for the step size, ``η λ_max`` vs 2. Trained networks are rarely exactly at a
            minimum; ``hessian.bottom`` gives ``λ_min``, and ``note`` says when it is negative beyond the
            solve's accuracy (a saddle, which GD leaves whatever the step size).
        sgd: the Wu–Ma–E verdict for the batch size.
    """

    loss: str
    note: str | None
    n_evaluated: int
    hessian: CurvatureSpectrum
    ggn: CurvatureSpectrum | None
    nonuniformity: NonUniformity
    gd: GDVerdict
    sgd: SGDVerdict
    options: CurvatureOptions
    bounds: Bounds = omitted()
    density: SpectralDensity = omitted()

    @property
    def unconverged(self) -> list[str]:
        out = []
        if not self.hessian.top.converged:
            out.append("Hessian top eigenvalues (Lanczos)")
        if not self.nonuniformity.eigen.converged:
            out.append("non-uniformity s (Lanczos)")
        return out


def analyze_curvature(
    model: nn.Module, train: Split, *, loss: str, lr: float, batch_size: int, options: CurvatureOptions = CurvatureOptions()
) -> CurvatureAnalysis:
    """Curvature, verdicts and bounds of ``model`` on (a seeded subset of) its training split.

    ``lr`` and ``batch_size`` are the step size and minibatch size the verdicts are for (``batch_size`` of
    0 means full batch). Cost: Lanczos for the top ``k`` and the bottom eigenvalue of ``H`` and the top
    one of ``G`` (at most ``max_iter + k`` products each), ``2 · trace_probes`` products for the traces,
    ``density_probes · density_steps`` for the density, and the non-uniformity's per-sample products.
    """
    o = options
    lr = check_positive("lr", lr)
    convex = get_loss(loss).convex
    model.eval()
    device = next(model.parameters()).device
    x, y = train.x.to(device), train.y.to(device)
    common = dict(loss=loss, subset=o.subset, seed=o.seed, chunk_size=o.chunk_size)
    solve = dict(tol=o.tol, max_iter=o.max_iter)

    def spectrum(curvature: str) -> CurvatureSpectrum:
        k = o.top_k if curvature == "hessian" else 1
        top = hessian_eigenvalues(model, x, y, k=k, curvature=curvature, **common, **solve)
        bottom = hessian_eigenvalues(model, x, y, which="SA", **common, **solve) if curvature == "hessian" else None
        return CurvatureSpectrum(top, hessian_trace(model, x, y, num_probes=o.trace_probes, curvature=curvature,
                                                    **common), bottom)  # fmt: skip

    hessian = spectrum("hessian")
    nonu = nonuniformity(model, x, y, **{**common, "subset": o.nonuniformity_subset}, **solve)
    n = len(train)
    batch = n if batch_size == 0 else min(batch_size, n)
    idx = seeded_subset(n, o.subset, o.seed)
    xs, ys = (x, y) if idx is None else (x[idx.to(device)], y[idx.to(device)])
    update = update_input_sensitivity(model, xs, ys, lr=lr, loss=loss, chunk_size=o.chunk_size)
    notes = []
    if not convex:
        notes.append(f"{loss} is not convex in the outputs (its output Hessian is indefinite): no Gauss-Newton "
                     "matrix and no first-layer bound; the Hessian sections are those of this loss")  # fmt: skip
    gd = gd_criterion(hessian.top, lr)
    with_saddle = gd_criterion(hessian.top, lr, lambda_min=hessian.bottom)
    if with_saddle.stable != gd.stable:
        notes.append(f"{with_saddle.note} The GD verdict is the step-size condition at λ_max alone")
    return CurvatureAnalysis(
        loss=loss, note="; ".join(notes) or None, n_evaluated=xs.shape[0], hessian=hessian,
        ggn=spectrum("ggn") if convex else None, nonuniformity=nonu, gd=gd,
        sgd=sgd_criterion(hessian.top, nonu.s, lr, batch, n),
        options=o,
        bounds=Bounds(first_layer_bound(model, xs, ys, loss=loss, chunk_size=o.chunk_size) if convex else None,
                      UpdateSummary.of(update)),
        density=hessian_density(model, x, y, num_probes=o.density_probes, lanczos_steps=o.density_steps, **common),
    )  # fmt: skip
