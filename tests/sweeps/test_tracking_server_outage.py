"""Fault a of issue 33: the tracking server dies mid-sweep (SIGKILL) and comes back 30 s later on the same port and
store. A trial's logging call waits in MLflow's client, which retries its requests (MLFLOW_HTTP_REQUEST_MAX_RETRIES,
exponential backoff, 7 retries over about 4 min by default), so every run ends FINISHED with every metric point it
would have had without the fault: the points are counted against the epochs each trial trained, and some of them
reached the store only after the server was back (else the fault was not exercised)."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("ray")
from conftest import SERVER_ENV, OwnProcesses, _venv_path, end_group, free_port, wait_http  # noqa: E402
from mlflow import MlflowClient  # noqa: E402

from tune.driver.sweep import KEEP_CHECKPOINTS  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
EPOCHS = 4
FAST = ["--set", "data.size=320", "--set", "latent.epochs=1", "--set", f"encoder.epochs={EPOCHS}",
        "--set", "eval.num_train=64", "--set", "eval.num_test=32", "--set", "eval.grid_size=2"]
OUTAGE_S = 30


def _start_server(processes: OwnProcesses, db: Path, port: int, log: Path) -> subprocess.Popen:
    with open(log, "a") as out:
        server = processes.start([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{db}",
                                  "--host", "127.0.0.1", "--port", str(port), "--workers", "1"], cwd=db.parent,
                                 stdout=out, stderr=subprocess.STDOUT,
                                 env=os.environ | SERVER_ENV | {"PATH": _venv_path()})
    wait_http(f"http://127.0.0.1:{port}/health")
    return server


def _trial_points(db: Path) -> int:
    """Points of encoder/train/total logged by trial runs so far (read-only; 0 before the tables exist)."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT COUNT(*) FROM metrics m JOIN tags t ON t.run_uuid = m.run_uuid "
                                "WHERE m.key = 'encoder/train/total' AND t.key = 'role' AND t.value = 'trial'"
                                ).fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_tracking_server_killed_mid_sweep_and_back_after_30_s__no_point_lost(tmp_path):
    db = tmp_path / "store" / "mlflow.db"
    db.parent.mkdir()
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server_log = tmp_path / "server.log"
    servers, sweeps = OwnProcesses(), OwnProcesses()
    try:
        server = _start_server(servers, db, port, server_log)
        with open(tmp_path / "sweep.log", "w") as out:
            sweep = sweeps.start([sys.executable, str(REPO / "tune" / "sweep_negatives.py"), "--preset", "smoke",
                                  *FAST, "--no-calibrate", "--tracking-uri", uri, "--storage", str(tmp_path / "ray")],
                                 cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ))
        deadline = time.monotonic() + 600
        while _trial_points(db) == 0:  # a trial is training and logging: now the server dies
            assert sweep.poll() is None and time.monotonic() < deadline, (tmp_path / "sweep.log").read_text()[-3000:]
            time.sleep(0.5)
        os.killpg(server.pid, signal.SIGKILL)  # no shutdown: a batch may be committed and never acknowledged
        at_kill = _trial_points(db)  # the store as the server left it
        end_group(server.pid)  # reaps it (every member already gone)
        assert sweep.poll() is None  # the sweep outlives its server
        time.sleep(OUTAGE_S)
        assert sweep.poll() is None  # still training when the server comes back
        _start_server(servers, db, port, server_log)
        assert sweep.wait(timeout=800) == 0, (tmp_path / "sweep.log").read_text()[-3000:]
    finally:
        sweeps.end_all()
    try:
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name("contralord-negatives")
        runs = client.search_runs([experiment.experiment_id])
        trials = [r for r in runs if r.data.tags.get("role") == "trial"]
        assert len(trials) == 2 and all(r.info.status == "FINISHED" for r in runs), [r.info.status for r in runs]
        for trial in trials:
            epochs = sorted(m.value for m in client.get_metric_history(trial.info.run_id, "encoder/train/epoch"))
            assert epochs == list(range(1, EPOCHS + 1)), epochs  # one point per epoch, none twice
            steps = sorted(m.step for m in client.get_metric_history(trial.info.run_id, "encoder/train/epoch"))
            for key in (k for k in trial.data.metrics if k.startswith("encoder/train/")):
                assert sorted(m.step for m in client.get_metric_history(trial.info.run_id, key)) == steps, key
            assert "encoder/eval/disentanglement" in trial.data.metrics
        # a trial keeps its last checkpoints only (one a epoch without a limit), however many epochs it reported
        kept = Counter(path.parent for path in (tmp_path / "ray").glob("*/run_in_tune_trial_*/checkpoint_0*"))
        assert len(kept) == 2 and set(kept.values()) == {KEEP_CHECKPOINTS} and KEEP_CHECKPOINTS < EPOCHS, kept
        # the fault was exercised: points the server had not stored when it died arrived afterwards
        assert at_kill < 2 * EPOCHS == _trial_points(db), (at_kill, _trial_points(db))
    finally:
        servers.end_all()
