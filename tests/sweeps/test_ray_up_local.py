"""`ray up` / `ray exec` / `ray down` on ray_cluster.local.yaml, for real, on two test hosts on this machine.

scripts/test_hosts.sh makes the hosts: SSH servers in their own network, PID and mount namespaces, joined by
a bridge in 10.213.x.0/24. The PID namespace is what makes this safe on a shared machine: the YAML's start
commands and `ray down` run `ray stop` on every node, which ends every Ray process the node can see; inside
a host that is only the test's own. The test checks that before the first `ray up`.

The test copy of the YAML differs from the real one only where a test host is not a lab machine:
addresses, user and key, a token made here (not ~/.ray/auth_token), `--num-cpus=1` per host (this machine
has 2 cores), a worker raylet that gives up on a lost head after 15 s instead of Ray's 60 (the test waits for
it after `ray down`; RAY_gcs_rpc_server_reconnect_timeout_s), and the install (the hosts share this machine's
disk: the venv running this test stands in for the `pip install` into ~/contralord-venv; the repo is still
rsynced to each host by `file_mounts`).
"""

import copy
import getpass
import hashlib
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

pytest.importorskip("ray")
from mlflow import MlflowClient  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
HOSTS_SH = REPO / "scripts" / "test_hosts.sh"
RAY = str(Path(sys.executable).parent / "ray")
FAST = ["--set", "data.size=320", "--set", "latent.epochs=1", "--set", "encoder.epochs=2",
        "--set", "eval.num_train=64", "--set", "eval.num_test=32", "--set", "eval.grid_size=2"]
INSTALL = ("-m venv", "pip install")  # the setup commands the test replaces
GCS_LOST_S = 15  # a worker's raylet exits this long after the head's GCS is gone (Ray's default: 60)


def _why_hosts_unavailable() -> str | None:
    if not sys.platform.startswith("linux"):
        return "test hosts need Linux namespaces"
    check = subprocess.run(["bash", str(HOSTS_SH), "check"], capture_output=True, text=True)
    return None if check.returncode == 0 else f"cannot isolate test hosts here: {check.stdout.strip()}"


SKIP_REASON = _why_hosts_unavailable()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(SKIP_REASON is not None, reason=str(SKIP_REASON))]


def make_test_copy(raw: dict, hosts: dict[str, str], name: str, key: Path, token: Path, worker_env: Path,
                   shared: Path) -> dict:
    """ray_cluster.local.yaml with the test hosts' addresses, our key, token, workers' MLflow login and shared
    folder, and no install."""
    cfg = copy.deepcopy(raw)
    uses = [c for c in cfg["head_start_ray_commands"] if "YOUR-SHARED-DIR" in c]
    assert len(uses) == 3, uses  # restore, server (artifacts), watch: keep in step with the YAML
    cfg["head_start_ray_commands"] = [c.replace("YOUR-SHARED-DIR", str(shared)) for c in cfg["head_start_ray_commands"]]
    cfg["cluster_name"] = name
    cfg["provider"].update(head_ip=hosts["head"], worker_ips=[hosts["worker"]])
    cfg["auth"] = {"ssh_user": getpass.getuser(), "ssh_private_key": str(key)}
    assert cfg["file_mounts"]["~/ray_auth_token"] == "~/.ray/auth_token"
    cfg["file_mounts"]["~/ray_auth_token"] = str(token)
    assert cfg["file_mounts"]["~/mlflow-worker.env"] == "~/.contralord/mlflow-worker.env"
    cfg["file_mounts"]["~/mlflow-worker.env"] = str(worker_env)
    installs = [c for c in cfg["setup_commands"] if any(word in c for word in INSTALL)]
    assert len(installs) == 3, installs  # venv, dependencies, the repo: keep in step with the YAML
    cfg["setup_commands"] = [f"ln -sfn {sys.prefix} ~/contralord-venv"] + [
        c for c in cfg["setup_commands"] if c not in installs]
    for key_ in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in cfg[key_] if "ray start" in c]
        assert len(starts) == 1, starts
        cfg[key_] = [c.replace("ray start", "ray start --num-cpus=1") for c in cfg[key_]]
    cfg["worker_start_ray_commands"] = [c.replace("ray start", f"RAY_gcs_rpc_server_reconnect_timeout_s={GCS_LOST_S} "
                                                  "ray start") for c in cfg["worker_start_ray_commands"]]
    return cfg


def _run(args, env, timeout, check=True):
    result = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, f"{' '.join(map(str, args))}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def _ssh(dir_: Path, ip: str, command: str) -> str:
    args = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-i", str(dir_ / "id_ed25519"), f"{getpass.getuser()}@{ip}", command]
    return subprocess.run(args, capture_output=True, text=True, timeout=30, check=True).stdout


def active_nodes(status: str) -> int:
    """Nodes listed under "Active:" in `ray status` output ("Active:\\n 2 local.cluster.node\\nPending: ...")."""
    section = re.search(r"^Active:\n(.*?)^Pending:", status, flags=re.S | re.M)
    return sum(int(n) for n in re.findall(r"^\s*(\d+)\s+\S", section.group(1), flags=re.M)) if section else 0


def _wait(what: str, probe, timeout: float, every: float = 3.0, detail=lambda: ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout:.0f} s\n{detail()}")


def _head_logs(dir_: Path, lines: int = 25) -> str:
    """The tail of the head's autoscaler log (the head's /tmp is DIR/head/tmp), for failure messages."""
    logs = sorted((dir_ / "head" / "tmp" / "ray").glob("session_2*/logs/monitor.log"))
    return "\n".join(logs[-1].read_text().splitlines()[-lines:]) if logs else "(no monitor.log on the head)"


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def _runs_and_points(client: MlflowClient, experiment_id: str) -> dict:
    """run id -> (status, params, tags, every metric's last value, every point of the training loss). One history
    per run: each request pays the server's basic-auth password check."""
    found = {}
    for run in client.search_runs([experiment_id]):
        history = sorted((m.step, m.timestamp, m.value)
                         for m in client.get_metric_history(run.info.run_id, "encoder/train/total"))
        found[run.info.run_id] = (run.info.status, run.data.params, run.data.tags, run.data.metrics, history)
    return found


def _status_in_copy(copied: Path, run_id: str) -> str | None:
    """The run's status in the store's copy, read with sqlite3 (MLflow would keep an engine on the old file)."""
    if not copied.is_file():
        return None
    import sqlite3

    with sqlite3.connect(f"file:{copied}?mode=ro", uri=True) as db:
        row = db.execute("SELECT status FROM runs WHERE run_uuid = ?", (run_id,)).fetchone()
    return row[0] if row else None


@pytest.fixture
def test_hosts(tmp_path):
    """Two hosts (head, worker), torn down (PID namespaces killed, netns and links deleted) even on failure."""
    dir_ = tmp_path / "hosts"
    started = time.monotonic()
    try:
        # The hosts get their own $HOME and /tmp; they keep the Python this test's venv is made from (pyenv:
        # ~/.pyenv), the venv itself and the repo its editable install points to (a CI clone may live in /tmp).
        kept = (Path(sys.base_prefix), Path(sys.prefix), REPO)
        keep = os.environ | {"TEST_HOSTS_KEEP": " ".join(str(p.resolve()) for p in kept)}
        up = subprocess.run(["bash", str(HOSTS_SH), "up", str(dir_), "head", "worker"], capture_output=True,
                            text=True, timeout=120, env=keep)
        assert up.returncode == 0, up.stdout + up.stderr
        hosts = dict(line.split() for line in up.stdout.strip().splitlines())
        yield dir_, hosts, time.monotonic() - started
    finally:
        subprocess.run(["bash", str(HOSTS_SH), "down", str(dir_)], timeout=120)


def _assert_isolated(dir_: Path, hosts: dict[str, str]) -> None:
    """Each host's PID 1 is its own init and it sees a handful of processes, not this machine's."""
    for name, ip in hosts.items():
        init = _ssh(dir_, ip, "tr '\\0' ' ' < /proc/1/cmdline")
        assert f"init {dir_} {name}" in init, init
        assert len(_ssh(dir_, ip, "ps -e -o pid=").split()) < 20


def _ssh_control_parent() -> Path:
    """The launcher keeps SSH control sockets in /tmp/ray_ssh_<user hash>/<cluster hash> (Ray 2.60)."""
    return Path("/tmp") / f"ray_ssh_{hashlib.sha256(getpass.getuser().encode()).hexdigest()[:10]}"


def _remove_ssh_control_dir(name: str, existed: bool) -> None:
    parent = _ssh_control_parent()
    shutil.rmtree(parent / hashlib.sha256(name.encode()).hexdigest()[:10], ignore_errors=True)
    if not existed and parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()


@pytest.mark.timeout(1500)  # two `ray up`s: about 10 min on a busy 2-core machine
def test_ray_up__exec_sweep__down_on_two_hosts(tmp_path, test_hosts, monkeypatch):
    dir_, hosts, hosts_s = test_hosts
    _assert_isolated(dir_, hosts)  # before any `ray stop` can run there
    name = f"contralord-test-{secrets.token_hex(3)}"
    token = tmp_path / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    worker_env = tmp_path / "mlflow-worker.env"  # as docs/SECURITY.md makes ~/.contralord/mlflow-worker.env
    worker_env.write_text("export MLFLOW_TRACKING_USERNAME=contralord-worker "
                          f"MLFLOW_TRACKING_PASSWORD={secrets.token_hex(16)}\n"
                          "export CONTRALORD_WORKER_USERNAME=$MLFLOW_TRACKING_USERNAME "
                          "CONTRALORD_WORKER_PASSWORD=$MLFLOW_TRACKING_PASSWORD\n")
    worker_env.chmod(0o600)
    config = tmp_path / "cluster.yaml"
    config.write_text(yaml.safe_dump(make_test_copy(yaml.safe_load((REPO / "ray_cluster.local.yaml").read_text()),
                                               hosts, name, dir_ / "id_ed25519", token, worker_env,
                                               dir_ / "shared")))
    (tmp_path / "driver").mkdir()
    (dir_ / "shared").mkdir()  # YOUR-SHARED-DIR: mounted before `ray up` (a missing one stops the restore)
    # TMPDIR: the launcher's cluster state and lock files; never this machine's /tmp/ray.
    env = os.environ | {"TMPDIR": str(tmp_path / "driver"), "RAY_USAGE_STATS_ENABLED": "0"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    ssh_dir_existed = _ssh_control_parent().is_dir()
    times = {"hosts up": hosts_s}
    down_done = False
    try:
        started = time.monotonic()
        _run([RAY, "up", str(config), "-y", "--no-config-cache"], env, timeout=600)
        status = {}

        def two_nodes():
            status["out"] = _run([RAY, "exec", str(config), "ray status"], env, timeout=120, check=False).stdout
            return active_nodes(status["out"]) == 2
        _wait("ray status showing 2 nodes", two_nodes, timeout=300, every=5,
              detail=lambda: f"{status.get('out', '')}\n{_head_logs(dir_)}")
        times["ray up (until 2 nodes)"] = time.monotonic() - started
        uri = f"http://{hosts['head']}:5000"
        _wait("MLflow server on the head", lambda: _http_ok(f"{uri}/health"), timeout=120)

        started = time.monotonic()
        storage = dir_ / "shared" / "ray"  # both hosts see DIR at its path: a shared file system
        sweep = ("cd ~/contralord && python tune/sweep_negatives.py --preset smoke --address auto "
                 f"--tracking-uri $MLFLOW_TRACKING_URI --storage {storage} --shared-fs --no-calibrate {' '.join(FAST)}")
        _run([RAY, "exec", str(config), sweep], env, timeout=1200)
        times["sweep (ray exec)"] = time.monotonic() - started

        # read back as the admin, whose login exists only on the head (~/mlflow/admin.env)
        admin = dict(re.findall(r"export (\w+)=(\S+)", _ssh(dir_, hosts["head"], "cat ~/mlflow/admin.env")))
        for name_ in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            monkeypatch.setenv(name_, admin[name_])
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name("contralord-negatives")
        trials = [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("role") == "trial"]
        assert len(trials) == 2 and all(r.info.status == "FINISHED" for r in trials), trials
        runs = _runs_and_points(client, experiment.experiment_id)
        parent = next(r.info.run_id for r in client.search_runs([experiment.experiment_id])
                      if r.data.tags.get("role") != "trial")
        # the head's watcher copies the store to the shared folder within its 10 s poll of the sweep's end
        started = time.monotonic()
        copied = dir_ / "shared" / "mlflow-store" / "mlflow.db"
        _wait("the store's copy holding the finished sweep", lambda: _status_in_copy(copied, parent) == "FINISHED",
              timeout=120, every=1, detail=lambda: _ssh(dir_, hosts["head"], "cat ~/mlflow/backup.log"))
        times["store copied after the sweep"] = time.monotonic() - started
        node_ips = {m.group(1) for f in storage.rglob("result.json")
                    for m in re.finditer(r'"node_ip": "([\d.]+)"', f.read_text())}
        assert node_ips == set(hosts.values()), node_ips  # one trial per host (1 CPU each)

        started = time.monotonic()
        _run([RAY, "down", str(config), "-y"], env, timeout=300)
        down_done = True
        times["ray down"] = time.monotonic() - started
        assert "raylet" not in _ssh(dir_, hosts["head"], "ps -e -o comm=")
        # `ray down` runs `ray stop` on the head only; the local provider just forgets the workers, whose
        # raylets exit once the head's GCS is gone.
        _wait("the worker's Ray to exit after ray down",
              lambda: "raylet" not in _ssh(dir_, hosts["worker"], "ps -e -o comm="), timeout=180, every=5)
        times["worker's Ray gone after ray down"] = time.monotonic() - started

        # A new head: the old one's server and watcher die without a word (SIGKILL, no last copy) and its store
        # is gone. The next `ray up` restores the runs from the shared folder before its server starts.
        # The server is `mlflow server`, its uvicorn and uvicorn's workers, which hold port 5000 ([s]: the patterns
        # do not match this command's own shell).
        _ssh(dir_, hosts["head"], "pkill -KILL -f '[s]tore_backup.py|mlflow [s]erver|[u]vicorn'; "
                                  "for pid in $(ss -Hltnp 'sport = :5000' | grep -o 'pid=[0-9]*' | cut -d= -f2); do "
                                  "kill -KILL $pid; done; "
                                  "while ss -Hltn 'sport = :5000' | grep -q . || "
                                  "pgrep -f '[s]tore_backup.py' >/dev/null; do sleep 0.2; done; rm -rf ~/mlflow")
        started = time.monotonic()
        down_done = False
        second_up = _run([RAY, "up", str(config), "-y", "--no-config-cache"], env, timeout=600)
        assert "restore: restored" in second_up.stdout + second_up.stderr, second_up.stdout[-3000:]
        _wait("MLflow server on the new head", lambda: _http_ok(f"{uri}/health"), timeout=120)
        times["ray up on a new head (until MLflow answers)"] = time.monotonic() - started
        admin = dict(re.findall(r"export (\w+)=(\S+)", _ssh(dir_, hosts["head"], "cat ~/mlflow/admin.env")))
        for name_ in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            monkeypatch.setenv(name_, admin[name_])  # the new head made its own admin login
        client = MlflowClient(uri)
        restored = client.get_experiment_by_name("contralord-negatives")
        assert _runs_and_points(client, restored.experiment_id) == runs
        _run([RAY, "down", str(config), "-y"], env, timeout=300)
        down_done = True
    finally:
        if not down_done:
            _run([RAY, "down", str(config), "-y"], env, timeout=300, check=False)
        _remove_ssh_control_dir(name, ssh_dir_existed)
        print("\n" + "\n".join(f"{phase}: {seconds:.0f} s" for phase, seconds in times.items()))
