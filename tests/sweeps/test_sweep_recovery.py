"""Reliability on a real local Ray: a killed trial process resumes from its last checkpoint and ends
exactly where an uninterrupted run ends, with one gap-free MLflow history; an interrupted sweep
driver finishes with --resume without rerunning finished trials (one sweep has both failures)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")
from mlflow import MlflowClient  # noqa: E402

from contralord.config import ContraLordConfig  # noqa: E402
from contralord.presets import resolve_presets  # noqa: E402
from contralord.trainer import train  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
FAST = {"data.size": "320", "latent.epochs": "1", "encoder.epochs": "3", "eval.num_train": "64",
        "eval.num_test": "32", "eval.grid_size": "2"}


def _cmd(root, *extra, sets=FAST):
    args = [sys.executable, str(REPO / "tune" / "sweep_negatives.py"), "--preset", "smoke", "--storage",
            str(root / "ray"), "--tracking-uri", f"sqlite:///{root}/mlflow.db", "--max-concurrent", "1"]
    return args + [a for k, v in sets.items() for a in ("--set", f"{k}={v}")] + list(extra)


def _trial_runs(root):
    client = MlflowClient(f"sqlite:///{root}/mlflow.db")
    experiment = client.get_experiment_by_name("contralord-negatives")
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    return client, [r for r in runs if r.data.tags.get("role") == "trial"]


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` in the process tree (Linux /proc): only what this test started."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process ended meanwhile
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state, past the (comm)
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found.extend(kids)
        todo.extend(kids)
    return found


def _kill_own_trials(driver_pid: int) -> list[int]:
    """SIGKILL the Ray trial processes (``ray::ImplicitFunc``) of this test's own sweep driver, by PID;
    other users' Ray clusters on the machine are not descendants of the driver and are never touched."""
    killed = []
    for pid in _descendants(driver_pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"ImplicitFunc" in cmdline:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    return killed


def _wait_for(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_killed_trial_then_interrupted_sweep__resume_equals_uninterrupted_run(tmp_path):
    """One sweep, two failures (until CI time mattered these were two tests, each with its own sweep): the
    first trial's process is killed after its first checkpoint and Tune resumes it from there; once a trial
    has finished the driver is interrupted (SIGINT) and ``--resume`` finishes the sweep without rerunning it.
    The killed trial ends exactly where an uninterrupted run ends, and every trial has one gap-free history."""
    sets = FAST | {"encoder.epochs": "4"}
    driver = subprocess.Popen(_cmd(tmp_path, sets=sets), cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        checkpoints = lambda: list((tmp_path / "ray").glob("sweep-negatives-smoke/*/checkpoint_*"))  # noqa: E731
        _wait_for(checkpoints, 400, "the first trial checkpoint")
        running = [r for r in _trial_runs(tmp_path)[1] if r.info.status == "RUNNING"]  # --max-concurrent 1
        assert len(running) == 1, [r.info.status for r in _trial_runs(tmp_path)[1]]
        assert _kill_own_trials(driver.pid), "no trial process of this test's sweep found to kill"
        finished = lambda: any(r.info.status == "FINISHED" for r in _trial_runs(tmp_path)[1])  # noqa: E731
        _wait_for(finished, 600, "one finished trial")
        driver.send_signal(signal.SIGINT)
        stopped = driver.wait(timeout=300)
    finally:
        driver.kill()
    assert stopped != 0  # an interrupted sweep says so (it once exited 0 with "no table")
    _, before = _trial_runs(tmp_path)
    done = {r.info.run_id: r for r in before if r.info.status == "FINISHED"}
    assert 1 <= len(done) <= 2
    resumed = subprocess.run(_cmd(tmp_path, "--resume", sets=sets), cwd=tmp_path, capture_output=True, text=True,
                             timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "| 128 | 1 |" in resumed.stdout and "| 256 | 1 |" in resumed.stdout
    client, after = _trial_runs(tmp_path)
    assert len(after) == 2 and all(r.info.status == "FINISHED" for r in after)
    for run_id, run in done.items():  # finished trials were not run again
        assert next(r for r in after if r.info.run_id == run_id).info.end_time == run.info.end_time
    for trial in after:  # one point per epoch, none missing or repeated, through the kill and the resume
        steps = [m.step for m in client.get_metric_history(trial.info.run_id, "encoder/train/total")]
        assert steps == sorted(set(steps)) and len(steps) == 4, (trial.data.params["encoder.queue_size"], steps)
    # the killed trial against a straight run on the same stage-1 artifact (its float results depend on the
    # thread count it ran with) at 1 thread
    trial = next(t for t in after if t.info.run_id == running[0].info.run_id)
    queue_size = int(trial.data.params["encoder.queue_size"])
    overrides = resolve_presets(["smoke"], sets | {"encoder.queue_size": queue_size, "run.threads": 1,
                                                   "run.latent_cache": str(tmp_path / "ray" / "latent_cache")})
    straight = train(ContraLordConfig.from_overrides(overrides), tmp_path / "straight")
    resumed = json.loads(Path(client.download_artifacts(trial.info.run_id, "summary.json", str(tmp_path))).read_text())
    for key in ("encoder/final/total", "encoder/final/nce_content", "encoder/eval/mig", "encoder/eval/smoothness"):
        assert resumed[key] == straight[key], key
