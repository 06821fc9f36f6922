"""Datasets and the paper corruptions: a :class:`DataSpec` becomes train / test (/ held-out) tensors.

- :mod:`.spec` — :class:`DataSpec`, what a run trains on.
- :mod:`.bundle` — :func:`load_data`, :class:`DataBundle` and :class:`Split`: the pipeline.
- :mod:`.sources` — the raw datasets (embedded digits, generated MNIST-1D, on-disk MNIST and CIFAR).
- :mod:`.formats` — readers of the on-disk formats (IDX, CIFAR pickles, without unpickling code).
- :mod:`.download` — fetching on-disk datasets, checksums verified.
- :mod:`.corruptions` — Zhang et al.'s randomization tests, Badger's noise mixing, preprocessing.
- :mod:`.mnist1d` — the MNIST-1D generator.
- :mod:`.streams` — seeded random streams keyed by sample, so every spec gives bit-identical tensors.

Names load on first use, so ``stability.data.spec`` imports without torch (the command line's start-up).
"""

from __future__ import annotations

from typing import Any

from stability import load_export

_EXPORTS = {
    "DataBundle": "bundle", "Split": "bundle", "load_data": "bundle", "download_dataset": "download",
    "DATASETS": "sources", "CORRUPTIONS": "spec", "PREPROCESSING": "spec", "DataSpec": "spec",
}  # fmt: skip

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    return load_export(__name__, _EXPORTS, name)
