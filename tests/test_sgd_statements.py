"""SGD's three statements against the exact second-moment radius, computed by enumerating every batch."""

from __future__ import annotations

import pytest
import torch
from cases import enumerated_second_moment, spectral_radius

from stability.dynamics.sgd import dense_statements, noise_factor
from stability.dynamics.verdicts import sgd_criterion

F64 = torch.float64


def random_case(seed: int, commuting: bool) -> tuple[torch.Tensor, float, int]:
    """PSD per-sample Hessians ``(n, d, d)`` (sharing one eigenbasis when ``commuting``), a step size near the
    edge of stability and a batch size."""
    g = torch.Generator().manual_seed(seed)
    n = int(torch.randint(2, 6, (), generator=g))
    d = int(torch.randint(2, 4, (), generator=g))
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=F64))
    if commuting:
        lam = torch.rand(n, d, generator=g, dtype=F64) ** 2 * 3
        hs = Q @ torch.diag_embed(lam) @ Q.T
    else:
        R = torch.randn(n, d, d, generator=g, dtype=F64) * torch.rand(n, 1, 1, generator=g, dtype=F64)
        hs = R @ R.transpose(1, 2)
    lam_max = float(torch.linalg.eigvalsh(hs.mean(0))[-1])
    lr = float(torch.rand((), generator=g, dtype=F64) * 2.4 + 0.2) / lam_max  # η λ_max in [0.2, 2.6]
    batch = int(torch.randint(1, n + 1, (), generator=g))
    return hs, lr, batch


@pytest.mark.parametrize("commuting", [True, False])
def test_each_statement_agrees_with_the_exact_radius_where_it_claims_to(commuting: bool) -> None:
    """Over 150 random cases per kind (300 in all): exact matches enumeration; sufficient ⇒ exact ≤ 1;
    necessary violated ⇒ exact > 1; and both implications are exercised, as is the scalar form's failure."""
    counts = {"sufficient": 0, "necessary_violated": 0, "undecided": 0, "scalar_wrong": 0}
    for seed in range(150):
        hs, lr, batch = random_case(seed + (0 if commuting else 10_000), commuting)
        rho = spectral_radius(enumerated_second_moment(hs, lr, batch))
        result = dense_statements(hs, lr, batch)
        assert result.exact.value == pytest.approx(rho, rel=1e-9, abs=1e-12), seed
        if result.sufficient.holds:
            counts["sufficient"] += 1
            assert rho <= 1 + 1e-9, seed
        if result.necessary.holds is False:
            counts["necessary_violated"] += 1
            assert rho > 1, seed
        if result.necessary.holds and not result.sufficient.holds:
            counts["undecided"] += 1
        assert result.stable == (rho <= 1 + 1e-10), seed
        H = hs.mean(0)
        a = float(torch.linalg.eigvalsh(H)[-1])
        s2 = float(torch.linalg.eigvalsh(((hs - H) @ (hs - H)).mean(0))[-1])
        scalar = sgd_criterion(a, max(s2, 0.0) ** 0.5, lr, batch, hs.shape[0])
        counts["scalar_wrong"] += scalar.stable != (rho <= 1)
    assert counts["sufficient"] >= 20 and counts["necessary_violated"] >= 20 and counts["undecided"] >= 5, counts
    if not commuting:
        assert counts["scalar_wrong"] >= 1, counts


def test_noise_factor_with_and_without_replacement() -> None:
    assert noise_factor(10, 10) == 0 and noise_factor(10, 1) == 1
    assert noise_factor(10, 4) == pytest.approx(6 / 36) and noise_factor(10, 4, replacement=True) == 0.25
    g = torch.Generator().manual_seed(3)
    hs = torch.rand(4, 2, generator=g, dtype=F64).diag_embed()
    # with replacement, batches are B independent draws: enumerate all n^B ordered tuples
    import itertools

    lr, B = 0.8, 2
    eye = torch.eye(2, dtype=F64)
    tuples = list(itertools.product(range(4), repeat=B))
    T = sum(torch.kron(eye - lr * hs[list(t)].mean(0), eye - lr * hs[list(t)].mean(0)) for t in tuples) / len(tuples)
    assert dense_statements(hs, lr, B, replacement=True).exact.value == pytest.approx(spectral_radius(T), rel=1e-12)
