"""How far the fixed point of gradient descent moves when a training input moves: ``dθ*/dx_i`` per sample.

A minimum ``θ*`` of ``L(θ; X) = (1/n) Σ_j ℓ(f(θ, x_j), y_j)`` satisfies ``∇_θ L(θ*; X) = 0``. Moving ``x_i``
and differentiating that equation (implicit function theorem) gives ``H dθ* = −(∂∇_θ L/∂x_i) dx_i``, so

    dθ*/dx_i = −H⁺ M_i,     M_i = ∂∇_θ L/∂x_i = (1/n) [ J_θᵀ Λ_i J_x + Σ_c r_{i,c} ∂_x ∇_θ f_c ]   (D × d),

with ``J_θ = ∂f(x_i)/∂θ`` (``C × D``), ``J_x = ∂f(x_i)/∂x_i`` (``C × d``), ``Λ_i = ∇²_f ℓ_i`` and ``r_i = ∇_f ℓ_i``
from the loss registry. For MSE at interpolation (``r_i = 0``, ``H = (1/n) Σ_j J_jᵀ J_j``) and a scalar model
it is ``−(1/n) H⁺ g_i ∇_x f(x_i)ᵀ`` (``proofs/fixed_point_displacement.py``). ``H⁺`` is the pseudo-inverse:
along a valley of minima (``H v = 0``) the fixed point is not unique, and ``H⁺`` gives the smallest move that
keeps ``∇L = 0`` to first order, the one orthogonal to the valley.

The one-step sensitivity ``∂G/∂x_i = −η M_i`` of :mod:`stability.sensitivity.one_step` shares ``M_i``:
``dθ*/dx_i = (1/η) H⁺ ∂G/∂x_i``. The two rank points differently. ``H⁺`` is small where the curvature is
large, so a sharp minimum moves *less* per unit change of its inputs while one GD step there moves *more*;
``dθ*/dx_i`` does not depend on ``η`` (toy T1 in docs/theory.md §3 shows both rankings).

``H⁺ b`` is computed matrix-free by MINRES (Paige & Saunders 1975) on Hessian-vector products, every
right-hand side of a block at once (``op @ V``): started at 0, its iterates lie in the Krylov space of
``b``, which for ``b`` in ``range(H)`` lies in ``range(H)``, so it converges to ``H⁺ b`` — MINRES on ``H``
restricted to its range, the null space never entered. ``M_i`` lies in ``range(H)`` at an interpolating MSE
minimum; elsewhere it may not, the system is then inconsistent, and the reported relative residual
``‖H X − B‖/‖B‖`` stays large: the solve then gives the least-squares move, and says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import grad, jacfwd, vmap

from stability.checks import check_choice, check_optional_positive_int, check_positive, check_positive_int
from stability.curvature.operators import SymmetricOperator, apply_block, as_operator
from stability.curvature.products import CurvatureOperator, seeded_subset
from stability.errors import BadInputError
from stability.functional import FunctionalModel, Params, flatten
from stability.sensitivity.one_step import _eigh, _gram, _jacobians, _prepare, _psd_sqrt
from stability.serialize import omitted


@dataclass(frozen=True)
class MinresResult:
    """``X ≈ A⁺ B`` for a block of right-hand sides ``B: (D, k)``, with the evidence.

    Attributes: ``solution (D, k)``; ``residuals (k,)``, the solve's accuracy ``‖A x_j − P b_j‖ / ‖P b_j‖``
    with ``P b_j`` the part of ``b_j`` in ``range(A)`` (``b_j`` itself without ``project``); ``outside (k,)``,
    the share of ``b_j`` outside ``range(A)``, ``‖A x_j − b_j‖ / ‖b_j‖`` (recomputed: 0 for a consistent
    system); ``iterations`` (steps of the longest solve); ``num_products`` (columns times steps, plus the
    checks); ``converged`` per column, its stopping test met in every solve.
    """

    solution: Tensor
    residuals: Tensor
    outside: Tensor
    iterations: int
    num_products: int
    converged: Tensor


def _minres(op: SymmetricOperator, B: Tensor, tol: float, max_iter: int) -> tuple[Tensor, Tensor, int]:
    """Plain MINRES from 0 on every column of ``B`` at once: ``(X, converged (k,), steps)``."""
    k = B.shape[1]
    tiny = torch.finfo(B.dtype).eps
    small = tiny**0.5
    beta1 = B.norm(dim=0)
    zeros = torch.zeros(k, dtype=B.dtype, device=B.device)
    done = beta1 <= 0
    x, w, w2 = torch.zeros_like(B), torch.zeros_like(B), torch.zeros_like(B)
    r1, r2, y = B.clone(), B.clone(), B.clone()
    beta, oldb, dbar, epsln = torch.where(done, torch.ones_like(beta1), beta1), zeros, zeros, zeros
    cs, sn, tnorm2, phibar = -torch.ones_like(beta1), zeros, zeros, beta1
    steps = 0
    while steps < max_iter and not bool(done.all()):
        steps += 1
        v = y / beta
        y = apply_block(op, v)
        if steps >= 2:
            y = y - (beta / oldb) * r1
        alfa = (v * y).sum(0)
        y = y - (alfa / beta) * r2
        r1, r2 = r2, y
        oldb, beta = beta, y.norm(dim=0)
        tnorm2 = tnorm2 + alfa**2 + oldb**2 + beta**2
        a_norm = tnorm2.sqrt()
        oldeps, delta = epsln, cs * dbar + sn * alfa
        gbar, epsln, dbar = sn * dbar - cs * alfa, sn * beta, -cs * beta
        root = torch.sqrt(gbar**2 + dbar**2)
        gamma = torch.sqrt(gbar**2 + beta**2).clamp_min(tiny)
        cs, sn = gbar / gamma, beta / gamma
        phi, phibar = cs * phibar, sn * phibar
        w1, w2 = w2, w
        w = (v - oldeps * w1 - delta * w2) / gamma
        # a (numerically) singular rotation: the Krylov space holds no more of the range; skip the step and stop
        singular = gamma <= small * a_norm
        x = x + torch.where((done | singular)[None, :], torch.zeros_like(w), phi * w)
        exhausted = singular | (beta <= small * a_norm)  # the Krylov space is (numerically) invariant
        done = done | (phibar <= tol * beta1) | (root <= tol * a_norm) | exhausted
        beta = torch.where(exhausted, torch.ones_like(beta), beta)
    return x, done, steps


def minres(op: SymmetricOperator | Tensor, B: Tensor, *, tol: float = 1e-6, max_iter: int = 200,
           project: bool = True) -> MinresResult:  # fmt: skip
    """``A⁺ B`` by MINRES on a symmetric operator (or dense matrix), every column of ``B: (D, k)`` at once
    (``op @ V`` per step).

    Each column runs its own Lanczos recurrence and Givens rotations (Paige & Saunders 1975, no
    preconditioner) and stops when its residual estimate is below ``tol · ‖b‖``, when least squares is reached
    (``‖A r‖ ≤ tol · ‖A‖ · ‖r‖``) or when its Krylov space is exhausted. Started at 0, the iterates lie in
    ``span{b, A b, ...}``; for ``b ∈ range(A)`` that lies in ``range(A)`` and MINRES converges to ``A⁺ b``. A
    ``b`` with a null-space part makes the system inconsistent, where MINRES in floating point drifts (the
    reason for MINRES-QLP, Choi, Paige & Saunders 2011). With ``project``, each ``b`` is therefore first
    replaced by its part in the range, ``P b = A⁺(A b)``, itself the solution of the consistent system
    ``A p = A b``: MINRES on ``A`` restricted to its range. Cost: ``k`` products per step, at most
    ``max_iter`` steps per solve (two solves with ``project``), plus ``2k`` products for ``A B`` and the check.
    """
    op = as_operator(op)
    tol = check_positive("tol", tol)
    max_iter = check_positive_int("max_iter", max_iter)
    if B.ndim != 2 or B.shape[0] != op.dim:
        raise BadInputError(f"right-hand sides have shape {tuple(B.shape)}, expected ({op.dim}, k)")
    B = B.to(device=op.device, dtype=op.dtype)
    k, tiny = B.shape[1], torch.finfo(B.dtype).eps
    rhs, ok, steps, products = B, torch.ones(k, dtype=torch.bool, device=B.device), 0, 0
    if project:
        rhs, ok, steps = _minres(op, apply_block(op, B), tol, max_iter)
        products += k * (steps + 1)
    x, done, more = _minres(op, rhs, tol, max_iter)
    ax = apply_block(op, x)
    products += k * (more + 1)
    accuracy = (ax - rhs).norm(dim=0) / rhs.norm(dim=0).clamp_min(tiny)
    outside = (ax - B).norm(dim=0) / B.norm(dim=0).clamp_min(tiny)
    return MinresResult(x, accuracy, outside, max(steps, more), products, ok & done)


@dataclass(frozen=True)
class FixedPointDisplacement:
    """Per-sample ``‖dθ*/dx_i‖`` (module docstring) beside the one-step ``‖∂G/∂x_i‖``, each ``(m,)`` over the
    evaluated samples ``indices``.

    Attributes:
        n: the samples the training loss averages over (the ``1/n`` of ``M_i``).
        indices: ``(m,)`` the evaluated training samples (all ``n`` unless ``samples`` was given).
        displacement_fro, displacement_spectral: ``‖H⁺ M_i‖`` (Frobenius, spectral).
        lr: the step size of the one-step columns (``None``: not computed).
        one_step_fro, one_step_spectral: ``‖∂G/∂x_i‖ = η ‖M_i‖`` on the same samples and the same ``M_i``.
        residual: ``‖∇_f ℓ_i‖`` per sample; ``M_i`` has a term proportional to it.
        includes_residual_term: whether ``M_i`` includes ``Σ_c r_{i,c} ∂_x ∇_θ f_c`` (``exact``) or is its
            Gauss-Newton part ``(1/n) J_θᵀ Λ_i J_x`` alone (exact at interpolation).
        solve_residuals: ``(m,)`` the largest relative residual of the sample's solves (:class:`MinresResult`).
        outside_range: ``(m,)`` the largest share of a column of ``M_i`` outside ``range(H)`` (0 at an
            interpolating MSE minimum; where it is not, no move keeps ``∇L = 0`` and ``H⁺`` gives the
            least-squares move).
        iterations, num_hvps, converged: MINRES's steps (largest block), products spent, and whether every
            solve reached ``tol``.
        curvature, method: the matrix inverted (``hessian`` or ``ggn``) and the solver (``minres``).
        assumptions, note: ``loss_is_mse``, ``at_interpolation`` and what the numbers then mean.
    """

    n: int
    indices: Tensor = omitted()
    displacement_fro: Tensor = omitted()
    displacement_spectral: Tensor = omitted()
    lr: float | None = None
    one_step_fro: Tensor | None = omitted(default=None)
    one_step_spectral: Tensor | None = omitted(default=None)
    residual: Tensor = omitted(default=None)
    includes_residual_term: bool = False
    solve_residuals: Tensor = omitted(default=None)
    outside_range: Tensor = omitted(default=None)
    iterations: int = 0
    num_hvps: int = 0
    converged: bool = True
    curvature: str = "hessian"
    method: str = "minres"
    assumptions: dict[str, bool] | None = None
    note: str = ""

    __json_properties__ = ("num_evaluated", "max_solve_residual", "max_outside_range")

    @property
    def num_evaluated(self) -> int:
        return int(self.indices.numel())

    @property
    def max_solve_residual(self) -> float:
        return float(self.solve_residuals.max()) if self.solve_residuals.numel() else 0.0

    @property
    def max_outside_range(self) -> float:
        return float(self.outside_range.max()) if self.outside_range.numel() else 0.0


def _norms(X: Tensor, jx: Tensor) -> tuple[Tensor, Tensor]:
    """``‖X_i J_x,i‖`` (Frobenius, spectral) for ``X: (m, D, C)`` and ``jx: (m, C, ...)`` from ``C × C`` Grams."""
    p, k_x = X.transpose(1, 2) @ X, _gram(jx)
    root = _psd_sqrt(p)
    fro = (p * k_x).sum((1, 2)).clamp_min(0).sqrt()
    return fro, _eigh(root @ k_x @ root)[0][:, -1].clamp_min(0).sqrt()


def fixed_point_displacement(
    model: nn.Module | FunctionalModel, x: Tensor, y: Tensor, *, loss: str = "mse", params: Params | None = None,
    lr: float | None = None, samples: int | None = None, seed: int = 0, curvature: str = "hessian",
    exact: bool = False, tol: float = 1e-6, max_iter: int = 200, block: int = 16, chunk_size: int | None = None,
    interpolation_tol: float = 1e-3,
) -> FixedPointDisplacement:
    """``‖dθ*/dx_i‖ = ‖H⁺ M_i‖`` per training sample, by MINRES on Hessian-vector products (module docstring).

    ``H`` is the curvature of the loss on all of ``(x, y)`` (``n = len(x)``); the samples ``i`` evaluated are
    all of them, or a seeded subset of ``samples`` (``seed``). Without ``exact``, ``M_i`` is its Gauss-Newton
    part ``(1/n) J_θᵀ Λ_i J_x``, exact at interpolation: ``C`` solves per sample (``H⁺ J_θᵀ Λ_i``, then
    ``‖X J_x‖`` from ``C × C`` Grams). With ``exact``, ``M_i`` is the whole ``∂∇_θ ℓ_i/∂x_i / n`` by
    forward-over-reverse autodiff, ``d`` solves per sample. ``lr`` adds the one-step ``η ‖M_i‖`` beside it.
    Right-hand sides go to MINRES ``block`` samples at a time, restricted to ``range(H)`` (:func:`minres` with
    ``project``, except for the Gauss-Newton part against ``G``, which lies in its range). Cost: at most
    ``2 (max_iter + 1)`` products of ``H`` on ``n`` samples per right-hand side, plus ``C`` (``d`` with
    ``exact``) reverse passes per sample.
    """
    check_choice("curvature", curvature, ("hessian", "ggn"))
    lr = None if lr is None else check_positive("lr", lr)
    samples = check_optional_positive_int("samples", samples)
    block = check_positive_int("block", block)
    op = CurvatureOperator(model, x, y, loss=loss, curvature=curvature, params=params, chunk_size=chunk_size)
    fm, entry, chunks = _prepare(op.model, op.x, op.y, loss, None, None)
    (xa, ya), = chunks
    n = xa.shape[0]
    idx = seeded_subset(n, samples, seed)
    idx = torch.arange(n) if idx is None else idx
    p = fm.params
    columns: dict[str, list[Tensor]] = {k: [] for k in ("fro", "spec", "one_fro", "one_spec", "res", "solve", "out")}
    # J_θᵀ Λ_i u lies in range(G); anything else may have a part outside range(H), projected out first
    project = exact or curvature == "hessian"
    iterations, hvps, converged = 0, 0, True
    for part in idx.split(block):
        xb, yb = xa[part.to(xa.device)], ya[part.to(ya.device)]
        out, jp, jx = _jacobians(fm, p, xb)
        columns["res"].append(entry.output_gradient(out, yb).norm(dim=1).detach())
        m = xb.shape[0]
        if exact:
            def grad_i(xi: Tensor, yi: Tensor) -> Tensor:
                return flatten(grad(lambda q: entry.mean(fm(q, xi[None]).flatten(1), yi[None]))(p))

            rhs = vmap(jacfwd(grad_i))(xb, yb).reshape(m, op.dim, -1).detach() / n  # (m, D, d)
            jx = torch.eye(rhs.shape[2], dtype=rhs.dtype, device=rhs.device).expand(m, -1, -1)
        else:
            lam = entry.output_hessian(out, yb)  # (m, C, C)
            jt = torch.cat([j.reshape(m, j.shape[1], -1) for j in jp.values()], dim=2)  # (m, C, D)
            rhs = (jt.transpose(1, 2) @ lam).detach() / n  # (m, D, C)
        width = rhs.shape[2]
        solved = minres(op, rhs.permute(1, 0, 2).reshape(op.dim, m * width), tol=tol, max_iter=max_iter,
                        project=project)  # fmt: skip
        X = solved.solution.reshape(op.dim, m, width).permute(1, 0, 2)
        iterations, hvps = max(iterations, solved.iterations), hvps + solved.num_products
        converged = converged and bool(solved.converged.all())
        columns["solve"].append(solved.residuals.reshape(m, width).amax(1))
        columns["out"].append(solved.outside.reshape(m, width).amax(1))
        for key, mat in (("", X), ("one_", rhs)):
            fro, spec = _norms(mat, jx.detach())
            columns[key + "fro"].append(fro)
            columns[key + "spec"].append(spec)
    cat = {k: torch.cat(v).detach() for k, v in columns.items()}
    at_interp = bool(cat["res"].max() <= interpolation_tol)
    assumptions = {"loss_is_mse": loss == "mse", "at_interpolation": at_interp}
    worst = float(cat["solve"].max())
    if loss == "mse" and at_interp:
        note = "MSE at interpolation: ‖H⁺ M_i‖ is how far the minimum moves per unit change of x_i."
    else:
        note = (f"not an interpolating MSE minimum (loss {loss}, largest residual {float(cat['res'].max()):.3g}): "
                "H⁺ M_i is how far θ must move to keep ∇L unchanged when x_i moves (at a stationary point, to stay "
                "one), by the linearization at this iterate")
        note += "; M_i includes the residual term." if exact else "; M_i is its Gauss-Newton part (pass exact=True)."
    if not converged:
        note += f" MINRES stopped at max_iter = {max_iter} before tol = {tol:g} (largest relative residual {worst:.3g})."
    outside = float(cat["out"].max())
    if outside > 1e3 * tol and not converged:
        note += f" The share of M_i outside range(H), up to {outside:.3g}, is then an upper bound, not established."
    elif outside > 1e3 * tol:
        note += (f" Up to {outside:.3g} of M_i lies outside range(H): no move of θ keeps ∇L = 0 there to first order; "
                 "the numbers are for its part in the range (H⁺ M_i, the least-squares move).")
    return FixedPointDisplacement(
        n, idx, cat["fro"], cat["spec"], lr, None if lr is None else lr * cat["one_fro"],
        None if lr is None else lr * cat["one_spec"], cat["res"], exact, cat["solve"], cat["out"], iterations, hvps,
        converged, curvature, "minres", assumptions, note,
    )
