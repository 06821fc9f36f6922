"""A training-loop callback that records sharpness, curvature trace and input measures as a run goes."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from stability.checks import check_count, check_positive, check_positive_int
from stability.curvature.lanczos import top_eigenvalues
from stability.curvature.products import CurvatureOperator
from stability.curvature.trace import hutchinson_trace
from stability.dynamics.optimizers import (
    OptimizerSetting,
    linear_stability,
    linear_stability_criterion,
    setting_from_optimizer,
)
from stability.dynamics.verdicts import gd_criterion

Measure = Callable[[nn.Module, Tensor, Tensor], Any]


class StabilityTracker:
    """Record sharpness, curvature trace and input measures every ``every`` steps of any training loop.

    Training code calls ``tracker(step, model)``; on steps divisible by ``every`` the tracker builds a
    :class:`CurvatureOperator` on the fixed evaluation subset (same ``subset`` and ``seed`` every time, so
    the numbers compare across the run), warm-starts Lanczos from the previous top eigenvectors, and
    appends a dict to ``records``:

    ``step``, ``loss``, ``sharpness`` (and ``eigenvalues`` when ``k > 1``), ``sharpness_residual``,
    ``converged``, ``num_hvps``; ``trace`` and ``trace_stderr`` (Hutchinson) when ``num_probes > 0``;
    ``eta_sharpness`` and ``gd_stable`` when ``lr`` is given; with ``optimizer`` (an :class:`OptimizerSetting`
    or the live ``torch.optim`` optimizer, read afresh at each record, so Adam's preconditioner and a decayed
    step size are current) ``optimizer``, ``threshold``, ``optimizer_sharpness`` (``λ_max`` of ``H + wd·I`` or
    of ``P⁻¹(H + wd·I)``) and ``optimizer_stable`` (``None``: not determined); and for each ``measures[name]`` (a function
    ``(model, x, y) -> float | dict | tensor`` on the evaluation subset) its value under ``name``
    (``name.key`` for dicts).

    With ``eval_mode`` (default) the model is measured in eval mode and its modes are restored after,
    so batch norm and dropout do not make the curvature random; the parameters are read, never changed.
    """

    def __init__(
        self, x: Tensor, y: Tensor, *, loss: str = "cross-entropy", every: int = 100, curvature: str = "hessian",
        subset: int | None = 1000, seed: int = 0, chunk_size: int | None = None,
        dtype: torch.dtype | None = None, k: int = 1, tol: float = 1e-3, max_iter: int = 100,
        num_probes: int = 0, lr: float | None = None, measures: Mapping[str, Measure] | None = None,
        eval_mode: bool = True, optimizer: OptimizerSetting | torch.optim.Optimizer | None = None,
    ) -> None:
        every = check_positive_int("every", every)
        num_probes = check_count("num_probes", num_probes, 0)
        if lr is not None:
            lr = check_positive("lr", lr)
        self.x, self.y, self.every = x, y, every
        self.options: dict[str, Any] = dict(
            loss=loss, curvature=curvature, subset=subset, seed=seed, chunk_size=chunk_size, dtype=dtype
        )
        self.k, self.tol, self.max_iter, self.num_probes, self.lr = k, tol, max_iter, num_probes, lr
        self.measures = dict(measures or {})
        self.eval_mode = eval_mode
        self.optimizer = optimizer
        self.records: list[dict[str, Any]] = []
        self._generator = torch.Generator().manual_seed(seed)
        self._previous: Tensor | None = None

    def __call__(self, step: int, model: nn.Module) -> dict[str, Any] | None:
        if step % self.every:
            return None
        return self.measure(step, model)

    def measure(self, step: int, model: nn.Module) -> dict[str, Any]:
        """Measure now, whatever the step; appends to and returns the new record."""
        modes = [(m, m.training) for m in model.modules()]
        if self.eval_mode:
            model.eval()
        try:
            record = self._measure(step, model)
        finally:
            for m, training in modes:
                m.training = training
        self.records.append(record)
        return record

    def _measure(self, step: int, model: nn.Module) -> dict[str, Any]:
        op = CurvatureOperator(model, self.x, self.y, **self.options)
        loss = op.loss_value()
        if not math.isfinite(loss):
            # A diverged run (e.g. a step size past 2/λ) is an outcome to record, not an error.
            return {"step": step, "loss": loss, "sharpness": math.nan, "converged": False, "num_hvps": 0, "diverged": True}
        v0 = self._previous if self._previous is not None and self._previous.shape == (op.dim,) else None
        eig = top_eigenvalues(op, self.k, tol=self.tol, max_iter=self.max_iter, v0=v0,
                              generator=self._generator)
        # Their sum starts a Krylov space that holds all k previous eigenvectors after k steps.
        self._previous = eig.eigenvectors.sum(1)
        sharp = float(eig.eigenvalues[0])
        record: dict[str, Any] = {
            "step": step, "loss": loss, "sharpness": sharp,
            "sharpness_residual": float(eig.residuals[0]), "converged": eig.converged, "num_hvps": eig.num_hvps,
        }
        if self.k > 1:
            record["eigenvalues"] = eig.eigenvalues.tolist()
        if self.num_probes > 0:
            tr = hutchinson_trace(op, self.num_probes, generator=self._generator)
            record.update(trace=tr.estimate, trace_stderr=tr.stderr)
        if self.lr is not None:
            record.update(eta_sharpness=self.lr * sharp, gd_stable=gd_criterion(sharp, self.lr).stable)
        if self.optimizer is not None:
            setting = (self.optimizer if isinstance(self.optimizer, OptimizerSetting)
                       else setting_from_optimizer(self.optimizer, model))  # fmt: skip
            if setting.adaptive:
                verdict = linear_stability(model, self.x, self.y, setting=setting, tol=self.tol, max_iter=self.max_iter,
                                           **self.options)  # fmt: skip
            else:
                verdict = linear_stability_criterion(setting, sharp + setting.weight_decay)
            record.update(optimizer=setting.kind, threshold=verdict.threshold, optimizer_sharpness=verdict.sharpness,
                          optimizer_stable=verdict.stable)  # fmt: skip
        if self.measures:
            xe, ye = op.x.to(op.device), op.y.to(op.device)
            for name, fn in self.measures.items():
                value = fn(model, xe, ye)
                items = value.items() if isinstance(value, Mapping) else [(None, value)]
                for key, val in items:
                    val = val.item() if isinstance(val, Tensor) and val.numel() == 1 else val
                    record[name if key is None else f"{name}.{key}"] = val
        return record
