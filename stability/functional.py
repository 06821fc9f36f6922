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

from .errors import NonDeterministicModelError

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
        raise ValueError("param_filter selected no parameters; check the names with model.named_parameters()")
    return FunctionalModel(module=module, params=params, constants=constants)


def _as_predicate(param_filter: Callable[[str], bool] | Iterable[str] | None) -> Callable[[str], bool]:
    if param_filter is None:
        return lambda name: True
    if callable(param_filter):
        return param_filter
    names = frozenset(param_filter)
    return names.__contains__


def _cast(t: Tensor, dtype: torch.dtype | None) -> Tensor:
    return t.to(dtype) if dtype is not None and t.is_floating_point() else t
