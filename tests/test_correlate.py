"""``stability correlate``: Kendall's τ_b against a hand count and scipy, the granulated τ and Ψ on a grid with a
closed form, the conditional mutual information against a brute-force count, bootstrap coverage, and the
command end to end on run folders written here (config.json + metrics.jsonl + measures.json)."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from typer.testing import CliRunner

from stability.analysis.correlate import correlate
from stability.analysis.correlate_options import CorrelateOptions
from stability.analysis.correlate_runs import RunTable, read_runs
from stability.analysis.correlate_stats import (
    bootstrap_weights,
    conditional_mutual_information,
    grouped_tau_b,
    kendall_tau_b,
    percentile_interval,
)
from stability.cli.app import app

NO_BOOTSTRAP = CorrelateOptions(resamples=0, cmi_resamples=0)


@pytest.fixture(autouse=True)
def _one_blas_thread():
    """One BLAS thread, as conftest gives torch one: the pair matrices here are tiny, and on a loaded 2-core
    machine OpenBLAS threads only contend (the coverage check ran 25 times slower with them)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


# --- Kendall's τ_b -------------------------------------------------------------------------------------------


def test_tau_b_by_hand():
    # Pairs of (1,1) (2,3) (2,2) (3,2): concordant 3, discordant 1 ((2,3)-(3,2)), one tie in x, one in y:
    # τ_b = (3 − 1) / √((6 − 1)(6 − 1)) = 0.4.
    assert kendall_tau_b([1, 2, 2, 3], [1, 3, 2, 2]) == pytest.approx(0.4, abs=1e-15)
    assert kendall_tau_b([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0, abs=1e-15)
    assert math.isnan(kendall_tau_b([1, 1, 1], [1, 2, 3]))


@pytest.mark.parametrize("seed", range(8))
def test_tau_b_matches_scipy_on_tables_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 60))
    x = rng.integers(0, 4, n).astype(float)
    y = x * rng.integers(-1, 2) + rng.integers(0, 3, n)
    expected = scipy.stats.kendalltau(x, y, variant="b").statistic
    assert kendall_tau_b(x, y) == pytest.approx(expected, abs=1e-12)


def test_weights_are_the_resampled_list():
    """A row of multinomial counts gives scipy's τ_b of the list with run i repeated w_i times."""
    rng = np.random.default_rng(3)
    x, y = rng.integers(0, 5, 25).astype(float), rng.normal(size=25).round(1)
    weights = bootstrap_weights(25, 5, seed=1)
    got = grouped_tau_b(x, y, np.zeros(25, dtype=int), weights)[:, 0]
    for row, tau in zip(weights, got):
        idx = np.repeat(np.arange(25), row.astype(int))
        assert tau == pytest.approx(scipy.stats.kendalltau(x[idx], y[idx], variant="b").statistic, abs=1e-12)


# --- the granulated τ and Ψ ----------------------------------------------------------------------------------


def grid_table(measure) -> RunTable:
    a, b = zip(*itertools.product([0, 1, 2], [0, 1]))
    gap = [ai + 10 * bi for ai, bi in zip(a, b)]
    return RunTable.from_columns(gap, {"training.a": a, "training.b": b, "training.epochs": [5] * 6},
                                 {"m": [measure(ai, bi) for ai, bi in zip(a, b)]})  # fmt: skip


def test_granulated_tau_closed_form():
    # gap = a + 10 b, μ = a − 10 b: with b fixed μ orders the runs like the gap (ψ_a = 1), with a fixed
    # against it (ψ_b = −1), so Ψ = 0. Over all 15 pairs: the 6 with equal b are concordant, the 9 with
    # different b discordant, τ = (6 − 9) / 15 = −0.2.
    r = correlate(grid_table(lambda a, b: a - 10 * b), NO_BOOTSTRAP).measures[0]
    assert r.tau.value == pytest.approx(-0.2, abs=1e-15)
    psi = {g.hyperparameter: g for g in r.granulated}
    assert set(psi) == {"a", "b"}  # the constant field is no hyperparameter
    assert psi["a"].tau.value == 1.0 and (psi["a"].groups, psi["a"].total_groups) == (2, 2)
    assert psi["b"].tau.value == -1.0 and (psi["b"].groups, psi["b"].total_groups) == (3, 3)
    assert r.psi.value == 0.0
    assert r.tau.low is None and r.tau.resamples == 0


def test_granulated_tau_averages_defined_groups_only():
    # μ(a, b) = a² + b · [a == 1]. With a fixed, μ is constant for a = 0 and a = 2 (τ undefined) and rises
    # with b like the gap for a = 1 (τ = 1): ψ_b = 1 over 1 of 3 groups. With b fixed, μ rises with a: ψ_a = 1.
    r = correlate(grid_table(lambda a, b: a * a + b * (a == 1)), NO_BOOTSTRAP).measures[0]
    psi = {g.hyperparameter: g for g in r.granulated}
    assert psi["b"].tau.value == 1.0 and (psi["b"].groups, psi["b"].total_groups) == (1, 3)
    assert psi["a"].tau.value == 1.0
    assert r.psi.value == 1.0


def test_fields_that_vary_together_are_one_hyperparameter():
    seeds = [0, 1, 2, 0, 1, 2]
    table = RunTable.from_columns([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], {
        "data.seed": seeds, "training.seed": seeds, "training.lr": [0.1] * 3 + [0.2] * 3,
        "model.kwargs.widths": [[8]] * 6}, {"m": [1, 2, 3, 4, 5, 6]})  # fmt: skip
    names = {h.name: h for h in table.hyperparameters}
    assert set(names) == {"seed", "lr"}
    assert names["seed"].fields == ("data.seed", "training.seed") and names["seed"].levels == [(0, 0), (1, 1), (2, 2)]


# --- the conditional mutual information ----------------------------------------------------------------------


def brute_force_cmi(mu, gap, codes) -> float:
    """I(V_μ; V_g | U) / H(V_g | U) by counting ordered pairs in Python."""
    cells = Counter()
    for i, j in itertools.permutations(range(len(gap)), 2):
        if gap[i] != gap[j]:
            cells[(codes[i], codes[j]), np.sign(mu[i] - mu[j]), np.sign(gap[i] - gap[j])] += 1
    total = sum(cells.values())

    def marginal(keep):
        out = Counter()
        for key, count in cells.items():
            out[keep(key)] += count
        return out

    n_u, n_ua, n_ub = marginal(lambda k: k[0]), marginal(lambda k: k[:2]), marginal(lambda k: (k[0], k[2]))
    info = sum(c / total * math.log(c * n_u[k[0]] / (n_ua[k[:2]] * n_ub[(k[0], k[2])])) for k, c in cells.items())
    entropy = -sum(c / total * math.log(c / n_u[k[0]]) for k, c in n_ub.items())
    return info / entropy


def test_cmi_matches_a_brute_force_count():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 3, 14)
    gap = codes + rng.normal(size=14)
    mu = np.round(gap + rng.normal(size=14), 0)  # ties in the measure: V_μ = 0
    got = conditional_mutual_information(mu[None], gap, [np.zeros(14, dtype=np.int64), codes], np.ones((1, 14)))
    assert got[0, 0, 0] == pytest.approx(brute_force_cmi(mu, gap, np.zeros(14)), abs=1e-12)
    assert got[0, 0, 1] == pytest.approx(brute_force_cmi(mu, gap, codes), abs=1e-12)


def noisy_grid(seed=0):
    rng = np.random.default_rng(seed)
    hyper = np.array(list(itertools.product(range(3), range(3), range(2), range(4))))  # 72 runs
    gap = hyper[:, 0] + 0.5 * hyper[:, 1] - hyper[:, 2] + rng.normal(scale=0.7, size=len(hyper))
    return hyper, gap, rng


def test_cmi_is_one_for_the_gap_itself_and_near_zero_for_noise():
    hyper, gap, rng = noisy_grid()
    names = ["lr", "width", "depth", "seed"]
    table = RunTable.from_columns(gap, dict(zip(names, hyper.T.tolist())),
                                  {"gap itself": gap, "noise": rng.normal(size=len(gap)), "lr": hyper[:, 0] * 1.0})
    result = {r.name: r for r in correlate(table, CorrelateOptions(resamples=0, cmi_resamples=0)).measures}
    assert result["gap itself"].cmi.value == pytest.approx(1.0, abs=1e-12)
    assert all(v == pytest.approx(1.0) for v in result["gap itself"].cmi_by_set.values())
    assert result["noise"].cmi.value < 0.02
    # A measure that is a hyperparameter: τ is large, but given that hyperparameter it says nothing more.
    assert result["lr"].tau.value > 0.4
    assert result["lr"].cmi.value == pytest.approx(0.0, abs=1e-12) and "lr" in result["lr"].cmi_argmin
    assert [r.name for r in correlate(table, NO_BOOTSTRAP).measures][0] == "gap itself"  # ranked by K
    assert len(result["noise"].cmi_by_set) == 1 + 4 + 6  # ∅, the 4 singletons and the 6 pairs


# --- bootstrap intervals -------------------------------------------------------------------------------------


def test_bootstrap_interval_covers_the_population_tau():
    # For a bivariate normal with correlation ρ, τ = (2/π) arcsin ρ.
    rho, n = 0.6, 60
    truth = 2 / math.pi * math.asin(rho)
    covered = []
    for seed in range(100):
        rng = np.random.default_rng(1000 + seed)
        x = rng.normal(size=n)
        y = rho * x + math.sqrt(1 - rho**2) * rng.normal(size=n)
        taus = grouped_tau_b(x, y, np.zeros(n, dtype=int), bootstrap_weights(n, 400, seed))[:, 0]
        low, high, defined = percentile_interval(taus, 0.95)
        assert defined == 400
        covered.append(low <= truth <= high)
    assert covered[0]
    # Nominal 95 of 100; fewer than 88 has probability below 0.5% if the coverage is 95% (binomial).
    assert sum(covered) >= 88


def test_bootstrap_is_seeded_and_narrows_with_more_runs():
    hyper, gap, rng = noisy_grid(1)
    table = RunTable.from_columns(gap, {"a": hyper[:, 0], "b": hyper[:, 1]}, {"m": gap + rng.normal(size=len(gap))})
    options = CorrelateOptions(resamples=300, cmi_resamples=30, seed=5)
    first, again = correlate(table, options).measures[0], correlate(table, options).measures[0]
    assert first == again
    assert first.tau.low < first.tau.value < first.tau.high and first.cmi.low <= first.cmi.value <= first.cmi.high
    half = RunTable.from_columns(gap[::2], {"a": hyper[::2, 0], "b": hyper[::2, 1]}, {"m": table.measures["m"][::2]})
    narrow, wide = first.tau, correlate(half, options).measures[0].tau
    assert narrow.high - narrow.low < wide.high - wide.low


# --- run folders and the command line ------------------------------------------------------------------------

runner = CliRunner()


def write_run(folder: Path, *, lr=0.1, width=16, seed=0, gap=0.1, measures=None, rows=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = {"model": {"arch": "mlp", "kwargs": {"widths": [width]}}, "data": {"dataset": "digits", "seed": seed},
              "training": {"lr": lr, "batch_size": 32, "seed": seed, "epochs": 10}}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config))
    rows = rows if rows is not None else [
        {"epoch": 0, "train_acc": 0.3, "test_acc": 0.3, "train_loss": 2.0, "test_loss": 2.0},
        {"epoch": 1, "train_acc": 1.0, "test_acc": 1.0 - gap, "train_loss": 0.01, "test_loss": 0.01 + 3 * gap},
    ]  # fmt: skip
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if measures is not None:
        (folder / "measures.json").write_text(json.dumps(measures))
    return folder


def write_grid(root: Path) -> list[Path]:
    """12 runs: lr x width x seed, with the gap driven by lr and width; three measures."""
    rng = np.random.default_rng(0)
    folders = []
    for lr, width, seed in itertools.product([0.01, 0.1, 0.5], [16, 64], [0, 1]):
        gap = 0.1 * math.log(1 / lr) + 0.02 * width / 16 + 0.01 * rng.normal()
        measures = {"sharpness": 1 / lr + rng.normal(), "noise": float(rng.normal()), "norm": width + rng.normal()}
        folders.append(write_run(root / f"lr={lr},width={width},seed={seed}", lr=lr, width=width, seed=seed,
                                 gap=gap, measures=measures))  # fmt: skip
    return folders


def run(*args: str):
    return runner.invoke(app, ["correlate", "--resamples", "200", "--cmi-resamples", "20", *map(str, args)])


def test_command_end_to_end(tmp_path):
    folders = write_grid(tmp_path / "runs")
    result = run(*folders, "--json", tmp_path / "out.json", "--plots", tmp_path / "figs")
    assert result.exit_code == 0, result.output
    for name in ("sharpness", "noise", "norm", "Kendall τ", "ψ lr", "ψ widths", "ψ seed"):
        assert name in result.stdout
    doc = json.loads((tmp_path / "out.json").read_text())
    assert doc["schema"] == "stability-correlate" and doc["options"]["resamples"] == 200
    table = read_runs(folders)
    assert doc["runs"]["gap"] == pytest.approx(list(table.gap))
    assert {h["name"] for h in doc["runs"]["hyperparameters"]} == {"lr", "widths", "seed"}
    for m in doc["measures"]:
        expected = scipy.stats.kendalltau(table.measures[m["name"]], table.gap, variant="b").statistic
        assert m["tau"]["value"] == pytest.approx(expected, abs=1e-12)
        assert m["tau"]["low"] <= m["tau"]["value"] <= m["tau"]["high"]
        assert {g["hyperparameter"] for g in m["granulated"]} == {"lr", "widths", "seed"}
    assert [m["name"] for m in doc["measures"]][0] == "sharpness"
    figures = sorted(p.name for p in (tmp_path / "figs").iterdir())
    assert figures == ["ranking.png", "scatter-noise.png", "scatter-norm.png", "scatter-sharpness.png"]
    for fig in figures:
        assert (tmp_path / "figs" / fig).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The loss gap, a sweep's output folder for all its runs, and a chosen measure.
    loss = run(tmp_path, "--gap", "loss", "--measure", "norm", "--json", tmp_path / "loss.json")
    assert loss.exit_code == 0, loss.output
    doc = json.loads((tmp_path / "loss.json").read_text())
    assert [m["name"] for m in doc["measures"]] == ["norm"] and len(doc["runs"]["runs"]) == 12
    assert doc["runs"]["gap"] == pytest.approx([3 * g for g in table.gap], abs=1e-12)


def test_measures_from_an_analysis_report(tmp_path):
    folders = []
    for k, lr in enumerate([0.01, 0.1, 0.5]):
        folder = write_run(tmp_path / f"run{k}", lr=lr, gap=0.1 * (k + 1), measures={"hessian.trace": 99.0 + k})
        report = {"schema": "stability-analysis", "schema_version": 3, "checkpoint": str(folder / "checkpoint.pt"),
                  "splits": {"train": {"measures": {"jacobian_frobenius": {"mean": 2.0 + k}}}},
                  "curvature": {"hessian": {"sharpness": 1.0 / lr, "trace": {"estimate": 5.0}}, "ggn": None,
                                "sgd": None}}  # fmt: skip
        (folder / "analysis.json").write_text(json.dumps([report]))
        folders.append(folder)
    table = read_runs(folders)
    assert table.measures == {"hessian.sharpness": (100.0, 10.0, 2.0), "hessian.trace": (99.0, 100.0, 101.0),
                              "train.jacobian_frobenius": (2.0, 3.0, 4.0)}  # fmt: skip
    assert [h.name for h in table.hyperparameters] == ["lr"]


def test_ignore_and_drop_incomplete(tmp_path):
    folders = write_grid(tmp_path)
    table = read_runs(folders, ignore=["seed"])
    assert {h.name for h in table.hyperparameters} == {"lr", "widths"}
    (folders[0] / "measures.json").write_text(json.dumps({"noise": 1.0, "norm": 2.0, "sharpness": None}))
    result = run(*folders, "--drop-incomplete")
    assert result.exit_code == 0, result.output
    assert "'sharpness' left out: missing in 1 of 12 runs" in result.stderr


def one_error_line(result) -> str:
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:")
    return lines[0]


def _spoil(folders: list[Path], case: str) -> list[str]:
    """Damage the runs in one way; returns the extra command-line arguments."""
    first = folders[0]
    if case == "missing folder":
        folders[0] = first.parent / "nowhere"
    elif case == "a file":
        folders[0] = first / "config.json"
    elif case in ("no config", "no metrics", "no measures"):
        (first / {"no config": "config.json", "no metrics": "metrics.jsonl", "no measures": "measures.json"}[case]).unlink()
    elif case == "bad config json":
        (first / "config.json").write_text('{"model": ')
    elif case == "config not specs":
        (first / "config.json").write_text("[1, 2]")
    elif case == "bad measures json":
        (first / "measures.json").write_text("{nope}")
    elif case == "measure not a number":
        (first / "measures.json").write_text(json.dumps({"sharpness": "high", "noise": 1, "norm": 2}))
    elif case == "no test accuracy":
        write_run(first, rows=[{"epoch": 0, "train_acc": 1.0, "test_acc": None}])
    elif case == "damaged metrics":
        (first / "metrics.jsonl").write_text('{"epoch": 0, "train_acc"\n{"epoch": 1}\n')
    elif case == "empty metrics":
        (first / "metrics.jsonl").write_text("")
    elif case == "two runs":
        del folders[2:]
    elif case == "nothing varies":
        for folder in folders[1:]:
            (folder / "config.json").write_text((first / "config.json").read_text())
    elif case == "measure missing":
        (first / "measures.json").write_text(json.dumps({"noise": 1.0, "norm": 2.0}))
    elif case == "given twice":
        folders.append(first)
    elif case == "constant gap":
        for folder in folders:
            (folder / "metrics.jsonl").write_text(json.dumps({"epoch": 0, "train_acc": 1.0, "test_acc": 0.9}) + "\n")
    elif case == "unknown measure":
        return ["--measure", "flatness"]
    elif case == "unknown ignore":
        return ["--ignore", "momentum"]
    elif case == "unknown color":
        return ["--color-by", "depth", "--plots", str(first.parent / "figs")]
    elif case == "bad gap":
        return ["--gap", "error"]
    return []


BAD = {
    "missing folder": "nowhere: no such folder",
    "a file": "config.json is a file; pass the run folder",
    "no config": "has no config.json",
    "no metrics": "has no metrics.jsonl",
    "no measures": "has neither measures.json nor analysis.json",
    "bad config json": "config.json is not readable JSON (line 1",
    "config not specs": "is not a run's config",
    "bad measures json": "measures.json is not readable JSON",
    "measure not a number": "the value of 'sharpness' is \"high\", not a number",
    "no test accuracy": "the last row has no number 'test_acc', so no accuracy gap",
    "damaged metrics": "line 1 is damaged",
    "empty metrics": "metrics.jsonl has no rows",
    "two runs": "at least 3 runs, got 2",
    "nothing varies": "no hyperparameter varies across the 12 runs",
    "measure missing": "the values of 'sharpness' are missing (or not finite) in 1 of 12 runs",
    "given twice": "is given twice",
    "constant gap": "the generalization gap is",
    "unknown measure": "--measure 'flatness' is in none of the runs; they give: noise, norm, sharpness",
    "unknown ignore": "--ignore 'momentum' names no config field",
    "unknown color": "--color-by 'depth' is not a hyperparameter of these runs: seed, widths, lr",
    "bad gap": "--gap 'error' is not one of: accuracy, loss",
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_run_folders_get_one_line_and_exit_2(tmp_path, case):
    folders = write_grid(tmp_path / "runs")
    extra = _spoil(folders, case)
    result = run(*folders, *extra)
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert BAD[case] in line, line
    if case == "measure missing":
        assert "--drop-incomplete" in line and "lr=0.01,width=16,seed=0" in line


def test_a_bad_folder_is_refused_before_numpy_loads():
    heavy = ["torch", "numpy", "matplotlib", "scipy", "rich.progress"]
    code = (f"import sys; from stability.cli.app import app; import stability.cli\n"
            f"try:\n    app(['correlate', 'no-such-folder'])\nexcept SystemExit as e:\n"
            f"    print(e.code, [m for m in {heavy!r} if m in sys.modules])")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip() == "2 []", proc.stdout + proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "no-such-folder: no such folder" in proc.stderr


def test_the_worked_case_in_the_docs_prints_what_it_says():
    text = (Path(__file__).parents[1] / "docs" / "correlate.md").read_text(encoding="utf-8")
    block = next(b for b in text.split("```bash")[1:] if "CorrelateOptions(resamples=0" in b)
    code, rest = block.split('python -c "', 1)[1].split('\n"\n', 1)
    expected = rest.split("\n", 1)[0].removeprefix("# ")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == expected
