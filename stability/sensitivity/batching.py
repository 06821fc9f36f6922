"""Shared plumbing of the input-sensitivity measures: model and input resolution, the per-sample output
function, and ``vmap`` with a loop fallback and errors that say what to do.

Private: the public functions live in :mod:`stability.sensitivity` and :mod:`stability.sensitivity.noise`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import vmap

from stability.checks import check_choice
from stability.errors import BadInputError
from stability.functional import FunctionalModel, ModelLike, Params, as_functional, check_params

OUTPUTS = ("logits", "softmax")


def prepare(
    model: ModelLike, x: Tensor, params: Params | None, output: str
) -> tuple[FunctionalModel, Params, Tensor, int]:
    """Validate a measure's common arguments; return ``(model, params, x, C)``.

    ``model`` is resolved by :func:`~stability.functional.as_functional`; a plain module's floating
    parameters and buffers are cast to ``x.dtype``. ``params`` (default: the model's own) is used as
    given, so a measure stays differentiable in it. One forward pass on ``x[0]`` checks that the model
    accepts the input's shape and gives ``C``, the number of output entries; a failure here is the
    input's fault, so a later failure under ``vmap`` can be blamed on batching.
    """
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() < 1 or x.shape[0] == 0:
        raise BadInputError(
            "x must be a non-empty floating-point tensor of shape (B, *input_shape), got "
            f"{(tuple(x.shape), x.dtype) if isinstance(x, Tensor) else type(x).__name__}"
        )
    check_choice("output", output, OUTPUTS)
    model = as_functional(model, x.dtype if isinstance(model, nn.Module) else None)
    params = model.params if params is None else check_params(model, params)
    for name, t in [*params.items(), *model.constants.items()]:
        if t.is_floating_point() and t.dtype != x.dtype:
            raise BadInputError(
                f"parameter {name!r} is {t.dtype} but x is {x.dtype}; functionalize(module, dtype={x.dtype}) "
                "or cast x to the parameters' dtype"
            )
        if t.device != x.device:
            raise BadInputError(
                f"parameter {name!r} is on {t.device} but x is on {x.device}; move the module or x so they match"
            )
    try:
        with torch.no_grad():
            out = single_output_fn(model, params, output)(x[0])
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        if isinstance(exc, torch.OutOfMemoryError):
            raise
        raise BadInputError(
            f"the model's forward pass fails on one input of shape {tuple(x.shape[1:])} "
            f"({_first_line(exc)}); pass x of shape (B, *input_shape) as the model expects"
        ) from exc
    return model, params, x, out.numel()


def single_output_fn(model: FunctionalModel, params: Params, output: str) -> Callable[[Tensor], Tensor]:
    """``x_i: input_shape -> f(x_i): (C,)``, logits or softmax (over the last output axis), flattened."""
    if output == "softmax":
        return lambda xi: torch.softmax(model.single(params, xi), dim=-1).reshape(-1)
    return lambda xi: model.single(params, xi).reshape(-1)


def batch_output_fn(model: FunctionalModel, params: Params, output: str) -> Callable[[Tensor], Tensor]:
    """``x: (N, *input_shape) -> (N, C)`` by one batched forward pass (valid since eval-mode samples are
    independent, which :func:`~stability.functional.functionalize` enforces)."""
    if output == "softmax":
        return lambda xs: torch.softmax(model(params, xs), dim=-1).reshape(xs.shape[0], -1)
    return lambda xs: model(params, xs).reshape(xs.shape[0], -1)


def vmapped(
    fn: Callable[..., Tensor | tuple[Tensor, ...]],
    args: tuple[Tensor, ...],
    *,
    chunk_size: int | None,
    vectorize: bool,
) -> Tensor | tuple[Tensor, ...]:
    """``fn`` applied to each sample (leading axis of every arg), outputs stacked along a new axis 0.

    ``vectorize=True`` runs ``vmap(fn, chunk_size=chunk_size)``; ``vectorize=False`` loops over samples
    (``chunk_size`` is then irrelevant) for modules that ``vmap`` cannot batch.
    """
    if not vectorize:
        outs = [fn(*(a[i] for a in args)) for i in range(args[0].shape[0])]
        if isinstance(outs[0], tuple):
            return tuple(torch.stack(parts) for parts in zip(*outs))
        return torch.stack(outs)
    try:
        return vmap(fn, chunk_size=chunk_size)(*args)
    except torch.OutOfMemoryError as exc:
        exc.add_note("pass a smaller chunk_size to bound the number of samples processed at once")
        raise
    except RuntimeError as exc:
        # prepare() already ran the forward pass on one sample, so what fails here is batching.
        raise BadInputError(
            f"the model is not vmap-compatible ({_first_line(exc)}); remove .item(), branches on tensor "
            "values and in-place writes into non-batched tensors from forward, or pass vectorize=False "
            "to loop over samples"
        ) from exc


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    first = lines[0] if lines else ""
    return f"{type(exc).__name__}: {first if len(first) <= 160 else first[:157] + '...'}"
