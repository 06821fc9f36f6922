"""Named, sample-keyed random streams: the one source of randomness in the data pipeline.

Every random choice is drawn from a stream named by ``(seed, purpose)``; different purposes (the split,
label corruption, per-image pixel permutations, Badger's noise, ...) get statistically independent streams,
so adding a corruption never shifts the draws of another.

Per-sample draws are *keyed by the sample's index in its source split*: the source is cut into blocks of
:data:`BLOCK` consecutive indices and block ``b`` draws from its own generator ``(seed, purpose#b)``. A
sample's corrupted label, pixel permutation or noise therefore depends only on ``(seed, purpose, index)``,
not on which other samples were selected: growing ``n_train`` adds samples without changing the ones
already there. All draws happen on the CPU (the streams of CPU and CUDA generators differ) and are moved to
the data's device afterwards, so the same spec gives the same tensors on every machine.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import torch
from torch import Tensor

from stability.errors import BadInputError

"""Indices per keyed block: small enough that a small subset touches little, large enough to vectorize."""


BLOCK = 512


def derive_seed(seed: int, purpose: str) -> int:
    """A 63-bit seed for the stream ``(seed, purpose)``: the first 8 bytes of SHA-256 of ``"seed/purpose"``."""
    digest = hashlib.sha256(f"{int(seed)}/{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def generator(seed: int, purpose: str) -> torch.Generator:
    """A fresh CPU ``torch.Generator`` for the stream ``(seed, purpose)``."""
    g = torch.Generator(device="cpu")
    g.manual_seed(derive_seed(seed, purpose))
    return g


def permutation(n: int, g: torch.Generator) -> Tensor:
    """A uniform random permutation of ``range(n)``, shape ``(n,)`` int64.

    Sorting float64 uniform keys (ties have probability ~ n^2 2^-53) rather than ``torch.randperm``, whose
    algorithm differs between sizes and versions.
    """
    return torch.rand(n, dtype=torch.float64, generator=g).argsort()


def keyed(seed: int, purpose: str, index: Tensor, draw: Callable[[torch.Generator], Tensor]) -> Tensor:
    """Per-sample draws that depend only on ``(seed, purpose, index[i])``.

    Args:
        index: ``(N,)`` int64 source indices (need not be sorted or unique).
        draw: ``draw(g)`` returns one block of draws, shape ``(BLOCK, *shape)``, from generator ``g``.

    Returns:
        ``(N, *shape)`` on the CPU: row ``i`` is row ``index[i] % BLOCK`` of block ``index[i] // BLOCK``.

    Cost: one ``draw`` per distinct block touched, i.e. at most ``ceil(N / BLOCK)`` blocks more than the
    ``N`` rows needed. The Python loop runs over blocks, never over samples.
    """
    index = index.detach().to("cpu", torch.int64).reshape(-1)
    if index.numel() == 0:
        return draw(generator(seed, f"{purpose}#0"))[:0]
    order = index.argsort()
    sorted_index = index[order]
    blocks, counts = torch.unique_consecutive(torch.div(sorted_index, BLOCK, rounding_mode="floor"), return_counts=True)
    out: Tensor | None = None
    start = 0
    for block, count in zip(blocks.tolist(), counts.tolist()):
        values = draw(generator(seed, f"{purpose}#{block}"))
        if out is None:
            out = values.new_empty((index.numel(), *values.shape[1:]))
        rows = order[start : start + count]
        out[rows] = values[sorted_index[start : start + count] - block * BLOCK]
        start += count
    assert out is not None
    return out


def keyed_uniform(
    seed: int, purpose: str, index: Tensor, shape: tuple[int, ...] = (), dtype: torch.dtype = torch.float32
) -> Tensor:
    """``(N, *shape)`` draws from U[0, 1), keyed by sample index (see :func:`keyed`)."""
    return keyed(seed, purpose, index, lambda g: torch.rand((BLOCK, *shape), dtype=dtype, generator=g))


def keyed_normal(
    seed: int, purpose: str, index: Tensor, shape: tuple[int, ...] = (), dtype: torch.dtype = torch.float32
) -> Tensor:
    """``(N, *shape)`` draws from N(0, 1), keyed by sample index (see :func:`keyed`)."""
    return keyed(seed, purpose, index, lambda g: torch.randn((BLOCK, *shape), dtype=dtype, generator=g))


def keyed_permutations(seed: int, purpose: str, index: Tensor, n: int) -> Tensor:
    """``(N, n)`` int16: an independent uniform permutation of ``range(n)`` per sample, keyed by index.

    Each row is the argsort of float64 uniform keys. Stored as int16 (``n < 32768``) to keep the full-pool
    case small: 60,000 permutations of 1,024 positions take 120 MB, not 480 MB as int64.
    """
    if n >= 2**15:
        raise BadInputError(f"per-image permutations of {n} >= 32768 positions are not supported")
    return keyed(
        seed,
        purpose,
        index,
        lambda g: torch.rand((BLOCK, n), dtype=torch.float64, generator=g).argsort(dim=1).to(torch.int16),
    )
