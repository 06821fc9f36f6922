"""The one loss registry: each training loss declared once, with its derivatives in the outputs.

A loss is a mean over samples of a per-sample loss ``ℓ(f_i, y_i)`` of the model output ``f_i = f(x_i)``
(``C`` entries) and its label, so the Hessian of the training loss is an average of per-sample Hessians.
Each :class:`Loss` carries what the measures need of it: the per-sample values, the output gradient
``r_i = ∇_f ℓ_i`` and the output Hessian ``Λ_i = ∇²_f ℓ_i`` (in closed form), and whether ``Λ_i ⪰ 0``
everywhere (``convex``). The registry :data:`LOSSES` is the only place a loss is defined:

- ``cross-entropy``: ``ℓ = −log softmax(f)_y``; ``r = p − e_y``, ``Λ = diag p − p pᵀ`` (``p = softmax f``).
- ``mse``: ``ℓ = ½ ‖f − t‖²`` on one-hot targets ``t = e_y`` (or real targets ``y`` shaped like the
  outputs, for regression); ``r = f − t``, ``Λ = I``. The factor ½ makes the Gauss-Newton matrix
  ``(1/n) Σ_i J_iᵀ J_i`` with no stray constant, the Hessian at an interpolating minimum (docs/theory.md §2).
- ``bounded-cross-entropy``: ``ℓ = −log softmax(softmax(f))_y``, the bounded loss of Badger's (2022)
  gradient-splitting code (its models end in a softmax and the cross-entropy applies a second
  log-softmax). Since ``softmax(f) ∈ [0, 1]``, ``ℓ`` lies between ``log(C − 1 + e) − 1`` and
  ``log(C − 1 + e)``, so the ascent term of gradient splitting cannot diverge by inflating the logits.
  With ``p = softmax f``, ``q = softmax p``, ``g = q − e_y``, ``P = diag p − p pᵀ`` (the softmax
  Jacobian), ``a = p ⊙ g`` and ``s = pᵀ g``:

  ``r = P g``,
  ``Λ = P (diag q − q qᵀ) P + Σ_c g_c ∇²p_c``, ``Σ_c g_c ∇²p_c = diag(a − s p) − a pᵀ − p aᵀ + 2 s p pᵀ``.

  The second term is indefinite, so ``Λ`` is not positive semi-definite in general (``convex=False``).

Shapes: ``logits: (B, C)``, ``y: (B,)`` integer labels (or ``(B, C)`` real targets for ``mse``),
``u: (B, C)``. Every function works under ``vmap`` (one-hot targets are built by comparison).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from stability.checks import check_choice
from stability.errors import BadInputError
from stability.functional import FunctionalModel

__all__ = [
    "LOSSES", "LOSS_NAMES", "Loss", "accuracy", "check_labels", "check_loss", "check_targets", "get_loss", "mean_loss",
    "targets",
]


def targets(y: Tensor, out: Tensor) -> Tensor:
    """MSE targets shaped like ``out: (B, C)``: real ``y`` reshaped, or one-hot rows of integer labels.

    The one-hot is built by comparison rather than ``F.one_hot``, so that ``vmap`` can batch it.
    """
    if y.is_floating_point():
        return y.reshape(out.shape).to(out.dtype)
    return (y.unsqueeze(-1) == torch.arange(out.shape[-1], device=out.device)).to(out.dtype)


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum(-1, keepdim=True)


def _softmax_jvp(p: Tensor, u: Tensor) -> Tensor:
    """``(diag p − p pᵀ) u`` per row: the softmax Jacobian (symmetric) times ``u``."""
    return p * u - p * _dot(p, u)


@dataclass(frozen=True)
class Loss:
    """One training loss; calling it gives the mean over the batch (see the module docstring).

    Attributes:
        name: the registry key (``--loss`` on the command line, ``loss=`` in the library).
        convex: ``Λ_i ⪰ 0`` for every output and label (the Gauss-Newton matrix is then PSD).
        real_targets: accepts real targets ``y`` shaped like the outputs besides integer labels.
    """

    name: str
    _value: Callable[[Tensor, Tensor, str], Tensor] = field(repr=False)
    _gradient: Callable[[Tensor, Tensor], Tensor] = field(repr=False)
    _hessian_product: Callable[[Tensor, Tensor, Tensor], Tensor] = field(repr=False)
    convex: bool
    real_targets: bool = False

    def __call__(self, logits: Tensor, y: Tensor) -> Tensor:
        return self.mean(logits, y)

    def per_sample(self, logits: Tensor, y: Tensor) -> Tensor:
        """``ℓ(f_i, y_i)`` per row, ``(B,)``."""
        return self._value(logits, y, "none")

    def mean(self, logits: Tensor, y: Tensor) -> Tensor:
        """``(1/B) Σ_i ℓ(f_i, y_i)``, a 0-d tensor."""
        return self._value(logits, y, "mean")

    def output_gradient(self, logits: Tensor, y: Tensor) -> Tensor:
        """``r_i = ∇_f ℓ(f_i, y_i)``, ``(B, C)``: zero for every sample exactly at interpolation (MSE)."""
        return self._gradient(logits, y)

    def output_hessian_product(self, logits: Tensor, y: Tensor, u: Tensor) -> Tensor:
        """``Λ_i u_i`` per row, ``(B, C)``, without forming ``Λ``: ``O(B C)``."""
        return self._hessian_product(logits, y, u)

    def output_hessian(self, logits: Tensor, y: Tensor) -> Tensor:
        """``Λ_i = ∇²_f ℓ(f_i, y_i)``, ``(B, C, C)``: :meth:`output_hessian_product` on the unit vectors."""
        B, C = logits.shape
        eye = torch.eye(C, dtype=logits.dtype, device=logits.device)
        columns = torch.func.vmap(lambda e: self._hessian_product(logits, y, e.expand(B, C)), out_dims=2)
        return columns(eye)


def _ce_value(logits: Tensor, y: Tensor, reduction: str) -> Tensor:
    return F.cross_entropy(logits, y, reduction=reduction)


def _ce_gradient(logits: Tensor, y: Tensor) -> Tensor:
    return torch.softmax(logits, -1) - targets(y, logits)


def _ce_hessian_product(logits: Tensor, y: Tensor, u: Tensor) -> Tensor:
    return _softmax_jvp(torch.softmax(logits, -1), u)


def _mse_value(logits: Tensor, y: Tensor, reduction: str) -> Tensor:
    per_sample = 0.5 * (logits - targets(y, logits)).pow(2).sum(-1)
    return per_sample.mean() if reduction == "mean" else per_sample


def _mse_gradient(logits: Tensor, y: Tensor) -> Tensor:
    return logits - targets(y, logits)


def _mse_hessian_product(logits: Tensor, y: Tensor, u: Tensor) -> Tensor:
    return u


def _bce_value(logits: Tensor, y: Tensor, reduction: str) -> Tensor:
    return F.cross_entropy(torch.softmax(logits, -1), y, reduction=reduction)


def _bce_parts(logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``p = softmax f``, ``q = softmax p``, ``g = q − e_y``."""
    p = torch.softmax(logits, -1)
    q = torch.softmax(p, -1)
    return p, q, q - targets(y, logits)


def _bce_gradient(logits: Tensor, y: Tensor) -> Tensor:
    p, _, g = _bce_parts(logits, y)
    return _softmax_jvp(p, g)


def _bce_hessian_product(logits: Tensor, y: Tensor, u: Tensor) -> Tensor:
    p, q, g = _bce_parts(logits, y)
    gauss_newton = _softmax_jvp(p, _softmax_jvp(q, _softmax_jvp(p, u)))
    a, s = p * g, _dot(p, g)
    second_order = (a - s * p) * u - a * _dot(p, u) - p * _dot(a, u) + 2 * s * p * _dot(p, u)
    return gauss_newton + second_order


LOSSES: dict[str, Loss] = {
    loss.name: loss
    for loss in (
        Loss("cross-entropy", _ce_value, _ce_gradient, _ce_hessian_product, convex=True),
        Loss("mse", _mse_value, _mse_gradient, _mse_hessian_product, convex=True, real_targets=True),
        Loss("bounded-cross-entropy", _bce_value, _bce_gradient, _bce_hessian_product, convex=False),
    )
}
LOSS_NAMES = tuple(LOSSES)


def get_loss(name: str) -> Loss:
    """The registered :class:`Loss` called ``name``; BadInputError listing the choices otherwise."""
    return LOSSES[check_choice("loss", name, LOSS_NAMES)]


def mean_loss(loss: str, out: Tensor, y: Tensor) -> Tensor:
    """``(1/B) Σ_i ℓ(out_i, y_i)`` for the registered loss ``loss``, outputs flattened to ``(B, C)``."""
    return get_loss(loss).mean(out.reshape(out.shape[0], -1), y)


def accuracy(logits: Tensor, y: Tensor) -> Tensor:
    """Fraction of rows whose arg-max equals the label (a 0-d tensor, no host sync)."""
    return (logits.argmax(-1) == y).to(torch.float32).mean()


def check_loss(loss: str, y: Tensor) -> Loss:
    """The registered loss ``loss``, refusing real targets ``y`` unless it takes them."""
    entry = get_loss(loss)
    if not isinstance(y, Tensor) or y.dtype == torch.bool:
        raise BadInputError(f"y must be a tensor of integer class labels (or real targets for mse), got "
                            f"{y.dtype if isinstance(y, Tensor) else type(y).__name__}")
    if not entry.real_targets and y.is_floating_point():
        raise BadInputError(f"{loss} needs integer class labels: y must be an integer label tensor, got {y.dtype}; "
                            "use loss='mse' for real targets")
    return entry


def check_labels(loss: str, y: Tensor, n: int, out_shape: tuple[int, ...]) -> Loss:
    """The registered loss, after checking that ``y`` fits ``n`` samples whose outputs have ``out_shape``.

    Integer labels: shape ``(n,)``, outputs ``(C,)``, values in ``[0, C)``. Real targets (``mse`` only):
    ``n`` rows of as many entries as one output.
    """
    entry = check_loss(loss, y)
    if y.dim() == 0 or y.shape[0] != n:
        raise BadInputError(f"x and y must hold the same number of samples, not {n} and "
                            f"{y.shape[0] if y.dim() else 'a scalar'}")
    per_output = math.prod(out_shape)
    if y.is_floating_point():
        if y[:1].numel() != per_output:
            raise BadInputError(f"real targets have {y[:1].numel()} entries per sample but the model outputs "
                                f"{per_output}; give y the shape of the outputs")
        return entry
    if y.dim() != 1:
        raise BadInputError(f"class labels y must have shape ({n},), got {tuple(y.shape)}")
    if len(out_shape) != 1:
        shape = ", ".join(map(str, out_shape))
        raise BadInputError(f"class labels need outputs of shape (B, C), the model gives (B, {shape})")
    C, lo, hi = out_shape[0], int(y.min()), int(y.max())
    if lo < 0 or hi >= C:
        raise BadInputError(f"labels span [{lo}, {hi}] but the model has {C} outputs; labels must lie in [0, {C})")
    return entry


def check_targets(model: FunctionalModel, x: Tensor, y: Tensor, loss: str) -> Loss:
    """:func:`check_labels` with the output shape from one forward pass on ``x[:1]``."""
    first = next(iter(model.params.values()))
    x1 = x[:1].to(device=first.device, dtype=first.dtype if x.is_floating_point() else None)
    with torch.no_grad():
        out = model(model.params, x1)
    return check_labels(loss, y, x.shape[0], tuple(out.shape[1:]))
