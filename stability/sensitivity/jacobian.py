"""Input sensitivity of a trained network, per sample: how much its output moves when its input does.

Notation, for one sample ``x`` of shape ``input_shape`` (``D`` entries) and the model output ``f(x)`` of
``C`` entries (logits, or their softmax with ``output="softmax"``; outputs with more than one axis are
flattened): the input Jacobian ``J(x) = ∂f(x)/∂x`` is ``C x D``. Every measure is called as
``measure(model, x, *, params=None, ...)``: ``model`` a plain ``nn.Module`` (functionalized on the fly
with its parameters cast to ``x.dtype``) or a :class:`~stability.functional.FunctionalModel`, a batch
``x: (B, *input_shape)``, the parameters to evaluate at (``None``: the model's own) and keyword
options; it returns one value per sample, ``(B,)``, or a frozen dataclass of such tensors that carries
its own error evidence.

Per-sample derivatives are taken of ``model.single`` and batched over samples with ``vmap``, so the
result never relies on the samples of a batch being independent; ``chunk_size`` bounds the number of
samples ``vmap`` processes at once (memory), and ``vectorize=False`` replaces ``vmap`` by a loop over
samples for modules ``vmap`` cannot batch (``.item()``, branches on values, in-place writes into
tensors that do not carry the batch axis). Cost is stated in per-sample JVPs (forward-mode products
``J v``) and VJPs (reverse-mode products ``u^T J``), each about one to three forward passes.

Randomness comes only from the ``generator`` argument: a ``torch.Generator`` on ``x.device``, or an
integer seed for a fresh one; the default seed 0 makes every call a deterministic function of its inputs.

Finite-noise measures (:func:`noise_sensitivity`, :func:`prediction_stability`) and :func:`summarize`
live in :mod:`stability.sensitivity.noise` and are re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.func import jacfwd, jvp, vjp, vmap

from stability.checks import (
    as_generator,
    check_choice,
    check_chunk_size,
    check_count,
    check_positive,
    check_positive_int,
)
from stability.errors import BadInputError
from stability.functional import ModelLike, Params
from stability.sensitivity.batching import prepare, single_output_fn, vmapped

_METHODS = ("auto", "jacrev", "jacfwd")


def input_jacobian(
    model: ModelLike,
    x: Tensor,
    *,
    params: Params | None = None,
    output: str = "logits",
    method: str = "auto",
    chunk_size: int | None = None,
    vjp_chunk_size: int | str | None = "auto",
    vectorize: bool = True,
) -> Tensor:
    """Per-sample input Jacobians ``J(x_i) = ∂f(x_i)/∂x_i``, shape ``(B, C, *input_shape)``.

    ``vmap`` over samples of either ``C`` VJPs ``e_cᵀ J`` (reverse mode, ``method="jacrev"``) or ``D``
    JVPs ``J e_d`` (forward mode, ``"jacfwd"``); ``"auto"`` takes the smaller count: reverse mode for
    classifiers (``C <= D``), forward mode when outputs outnumber inputs.

    ``chunk_size`` bounds the samples batched at once; ``vjp_chunk_size`` (reverse mode only) the rows
    each sample computes together. 1 runs the ``C`` backward passes one after another, each over the
    whole chunk of samples, and on CPU took the time of ``C`` hand-batched ``autograd.grad`` calls;
    ``None`` (all rows at once, a second ``vmap`` over cotangents) was up to 1.4x slower on a ConvNet on
    CPU, slightly faster on a small MLP (``docs/performance.md``), and holds ``C`` times the backward
    activations. ``"auto"`` (the default) is 1 on CPU and ``None`` on other devices, where one launch
    per layer for all rows beats ``C`` launches of small kernels (``benchmarks/bench_gpu.py`` measures
    both). Memory: ``O(chunk · C · D)`` for the result plus the activations of ``chunk · vjp_chunk_size``
    backward passes.
    """
    fm, params, x, C = prepare(model, x, params, output)
    check_choice("method", method, _METHODS)
    check_chunk_size(chunk_size)
    vjp_chunk_size = _rows_at_once(vjp_chunk_size, x.device)
    D = x[0].numel()
    if method == "auto":
        method = "jacrev" if C <= D else "jacfwd"
    g = single_output_fn(fm, params, output)
    jac = _jacrev_rows(g, C, vjp_chunk_size, x) if method == "jacrev" else jacfwd(g)
    J = vmapped(jac, (x,), chunk_size=chunk_size, vectorize=vectorize)
    return J.reshape(x.shape[0], C, *x.shape[1:])


def _rows_at_once(vjp_chunk_size: object, device: torch.device) -> int | None:
    """``vjp_chunk_size`` checked, with ``"auto"`` resolved for ``device`` (1 on CPU, all rows elsewhere)."""
    if vjp_chunk_size == "auto":
        return 1 if device.type == "cpu" else None
    return check_chunk_size(vjp_chunk_size, "vjp_chunk_size")


def _jacrev_rows(
    g: Callable[[Tensor], Tensor], C: int, rows_at_once: int | None, like: Tensor
) -> Callable[[Tensor], Tensor]:
    """``x_i -> J(x_i)`` as ``C`` VJPs with the unit rows ``e_c``, ``rows_at_once`` of them under ``vmap``.

    Unlike ``jacrev(g, chunk_size=1)``, which still wraps every single row in a ``vmap`` level, a chunk of
    one calls the pullback directly with an unbatched ``e_c``; under the outer ``vmap`` over samples
    each backward pass then runs on plain batched tensors, as a hand-written ``autograd.grad`` would
    (for a small MLP on CPU, about 1.4x faster than ``jacrev(g, chunk_size=1)``).
    """
    eye = torch.eye(C, dtype=like.dtype, device=like.device)
    step = C if rows_at_once is None else rows_at_once

    def jac(xi: Tensor) -> Tensor:
        _, pull = vjp(g, xi)
        if step == 1:
            return torch.stack([pull(eye[c])[0] for c in range(C)])
        return torch.cat([vmap(pull)(eye[c : c + step])[0] for c in range(0, C, step)])

    return jac


def jacobian_frobenius(
    model: ModelLike,
    x: Tensor,
    *,
    params: Params | None = None,
    output: str = "logits",
    method: str = "auto",
    chunk_size: int | None = None,
    vjp_chunk_size: int | str | None = "auto",
    vectorize: bool = True,
) -> Tensor:
    """``‖J(x_i)‖_F = (Σ_{c,d} J_cd²)^{1/2}`` per sample, ``(B,)`` (Novak et al. 2018).

    Exact, from the full Jacobian (:func:`input_jacobian`: ``min(C, D)`` products per sample). For
    models with many outputs use :func:`jacobian_frobenius_estimate`.
    """
    J = input_jacobian(
        model, x, params=params, output=output, method=method, chunk_size=chunk_size,
        vjp_chunk_size=vjp_chunk_size, vectorize=vectorize,
    )  # fmt: skip
    return J.flatten(1).norm(dim=1)


@dataclass(frozen=True)
class SpectralNormResult:
    """Per-sample spectral norms ``‖J(x_i)‖_2``, exact or by power iteration, with the evidence.

    Attributes:
        values: ``(B,)`` spectral norms: exact singular values (``method="exact"``), or estimates
            ``σ_i = ‖J v_i‖`` (power iteration: a lower bound on the exact value for any unit ``v_i``; the
            Rayleigh quotient's error is second order in the residual).
        vectors: ``(B, *input_shape)`` unit top right singular vectors ``v_i`` (estimates, for power).
        residuals: ``(B,)`` relative eigen-residuals ``‖Jᵀ J v − σ² v‖ / σ²`` (0 where ``J v = 0``); for the
            exact method computed from ``J`` itself, i.e. rounding error.
        converged: ``(B,)`` bool, ``residuals <= tol`` (all true for the exact method).
        iterations: power iterations run (all samples advance together); 0 for the exact method.
        method: ``exact`` (the ``C``-row Jacobian and a batched eigendecomposition of ``J Jᵀ``) or ``power``.
    """

    values: Tensor
    vectors: Tensor
    residuals: Tensor
    converged: Tensor
    iterations: int
    method: str = "power"


_SPECTRAL_METHODS = ("auto", "exact", "power")
EXACT_MAX_OUTPUTS = 64  # "auto" forms the Jacobian up to this many outputs, and runs power iteration above


def jacobian_spectral(
    model: ModelLike,
    x: Tensor,
    *,
    params: Params | None = None,
    output: str = "logits",
    method: str = "auto",
    iters: int = 100,
    tol: float = 1e-4,
    generator: torch.Generator | int = 0,
    chunk_size: int | None = None,
    vjp_chunk_size: int | str | None = "auto",
    vectorize: bool = True,
) -> SpectralNormResult:
    """``‖J(x_i)‖_2 = σ_max(J(x_i))`` per sample: exact from the ``C``-row Jacobian, or by power iteration.

    ``method="exact"``: ``J(x_i)`` by :func:`input_jacobian` (``min(C, D)`` products per sample) and
    ``σ_max`` with its right singular vector from one batched symmetric eigendecomposition of
    ``J Jᵀ`` (``O(B C² D)`` flops, ``O(B C D)`` memory). ``method="power"``: power iteration on ``Jᵀ J``, never
    forming ``J``: from ``v_0 ~ N(0, I)`` (input-shaped, drawn from ``generator``), each step computes per
    sample ``u = J v`` (one JVP) and ``w = Jᵀ u`` (one VJP), all samples at once under ``vmap``; then
    ``σ² = ‖u‖²`` (the Rayleigh quotient of the unit ``v``), the residual ``‖w − σ² v‖ / σ²``, and
    ``v <- w / ‖w‖``. It stops when every residual is at most ``tol`` or after ``iters`` steps. The
    residual shrinks like ``(σ_2/σ_1)^{2k}``; a small residual bounds the distance of ``σ²`` to *an*
    eigenvalue of ``Jᵀ J``, which is the top one for a random start with probability one. ``"auto"``
    (default) is exact for ``C ≤ 64`` outputs (:data:`EXACT_MAX_OUTPUTS`): ten rows cost ten VJPs, where
    power iteration spends two products per step for up to ``iters`` steps and stops short of the
    exact value (``docs/performance.md``). ``iters``, ``tol`` and ``generator`` apply to power
    iteration; ``vjp_chunk_size`` to the exact method (see :func:`input_jacobian`).

    Cost (power): ``iters`` x (1 JVP + 1 VJP) per sample at most. Memory: ``O(chunk · D)`` plus one
    forward and one backward pass over ``chunk`` samples.
    """
    fm, params, x, C = prepare(model, x, params, output)
    check_choice("method", method, _SPECTRAL_METHODS)
    check_positive_int("iters", iters)
    check_positive("tol", tol)
    check_chunk_size(chunk_size)
    gen = as_generator(generator, x.device)
    if method == "exact" or (method == "auto" and C <= EXACT_MAX_OUTPUTS):
        J = input_jacobian(fm, x, params=params, output=output, chunk_size=chunk_size,
                           vjp_chunk_size=vjp_chunk_size, vectorize=vectorize).flatten(2)  # fmt: skip
        return _exact_spectral(J, x.shape)
    g = single_output_fn(fm, params, output)

    def step(xi: Tensor, vi: Tensor) -> tuple[Tensor, Tensor]:
        _, u = jvp(g, (xi,), (vi,))
        _, pull = vjp(g, xi)
        return u, pull(u)[0]

    B = x.shape[0]
    v = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
    v = v / v.flatten(1).norm(dim=1).view(B, *[1] * (x.dim() - 1))
    for k in range(1, iters + 1):
        u, w = vmapped(step, (x, v), chunk_size=chunk_size, vectorize=vectorize)
        sq = u.flatten(1).pow(2).sum(1)
        gap = (w - sq.view(B, *[1] * (x.dim() - 1)) * v).flatten(1).norm(dim=1)
        # From a random start, J v = 0 means J = 0 (almost surely): σ = 0 is then exact, residual 0,
        # and w = 0 leaves v where it is.
        residuals = _relative(gap, sq)
        if bool((residuals <= tol).all()) or k == iters:
            break
        wn = w.flatten(1).norm(dim=1).view(B, *[1] * (x.dim() - 1))
        v = torch.where(wn > 0, w / wn.clamp_min(torch.finfo(x.dtype).tiny), v)
    return SpectralNormResult(
        values=sq.sqrt(), vectors=v, residuals=residuals, converged=residuals <= tol, iterations=k
    )


def _relative(gap: Tensor, sq: Tensor) -> Tensor:
    """``gap / sq`` where ``sq > 0``, else 0."""
    return torch.where(sq > 0, gap / sq.clamp_min(torch.finfo(sq.dtype).tiny), torch.zeros_like(sq))


def _exact_spectral(J: Tensor, shape: torch.Size) -> SpectralNormResult:
    """``σ_max`` and the top right singular vector of each ``J: (B, C, D)``.

    From the smaller Gram matrix: ``J Jᵀ`` (``C ≤ D``, then ``v = Jᵀ u / σ`` for its top eigenvector ``u``)
    or ``Jᵀ J``; one batched ``eigh`` of ``min(C, D)``-square matrices, ``σ_max² = λ_max`` to rounding
    relative to ``σ_max²`` (what matters for the largest singular value), and several times cheaper than a
    batched SVD of ``J`` on CPU.
    """
    B, C, D = J.shape
    if C <= D:
        lam, U = torch.linalg.eigh(J @ J.mT)
        sq = lam[:, -1].clamp_min(0)
        sigma = sq.sqrt()
        w = torch.einsum("bcd,bc->bd", J, U[:, :, -1])
        wn = w.norm(dim=1, keepdim=True)
        unit = torch.zeros_like(w)
        unit[:, 0] = 1  # J = 0: every unit vector is a top singular vector
        v = torch.where(wn > 0, w / wn.clamp_min(torch.finfo(J.dtype).tiny), unit)
    else:
        lam, V = torch.linalg.eigh(J.mT @ J)
        sq = lam[:, -1].clamp_min(0)
        sigma, v = sq.sqrt(), V[:, :, -1]
    gap = (torch.einsum("bcd,bc->bd", J, torch.einsum("bcd,bd->bc", J, v)) - sq[:, None] * v).norm(dim=1)
    residuals = _relative(gap, sq)
    return SpectralNormResult(values=sigma, vectors=v.reshape(shape), residuals=residuals,
                              converged=torch.ones_like(sigma, dtype=torch.bool), iterations=0, method="exact")


def directional_derivative(
    model: ModelLike,
    x: Tensor,
    *,
    direction: Tensor | None = None,
    params: Params | None = None,
    output: str = "logits",
    chunk_size: int | None = None,
    vectorize: bool = True,
) -> Tensor:
    """Per-sample ``J(x_i) v_i``, ``(B, C)``: the change of the output along ``v_i`` (default ``v_i = x_i``).

    Entry ``c`` is ``v_iᵀ ∇_x f_c(x_i)``. Cost: one JVP per sample.
    """
    fm, params, x, C = prepare(model, x, params, output)
    check_chunk_size(chunk_size)
    v = x if direction is None else direction
    if not isinstance(v, Tensor) or v.shape != x.shape or v.dtype != x.dtype or v.device != x.device:
        raise BadInputError(
            f"direction must be a tensor shaped like x {tuple(x.shape)} with its dtype and device, got "
            f"{tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__}"
        )
    g = single_output_fn(fm, params, output)

    def one(xi: Tensor, vi: Tensor) -> Tensor:
        return jvp(g, (xi,), (vi,))[1]

    return vmapped(one, (x, v), chunk_size=chunk_size, vectorize=vectorize).reshape(x.shape[0], C)


def data_direction(
    model: ModelLike,
    x: Tensor,
    *,
    params: Params | None = None,
    output: str = "logits",
    chunk_size: int | None = None,
    vectorize: bool = True,
) -> Tensor:
    """The data-direction term ``‖J(x_i) x_i‖`` per sample, ``(B,)``.

    For one output this is ``|x_iᵀ ∇_x f(x_i)|`` (docs/theory.md §2); for ``C`` outputs it is the
    Euclidean norm of the vector of those terms, ``(Σ_c (x_iᵀ ∇_x f_c(x_i))²)^{1/2}``. If the first layer
    is linear, ``z = W vec(x) + b``, then ``x_iᵀ ∇_x f_c = <W, ∇_W f_c>`` for every class, so this is
    also the norm of the per-class first-layer weight-gradient projections onto ``W``. The signed
    per-class terms are :func:`directional_derivative` with its default direction. Cost: one JVP per
    sample.
    """
    return directional_derivative(
        model, x, params=params, output=output, chunk_size=chunk_size, vectorize=vectorize
    ).norm(dim=1)


@dataclass(frozen=True)
class FrobeniusEstimate:
    """Random-projection estimate of ``‖J(x_i)‖_F`` per sample.

    Attributes:
        squared: ``(B,)`` unbiased estimates of ``‖J‖_F²`` (mean over probes of ``‖Jᵀ u‖²``).
        squared_stderr: ``(B,)`` their standard errors (probe standard deviation / ``√k``).
        values: ``(B,)`` ``√squared``, the estimate of ``‖J‖_F`` (biased low by ``O(1/k)``).
        stderr: ``(B,)`` delta-method standard errors of ``values``: ``squared_stderr / (2 values)``.
        num_probes: ``k``.
    """

    squared: Tensor
    squared_stderr: Tensor
    values: Tensor
    stderr: Tensor
    num_probes: int


_PROBES = ("rademacher", "gaussian")


def jacobian_frobenius_estimate(
    model: ModelLike,
    x: Tensor,
    *,
    params: Params | None = None,
    num_probes: int = 16,
    probes: str = "rademacher",
    output: str = "logits",
    generator: torch.Generator | int = 0,
    chunk_size: int | None = None,
    vectorize: bool = True,
) -> FrobeniusEstimate:
    """Hutchinson's estimate of ``‖J(x_i)‖_F²`` from ``k`` output-space probes, for models with many outputs.

    ``‖J‖_F² = tr(J Jᵀ) = E_u ‖Jᵀ u‖²`` for any ``u ∈ R^C`` with ``E[u uᵀ] = I``: Rademacher entries
    (``±1``, variance ``2 Σ_{c≠c'} (J Jᵀ)_{cc'}²`` per probe, the default) or standard Gaussian
    (variance ``2 ‖J Jᵀ‖_F²``). Probes ``(B, k, C)`` are drawn from ``generator``, independently per
    sample. Cost: ``k`` VJPs per sample sharing one forward pass, run one after another (each batched
    over samples); ``J`` is never formed.
    """
    fm, params, x, C = prepare(model, x, params, output)
    check_count("num_probes", num_probes, 2, "for a standard error")
    check_choice("probes", probes, _PROBES)
    check_chunk_size(chunk_size)
    gen = as_generator(generator, x.device)
    B = x.shape[0]
    if probes == "rademacher":
        U = torch.randint(0, 2, (B, num_probes, C), generator=gen, device=x.device).to(x.dtype) * 2 - 1
    else:
        U = torch.randn((B, num_probes, C), generator=gen, device=x.device, dtype=x.dtype)
    g = single_output_fn(fm, params, output)

    def one(xi: Tensor, Ui: Tensor) -> Tensor:
        _, pull = vjp(g, xi)
        # One probe after another, each batched over samples: as for input_jacobian, this beat a vmap
        # over probes on CPU and keeps one backward pass's activations alive at a time.
        return torch.stack([pull(Ui[j])[0].pow(2).sum() for j in range(num_probes)])

    s = vmapped(one, (x, U), chunk_size=chunk_size, vectorize=vectorize)  # (B, k)
    squared = s.mean(1)
    squared_stderr = s.std(1) / num_probes**0.5
    values = squared.sqrt()
    stderr = torch.where(values > 0, squared_stderr / (2 * values.clamp_min(torch.finfo(x.dtype).tiny)), 0.0)
    return FrobeniusEstimate(squared, squared_stderr, values, stderr, num_probes)
