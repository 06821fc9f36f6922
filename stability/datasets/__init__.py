"""The machinery behind :mod:`stability.data`: sources, file formats, downloads, MNIST-1D, corruptions.

Users import from :mod:`stability.data`; these modules are public for tests and for reuse of the parts
(e.g. :func:`~stability.datasets.formats.restricted_loads`, :func:`~stability.datasets.mnist1d.generate_mnist1d`).
"""

from __future__ import annotations
