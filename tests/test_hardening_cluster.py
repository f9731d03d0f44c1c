"""The worker role does not reach the head (issue 18, class 2), checked offline on both cluster files and the
IAM policy: workers write only trial outputs (never a sweep's own state, which --resume unpickles on the head,
nor MLflow's artifacts), log to MLflow with their own login while the admin login never leaves the head, the
token and login files are 0600 on the nodes, and the local cluster's MLflow has the same auth as AWS's.

IAM matches ``*`` in an S3 resource ARN against any characters, ``/`` included, and ``?`` against one: that
is ``fnmatch.fnmatchcase``, which ``allowed`` uses to evaluate the policy's Allow statements.
"""

import fnmatch
import json
import pathlib
import re

import pytest
import yaml

from tune.checks import SweepError, check_name

ROOT = pathlib.Path(__file__).resolve().parents[1]
POLICY = json.loads((ROOT / "docs" / "iam" / "contralord-worker-policy.json").read_text())
CLUSTER_FILES = {"aws": ROOT / "ray_cluster.yaml", "local": ROOT / "ray_cluster.local.yaml"}
BUCKET = "arn:aws:s3:::YOUR-BUCKET/"
STORAGE = "contralord/ray-results"  # the --storage docs/CLUSTER.md passes, below the bucket


def allowed(action: str, key: str) -> bool:
    """Whether the worker policy allows ``action`` on object ``key`` of YOUR-BUCKET."""
    for statement in POLICY["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        if statement["Effect"] == "Allow" and action in actions and any(
                fnmatch.fnmatchcase(BUCKET + key, pattern) for pattern in resources):
            return True
    return False


@pytest.mark.parametrize("key", [
    f"{STORAGE}/train-4f2a_00000/checkpoint_000001/checkpoint.pt",  # Ray Train checkpoints (tune/driver/sweep.py)
    f"{STORAGE}/train-4f2a_00000/checkpoint_manager_snapshot.json",
    f"{STORAGE}/sweep-negatives-paper/train_driver_fn_4f2a_00000_0_seed=0/result.json",  # a trial's own folder
])
def test_worker_policy__writes_trial_outputs(key):
    assert allowed("s3:PutObject", key) and allowed("s3:GetObject", key)


@pytest.mark.parametrize("key", [
    f"{STORAGE}/sweep-negatives-paper/tuner.pkl",  # --resume unpickles it on the head
    f"{STORAGE}/sweep-negatives-paper-round2/tuner.pkl",
    f"{STORAGE}/sweep-negatives-paper/experiment_state-2026-12-03_17-00-00.json",
    f"{STORAGE}/sweep-negatives-paper/.validate_storage_marker",
    "mlflow-artifacts/1/models/m-0123/artifacts/data/model.pt2",  # only the MLflow server writes these
    "contralord/other/anything",
])
def test_worker_policy__never_writes_a_sweeps_state_or_mlflow(key):
    assert not allowed("s3:PutObject", key) and not allowed("s3:DeleteObject", key)


def test_worker_policy__the_server_artifacts_are_outside_the_workers_reach():
    command = " ".join(yaml.safe_load(CLUSTER_FILES["aws"].read_text())["head_start_ray_commands"])
    (destination,) = re.findall(r"--artifacts-destination\s+s3://YOUR-BUCKET/(\S+)", command)
    key = f"{destination}/1/runs/abc/artifacts/metrics.json"
    assert not allowed("s3:PutObject", key) and not allowed("s3:GetObject", key)


@pytest.mark.parametrize("name, expected", [("train-sweep", "prefix of Ray Train's run folders"),
                                            ("x" * 300, "at most 100 characters")])
def test_sweep_name__never_where_workers_write(name, expected):
    with pytest.raises(SweepError, match=expected):
        check_name(name)
    check_name("sweep-negatives-paper")


def _cluster(which: str) -> dict:
    return yaml.safe_load(CLUSTER_FILES[which].read_text())


def _worker_side(cfg: dict) -> str:
    keys = ("setup_commands", "worker_setup_commands", "worker_start_ray_commands")
    return "\n".join(str(c) for k in keys for c in cfg.get(k) or [])


@pytest.mark.parametrize("which", sorted(CLUSTER_FILES))
def test_cluster__admin_login_never_reaches_a_worker(which):
    cfg = _cluster(which)
    mounts = " ".join(f"{k} {v}" for k, v in cfg["file_mounts"].items())
    assert "admin" not in mounts and not re.search(r"(^|[/ ])mlflow\.env\b", mounts), mounts
    assert "admin.env" not in _worker_side(cfg)
    head_setup = " ".join(cfg["head_setup_commands"])
    assert "mlflow_worker_user.py admin-env" in head_setup  # made on the head


@pytest.mark.parametrize("which", sorted(CLUSTER_FILES))
def test_cluster__workers_log_as_the_worker_user(which):
    cfg = _cluster(which)
    assert any(k.endswith("mlflow-worker.env") and v == "~/.contralord/mlflow-worker.env"
               for k, v in cfg["file_mounts"].items())
    starts = [c for c in cfg["worker_start_ray_commands"] if "ray start" in c]
    env = " ".join(cfg["setup_commands"] + cfg.get("worker_setup_commands", []))
    assert all("mlflow-worker.env" in c for c in starts) or "mlflow-worker.env" in env


@pytest.mark.parametrize("which", sorted(CLUSTER_FILES))
def test_cluster__mlflow_has_a_login_and_grants_the_worker(which):
    starts = [str(c) for c in _cluster(which)["head_start_ray_commands"]]
    server = next(i for i, c in enumerate(starts) if "mlflow server" in c)
    assert "--app-name basic-auth" in starts[server] and "MLFLOW_AUTH_CONFIG_PATH" in starts[server]
    assert any("mlflow_worker_user.py grant" in c for c in starts[server + 1:])
    assert "mlflow[auth]" in " ".join(_cluster(which)["setup_commands"])  # the auth app needs Flask-WTF


@pytest.mark.parametrize("which", sorted(CLUSTER_FILES))
def test_cluster__secret_files_are_0600_on_the_nodes(which):
    cfg = _cluster(which)
    secret_targets = [k for k in cfg["file_mounts"] if "token" in k or k.endswith(".env")]
    chmods = " ".join(c for c in cfg["setup_commands"] if str(c).startswith("chmod 600"))
    assert secret_targets and all(target in chmods for target in secret_targets), (secret_targets, chmods)


def test_cluster_doc__agrees_with_the_yaml_on_mlflow_auth():
    doc = (ROOT / "docs" / "CLUSTER.md").read_text()
    assert "MLflow has no auth" not in doc and "basic-auth" in doc
    assert "mlflow-worker.env" in doc and "/contralord/mlflow-artifacts" not in doc


NOT_A_LINE = "is not what 'up' writes (NAME=VALUE); nothing done"
NOT_OURS = "its names are not the ones 'up' makes (crl<ID>br, crl-<ID>-<host>, ...); nothing done"


@pytest.mark.parametrize("line, needle", [
    ("$(touch {marker})", NOT_A_LINE), ("ID=1; touch {marker}", NOT_A_LINE), ("PATH=/tmp", NOT_A_LINE),
    ("touch {marker}", NOT_A_LINE), ('HOSTS="head `touch {marker}`"', NOT_A_LINE), ('HOSTS="head', NOT_A_LINE),
    ("BRIDGE=eth0", NOT_OURS),  # a real interface `down` would delete as root
    ('BRIDGE=crlab12br\nHOSTS="head"\nNS_head=default', NOT_OURS),
    ('BRIDGE=crlab12br\nHOSTS="head"\nVETH_head=eth0', NOT_OURS),
])
def test_test_hosts_down__reads_hosts_env_as_data_never_runs_it(tmp_path, line, needle):
    """``scripts/test_hosts.sh down DIR`` runs as root: a crafted DIR/hosts.env, or one naming what ``up`` did not
    make, is refused in one line, unrun and untouched."""
    import subprocess

    marker = tmp_path / "ran"
    (tmp_path / "hosts.env").write_text("ID=ab12\nNET=5\n" + line.format(marker=marker) + "\n")
    done = subprocess.run(["bash", str(ROOT / "scripts" / "test_hosts.sh"), "down", str(tmp_path)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and not marker.exists()
    assert done.stderr.strip().endswith(needle)
    assert (tmp_path / "hosts.env").exists()  # left as it was
