"""Linear stability of a fixed point for the optimizer that was actually used: GD, heavy ball, Nesterov, Adam.

Near a fixed point ``θ*`` (``∇L(θ*) = 0``) every optimizer below is, to first order, a linear map; it keeps
the fixed point iff that map's spectral radius is below 1. In the eigenbasis of the curvature each
eigenvalue ``λ`` gives one two-step recurrence with ``h = η λ``, and the stable ``h`` form an interval
``0 < h < h_max`` (``proofs/momentum_linear_stability.py`` derives each and checks it against the spectral
radius of the linearized map on random quadratics):

==============  ==========================================================  ==========================
optimizer       update (PyTorch's form, ``g = ∇L + wd θ``)                  stable iff ``λ_max < ...``
==============  ==========================================================  ==========================
GD / SGD        ``θ ← θ − η g``                                             ``2/η``
heavy ball      ``b ← β b + g``, ``θ ← θ − η b``                            ``2(1 + β)/η``
Nesterov        ``b ← β b + g``, ``θ ← θ − η (g + β b)``                    ``2(1 + β)/((1 + 2β) η)``
Adam            ``m ← β₁ m + (1 − β₁) g``, ``θ ← θ − η P⁻¹ m``              ``(2 + 2β₁)/((1 − β₁) η)``
RMSProp         ``θ ← θ − η P⁻¹ g`` (heavy ball on ``P⁻¹ g`` with momentum)  ``2/η`` (``2(1 + β)/η``)
==============  ==========================================================  ==========================

For GD and the momentum methods ``λ`` runs over the eigenvalues of ``H + wd·I`` (coupled weight decay adds
``wd θ`` to the gradient); for Adam and RMSProp over those of the *preconditioned* curvature
``P⁻¹ (H + wd·I)``, ``P = diag(sqrt(v̂) + ε)`` from the optimizer's second-moment state ``v`` with its bias
correction ``v̂ = v / (1 − β₂ᵗ)``. The preconditioner is held fixed: this is the frozen-preconditioner
analysis of Cohen et al. (2022, "Adaptive gradient methods at the edge of stability"), who observe
``λ_max(P⁻¹H)`` training at ``(2 + 2β₁)/((1 − β₁) η)`` (38/η at ``β₁ = 0.9``). Adam's first-moment bias
correction ``1/(1 − β₁ᵗ)`` scales the step and is folded into ``η``.

An eigenvalue ``λ < 0`` gives a root outside the unit circle for every method: a saddle is never kept.
A direction with ``λ = 0`` has multiplier 1 (a flat valley of minima): the statement is about the normal
directions. Everything here is a statement about the linearization at a fixed point; a point with a large
gradient is not one, and :func:`stability.dynamics.applicability.applicability` says whether a point is near one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from stability.checks import check_choice, check_non_negative, check_positive, check_range
from stability.curvature.lanczos import EigenResult, top_eigenvalues
from stability.curvature.measures import seed_generator
from stability.curvature.operators import LambdaOperator
from stability.curvature.products import CurvatureOperator
from stability.errors import BadInputError
from stability.functional import FunctionalModel, Params
from stability.serialize import omitted

OPTIMIZER_KINDS = ("gd", "heavy-ball", "nesterov", "adam", "rmsprop")


def stability_threshold(kind: str, lr: float, *, momentum: float = 0.0) -> float:
    """The largest stable eigenvalue of the (preconditioned) curvature, ``h_max / η`` (module table).

    ``momentum`` is ``β`` for heavy ball, Nesterov and RMSProp, ``β₁`` for Adam (in ``[0, 1)``).
    """
    check_choice("optimizer", kind, OPTIMIZER_KINDS)
    lr = check_positive("lr", lr)
    beta = check_range("momentum", momentum, 0.0, 1.0)
    if beta >= 1:
        raise BadInputError("momentum must be below 1 for a fixed point to be stable; got 1")
    h_max = {
        "gd": 2.0, "heavy-ball": 2 * (1 + beta), "nesterov": 2 * (1 + beta) / (1 + 2 * beta),
        "adam": (2 + 2 * beta) / (1 - beta), "rmsprop": 2 * (1 + beta),
    }[kind]  # fmt: skip
    return h_max / lr


@dataclass(frozen=True)
class OptimizerSetting:
    """The optimizer a fixed point is judged for.

    Attributes:
        kind: one of :data:`OPTIMIZER_KINDS` (``gd`` is plain GD/SGD without momentum).
        lr: the step size ``η`` (for Adam including its first-moment bias correction ``1/(1 − β₁ᵗ)``).
        momentum: ``β`` (heavy ball, Nesterov, RMSProp) or ``β₁`` (Adam).
        weight_decay: coupled L2 weight decay ``wd`` (adds ``wd·I`` to the curvature).
        preconditioner: Adam/RMSProp's diagonal ``P = sqrt(v̂) + ε``, per parameter name (``None``: not known).
        source: where the setting was read from, in words.
        missing: why the setting cannot decide a verdict (``None`` when it can).
    """

    kind: str
    lr: float
    momentum: float = 0.0
    weight_decay: float = 0.0
    preconditioner: dict[str, Tensor] | None = omitted(default=None)
    source: str = "given"
    missing: str | None = None

    __json_properties__ = ("threshold", "curvature")

    def __post_init__(self) -> None:
        check_choice("optimizer", self.kind, OPTIMIZER_KINDS)
        check_positive("lr", self.lr)
        check_non_negative("weight_decay", self.weight_decay)

    @property
    def adaptive(self) -> bool:
        return self.kind in ("adam", "rmsprop")

    @property
    def threshold(self) -> float:
        return stability_threshold(self.kind, self.lr, momentum=self.momentum)

    @property
    def curvature(self) -> str:
        wd = f" + {self.weight_decay:g}·I" if self.weight_decay else ""
        return f"P⁻¹(H{wd})" if self.adaptive else f"H{wd}"

    @property
    def determined(self) -> bool:
        return self.missing is None and (not self.adaptive or self.preconditioner is not None)


def sgd_setting(lr: float, *, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0,
                source: str = "given") -> OptimizerSetting:  # fmt: skip
    """GD/SGD with PyTorch's momentum ``β`` (heavy ball, or Nesterov's form)."""
    kind = "gd" if momentum == 0 else ("nesterov" if nesterov else "heavy-ball")
    return OptimizerSetting(kind, lr, momentum, weight_decay, source=source)


def adaptive_setting(
    kind: str, lr: float, *, momentum: float, eps: float, step: int | None, second_moments: Mapping[str, Tensor] | None,
    beta2: float, weight_decay: float = 0.0, source: str = "given",
) -> OptimizerSetting:  # fmt: skip
    """Adam (``momentum = β₁``) or RMSProp from their second-moment state ``v`` per parameter name.

    ``P = sqrt(v / (1 − β₂ᵗ)) + ε`` (Adam; RMSProp has no bias correction) and, for Adam, ``η / (1 − β₁ᵗ)``.
    Without ``second_moments`` the setting is kept with ``missing`` saying so.
    """
    if second_moments is None or step is None:
        return OptimizerSetting(kind, lr, momentum, weight_decay, None, source,
                                missing=f"{kind} scales each coordinate by its second-moment state, which {source} "
                                        "does not hold; the preconditioned sharpness cannot be computed")  # fmt: skip
    t = max(int(step), 1)
    correction2 = 1 - beta2**t if kind == "adam" else 1.0
    pre = {k: (v.double().clamp_min(0) / correction2).sqrt().add(eps) for k, v in second_moments.items()}
    eff_lr = lr / (1 - momentum**t) if kind == "adam" else lr
    return OptimizerSetting(kind, eff_lr, momentum, weight_decay, pre, source)


def setting_from_state(
    name: str, state_dict: Mapping[str, Any], param_names: Sequence[str], *, source: str = "optimizer state"
) -> OptimizerSetting:
    """An :class:`OptimizerSetting` from a PyTorch ``optimizer.state_dict()`` of ``torch.optim.SGD``,
    ``Adam`` or ``RMSprop`` (``name``: ``sgd``, ``adam``, ``rmsprop``) over parameters ``param_names``
    (in ``model.parameters()`` order, one parameter group)."""
    check_choice("optimizer name", name, ("sgd", "adam", "rmsprop"))
    groups = state_dict.get("param_groups") or []
    if len(groups) != 1:
        raise BadInputError(f"{source}: expected one parameter group, got {len(groups)}; pass the setting by hand")
    g, states = groups[0], state_dict.get("state", {})
    ids = list(g["params"])
    if len(ids) != len(param_names):
        raise BadInputError(f"{source}: the optimizer holds {len(ids)} parameters, the model {len(param_names)}")
    wd = float(g.get("weight_decay", 0.0))
    if name == "sgd":
        return sgd_setting(float(g["lr"]), momentum=float(g.get("momentum", 0.0)), nesterov=bool(g.get("nesterov")),
                           weight_decay=wd, source=source)  # fmt: skip
    if name == "adam" and g.get("amsgrad"):
        return OptimizerSetting("adam", float(g["lr"]), float(g["betas"][0]), wd, None, source,
                                missing="AMSGrad's preconditioner is the running maximum, not analyzed here")  # fmt: skip
    key = "exp_avg_sq" if name == "adam" else "square_avg"
    have = all(i in states and key in states[i] for i in ids)
    moments = {n: states[i][key] for n, i in zip(param_names, ids)} if have else None
    step = int(float(states[ids[0]]["step"])) if have and "step" in states[ids[0]] else None
    if name == "adam":
        b1, b2 = (float(b) for b in g["betas"])
        return adaptive_setting("adam", float(g["lr"]), momentum=b1, eps=float(g["eps"]), step=step,
                                second_moments=moments, beta2=b2, weight_decay=wd, source=source)  # fmt: skip
    return adaptive_setting("rmsprop", float(g["lr"]), momentum=float(g.get("momentum", 0.0)), eps=float(g["eps"]),
                            step=step if step is not None else (1 if have else None), second_moments=moments,
                            beta2=float(g.get("alpha", 0.99)), weight_decay=wd, source=source)  # fmt: skip


def setting_from_optimizer(optimizer: torch.optim.Optimizer, model: nn.Module) -> OptimizerSetting:
    """The setting of a live ``torch.optim`` optimizer (SGD, Adam, RMSprop) over ``model``'s parameters."""
    names = {id(p): n for n, p in model.named_parameters()}
    group_params = [p for g in optimizer.param_groups for p in g["params"]]
    if any(id(p) not in names for p in group_params):
        raise BadInputError("the optimizer holds parameters that are not the model's; pass the model it trains")
    kinds = {torch.optim.SGD: "sgd", torch.optim.Adam: "adam", torch.optim.RMSprop: "rmsprop"}
    name = kinds.get(type(optimizer))
    if name is None:
        raise BadInputError(f"{type(optimizer).__name__} is not analyzed; pass an OptimizerSetting for it")
    return setting_from_state(name, optimizer.state_dict(), [names[id(p)] for p in group_params],
                              source=f"the live {type(optimizer).__name__}")  # fmt: skip


@dataclass(frozen=True)
class LinearStability:
    """The verdict of one optimizer at a point: ``λ`` of its curvature (``setting.curvature``) against
    ``setting.threshold``.

    Attributes:
        setting: the optimizer, its step size and (for Adam) its frozen preconditioner.
        sharpness: ``λ_max`` of ``setting.curvature`` (``None`` when not determined).
        lambda_min: its most negative eigenvalue (a saddle when below ``−slack``).
        threshold: the stable bound on ``λ_max`` (module table).
        ratio: ``sharpness / threshold`` (below 1: stable along the top direction).
        stable: ``True``/``False``, or ``None`` when the setting cannot decide (``note`` says why).
        kind: ``exact`` — the linearized map at a fixed point is stable iff every eigenvalue lies in
            ``(0, threshold)`` (flat directions aside).
        eigen, eigen_min: the Lanczos solves, as evidence.
    """

    setting: OptimizerSetting
    sharpness: float | None
    lambda_min: float | None
    threshold: float
    ratio: float | None
    stable: bool | None
    note: str
    kind: str = "exact"
    eigen: EigenResult | None = None
    eigen_min: EigenResult | None = None


def linear_stability_criterion(
    setting: OptimizerSetting, sharpness: float | EigenResult | None, *, lambda_min: float | EigenResult | None = None,
) -> LinearStability:
    """Compare ``λ_max`` (and ``λ_min``) of the setting's curvature with its threshold.

    A measured ``λ_min`` counts as negative only beyond the solve's accuracy, ``λ_min < −max(residual,
    tol·|λ_max|)``, as in :func:`stability.dynamics.verdicts.gd_criterion`.
    """
    threshold = setting.threshold
    if sharpness is None or not setting.determined:
        why = setting.missing or "no curvature was measured"
        return LinearStability(setting, None, None, threshold, None, None, f"not determined: {why}.")
    top = sharpness if isinstance(sharpness, EigenResult) else None
    lam = float(top.eigenvalues[0]) if top is not None else float(sharpness)
    low_res = lambda_min if isinstance(lambda_min, EigenResult) else None
    low = None if lambda_min is None else (float(low_res.eigenvalues[0]) if low_res is not None else float(lambda_min))
    slack = max(float(low_res.residuals[0]), low_res.tol * abs(lam)) if low_res is not None else 0.0
    ratio = lam / threshold
    stable = 0 <= lam <= threshold
    what = f"λ_max({setting.curvature}) = {lam:.4g}"
    edge = f"{setting.kind} threshold {threshold:.4g}"
    if low is not None and low + slack < 0:
        stable, note = False, f"negative curvature λ_min = {low:.3g}: a saddle, which {setting.kind} leaves"
    elif lam < 0:
        stable, note = False, "λ_max < 0: every direction curves down, so this is not a minimum"
    elif stable:
        note = f"stable: {what} ≤ {edge}"
    else:
        note = f"unstable: {what} > {edge}"
    caveats = [c for c, r in (("λ_max", top), ("λ_min", low_res)) if r is not None and not r.converged]
    if caveats:
        note += f"; the {' and '.join(caveats)} solve did not converge, so the verdict is provisional"
    return LinearStability(setting, lam, low, threshold, ratio, stable, note + ".", eigen=top, eigen_min=low_res)


def preconditioned_operator(op: CurvatureOperator, setting: OptimizerSetting) -> LambdaOperator:
    """``v ↦ P^{-1/2} (H + wd·I) P^{-1/2} v``: symmetric, with the eigenvalues of ``P⁻¹(H + wd·I)``."""
    if setting.preconditioner is None:
        raise BadInputError(f"{setting.kind} needs its preconditioner; {setting.missing or 'none was given'}")
    missing = [k for k in op.params if k not in setting.preconditioner]
    if missing:
        raise BadInputError(f"the preconditioner lacks {', '.join(missing[:3])}; read it from the same model")
    root = op.flatten({k: setting.preconditioner[k].to(op.device, op.dtype).rsqrt() for k in op.params})
    wd = setting.weight_decay

    def matvec(v: Tensor) -> Tensor:
        u = root * v
        return root * (op(u) + wd * u)

    def matmat(V: Tensor) -> Tensor:
        U = root[:, None] * V
        return root[:, None] * (op.matmat(U) + wd * U)

    return LambdaOperator(matvec, op.dim, op.dtype, op.device, matmat=matmat)


def shifted_operator(op: CurvatureOperator, shift: float) -> Any:
    """``v ↦ (H + shift·I) v`` (the operator itself when ``shift == 0``)."""
    if shift == 0:
        return op
    return LambdaOperator(lambda v: op(v) + shift * v, op.dim, op.dtype, op.device,
                          matmat=lambda V: op.matmat(V) + shift * V)  # fmt: skip


def linear_stability(
    model: nn.Module | FunctionalModel, x: Tensor, y: Tensor, *, setting: OptimizerSetting,
    loss: str = "cross-entropy", params: Params | None = None, chunk_size: int | None = None,
    subset: int | None = None, seed: int = 0, tol: float = 1e-3, max_iter: int = 100, **options: Any,
) -> LinearStability:
    """The verdict of :func:`linear_stability_criterion` at the model's point, ``λ_max`` and ``λ_min`` of the
    setting's curvature (``H + wd·I``, or ``P^{-1/2}(H + wd·I)P^{-1/2}`` for Adam/RMSProp) by Lanczos.

    A setting that cannot decide (Adam without its second moments) gives ``stable=None`` with the reason,
    at no cost. Cost otherwise: two Lanczos solves, at most ``2 (max_iter + 1)`` Hessian-vector products.
    """
    if not setting.determined:
        return linear_stability_criterion(setting, None)
    op = CurvatureOperator(model, x, y, loss=loss, params=params, chunk_size=chunk_size, subset=subset, seed=seed,
                           **options)  # fmt: skip
    target = preconditioned_operator(op, setting) if setting.adaptive else shifted_operator(op, setting.weight_decay)
    solve = dict(tol=tol, max_iter=max_iter)
    top = top_eigenvalues(target, 1, which="LA", generator=seed_generator(seed), **solve)
    bottom = top_eigenvalues(target, 1, which="SA", generator=seed_generator(seed + 1), **solve)
    return linear_stability_criterion(setting, top, lambda_min=bottom)

