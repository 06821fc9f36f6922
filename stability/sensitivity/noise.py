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

from stability.checks import as_generator, check_chunk_size, check_count, check_positive
from stability.functional import ModelLike, Params
from stability.sensitivity.batching import batch_output_fn, prepare


@dataclass(frozen=True)
class NoiseResult:
    """A per-sample Monte Carlo mean over noisy copies, with its standard error.

    Attributes:
        values: ``(B,)`` means over the ``S`` noisy copies of each sample.
        stderr: ``(B,)`` sample standard deviation over copies / ``√S``.
        sigma: the noise scale.
        num_probes: ``S``, the number of noisy copies per sample.
    """

    values: Tensor
    stderr: Tensor
    sigma: float
    num_probes: int


def noise_sensitivity(
    model: ModelLike,
    x: Tensor,
    *,
    sigma: float,
    params: Params | None = None,
    num_probes: int = 32,
    output: str = "logits",
    generator: torch.Generator | int = 0,
    chunk_size: int | None = None,
) -> NoiseResult:
    """``E_ε ‖f(x_i + σ ε) − f(x_i)‖ / σ`` per sample, ``ε ~ N(0, I)``, by ``S = num_probes`` draws.

    Returns a :class:`NoiseResult` of ``(B,)`` means and standard errors. Cost: ``S + 1`` forward passes
    of the batch (no derivatives). For a linear model ``f(x) = W x + b`` the value is ``E‖W ε‖`` for every
    ``x`` and ``σ``.
    """
    fm, params, x, _ = prepare(model, x, params, output)
    f = batch_output_fn(fm, params, output)
    sigma = check_positive("sigma", sigma)

    def stat(clean: Tensor, noisy: Tensor) -> Tensor:
        return (noisy - clean).norm(dim=-1) / sigma

    draws = _per_draw(f, x, sigma, num_probes, generator, chunk_size, stat)
    return _mean_with_stderr(draws, sigma)


def prediction_stability(
    model: ModelLike,
    x: Tensor,
    *,
    sigma: float,
    params: Params | None = None,
    num_probes: int = 32,
    generator: torch.Generator | int = 0,
    chunk_size: int | None = None,
) -> NoiseResult:
    """Fraction of ``S`` noisy copies ``x_i + σ ε`` whose arg-max output equals the clean arg-max, per sample.

    Returns a :class:`NoiseResult` (the standard error of a fraction ``p`` is
    ``√(p (1 − p) / (S − 1))``). Ties in the arg-max resolve as ``torch.argmax`` does. Cost: ``S + 1``
    forward passes of the batch.
    """
    fm, params, x, _ = prepare(model, x, params, "logits")
    f = batch_output_fn(fm, params, "logits")
    sigma = check_positive("sigma", sigma)

    def stat(clean: Tensor, noisy: Tensor) -> Tensor:
        return (noisy.argmax(-1) == clean.argmax(-1)).to(x.dtype)

    draws = _per_draw(f, x, sigma, num_probes, generator, chunk_size, stat)
    return _mean_with_stderr(draws, sigma)


def _per_draw(
    f: Callable[[Tensor], Tensor],
    x: Tensor,
    sigma: float,
    num_probes: int,
    generator: torch.Generator | int,
    chunk_size: int | None,
    stat: Callable[[Tensor, Tensor], Tensor],
) -> Tensor:
    """``stat(f(x), f(x + σ ε_s))`` for ``s = 1..S``, stacked to ``(S, B)``."""
    S = check_count("num_probes", num_probes, 2, "for a standard error")
    check_chunk_size(chunk_size)
    gen = as_generator(generator, x.device)
    B = x.shape[0]
    chunk = S if chunk_size is None else min(chunk_size, S)
    out = []
    with torch.no_grad():
        clean = f(x)
        for start in range(0, S, chunk):
            n = min(chunk, S - start)
            eps = torch.stack(
                [torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype) for _ in range(n)]
            )
            noisy = f((x + sigma * eps).reshape(n * B, *x.shape[1:])).reshape(n, B, -1)
            out.append(stat(clean, noisy))
    return torch.cat(out)


def _mean_with_stderr(draws: Tensor, sigma: float) -> NoiseResult:
    S = draws.shape[0]
    return NoiseResult(draws.mean(0), draws.std(0) / math.sqrt(S), sigma, S)

