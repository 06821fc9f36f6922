"""Input gradient of the loss, per sample: ``∇_x ℓ(f(x_i), y_i)`` and its norm."""

from __future__ import annotations

from torch import Tensor
from torch.func import vjp

from stability.checks import check_chunk_size
from stability.functional import ModelLike, Params
from stability.losses import check_labels
from stability.sensitivity.batching import prepare, single_output_fn, vmapped


def loss_input_gradient(
    model: ModelLike,
    x: Tensor,
    y: Tensor,
    *,
    params: Params | None = None,
    loss: str = "cross-entropy",
    chunk_size: int | None = None,
    vectorize: bool = True,
) -> Tensor:
    """Per-sample ``∇_x ℓ(f(x_i), y_i) = J(x_i)ᵀ r_i``, ``(B, *input_shape)``, for a loss of :mod:`stability.losses`.

    ``y: (B,)`` integer labels (or real targets shaped like the outputs, for ``mse``); ``r_i = ∇_f ℓ_i``
    is the registry's output gradient in closed form (``softmax f − e_y`` for cross-entropy). The logits
    of every sample are computed under ``vmap``, then one VJP through the ``vmap``-ed forward pass pulls
    the ``r_i`` back. Cost: one VJP per sample.
    """
    fm, params, x, C = prepare(model, x, params, "logits")
    check_chunk_size(chunk_size)
    entry = check_labels(loss, y, x.shape[0], (C,))
    y = y.to(x.device)
    g = single_output_fn(fm, params, "logits")
    logits, pull = vjp(lambda xs: vmapped(g, (xs,), chunk_size=chunk_size, vectorize=vectorize), x)
    return pull(entry.output_gradient(logits, y))[0]


def loss_input_gradient_norm(
    model: ModelLike,
    x: Tensor,
    y: Tensor,
    *,
    params: Params | None = None,
    loss: str = "cross-entropy",
    chunk_size: int | None = None,
    vectorize: bool = True,
) -> Tensor:
    """``‖∇_x ℓ(f(x_i), y_i)‖`` per sample, ``(B,)`` (see :func:`loss_input_gradient`). One VJP per sample."""
    G = loss_input_gradient(model, x, y, params=params, loss=loss, chunk_size=chunk_size, vectorize=vectorize)
    return G.flatten(1).norm(dim=1)
