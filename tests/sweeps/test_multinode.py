"""A real two-node Ray cluster on this machine (a head and a worker started with ``ray start``) and a
real ``mlflow server`` process: a sweep joins the cluster with --address and logs over HTTP, each trial a
Ray Train ``TorchTrainer`` with 2 DDP workers (gloo) of which rank 0 alone logs. (The multi-worker path had a
sweep of its own on a local Ray, tests/sweeps/test_sweep_ddp.py, until CI time mattered: the same sweep now
checks both.)"""

import os
import shutil
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray")
from conftest import free_port  # noqa: E402
from mlflow import MlflowClient  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
FAST = ["--set", "data.size=320", "--set", "latent.epochs=1", "--set", "encoder.epochs=2",
        "--set", "eval.num_train=64", "--set", "eval.num_test=32", "--set", "eval.grid_size=2"]


@pytest.fixture
def cluster(tmp_path, own_processes, mlflow_server):
    """A head and a worker (``ray start``), each started in a process group of its own, so that teardown ends
    exactly their processes (``ray stop`` or a pattern kill would end every Ray on the machine, such as a
    sweep the user is running while the tests run)."""
    import tempfile

    env = os.environ | {"RAY_AUTH_MODE": "token", "PYTHONPATH": str(REPO)}
    ray_port = free_port()
    ray = str(BIN / "ray")
    temp_dir = tempfile.mkdtemp(prefix="rayt", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    node = ["--num-cpus", "1", "--temp-dir", temp_dir, "--disable-usage-stats"]
    try:
        _ray_start(own_processes, [ray, "start", "--head", "--port", str(ray_port), "--dashboard-port",
                                   str(free_port()), "--resources", '{"head": 1}', *node], env)
        _ray_start(own_processes, [ray, "start", "--address", f"127.0.0.1:{ray_port}", "--resources",
                                   '{"worker_node": 1}', *node], env)
        uri = mlflow_server(f"sqlite:///{tmp_path}/server.db", "--artifacts-destination", str(tmp_path / "artifacts"))
        yield env, f"127.0.0.1:{ray_port}", uri
    finally:
        own_processes.end_all()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _ray_start(own_processes, command: list[str], env: dict) -> None:
    """``ray start`` in a new process group; the node's daemons it leaves running stay in that group."""
    done = own_processes.run(command, timeout=180, env=env)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.slow
def test_sweep__across_two_nodes_with_an_mlflow_server(tmp_path, cluster, own_processes):
    env, address, uri = cluster
    base = [sys.executable, str(REPO / "tune" / "sweep_negatives.py"), "--preset", "smoke", "--address", address,
            "--tracking-uri", uri, "--storage", str(tmp_path / "ray"), *FAST]
    local_only = own_processes.run(base, timeout=300, env=env, cwd=tmp_path)
    assert local_only.returncode == 2 and "2 nodes" in local_only.stderr  # a local path is not shared storage
    # two trials at once, one a node (1 CPU each): 2 workers x 0.45 CPU and the trial's driver, 0.01
    ddp = ["--workers-per-trial", "2", "--cpus-per-worker", "0.45"]
    result = own_processes.run(base + ["--shared-fs", *ddp], timeout=1200, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "world_rank=1" in result.stdout + result.stderr  # Ray Train really started two workers
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("contralord-negatives")
    trials = [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("role") == "trial"]
    assert len(trials) == 2 and all(r.info.status == "FINISHED" for r in trials)
    assert {a.path for a in client.list_artifacts(trials[0].info.run_id)} >= {"metrics.json", "config.json"}
    for trial in trials:  # rank 0 alone logs: one point per epoch
        assert len(client.get_metric_history(trial.info.run_id, "encoder/train/total")) == 2
    shutil.rmtree(tmp_path / "ray", ignore_errors=True)
