"""The Ray executor: refused in one line without Ray; on a real 2-CPU local cluster, a worker killed mid-run
is resumed from its checkpoint and the run folders, results and figures equal the local executor's."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from experiments import randomization
from stability.data.spec import DataSpec
from stability.models.spec import ModelSpec
from stability.sweeps import executors
from stability.sweeps.executors import SweepFailed, concurrent_runs, ray_installed
from stability.sweeps.progress import SweepStatus, eta_seconds, format_seconds
from stability.sweeps.runs import RunSpec, Sweep, is_complete
from stability.training.logs import read_metrics
from stability.training.spec import TrainSpec

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
needs_ray = pytest.mark.skipif(not ray_installed(), reason="Ray is not installed (pip install 'stability[ray]')")
# The grid: randomization's six tests at smoke size, long enough (100 epochs, a checkpoint each) to be killed mid-run.
# Long enough that, on an idle machine too, both first runs are caught between epochs 5 and EPOCHS together.
EPOCHS = 400
GRID = ["--smoke", "--part", "tests", "--epochs", str(EPOCHS), "--device", "cpu"]


def invoke(*args: str):
    return runner.invoke(randomization.app, [*GRID, *args])


# Without Ray, and options checked before anything trains


def test_executor_ray_without_ray_installed_is_one_line_and_exit_2(tmp_path, monkeypatch):
    monkeypatch.setattr(executors, "ray_installed", lambda: False)
    result = invoke("--executor", "ray", "--out", str(tmp_path))
    assert result.exit_code == 2
    assert result.output.strip() == (
        "error: --executor ray needs Ray, which is not installed; pip install 'stability[ray]' "
        "(or use --executor local)"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["--gpus-per-run", "1"], "--gpus-per-run set(s) the Ray executor; add --executor ray or drop it"),
        (["--address", "auto", "--max-retries", "1"], "--address, --max-retries set(s) the Ray executor"),
        (["--executor", "ray", "--cpus-per-run", "0"], "--cpus-per-run must be a positive finite number, got 0.0"),
        (["--executor", "ray", "--gpus-per-run", "-1"], "--gpus-per-run must be a non-negative finite number"),
        (["--executor", "ray", "--max-retries", "-1"], "--max-retries must be an integer of at least 0, got -1"),
        (["--executor", "ray", "--address", "auto", "--ray-cpus", "2"], "--ray-cpus sizes a local cluster"),
        pytest.param(["--executor", "ray", "--device", "cuda"], "--device cuda under --executor ray needs --gpus-per-run",
                     marks=needs_ray),
        pytest.param(["--executor", "ray", "--address", "auto"],
                     "--address auto: ConnectionError: Could not find any running Ray instance", marks=[needs_ray, pytest.mark.slow]),
    ],
    ids=["gpus-local", "address-local", "cpus-0", "gpus-negative", "retries-negative", "address-and-size", "cuda-no-gpu",
         "no-cluster"],
)
def test_executor_options_are_checked_before_anything_trains(tmp_path, tmp_path_factory, monkeypatch, args, message):
    # "auto" looks for a cluster this machine runs: point it at an empty Ray folder, so another sweep's is not found.
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path_factory.mktemp("ray")))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    result = runner.invoke(randomization.app, ["--smoke", "--out", str(tmp_path), *args])
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"error: {message}") and result.output.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_concurrent_runs_is_what_the_scarcer_resource_allows():
    assert concurrent_runs({"CPU": 2.0}, 1, 0) == 2
    assert concurrent_runs({"CPU": 2.0}, 0.5, 0) == 4
    assert concurrent_runs({"CPU": 16.0, "GPU": 4.0}, 2, 1) == 4  # GPUs bind
    assert concurrent_runs({"CPU": 16.0, "GPU": 4.0}, 4, 0.5) == 4  # CPUs bind
    assert concurrent_runs({"CPU": 16.0}, 1, 1) == 0  # no GPU in the cluster
    assert concurrent_runs({"CPU": 0.3 * 10}, 0.3, 0) == 10  # no off-by-one from rounding


def test_eta_is_the_sweeps_own_throughput():
    assert eta_seconds(30.0, 3, 3) == 30.0
    assert eta_seconds(30.0, 0, 3) is None and eta_seconds(30.0, 0, 0) == 0.0
    assert [format_seconds(s) for s in (None, 0, 59.6, 61, 3725)] == ["—", "0:00", "1:00", "1:01", "1:02:05"]
    status = SweepStatus(total=6, skipped=2, done=4, failed=1, running=1, started=0.0)
    assert status.remaining == 1
    assert status.eta(now=30.0) == 10.0  # three runs finished here (two trained, one failed) in 30 s
    assert status.line().startswith("runs 4/6 done (2 skipped) · 1 running · 1 failed · ETA ")


# A real local Ray cluster


def _ancestors(pid: int) -> set[int]:
    out = set()
    while pid > 1:
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
        out.add(pid)
    return out


def _run_workers(driver: int) -> list[int]:
    """Ray workers of ``driver``'s cluster that are training a run now (Ray titles them by the task)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if title.startswith(b"ray::stability-run") and driver in _ancestors(int(entry.name)):
                pids.append(int(entry.name))
    return pids


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _kill_a_worker_when(driver: subprocess.Popen, ready, timeout: float = 90.0) -> None:
    """SIGKILL one run's worker process as soon as ``ready()`` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and driver.poll() is None:
        workers = _run_workers(driver.pid)
        if workers and ready():
            os.kill(workers[0], signal.SIGKILL)
            return
        time.sleep(0.01)
    pytest.fail(f"no run was caught mid-run (driver exit code {driver.poll()})")


def _sweep_on_ray(out: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    cmd = [sys.executable, "experiments/randomization.py", *GRID, "--out", str(out), "--executor", "ray",
           "--ray-cpus", "2", *args]  # fmt: skip
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def without_seconds(rows):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def assert_same_run_folders(ours: Path, reference: Path) -> None:
    """Same files; config.json and the released lock byte for byte; metrics equal but for wall-clock seconds;
    weights bit-identical."""
    names = sorted(p.name for p in (reference / "runs").iterdir())
    assert sorted(p.name for p in (ours / "runs").iterdir()) == names and len(names) == 6
    for name in names:
        a, b = ours / "runs" / name, reference / "runs" / name
        assert sorted(os.listdir(a)) == sorted(os.listdir(b)) == [".lock", "checkpoint.pt", "config.json", "metrics.jsonl"]
        for f in (".lock", "config.json"):  # the lock released (empty) by whoever held it last
            assert (a / f).read_bytes() == (b / f).read_bytes(), f
        assert without_seconds(read_metrics(a / "metrics.jsonl")) == without_seconds(read_metrics(b / "metrics.jsonl"))
        wa, wb = (torch.load(d / "checkpoint.pt", weights_only=True) for d in (a, b))
        assert wa["epoch"] == wb["epoch"] and wa["resume"]["step"] == wb["resume"]["step"]
        assert wa["state_dict"].keys() == wb["state_dict"].keys()
        assert all(torch.equal(wa["state_dict"][k], wb["state_dict"][k]) for k in wa["state_dict"]), name


def _assert_same_results(ours: Path, reference: Path) -> None:
    """results.json equal but for the wall time; results.md but for its two timing lines; figures byte for byte."""
    ja, jb = (json.loads((d / "results.json").read_text()) for d in (ours, reference))
    assert {k: v for k, v in ja.items() if k != "wall_seconds"} == {k: v for k, v in jb.items() if k != "wall_seconds"}

    def md(d: Path) -> list[str]:
        return [line for line in (d / "results.md").read_text().splitlines()
                if not line.startswith(("| wall time", "| training seconds"))]  # fmt: skip

    assert md(ours) == md(reference)
    assert (ours / "figures" / "learning_curves.png").read_bytes() == (reference / "figures" / "learning_curves.png").read_bytes()


@needs_ray
@pytest.mark.slow
def test_a_killed_worker_is_resumed_and_the_sweep_equals_the_local_one(tmp_path):
    """Six runs on a 2-CPU local cluster. First sweep, no retries: a worker is killed mid-run; that run is
    reported failed, the other five finish, exit 1. Second sweep, one retry: the five are skipped before
    submission, the failed run resumes from its checkpoint, its worker is killed again and Ray's retry
    resumes it once more. Every folder then equals the local executor's (weights bit for bit)."""
    local = tmp_path / "local"
    result = invoke("--out", str(local))
    assert result.exit_code == 0, result.output

    out = tmp_path / "ray"
    first_two = [out / "runs" / name / "metrics.jsonl" for name in ("data=true", "data=partial-labels,p=0.5")]
    driver = _sweep_on_ray(out, "--max-retries", "0")
    # Ray starts the runs in order: kill one of the first two once both are past a few checkpoints.
    _kill_a_worker_when(driver, lambda: all(5 <= _lines(m) < EPOCHS + 1 for m in first_two))
    output = driver.communicate(timeout=120)[0]
    assert driver.returncode == 1, output
    assert "1 of 6 runs failed" in output and "its worker died" in output and "rerunning the same command" in output
    runs = [randomization.name_of(randomization.corrupted(randomization.protocol("smoke", "digits", None), t, 0.5))
            for t in randomization.TESTS]  # fmt: skip
    killed = [name for name in runs if f"{name}: failed: its worker died" in output]
    assert len(killed) == 1 and killed[0] in ("data=true", "data=partial-labels,p=0.5"), output
    metrics = out / "runs" / killed[0] / "metrics.jsonl"
    stopped_at = _lines(metrics)
    assert 5 <= stopped_at < EPOCHS + 1  # killed mid-run, its folder kept

    driver = _sweep_on_ray(out, "--max-retries", "1")
    _kill_a_worker_when(driver, lambda: _lines(metrics) > stopped_at + 5)  # resumed, and killed again
    output = driver.communicate(timeout=120)[0]
    assert driver.returncode == 0, output
    assert output.count("complete, skipped") == 5 and ": failed:" not in output
    assert "the task will be retried" in output  # Ray's own word that the second kill was retried

    assert_same_run_folders(out, local)
    _assert_same_results(out, local)


def _spec(name: str, data: DataSpec) -> RunSpec:
    return RunSpec(name, ModelSpec("mlp", {"widths": [8]}), data, TrainSpec(epochs=3, lr=0.05, batch_size=50))


@needs_ray
@pytest.mark.slow
def test_a_failing_run_on_ray_is_reported_and_the_others_finish(tmp_path):
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        good = _spec("good", DataSpec(dataset="digits", n_train=100, n_test=50))
        bad = _spec("too-many", DataSpec(dataset="digits", n_train=100_000, n_test=50))
        console = io.StringIO()
        sweep = Sweep(tmp_path, executor=executors.RayExecutor(), console=Console(file=console, width=200))
        with pytest.raises(SweepFailed) as caught:
            sweep.run_all([bad, good])
        assert ray.is_initialized()  # a cluster the executor did not start is left running
    finally:
        ray.shutdown()
    failure = caught.value
    assert failure.bad_input and [f.name for f in failure.failures] == ["too-many"]
    assert "n_train=100000 + n_heldout=0 exceed the 1437-sample training pool of digits" in failure.failures[0].error
    assert list(failure.results) == ["good"] and is_complete(tmp_path / "runs" / "good", good)
    assert "too-many: failed: n_train=100000" in console.getvalue()
    assert not (tmp_path / "runs" / "too-many").exists()


def test_every_sweep_command_in_the_scaling_docs_and_the_readme_parses():
    import re
    import shlex

    import typer.main

    from experiments import memorize, stability_tracking

    scripts = {"randomization": randomization, "memorize": memorize, "stability_tracking": stability_tracking}
    text = (ROOT / "docs" / "scaling.md").read_text() + (ROOT / "README.md").read_text()
    commands = re.findall(r"^python experiments/(\w+)\.py([^#\n]*)", text, flags=re.M)
    assert sum("--executor ray" in args for _, args in commands) >= 7  # laptop (2), GPU node (2), cluster, SLURM, README
    for name, args in commands:
        command = typer.main.get_command(scripts[name].app)
        command.make_context(name, shlex.split(args))  # raises on an unknown option or a bad value
