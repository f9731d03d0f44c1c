"""Reliability on a real local Ray (SQLite store on this machine's disk): one sweep survives every way its
processes can die and ends exactly where a straight run ends. Its driver is killed with SIGKILL (no handler
runs: an OOM killer, a lost SSH session, a preempted head) during stage 1, right after a trial's first
checkpoint, between trials and after the last trial (the table); a trial's own process is killed after a
checkpoint (Tune retries it); the driver is interrupted with Ctrl-C. Each time ``--resume`` goes on, and the
last one finishes with no run twice in MLflow, gap-free histories and the straight run's numbers. Its trials train
on a budget ladder (``encoder.rungs``), so kills also land between rungs or inside a rung's branch. A sweep whose
trials fail exits 1 with one line naming their error files. (Until CI time mattered, the killed trial and the
interrupted driver were tests of their own, each with its own sweep.)"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

pytest.importorskip("ray")
from mlflow import MlflowClient  # noqa: E402

from contralord.config import ContraLordConfig  # noqa: E402
from contralord.latent_result import ARTIFACT  # noqa: E402
from contralord.presets import resolve_presets  # noqa: E402
from contralord.run.trainer import train  # noqa: E402
from contralord.stage1.latent_stage import CHECKPOINT

REPO = Path(__file__).resolve().parents[2]
# two stage-1 epochs (a checkpoint between them); stage 2 on a budget ladder of 10 and 20 steps (WSD; 5 steps an
# epoch: rung 10 branches from step 8, where the trunk logs its epoch in two parts); one trial at a time
SETS = {"data.size": "320", "latent.epochs": "2", "encoder.schedule": "wsd", "encoder.rungs": "10,20",
        "eval.num_train": "64", "eval.num_test": "32", "eval.grid_size": "2"}
NAME = "recovers"
# no calibration where the test reads no estimate (it re-times the steps in every fresh cache: about 45 s a
# sweep on CI); the ladder extension below keeps it, its dry run prices the new steps
UNPRICED = ("--no-calibrate",)


def _cmd(root: Path, *extra: str, sets: dict[str, str] = SETS, name: str = NAME) -> list[str]:
    args = [sys.executable, str(REPO / "tune" / "sweep_negatives.py"), "--preset", "smoke", "--storage",
            str(root / "ray"), "--tracking-uri", f"sqlite:///{root}/mlflow.db", "--max-concurrent", "1",
            "--name", name]
    return args + [a for k, v in sets.items() for a in ("--set", f"{k}={v}")] + list(extra)


def _runs(root: Path, role: str) -> list:
    client = MlflowClient(f"sqlite:///{root}/mlflow.db")
    found = []
    for experiment in client.search_experiments():
        found += [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("role") == role]
    return found


def _stop_driver_at(root: Path, moment, what: str, stop: int = signal.SIGKILL) -> tuple[int, str]:
    """Run the sweep (``--resume`` once a first attempt exists) until ``moment(driver)`` holds, then send its
    driver ``stop``; end whatever it started that outlives it (Ray's agents), by the processes found under it.
    Returns the exit code and what the driver wrote to stderr."""
    resume = ["--resume"] if any(r.data.tags["sweep_path"].endswith(f"/{NAME}") for r in _runs(root, "sweep")) else []
    with open(root / "out.log", "a") as out, open(root / "err.log", "w+") as err:
        driver = subprocess.Popen(_cmd(root, *resume, *UNPRICED), cwd=root, stdout=out, stderr=err)
        process = psutil.Process(driver.pid)
        started, deadline = [], time.time() + 600
        try:
            while not moment(process):
                assert driver.poll() is None, f"the sweep ended (exit {driver.returncode}) before {what}"
                assert time.time() < deadline, f"timed out waiting for {what}"
                started = _children(process, started)
                time.sleep(0.1)
            started = _children(process, started)
            driver.send_signal(stop)
            driver.wait(timeout=300)
        finally:
            driver.kill()
            _, alive = psutil.wait_procs(started, timeout=15)  # the raylet and GCS end with the driver
            for leftover in alive:  # psutil checks each is still the process it saw (no PID reuse)
                leftover.kill()
        err.seek(0)
        return driver.returncode, err.read()


def _run_or_dump_stack(command: list[str], root: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """``subprocess.run``; a driver still running after ``timeout`` gets SIGABRT, on which Python's faulthandler
    prints every thread's stack, and the test fails with it. (CI saw this resume hang once, 2026-12-07: the
    restored Tuner asked Ray for nothing in 600 s; the stack says where the next one waits.)"""
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}
    driver = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        out, err = driver.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        driver.send_signal(signal.SIGABRT)
        out, err = driver.communicate(timeout=60)
        pytest.fail(f"the driver hung for {timeout:.0f} s; its stack at SIGABRT:\n{err[-6000:]}")
    return subprocess.CompletedProcess(command, driver.returncode, out, err)


def _children(process: psutil.Process, known: list) -> list:
    try:
        fresh = process.children(recursive=True)
    except psutil.NoSuchProcess:
        return known
    pids = {p.pid for p in known}
    return known + [p for p in fresh if p.pid not in pids]


def _trial_processes(process: psutil.Process) -> list:
    """The Ray trial processes (``ray::ImplicitFunc``) of this test's own driver; never another user's Ray."""
    found = []
    for child in _children(process, []):
        try:
            if "ImplicitFunc" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:  # ended meanwhile
            continue
    return found


def _stage1_folder(root: Path) -> Path | None:
    found = list((root / "ray" / "latent_cache").glob(f"*/{CHECKPOINT}"))
    return found[0].parent if found else None


def _checkpoints(root: Path) -> dict[str, int]:
    """Each trial's encoder.pt in its work folder, by the inode of its current version (a save replaces it)."""
    found = (root / "ray" / NAME / "work").glob("*/checkpoints/encoder.pt")
    return {p.parent.parent.name: p.stat().st_ino for p in found}


def _finished(root: Path) -> list:
    return [r for r in _runs(root, "trial") if r.info.status == "FINISHED"]


class _KillTrialThenWait:
    """A moment: the second trial has a checkpoint, its process is killed (Tune retries it), and the retry has
    saved a checkpoint of its own since."""

    def __init__(self, root: Path, first_trial: str):
        self.root, self.first_trial, self.seen = root, first_trial, None

    def __call__(self, process: psutil.Process) -> bool:
        second = {k: v for k, v in _checkpoints(self.root).items() if k != self.first_trial}
        if self.seen is None and second:
            trials = _trial_processes(process)
            assert len(trials) == 1, trials  # --max-concurrent 1
            trials[0].kill()
            self.seen = second
        return self.seen is not None and second != self.seen


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("recovery")


@pytest.mark.slow
def test_killed_and_interrupted_sweep__resume_finishes_as_a_straight_run(root):
    code, _ = _stop_driver_at(root, lambda _: _stage1_folder(root) is not None, "stage 1's first checkpoint")
    assert code == -signal.SIGKILL
    assert not (_stage1_folder(root) / ARTIFACT).exists(), "the kill came after stage 1 ended"
    (killed,), (sweep,) = _runs(root, "stage1"), _runs(root, "sweep")  # the sweep named its stage 1 before training
    assert json.loads(sweep.data.tags["stage1_run_ids"]) == {"0": killed.info.run_id}

    _stop_driver_at(root, lambda _: _checkpoints(root), "a trial's first checkpoint")
    assert not _finished(root)  # the issue: the trial then refused the folder its first attempt wrote, 3 times
    (first_trial,) = _checkpoints(root)
    _stop_driver_at(root, lambda _: _finished(root), "the first finished trial")  # between trials
    (first,) = _finished(root)

    code, err = _stop_driver_at(root, _KillTrialThenWait(root, first_trial), "the killed trial's retry",
                                stop=signal.SIGINT)
    assert code == 130 and "--resume" in err.strip().splitlines()[-1], err[-3000:]
    _stop_driver_at(root, lambda _: len(_finished(root)) == 2, "both trials finished")  # the table follows
    assert not any(r.info.status == "FINISHED" for r in _runs(root, "sweep")), "the kill came after the table"

    done = _run_or_dump_stack(_cmd(root, "--resume", *UNPRICED), root)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| 128 (40 % of N) | 1 |" in done.stdout and "| 256 (80 % of N) | 1 |" in done.stdout  # of 320 images
    trials, stage1, sweeps = (_runs(root, role) for role in ("trial", "stage1", "sweep"))
    assert [len(trials), len(stage1), len(sweeps)] == [2, 1, 1]  # no run twice
    assert all(r.info.status == "FINISHED" for r in trials + stage1 + sweeps)
    again = next(t for t in trials if t.info.run_id == first.info.run_id)
    assert again.info.end_time == first.info.end_time  # a finished trial is not run again
    client = MlflowClient(f"sqlite:///{root}/mlflow.db")
    expected = [(t, "encoder/train/total", [5, 8, 10, 15, 16, 20]) for t in trials]  # 8, 16: rung cooldowns
    expected += [(t, "rung/encoder/eval/disentanglement", [10, 20]) for t in trials]
    for run, metric, steps in [*expected, (stage1[0], "latent/train/total", [5, 10])]:  # none missing or repeated
        assert [m.step for m in client.get_metric_history(run.info.run_id, metric)] == steps, (run.data.tags, metric)

    for trial in trials:  # each equals a straight run on the same stage-1 artifact at the trial's 1 thread
        queue_size = int(trial.data.params["encoder.queue_size"])
        overrides = resolve_presets(["smoke"], SETS | {"encoder.queue_size": queue_size, "run.threads": 1,
                                                       "run.latent_cache": str(root / "ray" / "latent_cache")})
        straight = train(ContraLordConfig.from_overrides(overrides), root / f"straight{queue_size}")
        logged = client.download_artifacts(trial.info.run_id, "summary.json", str(root))
        resumed = json.loads(Path(logged).read_text())
        compared = [k for k, v in straight.items() if k.startswith(("encoder/final/", "encoder/eval/"))
                    and isinstance(v, float) and "images_per_s" not in k]
        assert len(compared) > 10 and "encoder/eval/disentanglement" in compared
        assert {k: resumed[k] for k in compared} == {k: straight[k] for k in compared}, queue_size
        for rung in ("10", "20"):  # each rung's evaluation too
            same = [k for k in straight["rungs"][rung] if "images_per_s" not in k]
            assert {k: resumed["rungs"][rung][k] for k in same} == {k: straight["rungs"][rung][k] for k in same}


@pytest.mark.slow
def test_longer_ladder__extends_the_finished_trials_training_only_new_steps(root):
    """The same sweep with rungs 10,20,40 after the one above: each trial starts from its 10,20 trial's stable state
    (step 16) with that trial's rung evaluations, the dry run prices only the new steps, and the result equals a
    straight 10,20,40 run."""
    sets, client = SETS | {"encoder.rungs": "10,20,40"}, MlflowClient(f"sqlite:///{root}/mlflow.db")
    short = {r.data.params["encoder.queue_size"]: r for r in _runs(root, "trial") if r.info.status == "FINISHED"}
    assert sorted(short) == ["128", "256"], "needs the recovery sweep's finished trials (the test above)"
    dry = subprocess.run(_cmd(root, "--dry-run", sets=sets, name="longer"), cwd=root, capture_output=True, text=True,
                         timeout=600)
    assert dry.returncode == 0 and dry.stdout.count("extends run ") == 2, dry.stdout + dry.stderr[-2000:]
    done = subprocess.run(_cmd(root, sets=sets, name="longer"), cwd=root, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("; trains steps 16-40") == 2, done.stdout[-3000:]
    longer = [r for r in _runs(root, "trial") if r.data.params["encoder.rungs"] == "10,20,40"]
    assert len(longer) == 2 and all(r.info.status == "FINISHED" for r in longer)
    for run in longer:
        earlier = short[run.data.params["encoder.queue_size"]]
        assert run.data.tags["extended_from"] == earlier.info.run_id
        history = lambda r, m: [(p.step, p.value) for p in client.get_metric_history(r.info.run_id, m)]  # noqa: E731
        metric = "rung/encoder/eval/disentanglement"
        assert history(run, metric)[:2] == history(earlier, metric) and history(run, metric)[2][0] == 40
        assert [step for step, _ in history(run, "encoder/train/total")] == [5, 8, 10, 15, 16, 20, 25, 30, 32, 35, 40]
    queue_size = "128"
    overrides = resolve_presets(["smoke"], sets | {"encoder.queue_size": queue_size, "run.threads": 1,
                                                   "run.latent_cache": str(root / "ray" / "latent_cache")})
    straight = train(ContraLordConfig.from_overrides(overrides), root / "straight40")
    extended = next(r for r in longer if r.data.params["encoder.queue_size"] == queue_size)
    logged = json.loads(Path(client.download_artifacts(extended.info.run_id, "summary.json", str(root))).read_text())
    for rung in ("10", "20", "40"):
        same = [k for k in straight["rungs"][rung] if "images_per_s" not in k]
        assert {k: logged["rungs"][rung][k] for k in same} == {k: straight["rungs"][rung][k] for k in same}, rung


@pytest.mark.slow
def test_sweep_whose_trials_fail__exits_1_naming_their_error_files(root):
    """Every trial's stage 2 diverges (lr 1e30: a non-finite loss at once); the sweep says so and exits 1. (Stage
    1 is the recovery sweep's, from the same cache, when that test ran first.)"""
    sets = SETS | {"encoder.lr": "1e30"}
    failed = subprocess.run(_cmd(root, "--max-failures", "0", *UNPRICED, sets=sets, name="diverges"), cwd=root,
                            capture_output=True, text=True, timeout=600)
    assert failed.returncode == 1, (failed.returncode, failed.stderr[-3000:])
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith("sweep: failed: 2 trials ended in error (error files: ") and "no table" in last, last
    error_files = [Path(p) for p in last.split("error files: ", 1)[1].split(")", 1)[0].split(", ")]
    assert len(error_files) == 2 and all("NonFiniteLossError" in p.read_text() for p in error_files)
    assert "--resume" in last and "--max-failures 0" in last  # what to run next: the same command, resumed
    sweep = next(r for r in _runs(root, "sweep") if r.data.tags["sweep_path"].endswith("/diverges"))
    assert sweep.info.status == "FAILED" and "2 trials ended in error" in sweep.data.tags["sweep_failed"]
    assert {r.info.status for r in _runs(root, "trial") if r.data.params["encoder.lr"] == "1e+30"} == {"FAILED"}
