"""Shared test cases and independent references: seeded models, inputs, dense derivatives, tolerances.

Every reference here is computed another way than the library computes it (one sample and one output at
a time with ``torch.autograd``, central differences, dense ``torch.autograd.functional.hessian``), so a
test that compares the two checks the library, not a restatement of it.

Tolerances are one dtype-keyed table, :data:`TOL`; each entry is a precision statement:

- ``rounding``: the same derivatives summed in another order (autograd loop vs ``vmap``): a few hundred
  ulps of the largest entry (float64: 1e-12; float32: 1e-5).
- ``central_difference``: central differences with step ``h = 1e-6`` in float64 carry an ``O(h²)``
  truncation error of ~1e-12 and an ``O(ε/h)`` rounding error of ~1e-10 relative, so 1e-7 leaves a wide
  margin while still catching any wrong entry (float32 has no usable step: not defined).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

DT = torch.float64

TOL: dict[torch.dtype, dict[str, float]] = {
    torch.float64: {"rounding": 1e-12, "central_difference": 1e-7},
    torch.float32: {"rounding": 1e-5},
}

SHAPE = (2, 3, 3)  # one image sample: channels, height, width (D = 18)
D = math.prod(SHAPE)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def seeded(seed: int, build: Callable[[], nn.Module], dtype: torch.dtype = DT) -> nn.Module:
    """``build()`` under its own seed (the global RNG is left as it was), cast to ``dtype``, in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build().to(dtype).eval()


def inputs(n: int = 5, seed: int = 1, shape: tuple[int, ...] = SHAPE, dtype: torch.dtype = DT) -> torch.Tensor:
    """``(n, *shape)`` standard normal inputs from their own seed."""
    return torch.randn((n, *shape), generator=gen(seed), dtype=dtype)


def labels(n: int, classes: int, seed: int) -> torch.Tensor:
    return torch.randint(0, classes, (n,), generator=gen(seed))


# ------------------------------------------------------------------------------------------------ models


def tanh_mlp(seed: int = 0, hidden: int = 7, classes: int = 5) -> nn.Module:
    return seeded(
        seed, lambda: nn.Sequential(nn.Flatten(), nn.Linear(D, hidden), nn.Tanh(), nn.Linear(hidden, classes))
    )


def deep_mlp(seed: int = 0, act: type[nn.Module] = nn.Softplus) -> nn.Module:
    return seeded(
        seed,
        lambda: nn.Sequential(nn.Flatten(), nn.Linear(D, 9), act(), nn.Linear(9, 8), act(), nn.Linear(8, 4)),
    )


def convnet(seed: int = 0) -> nn.Module:
    return seeded(
        seed,
        lambda: nn.Sequential(
            nn.Conv2d(2, 4, 3, padding=1), nn.Tanh(), nn.AvgPool2d(3), nn.Flatten(), nn.Linear(4, 6)
        ),
    )


def small_mlp(c: int = 3, bias: bool = True, seed: int = 0) -> nn.Module:
    """``(n, 2, 3) -> (n, c)``: Flatten, Linear(6, 7), Tanh, Linear(7, c), with a clearly non-zero bias."""

    def build() -> nn.Module:
        model = nn.Sequential(nn.Flatten(), nn.Linear(6, 7, bias=bias), nn.Tanh(), nn.Linear(7, c))
        if bias:
            nn.init.uniform_(model[1].bias, 0.5, 1.0)
        return model

    return seeded(seed, build)


# ------------------------------------------------------------------------------------- dense references


def out_fn(module: nn.Module, output: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if output == "softmax":
        return lambda xs: torch.softmax(module(xs), dim=-1)
    return module


def loop_jacobian(module: nn.Module, x: torch.Tensor, output: str = "logits") -> torch.Tensor:
    """Reference ``(B, C, *input_shape)``: one sample at a time, one ``torch.autograd.grad`` per output."""
    f = out_fn(module, output)
    rows = []
    for i in range(x.shape[0]):
        xi = x[i : i + 1].clone().requires_grad_(True)
        out = f(xi)[0]
        rows.append(
            torch.stack(
                [torch.autograd.grad(out[c], xi, retain_graph=True)[0][0] for c in range(out.numel())]
            )
        )
    return torch.stack(rows)


def fd_jacobian(module: nn.Module, x: torch.Tensor, output: str = "logits", h: float = 1e-6) -> torch.Tensor:
    """Reference ``(B, C, *input_shape)``: central differences, all ``2 B D`` perturbed inputs in one pass."""
    f = out_fn(module, output)
    B, shape = x.shape[0], x.shape[1:]
    d = math.prod(shape)
    E = torch.eye(d, dtype=x.dtype).reshape(d, *shape) * h
    with torch.no_grad():
        plus = f((x[:, None] + E).reshape(B * d, *shape)).reshape(B, d, -1)
        minus = f((x[:, None] - E).reshape(B * d, *shape)).reshape(B, d, -1)
    return ((plus - minus) / (2 * h)).transpose(1, 2).reshape(B, -1, *shape)


def dense_output_hessian(per_sample: Callable, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``∇²_f ℓ(f_i, y_i): (B, C, C)`` by ``torch.autograd.functional.hessian``, one sample at a time."""
    return torch.stack([
        torch.autograd.functional.hessian(lambda z: per_sample(z[None], y[i : i + 1])[0], logits[i])
        for i in range(logits.shape[0])
    ])


def dense_output_gradient(per_sample: Callable, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``∇_f ℓ(f_i, y_i): (B, C)`` by ``torch.autograd.grad``, one sample at a time."""
    rows = []
    for i in range(logits.shape[0]):
        z = logits[i].clone().requires_grad_(True)
        rows.append(torch.autograd.grad(per_sample(z[None], y[i : i + 1])[0], z)[0])
    return torch.stack(rows)


def forward_rounding_bound(model: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Entrywise bound on |fl(f(x)) − f(x)| for a float64 stack of Linear layers and 1-Lipschitz activations.

    Higham's bound for an inner product of length k, |fl(wᵀh) − wᵀh| ≤ γ_{k+1} |w|ᵀ|h| (γ_k = k u / (1 − k u),
    the bias counted as one more term), propagated through the layers: an input error e becomes |W| e
    (activations are 1-Lipschitz), and each activation adds u times its own magnitude.
    """
    u = torch.finfo(DT).eps / 2
    h = x.flatten(1)
    err = torch.zeros_like(h)
    for layer in list(model)[1:]:
        if isinstance(layer, nn.Linear):
            k = layer.in_features + 1
            gamma = k * u / (1 - k * u)
            W, b = layer.weight.detach().abs(), layer.bias.detach().abs()
            err = err @ W.T + gamma * (h.abs() @ W.T + b)
            h = layer(h)
        else:
            h = layer(h)
            err = err + u * h.abs()
    return err.detach()


def assert_close(a: torch.Tensor, b: torch.Tensor, rtol: float) -> None:
    """Relative to the reference's largest entry, so near-zero entries do not demand impossible precision."""
    scale = b.abs().max().clamp_min(1e-300)
    err = ((a - b).abs().max() / scale).item()
    assert err <= rtol, f"relative error {err:.3e} > {rtol:.1e}"


# ------------------------------------------------------------------ curvature references (dense, float64)

# Per-sample losses written out from their definitions, independently of stability.losses.
REFERENCE_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "cross-entropy": lambda out, y: torch.nn.functional.cross_entropy(out, y, reduction="none"),
    "mse": lambda out, y: 0.5 * (out - (y.reshape(out.shape).to(out.dtype) if y.is_floating_point()
                                        else torch.nn.functional.one_hot(y, out.shape[-1]).to(out.dtype))).pow(2).sum(-1),
    "bounded-cross-entropy": lambda out, y: torch.nn.functional.cross_entropy(out.softmax(-1), y, reduction="none"),
}


def dense_curvature(
    module: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str = "cross-entropy", curvature: str = "hessian",
    params: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """``(D, D)`` curvature of ``L(θ) = (1/n) Σ_i ℓ(f(θ, x_i), y_i)`` over all parameters, in their order.

    ``hessian``: ``torch.func.hessian`` of ``L`` in the flat parameter vector, all samples at once.
    ``ggn``: ``(1/n) Σ_i J_iᵀ Λ_i J_i`` with ``J`` by ``torch.func.jacrev`` and ``Λ_i`` by
    :func:`dense_output_hessian` of the per-sample loss (one sample at a time).
    """
    params = {k: v.detach() for k, v in (params or dict(module.named_parameters())).items()}
    sizes = [p.numel() for p in params.values()]

    def at(flat: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: part.reshape(p.shape) for (k, p), part in zip(params.items(), flat.split(sizes))}

    def out(flat: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(module, at(flat), (x,)).reshape(x.shape[0], -1)

    per_sample = REFERENCE_LOSSES[loss]
    flat = torch.cat([p.reshape(-1) for p in params.values()])
    if curvature == "hessian":
        return torch.func.hessian(lambda f: per_sample(out(f), y).mean())(flat)
    J = torch.func.jacrev(out)(flat)  # (n, C, D)
    lam = dense_output_hessian(per_sample, out(flat).detach(), y)  # (n, C, C)
    return torch.einsum("ncd,nce,nef->df", J, lam, J) / x.shape[0]


def enumerated_second_moment(hessians: torch.Tensor, lr: float, batch_size: int) -> torch.Tensor:
    """``E[A_S ⊗ A_S]``, ``A_S = I − η mean_{i∈S} H_i``, averaged over every batch ``S`` of ``B`` distinct
    samples: the second-moment map of SGD by enumeration, with no closed form for the batch covariance."""
    import itertools

    n, d = hessians.shape[0], hessians.shape[1]
    eye = torch.eye(d, dtype=hessians.dtype)
    batches = list(itertools.combinations(range(n), batch_size))
    total = torch.zeros(d * d, d * d, dtype=hessians.dtype)
    for S in batches:
        A = eye - lr * hessians[list(S)].mean(0)
        total += torch.kron(A, A)
    return total / len(batches)


def spectral_radius(matrix: torch.Tensor) -> float:
    """``max |eigenvalue|`` of a square matrix (general eigen-solver, no symmetry assumed)."""
    return float(torch.linalg.eigvals(matrix).abs().max())


def dense_fixed_point_jacobians(
    module: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str = "mse", rtol: float = 1e-10
) -> torch.Tensor:
    """``(n, D, d)``: ``dθ*/dx_i = −H⁺ ∂∇_θ L/∂x_i`` with the dense Hessian of :func:`dense_curvature` and a dense
    pseudo-inverse (eigenvalues below ``rtol · max|λ|`` dropped); ``∂∇_θ L/∂x_i`` by ``jacfwd`` of the full
    gradient with respect to the whole batch (``x`` flattened per sample)."""
    params = {k: v.detach() for k, v in module.named_parameters()}
    sizes = [p.numel() for p in params.values()]
    flat = torch.cat([p.reshape(-1) for p in params.values()])

    def at(f: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: part.reshape(p.shape) for (k, p), part in zip(params.items(), f.split(sizes))}

    def grad_l(f: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
        def mean_loss(g: torch.Tensor) -> torch.Tensor:
            out = torch.func.functional_call(module, at(g), (xs.reshape(x.shape),)).reshape(x.shape[0], -1)
            return REFERENCE_LOSSES[loss](out, y).mean()

        return torch.func.grad(mean_loss)(f)

    mixed = torch.func.jacfwd(grad_l, argnums=1)(flat, x.reshape(x.shape[0], -1))  # (D, n, d)
    hess = dense_curvature(module, x, y, loss)
    pinv = torch.linalg.pinv(hess, rtol=rtol, hermitian=True)
    return -torch.einsum("pq,qnk->npk", pinv, mixed)


class T1(nn.Module):
    """Toy T1 of docs/theory.md, ``f = a b x`` with scalar parameters ``a``, ``b`` (float64)."""

    def __init__(self, a: float, b: float) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a, dtype=DT))
        self.b = nn.Parameter(torch.tensor(b, dtype=DT))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a * self.b * x
