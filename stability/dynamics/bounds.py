"""From parameter stability to input stability: both sides of docs/theory.md §3, computed on a model.

Notation, per sample ``i``: ``f_i = f(θ, x_i) ∈ R^C``, ``J_θ = ∂f_i/∂θ  (C × D)``, ``J_x = ∂f_i/∂x  (C × d)``
(``x`` flattened), ``r_i = ∇_f ℓ_i`` and ``Λ_i = ∇²_f ℓ_i`` the loss's output gradient and Hessian from
the registry :mod:`stability.losses` (``f_i − t_i`` and ``I`` for MSE, ``p_i − e_{y_i}`` and
``diag p − p pᵀ`` for cross-entropy), ``G = (1/n) Σ_i J_θᵀ Λ_i J_θ`` the Gauss-Newton matrix. At an
interpolating minimum of MSE (all ``r_i = 0``), ``G = H``.

1. **The GD map's sensitivity to a training input** (:func:`update_input_sensitivity`). For
   ``G(θ, X) = θ − η ∇_θ L``, ``L = (1/n) Σ_j ℓ_j``, only ``ℓ_i`` depends on ``x_i``, and

   ``∂G/∂x_i = −(η/n) [J_θᵀ Λ_i J_x + Σ_c r_{i,c} ∂_x ∇_θ f_c]``  (``D × d``).

   At interpolation (MSE) the second term vanishes: ``∂G/∂x_i = −(η/n) J_θᵀ J_x``; for scalar ``f`` it is
   the rank-one ``−(η/n) ∇_θ f ∇_x fᵀ`` with norm ``(η/n) ‖∇_θ f‖ ‖∇_x f‖``. For ``C > 1`` we report the
   Frobenius and spectral norms of ``(η/n) J_θᵀ Λ J_x`` and the product bound
   ``(η/n) ‖Λ J_θ‖_F ‖J_x‖_F`` that dominates both (equal to them when ``C = 1``).

2. **The first-layer inequality** (:func:`first_layer_bound`). If the first layer is dense,
   ``z = W x + b``, then ``∇_x f_c = Wᵀ ∂f_c/∂z`` and ``∇_W f_c = (∂f_c/∂z) xᵀ``, so
   ``‖x‖ ‖∇_x f_c‖ ≤ ‖W‖₂ ‖∇_W f_c‖_F``. Applied to the rotated outputs ``Λ_i^{1/2} f`` and averaged:

   ``(1/n) Σ_i ‖x_i‖² ‖Λ_i^{1/2} J_x(x_i)‖_F²  ≤  ‖W‖₂² tr G_WW  ≤  ‖W‖₂² tr G``,

   with ``G_WW`` the first-layer block of ``G``. This always holds; it is a statement about the Hessian
   ``(1/n) Σ ‖x_i‖² ‖J_x‖_F² ≤ ‖W‖₂² tr H`` only for MSE at interpolation. With cross-entropy, or off
   interpolation, the Gauss-Newton matrix stands in for ``H`` and the result says so. The rotation needs
   ``Λ_i ⪰ 0``: a loss whose output Hessian is indefinite (``bounded-cross-entropy``) is refused.

3. **The identity** ``xᵀ ∇_x f_c = ⟨W, ∇_W f_c⟩`` (:func:`first_layer_identity`), both sides being
   ``(∂f_c/∂z)ᵀ W x``. A bias changes neither ``∇_x f`` nor ``∇_W f``, so the identity holds with or
   without one; ``⟨b, ∇_b f_c⟩ = (∂f_c/∂z)ᵀ b`` is what separates it from ``zᵀ ∂f_c/∂z``. A convolution
   is also linear in its input and in its kernel, so the identity holds for it too (with the kernel
   for ``W``); the inequality does not follow there, because a shared kernel's gradient sums over
   positions (``‖∇_K f‖_F ≠ ‖∂f/∂z‖ ‖x‖``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import vjp

from stability.checks import check_count
from stability.curvature.lanczos import top_eigenvalues
from stability.curvature.operators import LambdaOperator
from stability.curvature.products import CurvatureOperator
from stability.curvature.trace import hutchinson_trace
from stability.errors import BadInputError
from stability.functional import FunctionalModel, Params, as_functional
from stability.sensitivity.one_step import _gram, _jacobians, _prepare
from stability.serialize import omitted

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass(frozen=True)
class FirstLayer:
    """The first ``nn.Linear`` or ``nn.Conv{1,2,3}d`` executed in the forward pass.

    ``acts_on_input``: its input is exactly the model's input (flattened, for a linear layer), so
    ``x`` in the formulas is the data point itself.
    """

    name: str
    kind: str
    weight: str
    bias: str | None
    acts_on_input: bool


def find_first_layer(model: nn.Module | FunctionalModel, x: Tensor) -> FirstLayer:
    """Run one sample of ``x`` through the model with hooks and name the first dense or conv layer hit."""
    fm = as_functional(model)
    names = {id(m): name for name, m in fm.module.named_modules()}
    seen: list[tuple[nn.Module, Tensor]] = []

    def hook(mod: nn.Module, inputs: tuple[Tensor, ...], _out: Tensor) -> None:
        if not seen:
            seen.append((mod, inputs[0]))

    layers = [m for m in fm.module.modules() if isinstance(m, (nn.Linear, *_CONVS))]
    handles = [m.register_forward_hook(hook) for m in layers]
    try:
        with torch.no_grad():
            first = next(iter(fm.params.values()))
            fm(fm.params, x[:1].to(device=first.device, dtype=first.dtype))
    finally:
        for h in handles:
            h.remove()
    if not seen:
        raise BadInputError("the model runs no nn.Linear or nn.Conv1d/2d/3d layer; first-layer results need one")
    mod, inp = seen[0]
    name = names[id(mod)]
    prefix = f"{name}." if name else ""
    xs = x[:1].to(device=inp.device, dtype=inp.dtype)
    if isinstance(mod, nn.Linear):
        acts = inp.numel() == xs.numel() and torch.equal(inp.reshape(-1), xs.reshape(-1))
    else:
        acts = inp.shape == xs.shape and torch.equal(inp, xs)
    if prefix + "weight" not in fm.params:
        raise BadInputError(f"the first layer's weight {prefix}weight is not a differentiable parameter")
    bias = prefix + "bias" if mod.bias is not None else None
    kind = "linear" if isinstance(mod, nn.Linear) else "conv"
    return FirstLayer(name, kind, prefix + "weight", bias, bool(acts))


@dataclass(frozen=True)
class LayerIdentity:
    """Both sides of ``xᵀ ∇_x f_c = ⟨W, ∇_W f_c⟩`` per sample and output, ``(n, C)`` each.

    ``bias_term`` is ``⟨b, ∇_b f_c⟩`` (``None`` without a bias); ``max_abs_error = max |lhs − rhs|``.
    """

    layer: FirstLayer
    lhs: Tensor = omitted()
    rhs: Tensor = omitted()
    bias_term: Tensor | None = omitted()
    max_abs_error: float
    scale: float


def first_layer_identity(
    model: nn.Module | FunctionalModel, x: Tensor, *, params: Params | None = None, chunk_size: int | None = None
) -> LayerIdentity:
    """Check ``xᵀ ∇_x f = ⟨W, ∇_W f⟩`` (module docstring, item 3) by per-sample autodiff.

    Cost: per sample ``C`` reverse passes (``vmap(jacrev)``, memory ``chunk_size · C · (D + d)``).
    """
    fm, _, chunks = _prepare(model, x, None, None, chunk_size, params)
    layer = find_first_layer(fm, x)
    lhs, rhs, bias = [], [], []
    for xb, _ in chunks:
        _, jp, jx = _jacobians(fm, fm.params, xb)
        b = xb.shape[0]
        lhs.append((jx.reshape(b, jx.shape[1], -1) * xb.reshape(b, 1, -1)).sum(-1))
        w = fm.params[layer.weight].reshape(1, 1, -1)
        rhs.append((jp[layer.weight].reshape(b, jx.shape[1], -1) * w).sum(-1))
        if layer.bias is not None:
            bv = fm.params[layer.bias].reshape(1, 1, -1)
            bias.append((jp[layer.bias].reshape(b, jx.shape[1], -1) * bv).sum(-1))
    L, R = torch.cat(lhs).detach(), torch.cat(rhs).detach()
    B = torch.cat(bias).detach() if bias else None
    return LayerIdentity(layer, L, R, B, float((L - R).abs().max()), float(L.abs().max()))


def _operator_norm(fm: FunctionalModel, layer: FirstLayer, x: Tensor) -> float:
    """``‖W‖₂`` as a map on the layer's input: the matrix norm for a dense layer; for a convolution, the
    top singular value of ``x ↦ conv(x; K)`` on this input shape (Lanczos on ``AᵀA``)."""
    W = fm.params[layer.weight]
    if layer.kind == "linear":
        return float(torch.linalg.matrix_norm(W, ord=2))
    module = dict(fm.module.named_modules())[layer.name]
    shape = x.shape[1:]

    def lin(v: Tensor) -> Tensor:
        return module._conv_forward(v.reshape(1, *shape), W, None)

    _, pullback = vjp(lin, torch.zeros(shape.numel(), dtype=W.dtype, device=W.device))

    gram = LambdaOperator(lambda v: pullback(lin(v))[0], shape.numel(), W.dtype, W.device)  # AᵀA
    res = top_eigenvalues(gram, 1, tol=1e-8, max_iter=500, generator=torch.Generator().manual_seed(0))
    return float(res.eigenvalues[0].clamp_min(0).sqrt())


@dataclass(frozen=True)
class FirstLayerBound:
    """Both sides of ``(1/n) Σ ‖x_i‖² ‖Λ_i^{1/2} J_x‖_F² ≤ ‖W‖₂² tr G`` (module docstring, item 2).

    Attributes:
        lhs, rhs: the two sides; ``ratio = lhs / rhs`` (``≤ 1`` when the bound holds); ``holds``.
        rhs_first_layer: ``‖W‖₂² tr G_WW``, the tighter middle term; ``max_sample_ratio``: the largest
            per-sample ratio of the first inequality (it holds sample by sample).
        weight_norm: ``‖W‖₂``; ``ggn_trace``, ``ggn_trace_first_layer``: ``tr G``, ``tr G_WW`` (exact).
        hessian_trace, hessian_trace_stderr: Hutchinson estimate of ``tr H`` (``None`` unless asked).
        residual_loss: the loss ``L``; ``max_residual``: ``max_i ‖∇_f ℓ_i‖`` (0 at interpolation).
        assumptions: ``loss_is_mse``, ``at_interpolation``, ``first_layer_linear``,
            ``first_layer_acts_on_input``, ``curvature_is_hessian`` (all of the first four).
        note: what the numbers mean given the assumptions.
    """

    lhs: float
    rhs: float
    ratio: float
    holds: bool
    rhs_first_layer: float
    max_sample_ratio: float
    weight_norm: float
    ggn_trace: float
    ggn_trace_first_layer: float
    hessian_trace: float | None
    hessian_trace_stderr: float | None
    residual_loss: float
    max_residual: float
    first_layer: FirstLayer
    assumptions: dict[str, bool]
    note: str


def first_layer_bound(
    model: nn.Module | FunctionalModel, x: Tensor, y: Tensor, *, params: Params | None = None, loss: str = "mse",
    chunk_size: int | None = None, interpolation_tol: float = 1e-3, num_probes: int = 0,
    generator: torch.Generator | None = None,
) -> FirstLayerBound:
    """Compute both sides of the first-layer inequality and say which of its assumptions hold.

    ``Λ_i`` is the loss's own output Hessian (:mod:`stability.losses`); the bound rotates the outputs by
    ``Λ_i^{1/2}``, so it needs ``Λ_i ⪰ 0`` and refuses a loss whose output Hessian is indefinite
    (``bounded-cross-entropy``). ``num_probes > 0`` adds a Hutchinson estimate of ``tr H`` from that
    many probes drawn from ``generator``.

    Cost: per sample ``C`` reverse passes (``vmap(jacrev)``, memory ``chunk_size · C · (D + d)``); plus
    ``num_probes`` HVPs over the data when asked; for a conv first layer, a Lanczos solve for the
    convolution's operator norm.
    """
    fm, entry, chunks = _prepare(model, x, y, loss, chunk_size, params)
    if not entry.convex:
        raise BadInputError(
            f"the first-layer bound needs a loss whose output Hessian is positive semi-definite; {loss}'s is not "
            "(use loss='mse' or 'cross-entropy')"
        )
    layer = find_first_layer(fm, x)
    lhs_i, tr_i, trw_i, res_i, loss_i = [], [], [], [], []
    for xb, yb in chunks:
        out, jp, jx = _jacobians(fm, fm.params, xb)
        lam = entry.output_hessian(out, yb)
        # ‖Λ^{1/2} J‖_F² = ⟨Λ, J Jᵀ⟩: only C × C Gram matrices are needed.
        lhs_i.append(xb.reshape(xb.shape[0], -1).pow(2).sum(1) * (lam * _gram(jx)).sum((1, 2)))
        tr_i.append((lam * sum(_gram(j) for j in jp.values())).sum((1, 2)))
        trw_i.append((lam * _gram(jp[layer.weight])).sum((1, 2)))
        res_i.append(entry.output_gradient(out, yb).norm(dim=1))
        loss_i.append(entry.mean(out, yb) * xb.shape[0])
    lhs_s, tr_s, trw_s = (torch.cat(t).detach() for t in (lhs_i, tr_i, trw_i))
    n = x.shape[0]
    w_norm = _operator_norm(fm, layer, x[:1].to(lhs_s.device, lhs_s.dtype))
    lhs, ggn_tr, ggn_trw = float(lhs_s.mean()), float(tr_s.mean()), float(trw_s.mean())
    rhs, rhs_w = w_norm**2 * ggn_tr, w_norm**2 * ggn_trw
    per_sample = lhs_s / (w_norm**2 * trw_s).clamp_min(torch.finfo(lhs_s.dtype).tiny)
    max_res = float(torch.cat(res_i).max())
    h_tr = h_se = None
    if check_count("num_probes", num_probes, 0) > 0:
        op = CurvatureOperator(fm, x, y, loss=loss, curvature="hessian", chunk_size=chunk_size)
        est = hutchinson_trace(op, num_probes, generator=generator)
        h_tr, h_se = est.estimate, est.stderr
    assumptions = {
        "loss_is_mse": loss == "mse", "at_interpolation": max_res <= interpolation_tol,
        "first_layer_linear": layer.kind == "linear", "first_layer_acts_on_input": layer.acts_on_input,
    }
    assumptions["curvature_is_hessian"] = all(assumptions.values())
    notes = []
    if not layer.acts_on_input:
        notes.append(f"the first {layer.kind} layer ({layer.name}) does not see the raw input, so x in the "
                     "bound is not the data point and the inequality is not implied")
    if layer.kind == "conv":
        notes.append("the first layer is a convolution: the identity holds but the inequality is not "
                     "implied (a shared kernel's gradient sums over positions); ‖W‖₂ is the convolution's "
                     "operator norm")
    if not (assumptions["loss_is_mse"] and assumptions["at_interpolation"]):
        why = f"the loss is {loss}" if loss != "mse" else f"residuals reach {max_res:.3g} (no interpolation)"
        notes.append(f"{why}, so the Gauss-Newton matrix G is used in place of H and the inequality is about "
                     "G, with the input term weighted by the output Hessian Λ")
    if not notes:
        notes.append("MSE at interpolation with a dense first layer on the input: G = H and the inequality "
                     "(1/n) Σ ‖x_i‖² ‖J_x‖_F² ≤ ‖W‖₂² tr H is the one stated")
    tiny = torch.finfo(torch.float64).tiny
    return FirstLayerBound(
        lhs=lhs, rhs=rhs, ratio=lhs / max(rhs, tiny), holds=lhs <= rhs * (1 + 1e-9) + tiny,
        rhs_first_layer=rhs_w, max_sample_ratio=float(per_sample.max()), weight_norm=w_norm, ggn_trace=ggn_tr,
        ggn_trace_first_layer=ggn_trw, hessian_trace=h_tr, hessian_trace_stderr=h_se,
        residual_loss=float(sum(loss_i)) / n, max_residual=max_res, first_layer=layer, assumptions=assumptions,
        note="; ".join(notes) + ".",
    )
