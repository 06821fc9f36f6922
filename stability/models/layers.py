"""Building blocks and argument checks shared by the architectures of :mod:`stability.models`.

Besides the activation table and the one-line argument checks, this holds the three layers that PyTorch
lacks and that Zhang et al.'s (2017) TensorFlow networks need to be reproduced exactly:

- :class:`SamePad` / :class:`SameMaxPool`: TensorFlow's ``'SAME'`` padding for strided windows, which is
  asymmetric (the extra pixel goes after), so window positions match the original, not just shapes;
- :class:`ShiftOnlyBatchNorm`: batch norm with a learned shift ``beta`` and no scale ``gamma`` (the
  TensorFlow ``batch_norm`` default), which is what gives the small Inception its published size.

All of them are shape-static and value-pure, so they run under ``vmap``/``jacrev`` over single samples.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stability.errors import ArchitectureError, BadInputError

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "softplus": nn.Softplus,
    "sigmoid": nn.Sigmoid,
    "identity": nn.Identity,
}


def activation_module(arch: str, name: str) -> nn.Module:
    """A fresh activation module by name (one of :data:`ACTIVATIONS`)."""
    if name not in ACTIVATIONS:
        raise ArchitectureError(f"{arch}: activation {name!r} is not one of: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def check_bool(arch: str, name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ArchitectureError(f"{arch}: {name} must be true or false, got {value!r}")


def check_probability(arch: str, value: object, name: str = "dropout") -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ArchitectureError(f"{arch}: {name} must be a probability in [0, 1), got {value!r}")


def check_widths(
    arch: str, name: str, value: object, *, min_len: int, max_len: int | None = None
) -> tuple[int, ...]:
    """``value`` as a tuple of positive ints of the allowed length (lists from JSON are accepted)."""
    length = f"exactly {min_len}" if min_len == max_len else f"at least {min_len}"
    if (
        not isinstance(value, (list, tuple))
        or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value)
        or len(value) < min_len
        or (max_len is not None and len(value) > max_len)
    ):
        raise ArchitectureError(f"{arch}: {name} must be a list of {length} positive integers, got {value!r}")
    return tuple(value)


def spatial_dims(arch: str, input_shape: tuple[int, ...]) -> int:
    """1 for signals ``(C, L)``, 2 for images ``(C, H, W)``; anything else is refused."""
    if len(input_shape) not in (2, 3):
        raise ArchitectureError(
            f"{arch} needs inputs shaped (C, H, W) or (C, L), got {input_shape}; use mlp or linear for flat inputs"
        )
    return len(input_shape) - 1


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow ``'SAME'`` padding of one axis: ``(before, after)``.

    Output length ``ceil(n / s)``; total padding ``max((out - 1) s + k - n, 0)``, of which
    ``floor(total / 2)`` goes before and the rest after.
    """
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def same_size(size: int, stride: int) -> int:
    """Length of an axis after a ``'SAME'``-padded window of stride ``stride``: ``ceil(n / s)``."""
    return math.ceil(size / stride)


class SamePad(nn.Module):
    """Pad the last ``dims`` axes as TensorFlow ``'SAME'`` does for a ``kernel`` window of ``stride``.

    ``(B, C, *spatial) -> (B, C, *padded)``; the padding is computed from the input's static shape, so one
    module serves any input size. ``value`` is 0 before a convolution and ``-inf`` before a max-pool
    (padding never wins a max, as in TensorFlow).
    """

    def __init__(self, dims: int, kernel: int, stride: int, value: float = 0.0) -> None:
        super().__init__()
        self.dims, self.kernel, self.stride, self.value = dims, kernel, stride, value

    def forward(self, x: Tensor) -> Tensor:
        pads: list[int] = []
        for size in reversed(x.shape[-self.dims :]):  # F.pad lists the last axis first
            pads.extend(same_padding(size, self.kernel, self.stride))
        return F.pad(x, pads, value=self.value)

    def extra_repr(self) -> str:
        return f"dims={self.dims}, kernel={self.kernel}, stride={self.stride}, value={self.value}"


class SameMaxPool(nn.Sequential):
    """Max-pool with TensorFlow ``'SAME'`` padding: each spatial axis ``n -> ceil(n / stride)``."""

    def __init__(self, dims: int, kernel: int, stride: int) -> None:
        pool = (nn.MaxPool1d, nn.MaxPool2d)[dims - 1]
        super().__init__(SamePad(dims, kernel, stride, value=-math.inf), pool(kernel, stride))


class ShiftOnlyBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm with a learned shift and no learned scale: ``y = (x - mu) / sqrt(var + eps) + beta``.

    ``beta: (C,)`` (parameter ``bias``, zero at init) is the only parameter; ``mu``, ``var`` are the batch
    statistics in training mode and the running ones in eval mode (PyTorch's momentum 0.1 and eps 1e-5).
    Subclassing ``_BatchNorm`` keeps it visible to the checks that refuse batch norm in training mode.
    """

    def __init__(self, num_features: int, dims: int) -> None:
        super().__init__(num_features, affine=False)
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.dims = dims

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, shift only (no scale)"

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() != self.dims + 2:
            raise BadInputError(
                f"batch norm expected a {self.dims + 2}-D input (batch, channels, spatial), got {input.dim()}-D"
            )


def conv_class(dims: int) -> type[nn.Module]:
    return (nn.Conv1d, nn.Conv2d)[dims - 1]


def flat_size(channels: int, sizes: Sequence[int]) -> int:
    return channels * math.prod(sizes)
