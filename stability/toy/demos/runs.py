"""Pieces every demo shares: seeded generators, step-size grids, and the report they return."""

from __future__ import annotations

from typing import Any

import torch
from torch.func import vmap

from stability.serialize import to_json
from stability.toy.twins import TorchTwin


def report(derived: dict[str, Any], measured: dict[str, Any], agreement: dict[str, bool], figures: list[str],
           formulas: dict[str, Any] | None = None) -> dict[str, Any]:
    """Assemble a demo report: every value made JSON-able, ``agreement["all"]`` the conjunction."""
    derived = {k: to_json(v) for k, v in derived.items()}
    if formulas:
        derived["formulas"] = {k: str(v) for k, v in formulas.items()}
    checks = {k: bool(v) for k, v in agreement.items()}
    checks["all"] = all(checks.values())
    return {"derived": derived, "measured": {k: to_json(v) for k, v in measured.items()},
            "agreement": checks, "figures": figures}  # fmt: skip


def generator(seed: int) -> torch.Generator:
    """A CPU generator for a demo's random starts (the demos run on the CPU in float64)."""
    return torch.Generator().manual_seed(seed)


F64 = torch.float64


TOL = 1e-9  # slack for float64 round-off in "≤ 2/η"-type checks on converged runs


def _grid_runs(etas: list[float], starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every start at every learning rate: ``theta0 (len(etas)·S, P)``, ``lr (len(etas)·S,)``."""
    lr = torch.tensor(etas, dtype=F64).repeat_interleave(starts.shape[0])
    return starts.repeat(len(etas), 1), lr


def _per_eta(etas: list[float], lr: torch.Tensor, conv: torch.Tensor) -> dict[str, int]:
    return {f"{e:g}": int(conv[lr == e].sum()) for e in etas}


def _input_jacobians(tw: TorchTwin, thetas: torch.Tensor, lrs: torch.Tensor) -> torch.Tensor:
    """``∂G/∂x_i`` at each of ``thetas: (S, P)`` with its own learning rate: ``(S, n, P, D)``."""
    return vmap(tw.gd_input_jacobian)(thetas, lrs)
