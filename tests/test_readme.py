"""The README's Python example runs as printed, and what it prints is what the library computes."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def library_example() -> str:
    section = README.read_text(encoding="utf-8").split("## The library", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_runs_and_prints_its_three_results():
    code = library_example()
    assert len([line for line in code.splitlines() if line.strip()]) <= 16, "the example stays short"
    out = io.StringIO()
    scope: dict = {}
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), scope)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    # The printed Jacobian norm, recomputed with plain autograd: samples do not interact, so the gradient of
    # the batch's summed logit c is every sample's row c of its Jacobian.
    model, x = scope["model"], scope["x"].clone().requires_grad_(True)
    logits = model(x)
    rows = [torch.autograd.grad(logits[:, c].sum(), x, retain_graph=True)[0] for c in range(logits.shape[1])]
    expected = torch.stack(rows, 1).flatten(1).norm(dim=1).mean()
    printed = float(re.fullmatch(r"tensor\((.*)\)", lines[0]).group(1))
    assert abs(printed - float(expected)) <= 1e-4 * float(expected)  # float32, printed to 4 decimals
    top = scope["top"]
    assert top.converged and top.eigenvalues.shape == (3,) and bool((top.eigenvalues[:-1] >= top.eigenvalues[1:]).all())
    assert lines[2].startswith(("stable", "unstable", "negative curvature"))
