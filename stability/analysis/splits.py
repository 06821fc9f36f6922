"""Analysis of a trained model on the exact data it saw: accuracy, loss and input sensitivity per split.

:func:`analyze_model` takes a model and its :class:`~stability.data.DataBundle` and returns an
:class:`Analysis`: one :class:`SplitAnalysis` per split (train, test) holding accuracy and loss — against
the training labels and, where those were corrupted, the true ones — and a summary (mean, median,
quantiles, max) of every per-sample input-sensitivity measure of :mod:`stability.sensitivity`. The JSON
report, the terminal table and the figures are all drawn from this one object.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from stability.analysis.options import MAX_EXACT_OUTPUTS, AnalysisOptions
from stability.analysis.summary import summarize
from stability.curvature.products import seeded_subset
from stability.data.bundle import DataBundle, Split
from stability.functional import FunctionalModel, functionalize
from stability.losses import get_loss
from stability.sensitivity.jacobian import (
    data_direction,
    input_jacobian,
    jacobian_frobenius,
    jacobian_frobenius_estimate,
    jacobian_spectral,
)
from stability.sensitivity.loss_gradient import loss_input_gradient_norm
from stability.sensitivity.noise import noise_sensitivity, prediction_stability
from stability.serialize import omitted

# Per-sample measures, in report order: name -> (label for people, what it is).
MEASURES: dict[str, tuple[str, str]] = {
    "jacobian_frobenius": ("‖J‖_F (logits)", "Frobenius norm of the input-logit Jacobian (Novak et al. 2018)"),
    "jacobian_frobenius_softmax": ("‖J‖_F (softmax)", "Frobenius norm of the input-probability Jacobian"),
    "jacobian_spectral": ("‖J‖_2 (logits)", "spectral norm of the input-logit Jacobian (power iteration)"),
    "data_direction": ("‖J x‖", "derivative along the input itself; for a linear first layer x·∇_x f = <W, ∇_W f>"),
    "loss_input_gradient": ("‖∇_x loss‖", "norm of the loss gradient with respect to the input"),
    "noise_sensitivity": ("E‖Δf‖/σ", "finite-noise sensitivity E‖f(x+σε) − f(x)‖/σ of the logits"),
    "prediction_stability": ("P(same pred.)", "fraction of noisy copies x+σε with an unchanged prediction"),
}


def stderr_of_mean(stderr: Tensor) -> float:
    """The standard error that independent per-sample Monte Carlo errors ``stderr: (n,)`` leave on the mean
    over the samples, ``sqrt(Σ_i se_i²) / n`` (the table prints it beside the mean)."""
    return float(stderr.double().pow(2).sum().sqrt() / stderr.numel())


@dataclass(frozen=True)
class SplitAnalysis:
    """One split's numbers: ``measures[key]`` summarizes the per-sample values of :data:`MEASURES` ``[key]``;
    ``per_sample`` keeps the raw values (for figures; not written to JSON)."""

    name: str
    n: int
    n_total: int
    accuracy: float
    loss: float
    accuracy_true: float | None
    loss_true: float | None
    measures: dict[str, dict[str, float]]
    evidence: dict[str, Any]
    per_sample: dict[str, Tensor] = omitted(compare=False)


@dataclass(frozen=True)
class Analysis:
    """Every split's :class:`SplitAnalysis`, the loss they were scored with and the options used."""

    splits: dict[str, SplitAnalysis]
    loss_name: str
    options: AnalysisOptions

    __json_properties__ = ("generalization_gap",)

    @property
    def generalization_gap(self) -> dict[str, float]:
        """Train minus test accuracy, test minus train loss (train against its training labels)."""
        train, test = self.splits["train"], self.splits["test"]
        return {"accuracy": train.accuracy - test.accuracy, "loss": test.loss - train.loss}

    @property
    def unconverged(self) -> list[str]:
        """Iterative estimates that stopped at their cap before meeting their tolerance."""
        return [
            f"{name}: {s.evidence['jacobian_spectral']['unconverged']} samples"
            for name, s in self.splits.items()
            if s.evidence.get("jacobian_spectral", {}).get("unconverged", 0) > 0
        ]


def subset(split: Split, max_samples: int | None, seed: int) -> Split:
    """A seeded subset of at most ``max_samples`` samples (the split itself when it is small enough).

    The same indices as the curvature's evaluation subset for equal sizes and seeds.
    """
    idx = seeded_subset(len(split), max_samples, seed)
    if idx is None:
        return split
    idx = idx.to(split.x.device)
    return Split(x=split.x[idx], y=split.y[idx], y_true=split.y_true[idx], index=split.index[idx])


def analyze_split(
    fm: FunctionalModel,
    split: Split,
    name: str,
    *,
    loss_name: str,
    options: AnalysisOptions,
    n_total: int,
    advance: Callable[[str], None] = lambda label: None,
) -> SplitAnalysis:
    """Every measure of :data:`MEASURES` on ``split`` (already subsetted), summarized."""
    x, y, params, o = split.x, split.y, fm.params, options
    chunk = o.chunk_size
    with torch.no_grad():
        logits = torch.cat([fm(params, xb) for xb in x.split(chunk or 1024)])
    losses = get_loss(loss_name).per_sample(logits, y)
    correct = (logits.argmax(-1) == y).to(torch.float64)
    corrupted = bool((split.y != split.y_true).any())
    per_sample: dict[str, Tensor] = {"loss": losses.detach(), "correct": correct}
    evidence: dict[str, Any] = {}

    C = logits.shape[-1]
    use_estimate = o.frobenius == "estimate" or (o.frobenius == "auto" and C > MAX_EXACT_OUTPUTS)
    if use_estimate:
        # Many outputs: random projections for ‖J‖_F, power iteration (JVP/VJP pairs) for ‖J‖_2.
        for output, key in (("logits", "jacobian_frobenius"), ("softmax", "jacobian_frobenius_softmax")):
            advance(f"{name}: {key}")
            est = jacobian_frobenius_estimate(fm, x, output=output, num_probes=o.probes,
                                              generator=o.seed, chunk_size=chunk)  # fmt: skip
            per_sample[key] = est.values
            evidence[key] = {"method": "estimate", "probes": o.probes, "mean_stderr": float(est.stderr.mean()),
                             "stderr_of_mean": stderr_of_mean(est.stderr)}  # fmt: skip
        spec = jacobian_spectral(fm, x, iters=o.spectral_iters, tol=o.spectral_tol, generator=o.seed,
                                 chunk_size=chunk)  # fmt: skip
        per_sample["jacobian_spectral"] = spec.values
        evidence["jacobian_spectral"] = {
            "method": "power iteration", "iterations": spec.iterations, "tol": o.spectral_tol,
            "unconverged": int((~spec.converged).sum()), "max_residual": float(spec.residuals.max()),
        }  # fmt: skip
    else:
        # Few outputs: the whole Jacobian costs C VJPs per sample, and gives both norms exactly.
        advance(f"{name}: jacobian_frobenius")
        J = input_jacobian(fm, x, output="logits", chunk_size=chunk).flatten(2)
        per_sample["jacobian_frobenius"] = J.flatten(1).norm(dim=1)
        per_sample["jacobian_spectral"] = torch.linalg.matrix_norm(J, ord=2)
        evidence["jacobian_frobenius"] = evidence["jacobian_spectral"] = {"method": "exact"}
        advance(f"{name}: jacobian_frobenius_softmax")
        per_sample["jacobian_frobenius_softmax"] = jacobian_frobenius(fm, x, output="softmax", chunk_size=chunk)
        evidence["jacobian_frobenius_softmax"] = {"method": "exact"}
    advance(f"{name}: data_direction")
    per_sample["data_direction"] = data_direction(fm, x, chunk_size=chunk)
    advance(f"{name}: loss_input_gradient")
    per_sample["loss_input_gradient"] = loss_input_gradient_norm(fm, x, y, loss=loss_name, chunk_size=chunk)
    advance(f"{name}: noise")
    noise = noise_sensitivity(fm, x, sigma=o.sigma, num_probes=o.noise_samples, generator=o.seed,
                              chunk_size=chunk)  # fmt: skip
    per_sample["noise_sensitivity"] = noise.values
    stable = prediction_stability(fm, x, sigma=o.sigma, num_probes=o.noise_samples, generator=o.seed,
                                  chunk_size=chunk)  # fmt: skip
    per_sample["prediction_stability"] = stable.values
    evidence["noise"] = {"sigma": o.sigma, "samples": o.noise_samples, "mean_stderr": float(noise.stderr.mean())}
    for key, result in (("noise_sensitivity", noise), ("prediction_stability", stable)):
        evidence[key] = {"method": "monte carlo", "samples": o.noise_samples,
                         "stderr_of_mean": stderr_of_mean(result.stderr)}  # fmt: skip

    return SplitAnalysis(
        name=name,
        n=len(split),
        n_total=n_total,
        accuracy=float(correct.mean()),
        loss=float(losses.mean()),
        accuracy_true=float((logits.argmax(-1) == split.y_true).double().mean()) if corrupted else None,
        loss_true=float(get_loss(loss_name).per_sample(logits, split.y_true).mean()) if corrupted else None,
        measures={key: summarize(per_sample[key]) for key in MEASURES},
        evidence=evidence,
        per_sample={k: v.detach().cpu() for k, v in per_sample.items()},
    )


def analyze_model(
    model: nn.Module,
    data: DataBundle,
    *,
    loss_name: str = "cross-entropy",
    options: AnalysisOptions = AnalysisOptions(),
    splits: tuple[str, ...] = ("train", "test"),
    advance: Callable[[str], None] = lambda label: None,
) -> Analysis:
    """Analyze ``model`` (put in eval mode) on the named splits of ``data`` (on the model's device).

    ``advance`` is called before each measure with a short label (progress reporting).
    """
    model.eval()
    device = next(model.parameters()).device
    fm = functionalize(model)
    results = {}
    for name in splits:
        full: Split = getattr(data, name)
        part = subset(full, options.max_samples, options.seed).to(device)
        results[name] = analyze_split(fm, part, name, loss_name=loss_name, options=options, n_total=len(full),
                                      advance=advance)  # fmt: skip
    return Analysis(splits=results, loss_name=loss_name, options=options)


def steps_per_analysis(splits: tuple[str, ...] = ("train", "test")) -> int:
    """How many times :func:`analyze_model` calls ``advance`` (for a progress bar's total)."""
    return 5 * len(splits)
