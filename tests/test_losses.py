"""The loss registry against autograd: values, output gradients and output Hessians, in float64."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from cases import TOL, dense_output_gradient, dense_output_hessian, gen, labels
from torch.func import vmap

from stability.errors import BadInputError
from stability.losses import LOSSES, get_loss, mean_loss

DT = torch.float64
NAMES = list(LOSSES)


def logits(n: int = 7, c: int = 5, seed: int = 0, scale: float = 2.0) -> torch.Tensor:
    return scale * torch.randn(n, c, generator=gen(seed), dtype=DT)


def independent(name: str, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample losses written out with ``log_softmax`` and ``F.one_hot``, not the registry's ops."""
    if name == "cross-entropy":
        return -torch.log_softmax(z, -1).gather(1, y[:, None])[:, 0]
    if name == "mse":
        return 0.5 * (z - F.one_hot(y, z.shape[1]).to(z.dtype)).pow(2).sum(-1)
    return -torch.log_softmax(torch.softmax(z, -1), -1).gather(1, y[:, None])[:, 0]


@pytest.mark.parametrize("name", NAMES)
def test_values_match_an_independent_formula_and_the_mean_is_the_mean(name: str) -> None:
    z, y = logits(), labels(7, 5, seed=1)
    loss = get_loss(name)
    ref = independent(name, z, y)
    torch.testing.assert_close(loss.per_sample(z, y), ref, rtol=TOL[DT]["rounding"], atol=0)
    torch.testing.assert_close(loss.mean(z, y), ref.mean(), rtol=TOL[DT]["rounding"], atol=0)
    assert loss(z, y) == loss.mean(z, y) == mean_loss(name, z[:, :, None], y)  # outputs are flattened


@pytest.mark.parametrize("name", NAMES)
def test_output_gradient_and_hessian_match_autograd(name: str) -> None:
    z, y = logits(), labels(7, 5, seed=2)
    loss = get_loss(name)
    rtol = TOL[DT]["rounding"]
    torch.testing.assert_close(loss.output_gradient(z, y), dense_output_gradient(loss.per_sample, z, y),
                               rtol=rtol, atol=1e-15)
    lam = dense_output_hessian(loss.per_sample, z, y)
    torch.testing.assert_close(loss.output_hessian(z, y), lam, rtol=rtol, atol=1e-15)
    u = torch.randn(7, 5, generator=gen(3), dtype=DT)
    torch.testing.assert_close(loss.output_hessian_product(z, y, u), (lam @ u[:, :, None])[:, :, 0],
                               rtol=rtol, atol=1e-15)


def test_bounded_cross_entropy_derivatives_match_autograd_of_the_plain_formula() -> None:
    """Against ``torch.autograd.functional.hessian`` of ``−log softmax(softmax(z))_y``, not the registry."""
    z, y = logits(seed=4, scale=3.0), labels(7, 5, seed=5)
    loss = get_loss("bounded-cross-entropy")
    ref = dense_output_hessian(lambda zz, yy: independent("bounded-cross-entropy", zz, yy), z, y)
    torch.testing.assert_close(loss.output_hessian(z, y), ref, rtol=TOL[DT]["rounding"], atol=1e-15)
    # It is not cross-entropy's diag p − p pᵀ ...
    p = torch.softmax(z, -1)
    ce = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    assert float((ref - ce).abs().max()) > 1e-2
    # ... and it is indefinite somewhere, which is why the registry marks it non-convex.
    assert float(torch.linalg.eigvalsh(ref).min()) < -1e-6 and not loss.convex


@pytest.mark.parametrize("name", NAMES)
def test_convex_losses_have_positive_semidefinite_output_hessians(name: str) -> None:
    z, y = logits(50, 4, seed=6, scale=4.0), labels(50, 4, seed=7)
    smallest = float(torch.linalg.eigvalsh(get_loss(name).output_hessian(z, y)).min())
    assert (smallest >= -1e-15) == get_loss(name).convex


@pytest.mark.parametrize("name", NAMES)
def test_every_function_works_under_vmap_one_sample_at_a_time(name: str) -> None:
    z, y = logits(), labels(7, 5, seed=8)
    loss = get_loss(name)
    u = torch.randn(7, 5, generator=gen(9), dtype=DT)
    for fn, args in ((loss.per_sample, (z, y)), (loss.output_gradient, (z, y)),
                     (loss.output_hessian, (z, y)), (loss.output_hessian_product, (z, y, u))):
        one = vmap(lambda *a, fn=fn: fn(*(t[None] for t in a))[0])(*args)
        torch.testing.assert_close(one, fn(*args), rtol=TOL[DT]["rounding"], atol=1e-15)


def test_mse_takes_real_targets_shaped_like_the_outputs() -> None:
    z, t = logits(), logits(seed=10)
    loss = get_loss("mse")
    torch.testing.assert_close(loss.per_sample(z, t), 0.5 * (z - t).pow(2).sum(-1), rtol=0, atol=0)
    torch.testing.assert_close(loss.output_gradient(z, t), z - t, rtol=0, atol=0)
    assert loss.real_targets and not get_loss("cross-entropy").real_targets


def test_bounded_cross_entropy_lies_between_its_closed_form_bounds() -> None:
    C = 5
    z, y = logits(200, C, seed=11, scale=30.0), labels(200, C, seed=12)
    values = get_loss("bounded-cross-entropy").per_sample(z, y)
    top = math.log(C - 1 + math.e)
    assert bool((values >= top - 1 - 1e-12).all()) and bool((values <= top + 1e-12).all())


def test_unknown_loss_names_the_choices() -> None:
    with pytest.raises(BadInputError, match="loss 'hinge' is not one of: cross-entropy, mse, bounded-cross-entropy"):
        get_loss("hinge")
