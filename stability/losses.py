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
