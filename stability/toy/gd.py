"""Gradient descent on a toy loss from many starting points and learning rates at once.

``S`` runs (starting point ``θ_0^s``, learning rate ``η_s``) advance together: one batched forward and
reverse pass per step, ``θ_{t+1}^s = θ_t^s − η_s ∇L(θ_t^s)``. A run whose iterate leaves the ball
``‖θ‖ ≤ bound`` (or turns non-finite) is frozen at its last iterate inside and marked diverged, so one
exploding run cannot poison the batch. Cost: ``steps`` batched gradient evaluations of ``S`` points each.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.func import hessian, vmap

from stability.errors import BadInputError

Loss = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class GDRun:
    """Trajectories of a batch of GD runs.

    Attributes:
        thetas: iterates ``(steps + 1, S, P)``; row 0 is the start.
        losses: ``L(θ_t)`` ``(steps + 1, S)``.
        lrs: learning rates ``(S,)``.
        diverged: ``(S,)`` true where the run left the ball ``‖θ‖ ≤ bound`` (frozen from then on).
    """

    thetas: Tensor
    losses: Tensor
    lrs: Tensor
    diverged: Tensor

    @property
    def final(self) -> Tensor:
        """Last iterates ``(S, P)``."""
        return self.thetas[-1]

    def last_step_size(self) -> Tensor:
        """``‖θ_T − θ_{T−1}‖`` per run ``(S,)``: zero at an exact fixed point, order 1 on a cycle."""
        return (self.thetas[-1] - self.thetas[-2]).norm(dim=-1)

    def converged(self, *, step_tol: float = 1e-9, loss_tol: float | None = 1e-12) -> Tensor:
        """``(S,)`` true where the run did not diverge, stopped moving, and (if ``loss_tol``) interpolates."""
        ok = ~self.diverged & (self.last_step_size() <= step_tol)
        if loss_tol is not None:
            ok &= self.losses[-1].abs() <= loss_tol
        return ok


def gradient_descent(loss: Loss, theta0: Tensor, lrs: Tensor | float, steps: int, *, bound: float = 1e6) -> GDRun:
    """Run ``S`` gradient-descent trajectories of ``loss`` in parallel.

    Args:
        loss: ``L(theta: (P,)) -> ()``, differentiable by ``torch.func``.
        theta0: starting points ``(S, P)``.
        lrs: learning rate per run ``(S,)`` or one for all.
        steps: number of GD steps ``T``.
        bound: radius beyond which a run counts as diverged.

    Returns:
        :class:`GDRun` with ``(T + 1, S, ...)`` histories.
    """
    if theta0.ndim != 2:
        raise BadInputError(f"theta0 must have shape (runs, params), got {tuple(theta0.shape)}; stack the starts")
    if steps < 1:
        raise BadInputError(f"steps must be a positive integer, got {steps}")
    S = theta0.shape[0]
    lr = torch.as_tensor(lrs, dtype=theta0.dtype, device=theta0.device).expand(S).clone()
    if not torch.all(lr > 0):
        raise BadInputError("learning rates must be positive")
    values = vmap(loss)
    theta = theta0.detach().clone()
    diverged = torch.zeros(S, dtype=torch.bool, device=theta0.device)
    thetas, losses = [theta], []
    for _ in range(steps):
        value, g = _value_and_grad(values, theta)
        losses.append(value)
        new = theta - lr[:, None] * g
        bad = ~torch.isfinite(new).all(-1) | (new.norm(dim=-1) > bound)
        diverged = diverged | bad
        theta = torch.where(diverged[:, None], theta, new)
        thetas.append(theta)
    losses.append(values(theta).detach())
    return GDRun(thetas=torch.stack(thetas), losses=torch.stack(losses), lrs=lr, diverged=diverged)


def _value_and_grad(values: Callable[[Tensor], Tensor], theta: Tensor) -> tuple[Tensor, Tensor]:
    # The runs are independent, so the gradient of the summed losses is every run's own gradient; one
    # reverse pass over the batch is several times cheaper than vmap(grad(...)) for models this small.
    with torch.enable_grad():
        x = theta.detach().requires_grad_(True)
        value = values(x)
        (g,) = torch.autograd.grad(value.sum(), x)
    return value.detach(), g


def sharpness(loss: Loss, thetas: Tensor) -> Tensor:
    """``λ_max(∇²L(θ))`` at every point of ``thetas: (..., P)``, shape ``(...)``; dense Hessian + ``eigvalsh``
    (toy sizes only: cost ``P`` Hessian-vector products and an ``O(P³)`` eigensolve per point)."""
    flat = thetas.reshape(-1, thetas.shape[-1])
    if flat.shape[0] == 0:
        return thetas.new_zeros(thetas.shape[:-1])
    eig = torch.linalg.eigvalsh(vmap(hessian(loss))(flat))
    return eig[:, -1].reshape(thetas.shape[:-1])
