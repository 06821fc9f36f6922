"""Architecture registry: a :class:`~stability.models.ModelSpec` (name + keyword arguments) -> ``nn.Module``.

Every builder has the signature ``builder(input_shape, num_classes, **kwargs)`` where ``input_shape`` is one
sample's shape without the batch axis: ``(C, H, W)`` for images, ``(C, L)`` for 1-D signals. Every model
maps ``x: (B, *input_shape)`` to logits ``(B, num_classes)`` (no softmax inside), and is a pure function of
its parameters, buffers and input in eval mode, so that ``torch.func`` can take it apart: it runs under
``functional_call`` + ``vmap`` + ``jacrev`` over single samples (no in-place ops on inputs, no ``.item()``,
no Python branches on values; branches on *shapes* are static and allowed).

Which architectures hold layers that behave differently in training mode (call ``model.eval()`` before
any analysis; :func:`stability.functional.functionalize` refuses otherwise):

=============== ========== ======================================
arch            batch norm dropout (``dropout`` kwarg, default 0)
=============== ========== ======================================
linear          no         no
mlp             no         yes, after each hidden activation
convnet         no         yes, before the dense layer
small-alexnet   no         yes, after each hidden dense layer
small-inception yes        no
=============== ========== ======================================

Initialization seeding: builders never seed. They draw initial weights from PyTorch's global generator
through each layer's default ``reset_parameters``; a caller that wants a reproducible model without
disturbing anybody else's random stream wraps the call::

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(spec, input_shape, num_classes)

Models are built on the CPU in float32; move them with ``model.to(device, dtype)``.

The two networks of Zhang et al. (2017) live in :mod:`stability.models.zhang2017` and the layers and argument
checks they share with the ones here in :mod:`stability.models.layers`; this module holds the registry and the
plain architectures.
"""

from __future__ import annotations

import inspect
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from stability.errors import ArchitectureError, first_line
from stability.models.layers import activation_module, check_bool, check_probability, check_widths, spatial_dims
from stability.models.spec import ModelSpec
from stability.models.zhang2017 import small_alexnet, small_inception


def linear(input_shape: tuple[int, ...], num_classes: int, *, bias: bool = True) -> nn.Module:
    """Linear classifier: flatten, then one affine map to the logits (multinomial logistic regression).

    ``f(x) = W vec(x) + b`` with ``W: (K, D)``, ``D = prod(input_shape)``; ``K D (+ K)`` parameters. The
    input Jacobian is ``W`` itself for every sample, which makes it the closed-form reference of the
    sensitivity measures.
    """
    check_bool("linear", "bias", bias)
    return nn.Sequential(
        OrderedDict(flatten=nn.Flatten(), out=nn.Linear(math.prod(input_shape), num_classes, bias=bias))
    )


def mlp(
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    widths: Sequence[int] = (512,),
    activation: str = "relu",
    bias: bool = True,
    dropout: float = 0.0,
) -> nn.Module:
    """Fully connected network: flatten, hidden layers of the given widths, linear to the logits.

    ``h_0 = vec(x)``, ``h_l = drop(s(W_l h_{l-1} + b_l))`` for ``l = 1..L``, ``f(x) = W_out h_L + b_out``.
    Parameters: ``sum_l (n_{l-1} + 1) n_l`` with ``n_0 = prod(input_shape)``, ``n_{L+1} = K`` (without
    biases: drop the ``+ 1``). Zhang et al.'s MLP 1x512 on 28x28x3 inputs has 1,209,866, MLP 3x512
    1,735,178. ``widths=[]`` gives the linear classifier. Dropout (probability ``dropout``) follows each
    hidden activation and is inert in eval mode.
    """
    widths = check_widths("mlp", "widths", widths, min_len=0)
    check_bool("mlp", "bias", bias)
    check_probability("mlp", dropout)
    layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
    n_in = math.prod(input_shape)
    for i, width in enumerate(widths, start=1):
        layers[f"fc{i}"] = nn.Linear(n_in, width, bias=bias)
        layers[f"act{i}"] = activation_module("mlp", activation)
        if dropout > 0:
            layers[f"drop{i}"] = nn.Dropout(dropout)
        n_in = width
    layers["out"] = nn.Linear(n_in, num_classes, bias=bias)
    return nn.Sequential(layers)


def convnet(
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    channels: Sequence[int] = (60, 80, 160, 320),
    activation: str = "relu",
    dropout: float = 0.0,
) -> nn.Module:
    """Badger's (2022) ConvNet: conv 5-5-3-3 (60-80-160-320 channels), two max-pools, one dense layer.

    Layer order, from the author's published training script::

        conv5(C->c1) s | conv5(c1->c2) s | pool | conv3(c2->c3) s | pool | conv3(c3->c4) s | flatten | dense

    with ``s`` the activation (ReLU), 'same' zero padding (``k // 2``), stride 1, and 2x2 max-pools of
    stride 2 (floor). Each pooled axis of length ``n`` becomes ``n // 2``, except that an axis of length 1
    is left alone, so the pools never shrink a map below one pixel; the dense layer sees
    ``c4 * prod(pooled sizes)`` features (20,480 on 32x32 CIFAR, as in the author's code). 1-D inputs
    ``(C, L)`` use the ``Conv1d``/``MaxPool1d`` twins with the same channels and kernels. The author's
    model ends in a softmax that is then fed to a cross-entropy loss; this one returns logits, as every
    model here. Dropout (probability ``dropout``) acts on the flattened features before the dense layer.
    """
    dims = spatial_dims("convnet", input_shape)
    channels = check_widths("convnet", "channels", channels, min_len=4, max_len=4)
    check_probability("convnet", dropout)
    conv = (nn.Conv1d, nn.Conv2d)[dims - 1]
    pool = (nn.MaxPool1d, nn.MaxPool2d)[dims - 1]
    sizes = list(input_shape[1:])
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    c_in = input_shape[0]
    for i, (c_out, k) in enumerate(zip(channels, (5, 5, 3, 3)), start=1):
        layers[f"conv{i}"] = conv(c_in, c_out, k, padding=k // 2)
        layers[f"act{i}"] = activation_module("convnet", activation)
        if i in (2, 3):
            window = tuple(min(2, n) for n in sizes)
            layers[f"pool{i - 1}"] = pool(window, stride=window)
            sizes = [n // w for n, w in zip(sizes, window)]
        c_in = c_out
    layers["flatten"] = nn.Flatten()
    if dropout > 0:
        layers["drop"] = nn.Dropout(dropout)
    layers["dense"] = nn.Linear(c_in * math.prod(sizes), num_classes)
    return nn.Sequential(layers)


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "linear": linear,
    "mlp": mlp,
    "convnet": convnet,
    "small-alexnet": small_alexnet,
    "small-inception": small_inception,
}


def describe_architectures() -> dict[str, str]:
    """``name -> one-line description`` (each builder's docstring summary), for listings and ``--help``."""
    return {name: inspect.getdoc(builder).splitlines()[0] for name, builder in ARCHITECTURES.items()}


def accepted_kwargs(arch: str) -> dict[str, Any]:
    """The keyword arguments ``arch`` accepts, with their defaults."""
    builder = _builder(arch)
    return {
        name: p.default
        for name, p in inspect.signature(builder).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }


MAX_PARAMETERS = 2_000_000_000  # 8 GB of float32 weights; the architecture is sized on the meta device first


def build_model(
    spec: ModelSpec, input_shape: tuple[int, ...], num_classes: int, *, device: str | None = None
) -> nn.Module:
    """Build the architecture ``spec.arch`` with ``spec.kwargs`` for inputs of ``input_shape``.

    Args:
        spec: registry name and keyword arguments; lists and tuples are interchangeable (JSON round trip).
        input_shape: one sample's shape, no batch axis: ``(C, H, W)`` or ``(C, L)``; ``linear`` and
            ``mlp`` accept any shape (they flatten).
        num_classes: number of logits ``K``.

        device: ``"meta"`` builds the shapes alone, allocating nothing (to size a model before building it).

    Returns:
        A float32 CPU module in training mode, mapping ``(B, *input_shape) -> (B, K)`` logits. Initial
        weights come from the global generator (see the module docstring for seeding).

    Raises:
        ArchitectureError: unknown name, a keyword the architecture does not accept, a bad value, an
            input shape the architecture cannot take, or more than :data:`MAX_PARAMETERS` parameters (counted
            on the meta device, before any memory is allocated); the one-line message says what is accepted.
    """
    if not isinstance(spec, ModelSpec):
        raise ArchitectureError(f"build_model needs a ModelSpec, got {type(spec).__name__}")
    accepted = accepted_kwargs(spec.arch)
    if not isinstance(spec.kwargs, dict):
        raise ArchitectureError(f"model kwargs must be a mapping, got {type(spec.kwargs).__name__}")
    unknown = sorted(set(spec.kwargs) - set(accepted))
    if unknown:
        raise ArchitectureError(
            f"architecture {spec.arch!r} does not accept {', '.join(map(repr, unknown))}; "
            f"accepted: {', '.join(accepted) or 'no keyword arguments'}"
        )
    shape = _check_shape(spec.arch, input_shape)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ArchitectureError(f"num_classes must be a positive integer, got {num_classes!r}")
    with torch.device("meta"):
        sized = _call(spec, shape, num_classes)
    count = count_parameters(sized)
    if count > MAX_PARAMETERS:
        raise ArchitectureError(
            f"architecture {spec.arch!r} with {spec.kwargs} has {count:,} parameters, above the limit of "
            f"{MAX_PARAMETERS:,}; choose smaller widths or channels"
        )
    if device == "meta":
        return sized
    return _call(spec, shape, num_classes)


def _call(spec: ModelSpec, shape: tuple[int, ...], num_classes: int) -> nn.Module:
    try:
        return ARCHITECTURES[spec.arch](shape, num_classes, **spec.kwargs)
    except ArchitectureError:
        raise
    except (TypeError, ValueError, RuntimeError, OverflowError) as exc:  # a value the builder cannot take
        first = first_line(exc)
        raise ArchitectureError(
            f"architecture {spec.arch!r} cannot be built with {spec.kwargs} for inputs {shape} ({first}); "
            f"accepted keyword arguments: {', '.join(accepted_kwargs(spec.arch)) or 'none'}"
        ) from None


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters (shared tensors counted once; buffers such as running statistics not)."""
    return sum(p.numel() for p in model.parameters())


def _builder(arch: str) -> Callable[..., nn.Module]:
    try:
        return ARCHITECTURES[arch]
    except (KeyError, TypeError):
        raise ArchitectureError(
            f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}"
        ) from None


def _check_shape(arch: str, input_shape: Sequence[int]) -> tuple[int, ...]:
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = ()
    if not shape or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in shape):
        raise ArchitectureError(
            f"input_shape must be a non-empty tuple of positive integers such as (1, 28, 28), got {input_shape!r}"
        )
    return shape
