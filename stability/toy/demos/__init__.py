"""Runnable demonstrations of the toy models: closed forms next to what gradient descent actually does.

``run_demo(name, out_dir)`` writes the demo's figures (PNG) into ``out_dir`` and returns a JSON-able dict::

    {"demo": name,
     "derived":   {...closed-form quantities...,  "formulas": {quantity: sympy string}},
     "measured":  {...the same quantities read off GD runs...},
     "agreement": {check: bool, ..., "all": bool},
     "figures":   [png paths relative to out_dir]}

Every demo is seeded (``seed``), runs in float64 on the CPU in a few seconds, and is small by design.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stability.errors import BadInputError


@dataclass(frozen=True)
class DemoInfo:
    """What ``stability demo --list`` shows: the name, a title, and one line on what the demo shows."""

    name: str
    title: str
    description: str



DEMOS: dict[str, DemoInfo] = {
    info.name: info
    for info in (
        DemoInfo("two-layer-scalar", "T1: f = a·b·x on one point",
                 "GD on the hyperbola ab = y0/x0: stable iff η x0²(a²+b²) < 2; the imbalance a²−b² shrinks each step."),
        DemoInfo("linear-min-norm", "T2: linear regression with d > n",
                 "GD from 0 ends at the min-norm interpolant Xᵀ(XXᵀ)⁻¹y; from w0 at it plus w0's null-space part."),
        DemoInfo("diagonal-net", "T3: diagonal linear net f = Σ u_k v_k x_k",
                 "Sharpness ≥ 2 Σ x_k²|β_k|: stability bounds a data-weighted l1 norm of β, not its raw norm."),
        DemoInfo("tanh-two-point", "T4: one tanh unit on (−1,−1), (1,1)",
                 "Sharpness on the branch is 2u + 1/u − 2: minimum 2√2 − 2, no stable minimum for η > 1 + √2."),
        DemoInfo("gradient-splitting", "T5: gradient splitting on two linear features",
                 "The fit-both point is a saddle with eigenvalues ±sin α; GD escapes at rate log(1 + η sin α)."),
        DemoInfo("quartic", "GD on (θ² − 1)²/4 as a dynamical system",
                 "Bifurcation diagram over η: loss of stability at η = 1, period 4 at √5 − 1, chaos up to η = 2."),
        DemoInfo("finite-sample-expressivity", "Zhang et al. Theorem 1",
                 "A depth-2 ReLU net with 2n + d weights built to fit random labels on n points exactly."),
    )
}  # fmt: skip


def run_demo(name: str, out_dir: str | Path, *, seed: int = 0) -> dict[str, Any]:
    """Run demo ``name``, write its figures under ``out_dir``, return the JSON-able report (see module doc).

    Raises:
        BadInputError: ``name`` is not one of :data:`DEMOS`.
    """
    if name not in DEMOS:
        raise BadInputError(f"unknown demo {name!r}; choose one of: {', '.join(DEMOS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    demo = importlib.import_module(f"stability.toy.demos.{name.replace('-', '_')}")
    report = demo.run(out, int(seed))
    return {"demo": name, **report}


