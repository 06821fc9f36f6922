"""Summary statistics of per-sample measures, as the report prints them."""

from __future__ import annotations

import torch
from torch import Tensor

from stability.errors import BadInputError


def summarize(values: Tensor) -> dict[str, float]:
    """Summary statistics of per-sample values, as plain floats for the report.

    Keys: ``n``, ``mean``, ``std`` (population, ``1/n``; defined for ``n = 1``), ``min``, ``q05``,
    ``q25``, ``median``, ``q75``, ``q95``, ``max``. Quantiles interpolate linearly between order
    statistics (``torch.quantile``'s default). Computed in float64 on the CPU (one host transfer).
    """
    if not isinstance(values, Tensor) or values.numel() == 0:
        raise BadInputError("summarize needs a non-empty tensor of per-sample values")
    v = values.detach().reshape(-1).to("cpu", torch.float64)
    if not bool(torch.isfinite(v).all()):
        bad = int((~torch.isfinite(v)).sum())
        raise BadInputError(
            f"{bad} of {v.numel()} values are NaN or infinite; check the model and inputs first"
        )
    q = torch.quantile(v, torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95], dtype=torch.float64))
    return {
        "n": v.numel(),
        "mean": float(v.mean()),
        "std": float(v.std(correction=0)),
        "min": float(v.min()),
        "q05": float(q[0]),
        "q25": float(q[1]),
        "median": float(q[2]),
        "q75": float(q[3]),
        "q95": float(q[4]),
        "max": float(v.max()),
    }
