"""Finite-noise input sensitivity, per sample, and the summary statistics the report prints.

Where :mod:`stability.sensitivity` differentiates, these measures perturb: each sample ``x_i`` is copied
``S`` times with Gaussian noise of scale ``σ``, ``x_i + σ ε_is``, ``ε_is ~ N(0, I)``, and the outputs are
compared with the clean one. As ``σ -> 0``, ``E‖f(x + σε) − f(x)‖ / σ -> E‖J(x) ε‖``, and
``√(2/π) ‖J‖_2 <= E‖J ε‖ <= (E‖J ε‖²)^{1/2} = ‖J‖_F``; a finite ``σ`` also sees the curvature.

The noisy copies run through the model in ordinary batched forward passes (eval-mode samples are
independent; :func:`~stability.functional.functionalize` refuses models where they are not), ``chunk_size``
copies of the batch at a time. Noise is drawn one copy of the batch at a time, ``S`` draws of shape
``x.shape`` from ``generator`` in a fixed order, so ``chunk_size`` changes the memory footprint but not
which noise is used.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from stability.errors import BadInputError
from stability.functional import ModelLike, Params
from stability.sensitivity.batching import as_generator, batch_output_fn, check_chunk_size, prepare


@dataclass(frozen=True)
class NoiseResult:
    """A per-sample Monte Carlo mean over noisy copies, with its standard error.

    Attributes:
        values: ``(B,)`` means over the ``S`` noisy copies of each sample.
        stderr: ``(B,)`` sample standard deviation over copies / ``√S``.
        sigma: the noise scale.
        num_samples: ``S``.
    """

    values: Tensor
    stderr: Tensor
    sigma: float
    num_samples: int


def noise_sensitivity(
    model: ModelLike,
    params: Params | None,
    x: Tensor,
    *,
    sigma: float,
    num_samples: int = 32,
    output: str = "logits",
    generator: torch.Generator | int = 0,
    chunk_size: int | None = None,
) -> NoiseResult:
    """``E_ε ‖f(x_i + σ ε) − f(x_i)‖ / σ`` per sample, ``ε ~ N(0, I)``, by ``S = num_samples`` draws.

    Returns a :class:`NoiseResult` of ``(B,)`` means and standard errors. Cost: ``S + 1`` forward passes
    of the batch (no derivatives). For a linear model ``f(x) = W x + b`` the value is ``E‖W ε‖`` for every
    ``x`` and ``σ``.
    """
    fm, params, x, _ = prepare(model, params, x, output)
    f = batch_output_fn(fm, params, output)
    sigma = _check_sigma(sigma)

    def stat(clean: Tensor, noisy: Tensor) -> Tensor:
        return (noisy - clean).norm(dim=-1) / sigma

    draws = _per_draw(f, x, sigma, num_samples, generator, chunk_size, stat)
    return _mean_with_stderr(draws, sigma)


def prediction_stability(
    model: ModelLike,
    params: Params | None,
    x: Tensor,
    *,
    sigma: float,
    num_samples: int = 32,
    generator: torch.Generator | int = 0,
    chunk_size: int | None = None,
) -> NoiseResult:
    """Fraction of ``S`` noisy copies ``x_i + σ ε`` whose arg-max output equals the clean arg-max, per sample.

    Returns a :class:`NoiseResult` (the standard error of a fraction ``p`` is
    ``√(p (1 − p) / (S − 1))``). Ties in the arg-max resolve as ``torch.argmax`` does. Cost: ``S + 1``
    forward passes of the batch.
    """
    fm, params, x, _ = prepare(model, params, x, "logits")
    f = batch_output_fn(fm, params, "logits")
    sigma = _check_sigma(sigma)

    def stat(clean: Tensor, noisy: Tensor) -> Tensor:
        return (noisy.argmax(-1) == clean.argmax(-1)).to(x.dtype)

    draws = _per_draw(f, x, sigma, num_samples, generator, chunk_size, stat)
    return _mean_with_stderr(draws, sigma)


def _per_draw(
    f: Callable[[Tensor], Tensor],
    x: Tensor,
    sigma: float,
    num_samples: int,
    generator: torch.Generator | int,
    chunk_size: int | None,
    stat: Callable[[Tensor, Tensor], Tensor],
) -> Tensor:
    """``stat(f(x), f(x + σ ε_s))`` for ``s = 1..S``, stacked to ``(S, B)``."""
    if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 2:
        raise BadInputError(
            f"num_samples must be an integer of at least 2 (for a standard error), got {num_samples!r}"
        )
    check_chunk_size(chunk_size)
    gen = as_generator(generator, x.device)
    B = x.shape[0]
    chunk = num_samples if chunk_size is None else min(chunk_size, num_samples)
    out = []
    with torch.no_grad():
        clean = f(x)
        for start in range(0, num_samples, chunk):
            n = min(chunk, num_samples - start)
            eps = torch.stack(
                [torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype) for _ in range(n)]
            )
            noisy = f((x + sigma * eps).reshape(n * B, *x.shape[1:])).reshape(n, B, -1)
            out.append(stat(clean, noisy))
    return torch.cat(out)


def _mean_with_stderr(draws: Tensor, sigma: float) -> NoiseResult:
    S = draws.shape[0]
    return NoiseResult(draws.mean(0), draws.std(0) / math.sqrt(S), sigma, S)


def _check_sigma(sigma: float) -> float:
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not (0 < sigma < math.inf):
        raise BadInputError(f"sigma must be a positive finite number, got {sigma!r}")
    return float(sigma)
