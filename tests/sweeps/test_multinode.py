"""A real two-node Ray cluster on this machine (a head and a worker started with ``ray start``) and a
real ``mlflow server`` process: a sweep joins the cluster with --address and logs over HTTP."""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")
from mlflow import MlflowClient  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
FAST = ["--set", "data.size=320", "--set", "latent.epochs=1", "--set", "encoder.epochs=2",
        "--set", "eval.num_train=64", "--set", "eval.num_test=32", "--set", "eval.grid_size=2"]


def _port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url, timeout=120):
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"{url} never answered")


def _stop_own_cluster(temp_dir: str, ray_port: int) -> None:
    """Kill the processes of this cluster only (matched by its temp dir and GCS port). ``ray stop`` would
    kill every Ray on the machine, such as a sweep the user is running while the tests run."""
    patterns = [temp_dir, f"127.0.0.1:{ray_port}", f"gcs_server_port={ray_port}"]
    for pattern in patterns:
        subprocess.run(["pkill", "-9", "-f", pattern], capture_output=True)
    deadline = time.time() + 30
    while time.time() < deadline and any(
            subprocess.run(["pgrep", "-f", p], capture_output=True).returncode == 0 for p in patterns):
        time.sleep(0.5)
    shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture
def cluster(tmp_path):
    import tempfile

    env = os.environ | {"RAY_AUTH_MODE": "token", "PYTHONPATH": str(REPO)}
    ray_port, dash_port, ml_port = _port(), _port(), _port()
    ray = str(BIN / "ray")
    temp_dir = tempfile.mkdtemp(prefix="rayt", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    node = ["--num-cpus", "1", "--temp-dir", temp_dir, "--disable-usage-stats"]
    subprocess.run([ray, "start", "--head", "--port", str(ray_port), "--dashboard-port", str(dash_port),
                    "--resources", '{"head": 1}', *node], env=env, check=True, capture_output=True)
    mlflow_server = None
    try:
        subprocess.run([ray, "start", "--address", f"127.0.0.1:{ray_port}", "--resources", '{"worker_node": 1}',
                        *node], env=env, check=True, capture_output=True)
        mlflow_server = subprocess.Popen([str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(ml_port),
                                          "--backend-store-uri", f"sqlite:///{tmp_path}/server.db",
                                          "--artifacts-destination", str(tmp_path / "artifacts")],
                                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_http(f"http://127.0.0.1:{ml_port}/health")
        yield env, f"127.0.0.1:{ray_port}", f"http://127.0.0.1:{ml_port}"
    finally:
        if mlflow_server:
            mlflow_server.terminate()
        _stop_own_cluster(temp_dir, ray_port)


@pytest.mark.slow
def test_sweep__across_two_nodes_with_an_mlflow_server(tmp_path, cluster):
    env, address, uri = cluster
    base = [sys.executable, str(REPO / "tune" / "sweep_negatives.py"), "--preset", "smoke", "--address", address,
            "--tracking-uri", uri, "--storage", str(tmp_path / "ray"), *FAST]
    local_only = subprocess.run(base, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert local_only.returncode == 2 and "2 nodes" in local_only.stderr  # a local path is not shared storage
    result = subprocess.run(base + ["--shared-fs"], env=env, cwd=tmp_path, capture_output=True, text=True,
                            timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("contralord-negatives")
    trials = [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("role") == "trial"]
    assert len(trials) == 2 and all(r.info.status == "FINISHED" for r in trials)
    assert {a.path for a in client.list_artifacts(trials[0].info.run_id)} >= {"metrics.json", "config.json"}
    shutil.rmtree(tmp_path / "ray", ignore_errors=True)
