"""The two convolutional networks of Zhang et al. (2017), appendix: small AlexNet and small Inception.

Both were written in TensorFlow for 28x28x3 centre-cropped CIFAR-10. They are rebuilt here so that the
parameter counts are exactly the published ones (small AlexNet 1,387,786; small Inception 1,649,402, for 10
classes) and window positions follow TensorFlow's ``'SAME'`` padding (see :mod:`stability.models.layers`). Both
adapt to any input size (the dense layer of AlexNet is sized from the input shape; Inception ends in a
global mean pool) and to 1-D signals ``(C, L)`` through the ``Conv1d``/``MaxPool1d``/``BatchNorm1d`` twins.
PyTorch's default initializations are used, not TensorFlow's (initialization is not part of the
published specification we could see).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from stability.models.layers import (
    SameMaxPool,
    SamePad,
    ShiftOnlyBatchNorm,
    check_bool,
    check_probability,
    check_widths,
    conv_class,
    flat_size,
    same_size,
    spatial_dims,
)

# Local response normalization of the TensorFlow CIFAR-10 tutorial, which we read as the one Zhang et al.
# used: tf.nn.lrn(depth_radius=4, bias=1, alpha=0.001 / 9, beta=0.75). PyTorch divides alpha by the window
# size n = 2 * 4 + 1 itself, hence alpha = 0.001 here.
LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K = 9, 1e-3, 0.75, 1.0


def small_alexnet(
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    channels: Sequence[int] = (64, 64),
    hidden: Sequence[int] = (384, 192),
    dropout: float = 0.0,
    local_response_norm: bool = True,
) -> nn.Module:
    """Zhang et al.'s small AlexNet: 2 x (conv 5x5, ReLU, max-pool 3x3/2, LRN), dense 384 and 192, linear.

    Layers (names are the ``state_dict`` prefixes)::

        conv1 5x5 (C->c1, 'same') relu1 pool1 norm1 | conv2 5x5 (c1->c2) relu2 pool2 norm2 |
        flatten fc1 (->h1) relu3 [drop1] fc2 (->h2) relu4 [drop2] out (->K)

    Pools are 3x3, stride 2, TensorFlow 'SAME' (each spatial axis ``n -> ceil(n / 2)``, so never below 1).
    LRN across channels: ``y_c = x_c / (1 + (0.001 / 9) sum_{|c' - c| <= 4} x_{c'}^2)^0.75``.
    Parameters: ``(25 C + 1) c1 + (25 c1 + 1) c2 + (c2 S + 1) h1 + (h1 + 1) h2 + (h2 + 1) K`` with
    ``S = prod_i ceil(ceil(n_i / 2) / 2)``: 1,387,786 for 28x28x3 inputs and 10 classes. Dropout (probability
    ``dropout``) follows each hidden dense layer; ``local_response_norm=False`` drops the LRN layers.
    """
    dims = spatial_dims("small-alexnet", input_shape)
    channels = check_widths("small-alexnet", "channels", channels, min_len=2, max_len=2)
    hidden = check_widths("small-alexnet", "hidden", hidden, min_len=2, max_len=2)
    check_probability("small-alexnet", dropout)
    check_bool("small-alexnet", "local_response_norm", local_response_norm)
    conv = conv_class(dims)
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    c_in, sizes = input_shape[0], input_shape[1:]
    for i, c_out in enumerate(channels, start=1):
        layers[f"conv{i}"] = conv(c_in, c_out, 5, padding=2)
        layers[f"relu{i}"] = nn.ReLU()
        layers[f"pool{i}"] = SameMaxPool(dims, 3, 2)
        if local_response_norm:
            layers[f"norm{i}"] = nn.LocalResponseNorm(LRN_SIZE, alpha=LRN_ALPHA, beta=LRN_BETA, k=LRN_K)
        c_in, sizes = c_out, tuple(same_size(n, 2) for n in sizes)
    layers["flatten"] = nn.Flatten()
    n_in = flat_size(c_in, sizes)
    for i, width in enumerate(hidden, start=1):
        layers[f"fc{i}"] = nn.Linear(n_in, width)
        layers[f"relu{i + 2}"] = nn.ReLU()
        if dropout > 0:
            layers[f"drop{i}"] = nn.Dropout(dropout)
        n_in = width
    layers["out"] = nn.Linear(n_in, num_classes)
    return nn.Sequential(layers)


class ConvModule(nn.Module):
    """Zhang et al.'s conv module: convolution, batch norm, ReLU; ``(B, C_in, *n) -> (B, C_out, *n')``.

    With batch norm the convolution has no bias and the norm has a shift but no scale (TensorFlow's
    default), so each output channel carries ``k^d C_in + 1`` parameters either way: the ``+ 1`` is the
    norm's shift, or the convolution's bias when ``batch_norm=False``. Stride 1 pads ``k // 2`` on both
    sides; stride 2 pads TensorFlow-'SAME' (``n' = ceil(n / 2)``).
    """

    def __init__(
        self, dims: int, c_in: int, c_out: int, kernel: int, stride: int = 1, *, batch_norm: bool
    ) -> None:
        super().__init__()
        self.pad = SamePad(dims, kernel, stride) if stride > 1 else nn.Identity()
        padding = kernel // 2 if stride == 1 else 0
        self.conv = conv_class(dims)(c_in, c_out, kernel, stride=stride, padding=padding, bias=not batch_norm)
        self.bn = ShiftOnlyBatchNorm(c_out, dims) if batch_norm else nn.Identity()
        self.act = nn.ReLU()
        self.out_channels = c_out

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(self.pad(x))))


class InceptionModule(nn.Module):
    """``[conv module 1x1 (ch1) || conv module 3x3 (ch3)]`` concatenated over channels: ``C -> ch1 + ch3``."""

    def __init__(self, dims: int, c_in: int, ch1: int, ch3: int, *, batch_norm: bool) -> None:
        super().__init__()
        self.branch1 = ConvModule(dims, c_in, ch1, 1, batch_norm=batch_norm)
        self.branch3 = ConvModule(dims, c_in, ch3, 3, batch_norm=batch_norm)
        self.out_channels = ch1 + ch3

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch1(x), self.branch3(x)], dim=1)


class DownsampleModule(nn.Module):
    """``[conv module 3x3/2 (ch3) || max-pool 3x3/2]`` concatenated: ``C -> ch3 + C``, ``n -> ceil(n / 2)``."""

    def __init__(self, dims: int, c_in: int, ch3: int, *, batch_norm: bool) -> None:
        super().__init__()
        self.conv = ConvModule(dims, c_in, ch3, 3, stride=2, batch_norm=batch_norm)
        self.pool = SameMaxPool(dims, 3, 2)
        self.out_channels = ch3 + c_in

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.conv(x), self.pool(x)], dim=1)


# Zhang et al. (2017), Figure 3: ("inception", ch1, ch3) or ("downsample", ch3), after a 3x3 conv module of 96.
INCEPTION_STEM = 96


INCEPTION_PLAN: tuple[tuple[int, ...], ...] = (
    (32, 32), (32, 48), (80,),
    (112, 48), (96, 64), (80, 80), (48, 96), (96,),
    (176, 160), (176, 160),
)  # fmt: skip


class SmallInception(nn.Module):
    """Stem conv module, the modules of :data:`INCEPTION_PLAN`, global mean pool, linear to the logits."""

    def __init__(self, dims: int, c_in: int, num_classes: int, *, batch_norm: bool) -> None:
        super().__init__()
        self.stem = ConvModule(dims, c_in, INCEPTION_STEM, 3, batch_norm=batch_norm)
        blocks: list[nn.Module] = []
        c = INCEPTION_STEM
        for widths in INCEPTION_PLAN:
            block: InceptionModule | DownsampleModule
            if len(widths) == 2:
                block = InceptionModule(dims, c, *widths, batch_norm=batch_norm)
            else:
                block = DownsampleModule(dims, c, *widths, batch_norm=batch_norm)
            blocks.append(block)
            c = block.out_channels
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(c, num_classes)
        self.spatial_axes = tuple(range(2, 2 + dims))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.blocks(self.stem(x)).mean(dim=self.spatial_axes))


def small_inception(input_shape: tuple[int, ...], num_classes: int, *, batch_norm: bool = True) -> nn.Module:
    """Zhang et al.'s small Inception: conv+BN+ReLU modules, 8 Inception and 2 Downsample, mean pool, linear.

    ``stem 3x3 (96) -> Inc(32,32) -> Inc(32,48) -> Down(80) -> Inc(112,48) -> Inc(96,64) -> Inc(80,80) ->
    Inc(48,96) -> Down(96) -> Inc(176,160) -> Inc(176,160) -> global mean -> linear (336 -> K)``, where
    ``Inc(a, b)`` concatenates a 1x1 conv module of ``a`` and a 3x3 one of ``b`` channels and ``Down(b)`` a
    stride-2 3x3 conv module of ``b`` channels and a stride-2 3x3 max-pool. Each conv output channel has
    ``k^d C_in`` weights plus one shift (batch norm ``beta``, no ``gamma``, no conv bias), which gives
    1,649,402 parameters for 28x28x3 inputs and 10 classes; ``batch_norm=False`` replaces each norm by a
    conv bias, with the same count. Contains batch norm: call ``eval()`` before analysis.
    """
    dims = spatial_dims("small-inception", input_shape)
    check_bool("small-inception", "batch_norm", batch_norm)
    return SmallInception(dims, input_shape[0], num_classes, batch_norm=batch_norm)
