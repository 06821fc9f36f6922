"""Curvature, linear stability and the parameter-to-input bridge of a trained model, for ``stability analyze``.

Everything is evaluated on the training split (the data the model was trained on, with its possibly
corrupted labels), the spectra on a fixed, seeded subset of it, so numbers from checkpoints of one run
compare (docs/theory.md §1–3):

- sharpness ``λ_max(H)``, the top-k eigenvalues and ``λ_min(H)`` (Lanczos), ``tr H`` (exact or Hutchinson), the
  spectral density (stochastic Lanczos quadrature), and the Gauss-Newton counterparts;
- the linear-stability verdict for the optimizer the model was trained with (GD, heavy ball, Nesterov, or
  Adam with its frozen preconditioner; "not determined" when the checkpoint lacks the state it needs),
  SGD's three statements (necessary, sufficient, exact) for the batch size, and Wu–Ma–E's ``s``, all on every
  training sample unless a subset is asked for, with the assumptions each needs and whether they hold;
- both sides of the first-layer bound, the per-sample size of ``∂G/∂x_i`` (how one GD step responds to a
  training input) and, on a few seeded samples, ``‖dθ*/dx_i‖`` (how far the fixed point moves; MINRES).

Traces are exact where that is cheap: ``tr G = (1/n) Σ_i tr(Λ_i J_i J_iᵀ)`` from per-sample Jacobians, and, for
networks piecewise linear in each parameter (:func:`piecewise_linear`), ``tr H = tr G`` because
``diag ∇²_θ f_c = 0`` there, so ``diag H = diag G``; elsewhere ``tr H`` is Hutchinson's, with its standard error.

The curvature is that of the loss the model was trained with, from the loss registry. A loss that is not
convex in the outputs (``bounded-cross-entropy``) has no positive semi-definite Gauss-Newton matrix and
no first-layer bound; those sections are then ``None`` and :attr:`CurvatureAnalysis.note` says why.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.func import grad

from stability.analysis.options import CurvatureOptions
from stability.analysis.summary import summarize
from stability.checks import check_positive
from stability.curvature.density import SpectralDensity
from stability.curvature.lanczos import EigenResult
from stability.curvature.measures import hessian_density, hessian_eigenvalues, hessian_trace
from stability.curvature.products import seeded_subset
from stability.curvature.trace import TraceResult
from stability.data.bundle import Split
from stability.dynamics.applicability import Applicability, applicability
from stability.dynamics.bounds import FirstLayerBound, first_layer_bound
from stability.dynamics.optimizers import (
    LinearStability,
    OptimizerSetting,
    adaptive_setting,
    linear_stability,
    linear_stability_criterion,
    setting_from_state,
    sgd_setting,
)
from stability.dynamics.sgd import SGDStability, sgd_stability
from stability.dynamics.wu_ma_e import NonUniformity, nonuniformity
from stability.functional import as_functional
from stability.losses import get_loss
from stability.sensitivity.fixed_point import FixedPointDisplacement, fixed_point_displacement
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
class FixedPointSummary:
    """Summaries of :class:`~stability.sensitivity.fixed_point.FixedPointDisplacement` on its seeded samples:
    ``‖dθ*/dx_i‖`` and, on the same samples and the same ``M_i``, the one-step ``‖∂G/∂x_i‖``; ``result`` holds
    the solver's evidence (residuals, share outside ``range(H)``, iterations, convergence) and the note."""

    displacement_fro: dict[str, float]
    displacement_spectral: dict[str, float]
    one_step_fro: dict[str, float]
    one_step_spectral: dict[str, float]
    result: FixedPointDisplacement

    @classmethod
    def of(cls, fixed: FixedPointDisplacement) -> FixedPointSummary:
        return cls(summarize(fixed.displacement_fro), summarize(fixed.displacement_spectral),
                   summarize(fixed.one_step_fro), summarize(fixed.one_step_spectral), fixed)  # fmt: skip


@dataclass(frozen=True)
class Bounds:
    """The parameter-to-input bridge: the first-layer bound (``None`` for a non-convex loss), ``∂G/∂x_i`` and
    the fixed point's displacement ``dθ*/dx_i`` (``None`` when ``fixed_point_samples`` is 0)."""

    first_layer: FirstLayerBound | None
    update_input_sensitivity: UpdateSummary
    fixed_point: FixedPointSummary | None = None


@dataclass(frozen=True)
class CurvatureAnalysis:
    """What ``stability analyze`` reports in its ``curvature`` section, plus ``bounds`` (its own section of
    the report) and the spectral density (figure data).

    Attributes:
        loss: the training loss whose curvature this is.
        note: why a section is missing (``None`` when none is).
        n_evaluated: samples of the evaluation subset.
        hessian, ggn: the two curvature matrices (``ggn`` is ``None`` for a loss not convex in the outputs).
        nonuniformity: Wu–Ma–E's ``s`` on the same samples as ``sgd`` (``n_evaluated`` says how many: all n
            unless ``options.nonuniformity_subset`` asked for fewer).
        nonuniformity_disjoint: with a subset, ``s`` on a second, disjoint subset of the same size, so the
            effect of subsetting can be read off (``None`` on all n).
        linear_stability: the verdict for the optimizer (``linear_stability.setting``): ``λ_max`` of ``H``
            (plus weight decay) or of Adam's ``P⁻¹H``, and ``λ_min``, against that optimizer's threshold;
            ``stable`` is ``None`` with the reason when the checkpoint cannot decide it.
        sgd: SGD's three statements (necessary, sufficient, exact) for the batch size; ``None`` for full batch.
        applicability: the assumptions the verdicts need (loss, interpolation, near a minimum) and whether
            this point meets them.
    """

    loss: str
    note: str | None
    n_evaluated: int
    hessian: CurvatureSpectrum
    ggn: CurvatureSpectrum | None
    nonuniformity: NonUniformity
    nonuniformity_disjoint: NonUniformity | None
    linear_stability: LinearStability
    sgd: SGDStability | None
    applicability: Applicability
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
        if self.sgd is not None and self.sgd.sufficient.eigen is not None and not self.sgd.sufficient.eigen.converged:
            out.append("Wu–Ma–E matrix condition (Lanczos)")
        fixed = self.bounds.fixed_point if self.bounds is not None else None
        if fixed is not None and not fixed.result.converged:
            out.append("fixed-point displacement (MINRES)")
        return out


def optimizer_setting(training: object | None, resume: object | None, param_names: list[str], *,
                      lr: float | None = None) -> OptimizerSetting | None:  # fmt: skip
    """The optimizer a checkpoint was trained with, from its training spec and (while it can resume) the
    optimizer state; ``None`` without a spec. ``lr`` overrides the step size (the spec's ``lr`` decayed to
    the last epoch otherwise)."""
    if training is None:
        return None
    name = getattr(training, "optimizer")
    state = resume.get("optimizer") if isinstance(resume, dict) else None
    if state is not None:
        try:
            setting = setting_from_state(name, state, param_names, source="the checkpoint's optimizer state")
        except (KeyError, TypeError, ValueError):
            setting = None
        if setting is not None:
            return setting if lr is None else OptimizerSetting(setting.kind, lr, setting.momentum, setting.weight_decay,
                                                               setting.preconditioner, setting.source, setting.missing)  # fmt: skip
    epochs = max(int(getattr(training, "epochs", 1)) - 1, 0)
    step = lr if lr is not None else training.lr * getattr(training, "lr_decay", 1.0) ** epochs
    wd = float(getattr(training, "weight_decay", 0.0))
    if name == "sgd":
        return sgd_setting(step, momentum=float(training.momentum), weight_decay=wd, source="the training spec")
    return adaptive_setting("adam", step, momentum=0.9, eps=1e-8, step=None, second_moments=None, beta2=0.999,
                            weight_decay=wd, source="the checkpoint (written without its optimizer state)")  # fmt: skip


def _gradient_and_residual(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str, chunk: int | None
                           ) -> tuple[float, float, float]:  # fmt: skip
    """``‖∇L‖``, ``‖θ‖`` and the largest per-sample residual ``‖∇_f ℓ_i‖`` on ``(x, y)``."""
    fm = as_functional(model)
    entry = get_loss(loss)
    first = next(iter(fm.params.values()))
    x = x.to(first.dtype) if x.is_floating_point() else x
    y = y.to(first.dtype) if y.is_floating_point() else y
    total = {k: torch.zeros_like(v) for k, v in fm.params.items()}
    worst = 0.0
    for xb, yb in zip(x.split(chunk or x.shape[0]), y.split(chunk or x.shape[0])):
        g = grad(lambda p: entry.mean(fm(p, xb).flatten(1), yb))(fm.params)
        total = {k: total[k] + g[k].detach() * xb.shape[0] for k in total}
        with torch.no_grad():
            worst = max(worst, float(entry.output_gradient(fm(fm.params, xb).flatten(1), yb).norm(dim=1).max()))
    norm = float(sum((t / x.shape[0]).pow(2).sum() for t in total.values()).sqrt())
    pnorm = float(sum(p.detach().pow(2).sum() for p in fm.params.values()).sqrt())
    return norm, pnorm, worst


PIECEWISE_LINEAR = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ReLU, nn.LeakyReLU, nn.Flatten, nn.Identity,
                    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
                    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.Sequential)  # fmt: skip


def piecewise_linear(model: nn.Module) -> bool:
    """Whether ``model`` is an ``nn.Sequential`` of layers linear in each parameter and activations piecewise
    linear (ReLU, pooling; no batch norm, no smooth activation), so that ``∂²f_c/∂θ_j² = 0`` wherever it is
    differentiable: then ``diag H = diag G`` and ``tr H = tr G`` exactly, whatever the residuals."""
    return isinstance(model, nn.Sequential) and all(type(m) in PIECEWISE_LINEAR for m in model.modules())


def exact_trace(value: float, what: str) -> TraceResult:
    """An exact trace as a :class:`TraceResult` (``stderr = 0``, one "sample", ``method`` naming how)."""
    return TraceResult(value, 0.0, torch.tensor([value]), 0, f"exact: {what}")


def _disjoint(model: nn.Module, x: torch.Tensor, y: torch.Tensor, size: int, seed: int,
              **kwargs: object) -> NonUniformity | None:  # fmt: skip
    """``s`` on ``size`` samples disjoint from the seeded subset ``seeded_subset(n, size, seed)``."""
    chosen = seeded_subset(x.shape[0], size, seed)
    if chosen is None:
        return None
    keep = torch.ones(x.shape[0], dtype=torch.bool)
    keep[chosen] = False
    rest = keep.nonzero().squeeze(1)
    if rest.numel() < 2:
        return None
    pick = seeded_subset(rest.numel(), size, seed + 1)
    rest = rest if pick is None else rest[pick]
    return nonuniformity(model, x[rest.to(x.device)], y[rest.to(y.device)], seed=seed, **kwargs)


def analyze_curvature(
    model: nn.Module, train: Split, *, loss: str, lr: float, batch_size: int,
    options: CurvatureOptions = CurvatureOptions(), optimizer: OptimizerSetting | None = None,
    replacement: bool = False,
) -> CurvatureAnalysis:
    """Curvature, verdicts and bounds of ``model`` on (a seeded subset of) its training split.

    ``lr`` and ``batch_size`` are the step size and minibatch size the verdicts are for (``batch_size`` of
    0 means full batch); ``optimizer`` the optimizer (default: plain GD/SGD at ``lr``), see
    :func:`optimizer_setting`. The spectra use ``options.subset`` samples; the SGD statements and ``s`` use
    every training sample unless ``options.nonuniformity_subset`` asks for fewer (their ``n_evaluated`` says
    so). Cost: Lanczos for the top ``k`` and the bottom eigenvalue of ``H`` and the top one of ``G`` (at most
    ``max_iter + k`` products each), two more for the optimizer's curvature (Adam's ``P⁻¹H``), ``C``
    reverse passes per sample for the exact traces (``trace_probes`` products for a Hutchinson ``tr H`` where
    it is not exact), ``density_probes · density_steps`` for the density, ``2n`` per-sample products per step
    of the two Lanczos solves on Σ and on Wu–Ma–E's matrix, and ``2 · fixed_point_iter · C`` products per
    sample of the fixed-point displacement.
    """
    o = options
    lr = check_positive("lr", lr)
    convex = get_loss(loss).convex
    model.eval()
    device = next(model.parameters()).device
    x, y = train.x.to(device), train.y.to(device)
    common = dict(loss=loss, subset=o.subset, seed=o.seed, chunk_size=o.chunk_size)
    solve = dict(tol=o.tol, max_iter=o.max_iter)
    n = len(train)
    idx = seeded_subset(n, o.subset, o.seed)
    xs, ys = (x, y) if idx is None else (x[idx.to(device)], y[idx.to(device)])
    first_layer = first_layer_bound(model, xs, ys, loss=loss, chunk_size=o.chunk_size) if convex else None
    exact_h = first_layer is not None and piecewise_linear(model)

    def spectrum(curvature: str) -> CurvatureSpectrum:
        k = o.top_k if curvature == "hessian" else 1
        top = hessian_eigenvalues(model, x, y, k=k, curvature=curvature, **common, **solve)
        bottom = hessian_eigenvalues(model, x, y, which="SA", **common, **solve) if curvature == "hessian" else None
        if first_layer is not None and (curvature == "ggn" or exact_h):
            how = "tr G = (1/n) Σ tr(Λ_i J_i J_iᵀ)" + (", = tr H (piecewise-linear network)" if curvature == "hessian" else "")
            trace = exact_trace(first_layer.ggn_trace, how)
        else:
            trace = hessian_trace(model, x, y, num_probes=o.trace_probes, curvature=curvature, **common)
        return CurvatureSpectrum(top, trace, bottom)

    hessian = spectrum("hessian")
    sub = dict(common, subset=o.nonuniformity_subset)
    nonu = nonuniformity(model, x, y, **sub, **solve)
    disjoint = None
    if o.nonuniformity_subset is not None:
        disjoint = _disjoint(model, x, y, o.nonuniformity_subset, o.seed, loss=loss, chunk_size=o.chunk_size, **solve)
    setting = optimizer or sgd_setting(lr, source="the step size given (plain GD/SGD)")
    if setting.adaptive or setting.weight_decay:
        verdict = linear_stability(model, x, y, setting=setting, **common, **solve)
    else:
        verdict = linear_stability_criterion(setting, hessian.top, lambda_min=hessian.bottom)
    batch = n if batch_size == 0 else min(batch_size, n)
    sgd = None if batch == n or setting.adaptive else sgd_stability(model, x, y, lr=setting.lr, batch_size=batch, replacement=replacement,
                                                **sub, **solve)  # fmt: skip
    gnorm, pnorm, worst = _gradient_and_residual(model, x, y, loss, o.chunk_size)
    low = hessian.bottom
    apply = applicability(loss=loss, gradient_norm=gnorm, param_norm=pnorm, sharpness=hessian.sharpness,
                          lambda_min=float(low.eigenvalues[0]), max_residual=worst,
                          lambda_min_slack=max(float(low.residuals[0]), low.tol * abs(hessian.sharpness)))  # fmt: skip
    update = update_input_sensitivity(model, xs, ys, lr=lr, loss=loss, chunk_size=o.chunk_size)
    fixed = None
    if o.fixed_point_samples:
        fixed = FixedPointSummary.of(fixed_point_displacement(
            model, x, y, loss=loss, lr=lr, samples=o.fixed_point_samples, seed=o.seed, tol=o.tol,
            max_iter=o.fixed_point_iter, chunk_size=o.chunk_size))  # fmt: skip
    notes = []
    if sgd is not None and setting.kind != "gd":
        notes.append(f"the SGD statements are for SGD without momentum at η = {setting.lr:.4g}; the run used "
                     f"{setting.kind} (β = {setting.momentum:g}), whose deterministic threshold is linear_stability's")  # fmt: skip
    if setting.adaptive and batch < n:
        notes.append("no SGD statements for an adaptive optimizer: they are derived for plain SGD")
    if not convex:
        notes.append(f"{loss} is not convex in the outputs (its output Hessian is indefinite): no Gauss-Newton "
                     "matrix and no first-layer bound; the Hessian sections are those of this loss")  # fmt: skip
    if disjoint is not None:
        notes.append(f"s, H and the SGD statements use a subset of {nonu.n_evaluated} of {n} training samples: "
                     f"s = {nonu.s:.4g} there and {disjoint.s:.4g} on a disjoint {disjoint.n_evaluated}, a spread of "
                     f"{abs(nonu.s - disjoint.s) / max(nonu.s, disjoint.s, 1e-300):.0%} from subsetting alone")  # fmt: skip
    return CurvatureAnalysis(
        loss=loss, note="; ".join(notes) or None, n_evaluated=xs.shape[0], hessian=hessian,
        ggn=spectrum("ggn") if convex else None, nonuniformity=nonu, nonuniformity_disjoint=disjoint,
        linear_stability=verdict, sgd=sgd, applicability=apply, options=o,
        bounds=Bounds(first_layer, UpdateSummary.of(update), fixed),
        density=hessian_density(model, x, y, num_probes=o.density_probes, lanczos_steps=o.density_steps, **common),
    )  # fmt: skip
