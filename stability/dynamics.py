"""Gradient descent as a map, and when a minimum is a stable fixed point of it.

Full-batch GD is ``G(θ) = θ − η ∇L(θ)``; near a minimum ``θ*`` its linearization is ``I − η H``, which
contracts iff every eigenvalue of ``H`` lies in ``(0, 2/η)`` — for a minimum (``H ⪰ 0``) iff the
sharpness ``λ_max(H) < 2/η`` (Cohen et al. 2021 observe training hovering at this edge).

For SGD with batch ``B`` drawn without replacement from ``n`` samples, Wu, Ma & E (2018) require, in
mean square, ``(1 − η a)² + η² s² (n − B) / (B (n − 1)) ≤ 1`` with sharpness ``a = λ_max(H)`` and
non-uniformity ``s² = λ_max(Σ)``, ``Σ = (1/n) Σ_i H_i² − H²`` (``H_i`` the Hessian of sample ``i``'s loss).
*(Our reading:)* for one parameter this is exactly the mean-square stability condition of the
linearized SGD map; in many dimensions ``a`` and ``s`` are worst-case eigenvalues of two different
matrices, so the verdict is the paper's criterion rather than an exact characterization.

:class:`StabilityTracker` records these quantities during training, independently of any training loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import vmap

from .curvature import CurvatureOperator, flatten
from .errors import BadInputError
from .linalg import EigenResult, top_eigenvalues
from .spectral import hutchinson_trace

__all__ = [
    "GDVerdict", "NonUniformity", "NonUniformityOperator", "SGDVerdict", "StabilityTracker",
    "gd_stability", "nonuniformity", "sgd_stability",
]


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not (value > 0 and math.isfinite(value)):
        raise BadInputError(f"{name} must be a positive finite number, got {value}")
    return value


def _sharpness(value: float | EigenResult) -> tuple[float, str]:
    if isinstance(value, EigenResult):
        note = "" if value.converged else " The sharpness solver did not converge; the verdict is provisional."
        return float(value.eigenvalues[0]), note
    value = float(value)
    if not math.isfinite(value):
        raise BadInputError(f"sharpness must be a finite number, got {value}")
    return value, ""


@dataclass(frozen=True)
class GDVerdict:
    """Linear stability of full-batch GD at a point with sharpness ``λ_max``.

    Attributes: ``eta_lambda = η λ_max``; ``threshold = 2/η``; ``margin = 2 − η λ_max`` (positive:
    stable); ``stable``: ``0 ≤ η λ_max ≤ 2`` and no negative curvature reported; ``note`` in words.
    """

    sharpness: float
    lr: float
    eta_lambda: float
    threshold: float
    margin: float
    stable: bool
    note: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def gd_stability(sharpness: float | EigenResult, lr: float, *, lambda_min: float | None = None) -> GDVerdict:
    """Compare ``η λ_max`` with 2.

    ``|1 − η λ| ≤ 1`` for every eigenvalue ``λ`` of ``H`` is needed for the GD map to keep a fixed point;
    with ``H ⪰ 0`` that is ``η λ_max ≤ 2`` (``= 2`` is the marginal edge). Pass ``lambda_min`` (e.g.
    from ``top_eigenvalues(op, which="SA")``) to also catch negative curvature, which GD moves away from.
    ``sharpness`` may be an :class:`EigenResult`; its convergence is then reflected in the note.
    """
    lam, caveat = _sharpness(sharpness)
    lr = _positive("lr", lr)
    eta_lambda = lr * lam
    stable = 0 <= eta_lambda <= 2
    if lambda_min is not None and float(lambda_min) < 0:
        stable = False
        note = f"negative curvature λ_min = {float(lambda_min):.3g}: a saddle, which GD leaves."
    elif lam < 0:
        note = "λ_max < 0: every direction curves down, so this is not a minimum."
    elif stable:
        note = f"stable: η λ_max = {eta_lambda:.4g} ≤ 2 (sharpness {lam:.4g} ≤ 2/η = {2 / lr:.4g})."
    else:
        note = f"unstable: η λ_max = {eta_lambda:.4g} > 2 (sharpness {lam:.4g} > 2/η = {2 / lr:.4g})."
    return GDVerdict(lam, lr, eta_lambda, 2 / lr, 2 - eta_lambda, stable, note + caveat)


@dataclass(frozen=True)
class SGDVerdict:
    """The Wu–Ma–E condition ``(1 − η a)² + η² s² c ≤ 1`` with ``c = (n − B) / (B (n − 1))``.

    Attributes: ``drift_term = (1 − η a)²``; ``noise_term = η² s² c``; ``lhs`` their sum;
    ``margin = 1 − lhs`` (positive: stable); ``max_lr = 2a / (a² + c s²)``, the largest step size
    that satisfies the condition at this ``a, s, B, n``; ``stable``: ``lhs ≤ 1``.
    """

    sharpness: float
    nonuniformity: float
    lr: float
    batch_size: int
    n: int
    noise_factor: float
    drift_term: float
    noise_term: float
    lhs: float
    margin: float
    max_lr: float
    stable: bool
    note: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sgd_stability(
    sharpness: float | EigenResult, nonuniformity: float, lr: float, batch_size: int, n: int
) -> SGDVerdict:
    """Evaluate the Wu–Ma–E condition (module docstring) for sharpness ``a``, non-uniformity ``s ≥ 0``.

    ``B = n`` gives ``c = 0`` and the GD condition ``0 ≤ η a ≤ 2``; smaller batches add the noise term,
    so a non-uniform minimum (large ``s``) can be stable for GD and unstable for SGD.
    """
    a, caveat = _sharpness(sharpness)
    s = float(nonuniformity)
    if not (s >= 0 and math.isfinite(s)):
        raise BadInputError(f"nonuniformity s must be a non-negative finite number, got {s}")
    lr = _positive("lr", lr)
    if not (isinstance(n, int) and isinstance(batch_size, int) and 1 <= batch_size <= n):
        raise BadInputError(f"need integers 1 <= batch_size <= n, got batch_size={batch_size!r}, n={n!r}")
    c = 0.0 if batch_size == n else (n - batch_size) / (batch_size * (n - 1))
    drift, noise = (1 - lr * a) ** 2, lr**2 * s**2 * c
    lhs = drift + noise
    denom = a**2 + c * s**2
    max_lr = (2 * a / denom if a > 0 else 0.0) if denom > 0 else math.inf
    stable = lhs <= 1
    verdict = "stable" if stable else "unstable"
    note = (f"{verdict}: (1 − η a)² = {drift:.4g} plus noise η² s² c = {noise:.4g} gives {lhs:.4g} "
            f"{'≤' if stable else '>'} 1; the largest stable step size here is {max_lr:.4g}.")
    return SGDVerdict(a, s, lr, batch_size, n, c, drift, noise, lhs, 1 - lhs, max_lr, stable, note + caveat)


class NonUniformityOperator:
    """``v ↦ Σ v = (1/n) Σ_i C_i (C_i v) − C (C v)`` for the per-sample curvatures ``C_i`` of an operator.

    With ``op.which == "hessian"``, ``C_i = H_i = ∇²_θ ℓ_i`` and ``Σ`` is Wu–Ma–E's; with ``ggn``,
    ``C_i = J_iᵀ Λ_i J_i``. ``Σ = (1/n) Σ_i (C_i − C)² ⪰ 0``.

    Per-sample products ``C_i v`` are taken with ``vmap`` over the samples of each chunk of ``op``
    (``per_sample_chunk`` of them at once: memory ``per_sample_chunk · D``). Cost of one application:
    ``2n`` per-sample products (the first pass also yields ``C v``) and one batched product ``C (C v)``.
    """

    def __init__(self, op: CurvatureOperator, *, per_sample_chunk: int | None = None) -> None:
        if not isinstance(op, CurvatureOperator):
            raise BadInputError(f"NonUniformityOperator needs a CurvatureOperator, got {type(op).__name__}")
        self.op, self.per_sample_chunk = op, per_sample_chunk
        self.dim, self.dtype, self.device = op.dim, op.dtype, op.device
        self.num_products = 0

    def __call__(self, v: Tensor) -> Tensor:
        op = self.op
        if v.shape != (self.dim,):
            raise BadInputError(f"vector has shape {tuple(v.shape)}, expected ({self.dim},)")
        self.num_products += 1
        vd = op.unflatten(v.to(device=self.device, dtype=self.dtype))

        def single(xi: Tensor, yi: Tensor, vi: dict[str, Tensor]) -> dict[str, Tensor]:
            return op._product(op.model, op.loss, op.params, xi[None], yi[None], vi)

        first = {k: torch.zeros_like(t) for k, t in vd.items()}
        second = {k: torch.zeros_like(t) for k, t in vd.items()}
        for xb, yb in op.batches():
            u = vmap(single, in_dims=(0, 0, None), chunk_size=self.per_sample_chunk)(xb, yb, vd)
            w = vmap(single, in_dims=(0, 0, 0), chunk_size=self.per_sample_chunk)(xb, yb, u)
            first = {k: first[k] + u[k].sum(0) for k in first}
            second = {k: second[k] + w[k].sum(0) for k in second}
        cv = {k: t / op.n for k, t in first.items()}
        ccv = op.apply(cv)
        return flatten({k: second[k] / op.n - ccv[k] for k in second})


@dataclass(frozen=True)
class NonUniformity:
    """``s = sqrt(λ_max(Σ))`` with the eigen-solve that produced it (``eigen.num_hvps`` counts Σ-products)."""

    s: float
    s_squared: float
    eigen: EigenResult = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        eigen = {f"eigen_{k}": v for k, v in self.eigen.to_dict().items()}
        return {"s": self.s, "s_squared": self.s_squared, **eigen}


def nonuniformity(
    op: CurvatureOperator, *, tol: float = 1e-3, max_iter: int = 100, generator: torch.Generator | None = None,
    per_sample_chunk: int | None = None,
) -> NonUniformity:
    """Wu–Ma–E's non-uniformity ``s`` by Lanczos (``which="LA"``) on :class:`NonUniformityOperator`.

    Cost: ``iterations + 1`` applications of ``Σ``, each ``2n`` per-sample products plus one batched one.
    """
    result = top_eigenvalues(NonUniformityOperator(op, per_sample_chunk=per_sample_chunk), 1, which="LA",
                             tol=tol, max_iter=max_iter, generator=generator)
    s2 = float(result.eigenvalues[0])
    return NonUniformity(math.sqrt(max(s2, 0.0)), s2, result)


Measure = Callable[[nn.Module, Tensor, Tensor], Any]


class StabilityTracker:
    """Record sharpness, curvature trace and input measures every ``every`` steps of any training loop.

    Training code calls ``tracker(step, model)``; on steps divisible by ``every`` the tracker builds a
    :class:`CurvatureOperator` on the fixed evaluation subset (same ``subset`` and ``seed`` every time, so
    the numbers compare across the run), warm-starts Lanczos from the previous top eigenvectors, and
    appends a dict to ``records``:

    ``step``, ``loss``, ``sharpness`` (and ``eigenvalues`` when ``k > 1``), ``sharpness_residual``,
    ``converged``, ``num_hvps``; ``trace`` and ``trace_stderr`` when ``trace_samples > 0``;
    ``eta_sharpness`` and ``gd_stable`` when ``lr`` is given; and for each ``measures[name]`` (a function
    ``(model, x, y) -> float | dict | tensor`` on the evaluation subset) its value under ``name``
    (``name.key`` for dicts).

    With ``eval_mode`` (default) the model is measured in eval mode and its modes are restored after,
    so batch norm and dropout do not make the curvature random; the parameters are read, never changed.
    """

    def __init__(
        self, x: Tensor, y: Tensor, *, loss: str = "cross-entropy", every: int = 100, which: str = "hessian",
        subset: int | None = 1000, seed: int = 0, batch_size: int | None = None,
        dtype: torch.dtype | None = None, k: int = 1, tol: float = 1e-3, max_iter: int = 100,
        trace_samples: int = 0, lr: float | None = None, measures: Mapping[str, Measure] | None = None,
        eval_mode: bool = True,
    ) -> None:
        if not (isinstance(every, int) and every >= 1):
            raise BadInputError(f"every must be a positive integer, got {every!r}")
        if lr is not None:
            _positive("lr", lr)
        self.x, self.y, self.every = x, y, every
        self.options: dict[str, Any] = dict(
            loss=loss, which=which, subset=subset, seed=seed, batch_size=batch_size, dtype=dtype
        )
        self.k, self.tol, self.max_iter, self.trace_samples, self.lr = k, tol, max_iter, trace_samples, lr
        self.measures = dict(measures or {})
        self.eval_mode = eval_mode
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
        if self.trace_samples > 0:
            tr = hutchinson_trace(op, self.trace_samples, generator=self._generator)
            record.update(trace=tr.estimate, trace_stderr=tr.stderr)
        if self.lr is not None:
            record.update(eta_sharpness=self.lr * sharp, gd_stable=gd_stability(sharp, self.lr).stable)
        if self.measures:
            xe, ye = op.x.to(op.device), op.y.to(op.device)
            for name, fn in self.measures.items():
                value = fn(model, xe, ye)
                items = value.items() if isinstance(value, Mapping) else [(None, value)]
                for key, val in items:
                    val = val.item() if isinstance(val, Tensor) and val.numel() == 1 else val
                    record[name if key is None else f"{name}.{key}"] = val
        return record
