"""The randomization tests of Zhang et al. (2017), Badger's (2022) noise mixing, and input preprocessing.

Each function is pure: tensors in, new tensors out, randomness from the keyed streams of :mod:`.streams`
(``seed``, a purpose string, and each sample's source index), so a sample's corruption does not depend on
which other samples were drawn. Inputs are ``x: (N, C, *spatial)`` float32; "pixels" are the spatial
positions, permuted jointly across channels.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from stability.data.streams import generator, keyed_normal, keyed_permutations, keyed_uniform, permutation
from stability.errors import BadInputError

NOISE_MEAN = 0.5


NOISE_STD = 1.0 / 3.0


_GATHER_ROWS = 4096  # rows per chunk when applying per-image permutations, to bound int64 index memory


def center_crop(x: Tensor, size: int) -> Tensor:
    """The central ``size x size`` window of images ``x: (N, C, H, W)``.

    Offsets ``floor((H - size) / 2)`` and ``floor((W - size) / 2)`` (CIFAR-10 32 -> 28: rows and columns 2..29).
    """
    if x.dim() != 4:
        raise BadInputError(
            f"center_crop applies to images (C, H, W); this dataset's inputs are {tuple(x.shape[1:])}: drop it"
        )
    h, w = x.shape[-2:]
    if size > min(h, w):
        raise BadInputError(f"center_crop {size} exceeds the image size {h}x{w}; use at most {min(h, w)}")
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top : top + size, left : left + size].contiguous()


def channel_stats(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and (population) standard deviation over samples and positions, each ``(C,)``.

    Accumulated in float64 so 50,000 x 1,024 values per channel lose no precision.
    """
    flat = x.transpose(0, 1).reshape(x.shape[1], -1).to(torch.float64)
    mean = flat.mean(dim=1)
    std = (flat - mean[:, None]).square().mean(dim=1).sqrt()
    return mean, std


def corrupt_labels(y: Tensor, index: Tensor, p: float, num_classes: int, seed: int, purpose: str) -> Tensor:
    """Zhang et al.'s partially corrupted labels: with probability ``p``, independently per sample, the
    label is replaced by a uniform draw from ``num_classes`` classes (which may redraw the true class).

    Sample ``i`` draws ``(u, v) ~ U[0, 1)^2`` keyed by ``index[i]``; it is corrupted iff ``u < p`` and gets
    class ``floor(v * num_classes)``. So the corrupted set grows monotonically with ``p`` at a fixed seed, and
    the expected fraction of changed labels is ``p (1 - 1/num_classes)``. ``p = 1`` is "random labels".
    """
    if p == 0.0:
        return y.clone()
    uv = keyed_uniform(seed, purpose, index, (2,), dtype=torch.float64)
    new = (uv[:, 1] * num_classes).long().clamp_(max=num_classes - 1)
    return torch.where(uv[:, 0] < p, new, y)


def shuffled_pixels(x: Tensor, seed: int) -> Tensor:
    """One fixed permutation of the spatial positions, the same for every image of every split.

    ``out[n, c, j] = x[n, c, perm[j]]`` over flattened positions ``j``; ``perm`` comes from the stream
    ``(seed, "shuffled-pixels")`` alone, so train, held-out and test images share it.
    """
    n, c = x.shape[:2]
    flat = x.reshape(n, c, -1)
    perm = permutation(flat.shape[-1], generator(seed, "shuffled-pixels"))
    return flat[:, :, perm].reshape(x.shape)


def random_pixels(x: Tensor, index: Tensor, seed: int, purpose: str) -> Tensor:
    """An independent random permutation of the spatial positions for each image (keyed by its index).

    ``out[n, c, j] = x[n, c, perm_n[j]]``: per image, argsort of random keys, then one ``gather``.
    """
    n, c = x.shape[:2]
    flat = x.reshape(n, c, -1)
    perms = keyed_permutations(seed, purpose, index, flat.shape[-1])
    out = torch.empty_like(flat)
    for start in range(0, n, _GATHER_ROWS):  # chunks of rows, not samples: bounds the int64 index copy
        rows = slice(start, start + _GATHER_ROWS)
        idx = perms[rows].to(torch.int64)[:, None, :].expand(-1, c, -1)
        out[rows] = flat[rows].gather(2, idx)
    return out.reshape(x.shape)


def gaussian_inputs(
    shape: tuple[int, ...], index: Tensor, mean: Tensor, std: Tensor, seed: int, purpose: str
) -> Tensor:
    """Images replaced by Gaussian noise: ``x[n, c, ...] = mean[c] + std[c] * z``, ``z ~ N(0, 1)`` iid.

    ``mean``, ``std``: ``(C,)``, the clean training pool's per-channel statistics, so the noise has the
    dataset's mean and variance channel by channel. Returns ``(N, *shape[1:])`` float32.
    """
    z = keyed_normal(seed, purpose, index, tuple(shape[1:]))
    view = (1, -1) + (1,) * (len(shape) - 2)
    return (mean.to(z.dtype).view(view) + std.to(z.dtype).view(view) * z).contiguous()


def noise_eps(shape: tuple[int, ...], index: Tensor, seed: int, purpose: str) -> Tensor:
    """Badger's per-pixel noise ``eps ~ N(1/2, (1/3)^2)``, keyed by sample index; ``(N, *shape[1:])`` float32."""
    return NOISE_MEAN + NOISE_STD * keyed_normal(seed, purpose, index, tuple(shape[1:]))


def mix_noise(x: Tensor, eps: Tensor, phi: float) -> Tensor:
    """Badger's noise mixing ``x' = phi * x + (1 - phi) * eps`` (``phi = 1``: unchanged, ``0``: pure noise)."""
    return phi * x + (1.0 - phi) * eps


def standardize(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """``(x - mean[c]) / std[c]`` per channel with fixed statistics (those of the clean training pool).

    A constant channel (``std = 0``) is only centred: dividing by a floor of ``1e-12`` would blow it up.
    """
    view = (1, -1) + (1,) * (x.dim() - 2)
    safe = torch.where(std > 0, std, torch.ones_like(std))
    return (x - mean.to(x.dtype).view(view)) / safe.to(x.dtype).view(view)


def whiten(x: Tensor) -> Tensor:
    """Per-image standardization, as TensorFlow's ``per_image_standardization`` (Zhang et al.'s whitening).

    ``(x - mean(x)) / max(std(x), 1/sqrt(D))`` with mean and population std over all ``D = C * H * W``
    values of each image; the floor keeps constant images finite.
    """
    flat = x.reshape(x.shape[0], -1)
    d = flat.shape[1]
    mean = flat.mean(dim=1, keepdim=True)
    std = flat.std(dim=1, correction=0, keepdim=True).clamp_min(1.0 / math.sqrt(d))
    return ((flat - mean) / std).reshape(x.shape)
