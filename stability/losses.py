"""The training losses, as pure functions of logits and integer labels.

All are means over samples, so the Hessian of the training loss is an average of per-sample Hessians:

- ``cross-entropy``: ``L = (1/n) Σ_i −log softmax(f(x_i))_{y_i}``.
- ``mse``: ``L = (1/2n) Σ_i ‖f(x_i) − e_{y_i}‖²`` on one-hot targets. The factor 1/2 makes the
  Gauss-Newton matrix ``(1/n) Σ_i J_iᵀ J_i`` (``J_i = ∂f(x_i)/∂θ``) with no stray constant, which is the
  Hessian at an interpolating minimum — the form THEORY.md section 2 uses.
- ``bounded-cross-entropy``: ``(1/n) Σ_i −log softmax(softmax(f(x_i)))_{y_i}``, the bounded loss of
  Badger's gradient-splitting code (see :func:`bounded_cross_entropy`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from stability.errors import BadInputError
from stability.functional import FunctionalModel

LossFn = Callable[[Tensor, Tensor], Tensor]


def cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    """Mean cross-entropy of ``logits: (B, C)`` against labels ``y: (B,)``."""
    return F.cross_entropy(logits, y)


def mse(logits: Tensor, y: Tensor) -> Tensor:
    """Half the squared distance to one-hot targets, summed over classes, averaged over the batch."""
    target = F.one_hot(y, logits.shape[-1]).to(logits.dtype)
    return 0.5 * (logits - target).pow(2).sum(-1).mean()


def bounded_cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    """Cross-entropy of the softmax *probabilities* treated as logits: ``CE(softmax(z), y)``.

    This is the loss Badger's (2022) code trains with (its models end in a softmax and the cross-entropy
    applies a second log-softmax). Because ``softmax(z)`` lies in [0, 1], the loss is bounded, between
    ``log(C − 1 + e) − 1`` and ``log(C − 1 + e)``, so the ascent term of gradient splitting cannot diverge
    by inflating the logits: it must change which class wins.
    """
    return F.cross_entropy(torch.softmax(logits, -1), y)


LOSSES: dict[str, LossFn] = {
    "cross-entropy": cross_entropy,
    "mse": mse,
    "bounded-cross-entropy": bounded_cross_entropy,
}


def get_loss(name: str) -> LossFn:
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}") from None


def per_sample_loss(name: str, logits: Tensor, y: Tensor) -> Tensor:
    """Per-sample losses ``(B,)`` with the same convention as :func:`get_loss` (whose value is their mean)."""
    if name == "cross-entropy":
        return F.cross_entropy(logits, y, reduction="none")
    if name == "mse":
        target = F.one_hot(y, logits.shape[-1]).to(logits.dtype)
        return 0.5 * (logits - target).pow(2).sum(-1)
    if name == "bounded-cross-entropy":
        return F.cross_entropy(torch.softmax(logits, -1), y, reduction="none")
    raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")


def accuracy(logits: Tensor, y: Tensor) -> Tensor:
    """Fraction of rows whose arg-max equals the label (a 0-dim tensor, no host sync)."""
    return (logits.argmax(-1) == y).to(torch.float32).mean()


LOSS_NAMES = ("cross-entropy", "mse", "bounded-cross-entropy")


def check_loss(loss: str, y: Tensor) -> None:
    """Refuse a loss the curvature code has no output Hessian for, or labels that do not fit it."""
    if loss not in LOSS_NAMES:
        raise BadInputError(f"loss {loss!r} is not one of: {', '.join(LOSS_NAMES)}")
    if loss != "mse" and y.is_floating_point():
        raise BadInputError(f"{loss} needs integer class labels y; use loss='mse' for real targets")


def mean_loss(loss: str, out: Tensor, y: Tensor) -> Tensor:
    """``(1/B) Σ_i ℓ(out_i, y_i)`` for ``out: (B, C)``.

    ``mse`` takes integer labels (one-hot targets, as :func:`stability.losses.mse`) or real targets
    ``y`` with ``out.numel()`` entries (regression: ``(1/2B) Σ ‖out_i − y_i‖²``).
    """
    out = out.reshape(out.shape[0], -1)
    if loss == "cross-entropy":
        return F.cross_entropy(out, y)
    if loss == "bounded-cross-entropy":
        return F.cross_entropy(torch.softmax(out, -1), y)
    return 0.5 * (out - targets(y, out)).pow(2).sum(-1).mean()


def targets(y: Tensor, out: Tensor) -> Tensor:
    """MSE targets shaped like ``out: (B, C)``: real ``y`` reshaped, or one-hot rows of integer labels.

    The one-hot is built by comparison rather than ``F.one_hot``, which ``vmap`` cannot batch.
    """
    if y.is_floating_point():
        return y.reshape(out.shape).to(out.dtype)
    return (y[:, None] == torch.arange(out.shape[1], device=out.device)).to(out.dtype)


def output_hessian_product(loss: str, out: Tensor, u: Tensor) -> Tensor:
    """``Λ_i u_i`` per row for ``out, u: (B, C)``: ``u`` for MSE, ``p ⊙ u − p (pᵀ u)`` for cross-entropy."""
    if loss == "mse":
        return u
    p = torch.softmax(out.reshape(out.shape[0], -1), dim=-1).reshape(out.shape)
    return p * u - p * (p * u).sum(-1, keepdim=True)


def check_targets(model: FunctionalModel, x: Tensor, y: Tensor, loss: str) -> None:
    """One forward pass on ``x[:1]`` to check that the outputs fit the labels (or real targets)."""
    first = next(iter(model.params.values()))
    x1 = x[:1].to(device=first.device, dtype=first.dtype if x.is_floating_point() else None)
    with torch.no_grad():
        out = model(model.params, x1)
    if y.is_floating_point():
        if y[:1].numel() != out.numel():
            raise BadInputError(f"real targets have {y[:1].numel()} entries per sample but the model outputs "
                                f"{out.numel()}; give y the shape of the outputs")
        return
    if out.ndim != 2:
        raise BadInputError(f"class labels need outputs of shape (B, C), the model gives {tuple(out.shape)}")
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= out.shape[1]:
        raise BadInputError(f"labels span [{lo}, {hi}] but the model has {out.shape[1]} outputs")
