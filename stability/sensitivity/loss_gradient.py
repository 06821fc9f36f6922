"""Input gradient of the loss, per sample: ``∇_x ℓ(f(x_i), y_i)`` and its norm."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.func import grad, vjp

from stability.errors import BadInputError
from stability.functional import ModelLike, Params
from stability.losses import LOSSES, per_sample_loss
from stability.sensitivity.batching import check_chunk_size, prepare, single_output_fn, vmapped


def loss_input_gradient(
    model: ModelLike,
    params: Params | None,
    x: Tensor,
    y: Tensor,
    *,
    loss: str = "cross-entropy",
    chunk_size: int | None = None,
    vectorize: bool = True,
) -> Tensor:
    """Per-sample ``∇_x ℓ(f(x_i), y_i)``, ``(B, *input_shape)``, for a loss of :mod:`stability.losses`.

    ``ℓ`` is the per-sample loss on the logits (cross-entropy, or half the squared error to the one-hot
    target). Computed as ``J(x_i)ᵀ ∂ℓ/∂f(x_i)``: the logits of every sample under ``vmap``, the loss's
    gradient with respect to them, then one VJP through the ``vmap``-ed forward pass. Cost: one VJP per
    sample.
    """
    fm, params, x, C = prepare(model, params, x, "logits")
    if loss not in LOSSES:
        raise BadInputError(f"loss {loss!r} is not one of: {', '.join(LOSSES)}")
    check_chunk_size(chunk_size)
    if (
        not isinstance(y, Tensor)
        or y.shape != x.shape[:1]
        or y.dtype.is_floating_point
        or y.dtype == torch.bool
    ):
        raise BadInputError(
            f"y must be an integer label tensor of shape ({x.shape[0]},), got "
            f"{(tuple(y.shape), y.dtype) if isinstance(y, Tensor) else type(y).__name__}"
        )
    y = y.to(x.device)
    if bool(((y < 0) | (y >= C)).any()):
        raise BadInputError(f"labels must lie in [0, {C}) for a model with {C} outputs")

    g = single_output_fn(fm, params, "logits")
    logits, pull = vjp(lambda xs: vmapped(g, (xs,), chunk_size=chunk_size, vectorize=vectorize), x)
    # The loss is row-wise, so the gradient of the summed losses is each row's own ∂ℓ_i/∂f_i; taking it
    # outside vmap lets per_sample_loss use ops (one_hot) that vmap cannot batch.
    dlogits = grad(lambda out: per_sample_loss(loss, out, y).sum())(logits)
    return pull(dlogits)[0]


def loss_input_gradient_norm(
    model: ModelLike,
    params: Params | None,
    x: Tensor,
    y: Tensor,
    *,
    loss: str = "cross-entropy",
    chunk_size: int | None = None,
    vectorize: bool = True,
) -> Tensor:
    """``‖∇_x ℓ(f(x_i), y_i)‖`` per sample, ``(B,)`` (see :func:`loss_input_gradient`). One VJP per sample."""
    G = loss_input_gradient(model, params, x, y, loss=loss, chunk_size=chunk_size, vectorize=vectorize)
    return G.flatten(1).norm(dim=1)
