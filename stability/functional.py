"""An ``nn.Module`` as a pure function ``f(params, x)``, the form every measure in the toolkit takes.

Measures differentiate with respect to parameters, inputs, or both, batch over samples with ``vmap``, and
must not depend on hidden state. :func:`functionalize` detaches a module's parameters into a dict, keeps its
buffers (batch-norm running statistics) as constants, and refuses modules whose output is random or depends
on the batch (batch norm or dropout in training mode) unless the caller opts in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call

from stability.errors import BadInputError, NonDeterministicModelError

Params = dict[str, Tensor]


_STOCHASTIC_IN_TRAIN = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd, nn.AlphaDropout)


def stochastic_layers(module: nn.Module) -> list[str]:
    """Names of submodules whose output in training mode is random or depends on the rest of the batch."""
    return [
        name or type(module).__name__
        for name, sub in module.named_modules()
        if isinstance(sub, _STOCHASTIC_IN_TRAIN) and sub.training and not _is_inert(sub)
    ]


def _is_inert(sub: nn.Module) -> bool:
    return isinstance(sub, (nn.modules.dropout._DropoutNd, nn.AlphaDropout)) and sub.p == 0


@dataclass(frozen=True)
class FunctionalModel:
    """A module with its parameters pulled out: ``model(params, x)`` is the module's forward pass.

    Attributes:
        module: the module whose ``forward`` is called (its own parameters are never read).
        params: the differentiable parameters, detached copies keyed by ``named_parameters`` names.
        constants: buffers, and parameters excluded by ``param_filter``, held fixed.

    ``model(params, x)`` maps a batch ``x: (B, *input_shape)`` to ``(B, *output_shape)``;
    ``model.single(params, x)`` maps one sample ``x: input_shape`` to ``output_shape``, the form to wrap
    in ``vmap(jacrev(...))`` for per-sample derivatives.
    """

    module: nn.Module
    params: Params
    constants: Params

    def __call__(self, params: Params, x: Tensor) -> Tensor:
        return functional_call(self.module, (params, self.constants), (x,), strict=False)

    def single(self, params: Params, x: Tensor) -> Tensor:
        return self(params, x.unsqueeze(0)).squeeze(0)

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.params.values())


def functionalize(
    module: nn.Module,
    *,
    dtype: torch.dtype | None = None,
    param_filter: Callable[[str], bool] | Iterable[str] | None = None,
    allow_stochastic: bool = False,
) -> FunctionalModel:
    """Turn ``module`` into a :class:`FunctionalModel`.

    Args:
        module: any ``nn.Module``. Put it in eval mode first if it has batch norm or dropout.
        dtype: cast parameters and floating buffers (e.g. ``torch.float64`` for reference computations);
            the module itself is left untouched.
        param_filter: which parameters are differentiable (a predicate on names, or a collection of names,
            e.g. one layer's for per-layer curvature); the rest become constants.
        allow_stochastic: accept batch norm or dropout in training mode (the function is then random or
            batch-dependent; measures that assume a deterministic function will be wrong).

    Raises:
        NonDeterministicModelError: a layer is in training mode and ``allow_stochastic`` is false.
    """
    stochastic = stochastic_layers(module)
    if stochastic and not allow_stochastic:
        raise NonDeterministicModelError(
            f"the model is in training mode with batch norm or dropout ({', '.join(stochastic[:3])}"
            f"{', ...' if len(stochastic) > 3 else ''}), so its output is random or batch-dependent; "
            "call model.eval() first"
        )
    keep = _as_predicate(param_filter)
    params: Params = {}
    constants: Params = {}
    for name, p in module.named_parameters():
        (params if keep(name) else constants)[name] = _cast(p.detach(), dtype)
    for name, b in module.named_buffers():
        constants[name] = _cast(b.detach(), dtype)
    if not params:
        raise BadInputError(
            "param_filter selected no parameters; check the names with model.named_parameters()"
        )
    return FunctionalModel(module=module, params=params, constants=constants)


ParamFilter = Callable[[str], bool] | Iterable[str] | str | None


def _as_predicate(param_filter: ParamFilter) -> Callable[[str], bool]:
    """``param_filter`` (None: all; a predicate; one name; a collection of names) as a predicate on names."""
    if param_filter is None:
        return lambda name: True
    if callable(param_filter):
        return param_filter
    names = frozenset([param_filter] if isinstance(param_filter, str) else param_filter)
    return names.__contains__


def _cast(t: Tensor, dtype: torch.dtype | None) -> Tensor:
    return t.to(dtype) if dtype is not None and t.is_floating_point() else t


ModelFn = Callable[[Params, Tensor], Tensor]


def flatten(tensors: dict[str, Tensor]) -> Tensor:
    """Concatenate a parameter-shaped dict into one vector ``(D,)`` (in the dict's order)."""
    return torch.cat([t.reshape(-1) for t in tensors.values()])


def unflatten(vec: Tensor, like: dict[str, Tensor]) -> dict[str, Tensor]:
    """Inverse of :func:`flatten`: split ``vec: (D,)`` into tensors shaped like ``like``'s values."""
    sizes = [t.numel() for t in like.values()]
    if vec.shape != (sum(sizes),):
        raise BadInputError(f"vector has shape {tuple(vec.shape)}, expected ({sum(sizes)},) for the parameters")
    return {name: part.view_as(t) for (name, t), part in zip(like.items(), vec.split(sizes))}


def as_functional(
    model: nn.Module | FunctionalModel,
    dtype: torch.dtype | None = None,
    param_filter: ParamFilter = None,
    allow_stochastic: bool = False,
    *,
    params: Params | None = None,
) -> FunctionalModel:
    """The one way a measure accepts a model: ``model`` as a :class:`FunctionalModel`.

    A plain ``nn.Module`` is functionalized (:func:`functionalize`); a :class:`FunctionalModel` is kept,
    its floating tensors cast to ``dtype``. The differentiable parameters are those passing
    ``param_filter`` (the rest become constants); with ``params``, the differentiable parameters (and any
    other entries given) are taken from that dict instead of the model (the point ``θ`` to evaluate at).

    Raises:
        BadInputError: ``model`` is neither, ``param_filter`` selects nothing, or ``params`` lacks a name.
        NonDeterministicModelError: see :func:`functionalize`.
    """
    keep = _as_predicate(param_filter)
    if isinstance(model, nn.Module):
        names = [name for name, _ in model.named_parameters()]
    elif isinstance(model, FunctionalModel):
        names = list(model.params)
    else:
        raise BadInputError(
            f"model must be a FunctionalModel or an nn.Module, got {type(model).__name__}; "
            "pass the network itself or stability.functional.functionalize(module)"
        )
    if not any(keep(name) for name in names):
        have = ", ".join(names[:4]) or "none"
        raise BadInputError(f"no differentiable parameters selected (the model has: {have}); check param_filter")
    if isinstance(model, nn.Module):
        fmodel = functionalize(model, dtype=dtype, param_filter=keep, allow_stochastic=allow_stochastic)
    else:
        chosen, constants = {}, {k: _cast(t, dtype) for k, t in model.constants.items()}
        for name, t in model.params.items():
            (chosen if keep(name) else constants)[name] = _cast(t, dtype)
        fmodel = FunctionalModel(module=model.module, params=chosen, constants=constants)
    return fmodel if params is None else _at_point(fmodel, params, dtype)


def check_params(fmodel: FunctionalModel, params: Params) -> Params:
    """``params``, refused unless it is a dict holding every differentiable parameter of ``fmodel``."""
    if not isinstance(params, dict):
        raise BadInputError(f"params must be a dict of tensors keyed like model.params, got {type(params).__name__}")
    missing = sorted(set(fmodel.params) - set(params))
    if missing:
        raise BadInputError(f"params lacks {', '.join(missing[:3])}; pass a dict keyed like model.params")
    return params


def _at_point(fmodel: FunctionalModel, params: Params, dtype: torch.dtype | None) -> FunctionalModel:
    """The same function with its differentiable parameters (and any others given) taken from ``params``."""
    check_params(fmodel, params)
    chosen = {k: _cast(params[k].detach(), dtype) for k in fmodel.params}
    constants = {**fmodel.constants, **{k: _cast(t.detach(), dtype) for k, t in params.items() if k not in chosen}}
    return FunctionalModel(fmodel.module, chosen, constants)


ModelLike = FunctionalModel | nn.Module
