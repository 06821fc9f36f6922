"""MNIST-1D (Greydanus 2020), generated offline: ten 1-D digit templates, randomly transformed.

The dataset is procedural. Each sample starts from the 12-point template of its class and goes through, in
this order (defaults of :class:`Mnist1DConfig`, which follow the reference generator as we read it):

1. **pad**: append ``p ~ U{36, ..., 60}`` zeros (signal length ``12 + p``);
2. **dilate**: linearly resample the padded signal onto ``L = 12 + 60 = 72`` points, so the template's
   width varies with ``p``;
3. **scale**: multiply by ``1 + 0.4 (u - 1/2)``, ``u ~ U[0, 1)``;
4. **translate**: circular shift by ``k ~ U{0, ..., 47}`` positions;
5. **correlated noise**: where the shifted signal is padding, put ``0.25 * z`` smoothed by a Gaussian filter
   of width 2 (reflecting boundaries), ``z ~ N(0, I)``;
6. **iid noise**: add ``0.02 * z'``;
7. **shear**: subtract ``c * linspace(-1/2, 1/2, L)``, ``c = 0.75 (u' - 1/2)``;
8. **subsample**: linearly resample onto 40 points.

Then, as in the reference, the whole set is standardized by its global mean and standard deviation. This
toolkit's pipeline expects inputs roughly in [0, 1] (Badger's noise is centred on 1/2), so we finally map
the standardized value ``z`` to ``x = 1/2 + z / 6``: a fixed affine map under which ``|z| <= 3`` lands in
[0, 1] (about 99% of the values of the default 5,000 samples, the rest within [-0.25, 1.25]; nothing is
clipped, so no information is lost). Logistic regression reaches about 32% test accuracy on it, as reported
for the reference dataset (chance: 10%).

Templates: the hand-designed 12-point curves of the reference (each whitened, shifted to start at 0 and
divided by 6). This implementation is our own and fully vectorized (no loop over samples); it draws its
random numbers in a different order than the reference code, so it yields a dataset of the same
distribution, not the reference's exact tensors. The generation seed (42) is part of the dataset's
identity and never changes with the experiment's seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stability.data.streams import derive_seed
from stability.errors import BadInputError

# One row per digit 0..9: the reference's hand-drawn 1-D "strokes" (values are shapes, not pixels).
_TEMPLATES = np.array([
    [5, 6, 6.5, 6.75, 7, 7, 7, 7, 6.75, 6.5, 6, 5],
    [5, 3, 3, 3.4, 3.8, 4.2, 4.6, 5, 5.4, 5.8, 5, 5],
    [5, 6, 6.5, 6.5, 6, 5.25, 4.75, 4, 3.5, 3.5, 4, 5],
    [5, 6, 6.5, 6.5, 6, 5, 5, 6, 6.5, 6.5, 6, 5],
    [5, 4.4, 3.8, 3.2, 2.6, 2.6, 5, 5, 5, 5, 5, 5],
    [5, 3, 3, 3, 3, 5, 6, 6.5, 6.5, 6, 4.5, 5],
    [5, 4, 3.5, 3.25, 3, 3, 3, 3, 3.25, 3.5, 4, 5],
    [5, 7, 7, 6.6, 6.2, 5.8, 5.4, 5, 4.6, 4.2, 5, 5],
    [5, 4, 3.5, 3.5, 4, 5, 5, 4, 3.5, 3.5, 4, 5],
    [5, 4, 3.5, 3.5, 4, 5, 5, 5, 5, 4.7, 4.3, 5],
])  # fmt: skip


@dataclass(frozen=True)
class Mnist1DConfig:
    """Generator settings (defaults: the reference's). Changing any of them makes a different dataset."""

    padding: tuple[int, int] = (36, 60)
    scale_coeff: float = 0.4
    max_translation: int = 48
    corr_noise_scale: float = 0.25
    corr_noise_sigma: float = 2.0
    iid_noise_scale: float = 0.02
    shear_scale: float = 0.75
    final_length: int = 40
    train_fraction: float = 0.8
    seed: int = 42


def templates() -> np.ndarray:
    """``(10, 12)`` float64: each template whitened (zero mean, unit std), shifted to start at 0, divided by 6."""
    t = _TEMPLATES - _TEMPLATES.mean(axis=1, keepdims=True)
    t = t / t.std(axis=1, keepdims=True)
    return (t - t[:, :1]) / 6.0


def _resample(signal: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Linear interpolation of each row of ``signal (N, M)`` at fractional ``positions (N, K)`` in [0, M-1]."""
    lo = np.clip(np.floor(positions).astype(np.int64), 0, signal.shape[1] - 2)
    frac = positions - lo
    left = np.take_along_axis(signal, lo, axis=1)
    right = np.take_along_axis(signal, lo + 1, axis=1)
    return (1.0 - frac) * left + frac * right


def generate_mnist1d(num_samples: int, config: Mnist1DConfig = Mnist1DConfig()) -> tuple[np.ndarray, np.ndarray]:
    """Generate ``num_samples`` MNIST-1D signals before any standardization.

    Returns:
        ``x``: ``(N, final_length)`` float64 raw signals; ``y``: ``(N,)`` int64, ``y[i] = i % 10`` (classes
        balanced to within one sample).

    Cost: ``O(N * L)`` memory and time, ``L = 12 + padding[1]``; 5,000 samples take a few milliseconds.
    """
    if num_samples < 10:
        raise BadInputError(f"mnist1d_samples must be at least 10 (one per class), got {num_samples}")
    tmpl = templates()
    width = tmpl.shape[1]
    length = width + config.padding[1]
    n = num_samples
    rng = np.random.default_rng(derive_seed(config.seed, "mnist1d/generate"))
    y = np.arange(n, dtype=np.int64) % len(tmpl)
    pad = rng.integers(config.padding[0], config.padding[1] + 1, size=n)
    scale = 1.0 + config.scale_coeff * (rng.random(n) - 0.5)
    shift = rng.integers(0, config.max_translation, size=n)
    corr = rng.standard_normal((n, length))
    iid = rng.standard_normal((n, length))
    shear = config.shear_scale * (rng.random(n) - 0.5)

    # Pad + dilate: sample the zero-padded template (length width + pad) at `length` evenly spaced points.
    padded = np.zeros((n, length + 1))
    padded[:, :width] = tmpl[y]
    pos = np.linspace(0.0, 1.0, length)[None, :] * (width + pad - 1)[:, None]
    x = _resample(padded, pos) * scale[:, None]
    # Points that draw on the template (rather than only on padding) carry signal; the rest get noise.
    signal = pos < width
    # Translate: circular shift right by `shift`, signal mask alongside.
    src = (np.arange(length)[None, :] - shift[:, None]) % length
    x = np.take_along_axis(x, src, axis=1)
    signal = np.take_along_axis(signal, src, axis=1)
    from scipy.ndimage import gaussian_filter1d  # scipy loads only when MNIST-1D is generated

    smooth = gaussian_filter1d(config.corr_noise_scale * corr, config.corr_noise_sigma, axis=1, mode="reflect")
    x = np.where(signal, x, smooth) + config.iid_noise_scale * iid
    x = x - shear[:, None] * np.linspace(-0.5, 0.5, length)[None, :]
    out_pos = np.broadcast_to(np.linspace(0.0, length - 1.0, config.final_length), (n, config.final_length))
    return _resample(x, out_pos), y


def mnist1d_splits(
    num_samples: int, config: Mnist1DConfig = Mnist1DConfig()
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The dataset as the pipeline sees it: ``(x_train, y_train, x_test, y_test)``.

    ``x``: ``(N, 1, final_length)`` float32, the globally standardized signal ``z`` mapped to ``1/2 + z/6``
    (see the module docstring). The split is a fixed permutation (seed ``config.seed``): the first
    ``floor(train_fraction * N)`` samples form the training pool, the rest the test set.
    """
    x, y = generate_mnist1d(num_samples, config)
    x = 0.5 + (x - x.mean()) / x.std() / 6.0
    order = np.random.default_rng(derive_seed(config.seed, "mnist1d/split")).random(num_samples).argsort()
    n_train = int(config.train_fraction * num_samples)
    tr, te = order[:n_train], order[n_train:]
    x = x[:, None, :].astype(np.float32)
    return x[tr], y[tr], x[te], y[te]
