"""Curvature products that reuse the primal: the graph of one chunk's gradient (or output) built once and
differentiated again for every product.

The plain product ``H v = jvp(grad(L), θ, v)`` (forward-over-reverse) recomputes the forward pass and
the gradient for every ``v``; an eigen-solve or trace estimate then pays for them tens to hundreds of
times on the same data and parameters. Here each chunk's graph is built once per operator:

- Hessian: ``g = ∇_θ L_b`` with ``create_graph=True``; then ``H_b v = ∇_θ (gᵀ v)`` is one backward pass
  through the graph of ``g`` (reverse-over-reverse, ``autograd.grad(g, θ, v, retain_graph=True)``).
- Gauss-Newton: the outputs ``f = f(θ, x_b)`` and ``g(w) = J_bᵀ w`` for a dummy ``w`` (both with their
  graphs); then ``J v = ∇_w (g(w)ᵀ v)`` (the double-backward trick for a forward-mode product), ``Λ`` in
  closed form, and ``Jᵀ (Λ J v)`` by one backward pass through ``f``'s graph: two backward passes, no
  forward pass.

Measured on one CPU thread (``python -m benchmarks.bench_curvature``, ``docs/performance.md``), one
retained Hessian product cost 1.3x a gradient on the MLP and 2.1x on the ConvNet, against 6.6x and 3.1x
for forward-over-reverse.

Memory: the retained graph holds every tensor the forward and backward passes save, for all chunks at
once, until the operator is released (:meth:`RetainedGraph.release`) or garbage-collected; about two to
three times the activations of one gradient over the evaluation set. :attr:`RetainedGraph.saved_bytes`
reports the exact amount (saved tensors counted once per storage). In-place changes to the parameters
after the graph was built (an optimizer step on the module the operator was made from) are detected by
the tensors' version counters and the graph is rebuilt.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from stability.functional import ModelFn, Params
from stability.losses import get_loss, mean_loss

Product = Callable[..., list[Tensor]]


def _grad(
    outputs: Sequence[Tensor], inputs: Sequence[Tensor], grads: Sequence[Tensor], *, create_graph: bool = False,
    batched: bool = False,
) -> list[Tensor]:
    """``autograd.grad`` with missing dependencies read as zeros (an output that needs no grad is dropped)."""
    pairs = [(o, g) for o, g in zip(outputs, grads) if o.requires_grad]
    if not pairs:
        shape = (grads[0].shape[0],) if batched else ()
        return [torch.zeros(*shape, *t.shape, dtype=t.dtype, device=t.device) for t in inputs]
    outs, gs = zip(*pairs)
    got = torch.autograd.grad(outs, inputs, gs, retain_graph=True, create_graph=create_graph, allow_unused=True,
                              is_grads_batched=batched)  # fmt: skip
    lead = (gs[0].shape[0],) if batched else ()
    return [torch.zeros(*lead, *t.shape, dtype=t.dtype, device=t.device) if d is None else d
            for d, t in zip(got, inputs)]  # fmt: skip


def _hessian_graph(f: ModelFn, loss: str, leaves: Params, xb: Tensor, yb: Tensor) -> Product:
    ps = list(leaves.values())
    g = _grad([mean_loss(loss, f(leaves, xb), yb)], ps, [torch.ones((), dtype=ps[0].dtype, device=ps[0].device)],
              create_graph=True)  # fmt: skip
    return lambda vs, batched=False: _grad(g, ps, vs, batched=batched)


def _ggn_graph(f: ModelFn, loss: str, leaves: Params, xb: Tensor, yb: Tensor) -> Product:
    ps = list(leaves.values())
    out = f(leaves, xb)
    w = torch.zeros_like(out, requires_grad=True)
    jt_w = _grad([out], ps, [w], create_graph=True)
    hessian_product = get_loss(loss).output_hessian_product
    flat_out, b = out.detach().reshape(out.shape[0], -1), xb.shape[0]

    def product(vs: Sequence[Tensor], batched: bool = False) -> list[Tensor]:
        jv = _grad(jt_w, [w], vs, batched=batched)[0]
        shape = jv.shape
        if batched:
            u = torch.func.vmap(lambda j: hessian_product(flat_out, yb, j.reshape(b, -1)))(jv)
        else:
            u = hessian_product(flat_out, yb, jv.reshape(b, -1))
        return _grad([out], ps, [u.reshape(shape) / b], batched=batched)

    return product


def _key(t: Tensor) -> tuple[str, int]:
    return str(t.device), t.untyped_storage().data_ptr()


GRAPHS = {"hessian": _hessian_graph, "ggn": _ggn_graph}


class RetainedGraph:
    """Per-chunk retained graphs of one curvature, built on first use; ``products(v)`` sums ``(b_c/n) C_c v``.

    ``chunks`` yields ``(x_b, y_b)`` on the parameters' device; ``params`` are the point ``θ`` (detached
    here, so the products are not differentiable in ``θ``).
    """

    def __init__(
        self, curvature: str, f: ModelFn, loss: str, params: Params, chunks: Callable[[], object], n: int,
    ) -> None:
        self._build_one = GRAPHS[curvature]
        self.f, self.loss, self.params, self._chunks, self.n = f, loss, params, chunks, n
        self._graphs: list[tuple[float, Product]] | None = None
        self._versions: list[int] = []
        self.saved_bytes = 0

    def _stale(self) -> bool:
        return self._graphs is None or self._versions != [t._version for t in self.params.values()]

    def build(self) -> None:
        """Build (or rebuild) every chunk's graph, counting the bytes its saved tensors hold."""
        self.release()
        seen: dict[tuple[str, int], int] = {}
        given = {_key(t) for t in self.params.values()}

        def pack(t: Tensor) -> Tensor:
            if _key(t) not in given:  # parameters and inputs exist without the graph
                seen[_key(t)] = t.untyped_storage().nbytes()
            return t

        graphs = []
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            for xb, yb in self._chunks():
                given.update((_key(xb), _key(yb)))
                leaves = {k: t.detach().requires_grad_(True) for k, t in self.params.items()}
                graphs.append((xb.shape[0] / self.n, self._build_one(self.f, self.loss, leaves, xb, yb)))
        self._graphs, self.saved_bytes = graphs, sum(seen.values())
        self._versions = [t._version for t in self.params.values()]

    def release(self) -> None:
        """Drop the graphs (their memory returns); the next product rebuilds them."""
        self._graphs, self.saved_bytes = None, 0

    def product(self, v: Params, batched: bool = False) -> Params:
        """``C v`` for a parameter-shaped dict ``v`` (with a leading ``k`` axis on every entry if ``batched``)."""
        if self._stale():
            self.build()
        assert self._graphs is not None
        total: list[Tensor] | None = None
        vs = [v[k] for k in self.params]
        with torch.enable_grad():
            for weight, product in self._graphs:
                part = product(vs, batched)
                if weight != 1.0:
                    part = [p * weight for p in part]
                total = part if total is None else [a + p for a, p in zip(total, part)]
        assert total is not None
        return {k: t.detach() for k, t in zip(self.params, total)}
