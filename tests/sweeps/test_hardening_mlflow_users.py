"""docs/iam/mlflow_worker_user.py, which the cluster files run on the head (issue 18, class 2): the admin login
is made there, 0600, once; the workers' user may log runs into the sweep experiments and nothing else (checked
against a real basic-auth MLflow server, slow)."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SERVER_ENV, free_port

ROOT = Path(__file__).resolve().parents[2]
SPEC = importlib.util.spec_from_file_location("mlflow_worker_user", ROOT / "docs" / "iam" / "mlflow_worker_user.py")
users = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(users)


def test_admin_env__made_once_and_private(tmp_path):
    path = tmp_path / "admin.env"
    users.write_admin_env(path)
    text = path.read_text()
    assert path.stat().st_mode & 0o777 == 0o600
    assert {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_AUTH_ADMIN_PASSWORD",
            "MLFLOW_FLASK_SERVER_SECRET_KEY"} <= {line.split()[1].split("=")[0] for line in text.splitlines()}
    users.write_admin_env(path)  # a second `ray up` keeps the first password (the server already has it)
    assert path.read_text() == text


def test_sweep_experiments__one_per_sweep_script_and_stage1():
    names = users.sweep_experiments()
    scripts = sorted((ROOT / "tune").glob("sweep_*.py"))
    assert len(names) == len(scripts) + 1 and "contralord-negatives" in names and names[-1] == "contralord-stage1"


@pytest.fixture
def auth_server(tmp_path):
    """A basic-auth MLflow server on 127.0.0.1 with a known admin login; ended by its PID."""
    pytest.importorskip("flask_wtf", reason="MLflow's basic-auth app needs mlflow[auth] (Flask-WTF)")
    users.write_admin_env(tmp_path / "admin.env")
    admin = dict(line.split()[1].split("=", 1) for line in (tmp_path / "admin.env").read_text().splitlines())
    (tmp_path / "auth.ini").write_text(
        f"[mlflow]\ndefault_permission = NO_PERMISSIONS\ndatabase_uri = sqlite:///{tmp_path}/basic_auth.db\n"
        "admin_username = admin\nauthorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    port = free_port()
    env = os.environ | admin | SERVER_ENV | {"MLFLOW_AUTH_CONFIG_PATH": str(tmp_path / "auth.ini")}
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth", "--host",
                               "127.0.0.1", "--port", str(port), "--workers", "1", "--backend-store-uri",
                               f"sqlite:///{tmp_path}/mlflow.db", "--artifacts-destination", str(tmp_path / "art")],
                              env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "server.log", "w"))
    try:
        yield f"http://127.0.0.1:{port}", admin
    finally:
        server.terminate()
        server.wait(timeout=60)


@pytest.mark.slow
def test_worker_user__logs_runs_only_into_sweep_experiments(auth_server, tmp_path, monkeypatch):
    uri, admin = auth_server
    users.wait_for_server(uri, seconds=300)
    worker = {"CONTRALORD_WORKER_USERNAME": "contralord-worker", "CONTRALORD_WORKER_PASSWORD": "worker-secret-1"}
    grant = subprocess.run([sys.executable, str(ROOT / "docs" / "iam" / "mlflow_worker_user.py"), "grant", uri],
                           env=os.environ | admin | worker, capture_output=True, text=True, timeout=300)
    assert grant.returncode == 0, grant.stderr[-2000:]
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", admin["MLFLOW_TRACKING_USERNAME"])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", admin["MLFLOW_TRACKING_PASSWORD"])
    private = MlflowClient(uri).create_experiment("someone-elses")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "contralord-worker")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "worker-secret-1")
    client = MlflowClient(uri)
    run = client.create_run(client.get_experiment_by_name("contralord-negatives").experiment_id)
    client.log_metric(run.info.run_id, "encoder/eval/mig", 0.5)
    (tmp_path / "metrics.json").write_text("{}")
    client.log_artifact(run.info.run_id, str(tmp_path / "metrics.json"))  # through the server's proxy
    for forbidden in (lambda: client.get_experiment(private), lambda: client.create_run(private)):
        with pytest.raises(MlflowException, match="403|PERMISSION_DENIED"):
            forbidden()
    with pytest.raises(MlflowException, match="403|PERMISSION_DENIED"):
        users.ensure_worker_user(uri, "eve", "eve-password-1")  # no user administration
