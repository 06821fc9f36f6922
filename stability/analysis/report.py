"""The analysis report: one source for the JSON file, the terminal table and the figures.

JSON schema ``stability-analysis`` version 4 (documented in docs/cli.md): the report's parts, each
written by :func:`stability.serialize.to_json` from its result dataclass, under a schema header::

    {"schema": "stability-analysis", "schema_version": 4, "stability_version": str,
     "checkpoint": str, "model_source": str | null,
     "model": {...} | null, "data": {...} | null, "training": {...} | null, "epoch": int | null,
     "splits": {"train": SplitAnalysis, "test": SplitAnalysis}, "loss_name": str,
     "options": AnalysisOptions, "generalization_gap": {"accuracy": train − test, "loss": test − train},
     "curvature": CurvatureAnalysis | null, "bounds": Bounds | null}

A ``SplitAnalysis`` is ``{"name", "n", "n_total", "accuracy", "loss", "accuracy_true", "loss_true",
"measures": {"<measure>": {"n", "mean", "std", "min", "q05", "q25", "median", "q75", "q95", "max"}, ...},
"evidence": {...}}``. With curvature (the default), ``"curvature"`` and ``"bounds"`` hold
:class:`~stability.analysis.curvature.CurvatureAnalysis` and its bounds, computed on the training split.

``accuracy`` and ``loss`` are against the labels the model was trained on; ``accuracy_true`` and
``loss_true`` against the original labels, present (not null) only when the training labels were corrupted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from stability import __version__, serialize
from stability.analysis.curvature import CurvatureAnalysis
from stability.analysis.splits import MEASURES, Analysis
from stability.data.spec import DataSpec
from stability.models.spec import ModelSpec
from stability.serialize import to_json
from stability.training.spec import TrainSpec

SCHEMA = "stability-analysis"


SCHEMA_VERSION = 4


@dataclass(frozen=True)
class Report:
    """An :class:`~stability.analysis.Analysis` together with what was analyzed.

    ``source`` names the weights (a checkpoint or state_dict path). A checkpoint written by ``stability
    train`` fills ``model``, ``data`` and ``training`` with its specs; a model from elsewhere leaves them
    ``None`` and may say where it came from in ``model_source`` (e.g. ``"package.module:factory"``).
    """

    source: str
    analysis: Analysis
    model: ModelSpec | None = None
    data: DataSpec | None = None
    training: TrainSpec | None = None
    epoch: int | None = None
    curvature: "CurvatureAnalysis | None" = None
    model_source: str | None = None

    def to_json(self) -> dict[str, Any]:
        c = self.curvature
        provenance = {"checkpoint": self.source, "model_source": self.model_source, "model": self.model,
                      "data": self.data, "training": self.training, "epoch": self.epoch}  # fmt: skip
        return {
            "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "stability_version": __version__,
            **to_json(provenance), **to_json(self.analysis),
            "curvature": to_json(c), "bounds": to_json(c.bounds) if c is not None else None,
        }  # fmt: skip


def write_json(path: str | Path, reports: list[Report]) -> None:
    """One report as an object; several as a JSON array of objects, in command-line order (atomically)."""
    payload: Any = reports[0].to_json() if len(reports) == 1 else [r.to_json() for r in reports]
    serialize.write_json(path, payload)


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.{digits}g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"


def _corruption(data: DataSpec | None) -> str:
    if data is None:
        return "—"
    return data.corruption + (f" p={data.corruption_prob}" if data.corruption == "partial-labels" else "")


def _verdict(stable: bool | None) -> str:
    return {True: "stable", False: "unstable", None: "not determined"}[stable]


def _statement(st: object) -> str:
    holds = getattr(st, "holds")
    if holds is None:
        return "—"
    return f"{_fmt(getattr(st, 'value'))} ({'holds' if holds else 'fails'})"


def _mean(split: object, key: str) -> str:
    """A measure's mean over samples, with the Monte Carlo standard error of that mean when it is estimated."""
    mean = _fmt(getattr(split, "measures")[key]["mean"])
    se = getattr(split, "evidence").get(key, {}).get("stderr_of_mean")
    return mean if se is None else f"{mean} ± {_fmt(se, 2)}"


def _trace(t: object) -> str:
    """An exact trace as is; an estimate with its standard error and how many samples it averages."""
    value = _fmt(getattr(t, "estimate"))
    if getattr(t, "method").startswith("exact"):
        return f"{value} (exact)"
    return f"{value} ± {_fmt(getattr(t, 'stderr'), 2)} ({getattr(t, 'method')}, m={getattr(t, 'num_samples')})"


def _nonuniformity(c: CurvatureAnalysis) -> str:
    text = f"{_fmt(c.nonuniformity.s)} (n={c.nonuniformity.n_evaluated})"
    other = c.nonuniformity_disjoint
    return text if other is None else text + f"; {_fmt(other.s)} on a disjoint {other.n_evaluated}"


def _fixed(c: CurvatureAnalysis, key: str) -> str:
    """Mean over the solved samples, with their number and (for the displacement) the largest solve residual."""
    f = c.bounds.fixed_point
    if f is None:
        return "—"
    text = f"{_fmt(getattr(f, key)['mean'])} (m={f.result.num_evaluated}"
    if key.startswith("displacement"):
        text += f", res {_fmt(f.result.max_solve_residual, 2)}" + ("" if f.result.converged else ", not converged")
    return text + ")"


def _assumed(c: CurvatureAnalysis) -> bool:
    a = c.applicability
    return bool(a.loss.holds and a.interpolation.holds and a.near_minimum.holds)


def comparison_table(reports: list[Report], labels: list[str] | None = None) -> Table:
    """A column per (checkpoint, split); a row per number. Measures show the mean over samples."""
    labels = labels or [r.source for r in reports]
    table = Table(title="stability analyze (measures: mean over samples)", show_lines=False)
    table.add_column("")
    for label, report in zip(labels, reports):
        for split in report.analysis.splits:
            table.add_column(f"{label}\n{split}", justify="right")

    def row(title: str, cell) -> None:
        table.add_row(title, *(cell(r, s) for r in reports for s in r.analysis.splits.values()))

    row("samples", lambda r, s: f"{s.n}/{s.n_total}")
    row("corruption", lambda r, s: _corruption(r.data))
    row("accuracy", lambda r, s: _fmt(s.accuracy))
    row("accuracy (true)", lambda r, s: _fmt(s.accuracy_true))
    row("loss", lambda r, s: _fmt(s.loss))
    for key, (label, _) in MEASURES.items():
        row(label, lambda r, s, key=key: _mean(s, key))
    row("train − test acc.", lambda r, s: _fmt(r.analysis.generalization_gap["accuracy"]) if s.name == "test" else "")
    if any(r.curvature for r in reports):
        def train_only(fn):
            return lambda r, s: fn(r.curvature) if r.curvature is not None and s.name == "train" else ""

        row("sharpness λ_max(H)", train_only(lambda c: _fmt(c.hessian.sharpness)))
        row("λ_min(H)", train_only(lambda c: _fmt(float(c.hessian.bottom.eigenvalues[0])) if c.hessian.bottom else "—"))
        row("‖∇L‖", train_only(lambda c: _fmt(c.applicability.gradient_norm)))
        row("optimizer", train_only(lambda c: f"{c.linear_stability.setting.kind} η={_fmt(c.linear_stability.setting.lr)}"))
        row("λ_max of its curvature", train_only(lambda c: _fmt(c.linear_stability.sharpness)))
        row("its threshold", train_only(lambda c: _fmt(c.linear_stability.threshold)))
        row("optimizer verdict", train_only(lambda c: _verdict(c.linear_stability.stable)))
        row("SGD necessary η λ_max ≤ 2", train_only(lambda c: _statement(c.sgd.necessary) if c.sgd else "—"))
        row("SGD sufficient (Wu–Ma–E)", train_only(lambda c: _statement(c.sgd.sufficient) if c.sgd else "—"))
        row("SGD exact ρ(T) ≤ 1", train_only(lambda c: _statement(c.sgd.exact) if c.sgd else "—"))
        row("SGD verdict", train_only(lambda c: _verdict(c.sgd.stable) if c.sgd else "—"))
        row("at a minimum (assumptions)", train_only(lambda c: "yes" if _assumed(c) else "no: linearization"))
        row("non-uniformity s", train_only(_nonuniformity))
        row("tr H", train_only(lambda c: _trace(c.hessian.trace)))
        row("‖dθ*/dx_i‖ fixed point", train_only(lambda c: _fixed(c, "displacement_fro")))
        row("‖∂G/∂x_i‖ one step, same i", train_only(lambda c: _fixed(c, "one_step_fro")))
        row("first-layer bound lhs/rhs",
            train_only(lambda c: _fmt(c.bounds.first_layer.ratio) if c.bounds.first_layer else "—"))
    return table
