"""Data augmentation of image batches: random crops (and flips), drawn from the run's own generator."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from stability.errors import BadInputError


def augment_images(x: Tensor, generator: torch.Generator, *, flip: bool = True) -> Tensor:
    """Random crops (zero padding ``p``, shift in [-p, p] per image) and, with ``flip``, horizontal flips, batched.

    ``x: (B, C, H, W)``; ``p = 2`` for images of side at most 8, else 4. One gather, no per-image Python.
    """
    if x.ndim != 4:
        raise BadInputError(f"augmentation needs image inputs (B, C, H, W), got shape {tuple(x.shape)}; drop --augment")
    b, _, h, w = x.shape
    p = 2 if max(h, w) <= 8 else 4
    padded = nn.functional.pad(x, (p, p, p, p))
    shifts = torch.randint(0, 2 * p + 1, (2, b), generator=generator, device=x.device)
    rows = shifts[0, :, None] + torch.arange(h, device=x.device)
    cols = shifts[1, :, None] + torch.arange(w, device=x.device)
    if flip:
        flips = torch.rand(b, generator=generator, device=x.device) < 0.5
        cols = torch.where(flips[:, None], cols.flip(-1), cols)
    batch = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()
