"""Wall time of one sweep under the local executor and under Ray, side by side in one run.

The sweep is the six randomization tests at the ``--quick`` scale (digits, MLP 1x512, SGD, 150 epochs each:
``experiments/randomization.py --quick --part tests``), run from scratch as a user runs it: a fresh
process, a fresh output folder, the whole command timed (start-up, Ray's cluster start, training, results
and figures). The local executor trains the six runs one after another with torch's default threads; Ray
starts a local cluster of ``--ray-cpus`` CPUs and trains ``ray-cpus / cpus-per-run`` runs at once, each on
one thread. The two take turns (local first in even rounds, Ray first in odd ones), so a shared machine's
load falls on both; the 1-minute load average (before → after) is recorded beside every timing, and
every sweep's ``results.json`` is checked against the round's first (equal but for the wall time).
``--local-one-thread`` adds the local executor on one torch thread, which separates what the parallel runs
gain from what avoiding torch's thread contention on a busy machine gains.

    python -m benchmarks.bench_sweep                      # 2 rounds, the full quick grid (minutes on 2 CPUs)
    python -m benchmarks.bench_sweep --epochs 10 --rounds 1   # a quick look
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

ROOT = Path(__file__).resolve().parents[1]


def sweep_command(out: Path, executor: str, epochs: Optional[int], ray_cpus: int) -> list[str]:
    cmd = [sys.executable, "experiments/randomization.py", "--quick", "--part", "tests", "--device", "cpu",
           "--out", str(out)]  # fmt: skip
    if epochs is not None:
        cmd += ["--epochs", str(epochs)]
    if executor == "ray":
        cmd += ["--executor", "ray", "--ray-cpus", str(ray_cpus)]
    return cmd


def timed(cmd: list[str], threads: Optional[int] = None) -> tuple[float, float, float]:
    """``(seconds, load before, load after)`` of one command run to completion (failing loudly)."""
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    before = os.getloadavg()[0]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return seconds, before, os.getloadavg()[0]


def results(out: Path) -> dict:
    data = json.loads((out / "results.json").read_text())
    data.pop("wall_seconds")
    return data


def main(
    rounds: Annotated[int, typer.Option(min=1, help="Rounds; each runs the sweep once per executor.")] = 2,
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Epochs per run (default: the quick scale's 150).")] = None,
    ray_cpus: Annotated[int, typer.Option(min=1, help="CPUs of Ray's local cluster (runs at once).")] = 2,
    out: Annotated[Optional[Path], typer.Option(help="Append the markdown table to this file.")] = None,
    local_one_thread: Annotated[bool, typer.Option(
        help="Also time the local executor on one torch thread (OMP_NUM_THREADS=1) in each round.")] = False,
) -> None:
    rows, ratios = [], []
    variants = ("local", "ray", "local-1t") if local_one_thread else ("local", "ray")
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        for r in range(rounds):
            order = variants if r % 2 == 0 else variants[::-1]
            got = {}
            for variant in order:
                folder = Path(tmp) / f"round{r}-{variant}"
                executor = variant.removesuffix("-1t")
                got[variant] = timed(sweep_command(folder, executor, epochs, ray_cpus), 1 if variant.endswith("-1t") else None)
                typer.echo(f"round {r}: {variant} {got[variant][0]:.1f} s", err=True)
                if results(folder) != results(Path(tmp) / f"round{r}-{order[0]}"):
                    raise SystemExit(f"round {r}: the {variant} sweep's results.json differs from the {order[0]} one's")
            ratio = got["ray"][0] / got["local"][0]
            ratios.append(ratio)
            cells = " | ".join(f"{got[v][0]:.1f} ({got[v][1]:.1f} → {got[v][2]:.1f})" for v in variants)
            rows.append(f"| {r} | {', '.join(order)} | {cells} | {ratio:.2f} |")
    grid = f"randomization --quick --part tests{f' --epochs {epochs}' if epochs else ''} (6 runs)"
    names = {"local": "local s (load)", "ray": "ray s (load)", "local-1t": "local, 1 thread, s (load)"}
    table = "\n".join([
        f"{grid}; {os.cpu_count()} CPUs, Ray local cluster of {ray_cpus} CPUs, 1 CPU per run; results.json equal",
        "",
        f"| round | order | {' | '.join(names[v] for v in variants)} | ray / local |",
        "|---|---|" + "---|" * len(variants) + "---|",
        *rows,
        "",
        f"median ray / local: {statistics.median(ratios):.2f} (range {min(ratios):.2f}–{max(ratios):.2f})",
    ])  # fmt: skip
    typer.echo(table)
    if out is not None:
        with open(out, "a") as fh:
            fh.write(table + "\n")


if __name__ == "__main__":
    typer.run(main)
