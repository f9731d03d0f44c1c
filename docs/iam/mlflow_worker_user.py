# ruff: noqa: TID251  (an admin script run on the head, not the core: it talks to the MLflow server)
"""Give the cluster's workers their own MLflow login, which can only log runs into the sweeps' experiments.

The cluster YAMLs run it on the head. First, at setup, ``admin-env PATH`` writes the MLflow admin login
(a fresh random password, mode 0600) if PATH does not exist yet: it is made on the head and never copied
to a worker (``file_mounts`` reach every node, so the admin login cannot travel that way). Then, right after
the MLflow server (basic-auth app) starts, ``grant URI`` runs with that admin login in
MLFLOW_TRACKING_USERNAME/PASSWORD and the worker login in CONTRALORD_WORKER_USERNAME/PASSWORD (from
mlflow-worker.env, which every node has):

    python docs/iam/mlflow_worker_user.py admin-env /home/ray/mlflow/admin.env
    python docs/iam/mlflow_worker_user.py grant http://HEAD-PRIVATE-IP:5000

``grant`` creates the worker user if missing (an existing one keeps its password), creates every sweep experiment
(``contralord-<kind>`` for each ``tune/sweep_<kind>.py``, and ``contralord-stage1``) if missing, and grants
the worker EDIT on each: create runs, log metrics, artifacts and models there. Nothing else: no other
experiment, no registered model, no user administration. Idempotent; safe on every ``ray up``.
"""

from __future__ import annotations

import os
import secrets
import sys
import time
import urllib.request
from pathlib import Path

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.server import get_app_client

REPO = Path(__file__).resolve().parents[2]
KIND_TAG = {"mlflow.experimentKind": "custom_model_development"}  # as tune/trial/mlflow_logger.EXPERIMENT_KIND


def sweep_experiments(repo: Path = REPO) -> list[str]:
    """Every experiment a sweep or stage 1 logs to: one per tune/sweep_<kind>.py, plus contralord-stage1."""
    kinds = sorted(p.stem.removeprefix("sweep_") for p in (repo / "tune").glob("sweep_*.py"))
    return [f"contralord-{kind}" for kind in kinds] + ["contralord-stage1"]


def wait_for_server(uri: str, seconds: float = 120) -> None:
    """The server was just started in the background: poll /health until it answers."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"mlflow_worker_user: no MLflow server answers at {uri}") from None
            time.sleep(2)


def ensure_worker_user(uri: str, username: str, password: str) -> None:
    auth = get_app_client("basic-auth", tracking_uri=uri)
    try:
        auth.get_user(username)
    except MlflowException:
        auth.create_user(username, password)


def grant_experiments(uri: str, username: str, names: list[str]) -> None:
    """Each experiment exists (created with the model-training mark) and the worker may EDIT it."""
    client, auth = MlflowClient(uri), get_app_client("basic-auth", tracking_uri=uri)
    for name in names:
        experiment = client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(name, tags=KIND_TAG)
        auth.grant_user_permission(username, "experiment", experiment_id, "EDIT")


def write_admin_env(path: Path) -> None:
    """The admin login for the head's server and drivers, once: an existing file is kept (the server reads
    MLFLOW_AUTH_ADMIN_PASSWORD only while its auth database has no admin)."""
    if path.exists():
        return
    secret = secrets.token_hex(24)
    values = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": secret,
              "MLFLOW_AUTH_ADMIN_PASSWORD": secret,
              "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(24)}  # the auth app's CSRF key: required
    text = "".join(f"export {name}={value}\n" for name, value in values.items())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("admin-env", "grant"):
        print("usage: mlflow_worker_user.py admin-env PATH | grant TRACKING_URI", file=sys.stderr)
        return 2
    if argv[0] == "admin-env":
        write_admin_env(Path(argv[1]))
        return 0
    argv = argv[1:]
    username, password = os.environ.get("CONTRALORD_WORKER_USERNAME"), os.environ.get("CONTRALORD_WORKER_PASSWORD")
    if not (username and password and os.environ.get("MLFLOW_TRACKING_PASSWORD")):
        print("mlflow_worker_user: set CONTRALORD_WORKER_USERNAME/PASSWORD and the admin's "
              "MLFLOW_TRACKING_USERNAME/PASSWORD", file=sys.stderr)
        return 2
    wait_for_server(argv[0])
    ensure_worker_user(argv[0], username, password)
    grant_experiments(argv[0], username, sweep_experiments())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
