"""The multi-worker path: each trial drives a Ray Train TorchTrainer with 2 DDP workers (gloo)."""

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray")
from mlflow import MlflowClient  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
FAST = {"data.size": "320", "latent.epochs": "1", "encoder.epochs": "2", "eval.num_train": "64", "eval.num_test": "32"}


@pytest.mark.slow
def test_two_worker_trials__train_with_ddp_and_log_to_mlflow(tmp_path):
    cmd = [sys.executable, str(REPO / "tune" / "sweep_negatives.py"), "--preset", "smoke", "--workers-per-trial",
           "2", "--cpus-per-worker", "0.5", "--storage", str(tmp_path / "ray"), "--tracking-uri",
           f"sqlite:///{tmp_path}/m.db"] + [a for k, v in FAST.items() for a in ("--set", f"{k}={v}")]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "world_rank=1" in result.stdout + result.stderr  # Ray Train really started two workers
    client = MlflowClient(f"sqlite:///{tmp_path}/m.db")
    experiment = client.get_experiment_by_name("contralord-negatives")
    trials = [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("role") == "trial"]
    assert len(trials) == 2 and all(r.info.status == "FINISHED" for r in trials)
    for trial in trials:  # rank 0 alone logs: one point per epoch
        assert len(client.get_metric_history(trial.info.run_id, "encoder/train/total")) == 2
