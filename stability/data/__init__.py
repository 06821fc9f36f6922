"""Datasets and the paper corruptions: a :class:`DataSpec` becomes train / test (/ held-out) tensors.

- :mod:`.spec` — :class:`DataSpec`, what a run trains on.
- :mod:`.bundle` — :func:`load_data`, :class:`DataBundle` and :class:`Split`: the pipeline.
- :mod:`.sources` — the raw datasets (embedded digits, generated MNIST-1D, on-disk MNIST and CIFAR).
- :mod:`.formats` — readers of the on-disk formats (IDX, CIFAR pickles, without unpickling code).
- :mod:`.download` — fetching on-disk datasets, checksums verified.
- :mod:`.corruptions` — Zhang et al.'s randomization tests, Badger's noise mixing, preprocessing.
- :mod:`.mnist1d` — the MNIST-1D generator.
- :mod:`.streams` — seeded random streams keyed by sample, so every spec gives bit-identical tensors.
"""

from stability.data.bundle import DataBundle, Split, load_data
from stability.data.download import download_dataset
from stability.data.sources import DATASETS
from stability.data.spec import CORRUPTIONS, PREPROCESSING, DataSpec

__all__ = ["CORRUPTIONS", "DATASETS", "DataBundle", "DataSpec", "PREPROCESSING", "Split", "download_dataset", "load_data"]
