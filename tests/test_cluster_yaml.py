"""Offline checks of `ray_cluster.yaml`: Ray's own validator, then the properties docs/CLUSTER.md promises.

No cloud calls and no Ray runtime. `prepare_config` merges Ray's AWS `defaults.yaml` into the file the way
`ray up` does, so every property is checked on the merged config: a key left out of our file silently
inherits a default (the AWS default head command starts the dashboard on 0.0.0.0).

`validate_config` / `prepare_config` are private API (`ray.autoscaler._private.util`), checked against
Ray 2.60.0. Each checker returns a list of problems; a parametrized test breaks the config one way at a
time and asserts the checker notices.
"""

import copy
import json
import pathlib
import re

import pytest
import yaml

ray_util = pytest.importorskip("ray.autoscaler._private.util")  # Ray 2.60.0 private API
jsonschema = pytest.importorskip("jsonschema")

ROOT = pathlib.Path(__file__).resolve().parents[1]
CLUSTER_YAML = ROOT / "ray_cluster.yaml"
CLUSTER_DOC = ROOT / "docs" / "CLUSTER.md"

LOOPBACK = {"127.0.0.1", "localhost"}
CREDENTIAL_PATTERNS = [
    r"AKIA[0-9A-Z]{16}",  # AWS access key id
    r"ASIA[0-9A-Z]{16}",  # AWS temporary access key id
    r"aws_secret_access_key",
    r"aws_session_token",
    r"password\s*[=:]",
    r"://[^\s/:@]+:[^\s/@]+@",  # user:password@host in a URI
    r"-----BEGIN [A-Z ]*PRIVATE KEY",
    r"RAY_AUTH_TOKEN=",  # the token itself, not RAY_AUTH_TOKEN_PATH
]


def _raw() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def _prepare(raw: dict) -> dict:
    return ray_util.prepare_config(copy.deepcopy(raw))


def _commands(cfg: dict, key: str) -> list[str]:
    return [str(c) for c in cfg.get(key) or []]


def _all_commands(cfg: dict) -> list[str]:
    keys = ["initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
            "head_start_ray_commands", "worker_start_ray_commands"]
    cmds = [c for k in keys for c in _commands(cfg, k)]
    for node in cfg["available_node_types"].values():  # per-type overrides
        cmds += [str(c) for k in ("initialization_commands", "worker_setup_commands") for c in node.get(k) or []]
    return cmds


def network_problems(cfg: dict) -> list[str]:
    """Nothing listens on all interfaces; dashboard on loopback; MLflow on loopback or the private IP."""
    problems = []
    if "0.0.0.0" in json.dumps(cfg):
        problems.append("0.0.0.0 appears in the merged config")
    cmds = _all_commands(cfg)
    for value in re.findall(r"--dashboard-host[= ]+(\S+)", " ".join(cmds)):
        if value not in LOOPBACK:
            problems.append(f"dashboard bound to {value}")
    head_starts = [c for c in _commands(cfg, "head_start_ray_commands") if "ray start" in c]
    if not any(re.search(r"--dashboard-host[= ]+127\.0\.0\.1\b", c) for c in head_starts):
        problems.append("head `ray start` lacks --dashboard-host=127.0.0.1")
    mlflow = [c for c in cmds if "mlflow server" in c]
    if not any("mlflow server" in c for c in _commands(cfg, "head_start_ray_commands")):
        problems.append("no mlflow server in head_start_ray_commands")
    for cmd in mlflow:
        host = re.search(r"--host[= ]+(\S+)", cmd)
        if host is None:
            problems.append("mlflow server without an explicit --host")
        elif not (host.group(1) in LOOPBACK or host.group(1).startswith("$")):
            problems.append(f"mlflow server bound to {host.group(1)}, not loopback or a private-address variable")
    for opt in (cfg["docker"].get("run_options", []) + cfg["docker"].get("head_run_options", [])
                + cfg["docker"].get("worker_run_options", [])):
        if re.match(r"(-p|--publish)\b", str(opt)):
            problems.append(f"docker publishes a port: {opt}")
    return problems


def auth_problems(cfg: dict) -> list[str]:
    """Every `ray start` runs with RAY_AUTH_MODE=token, on the head and on the workers."""
    problems = []
    if any("RAY_AUTH_MODE=disabled" in c for c in _all_commands(cfg)):
        problems.append("RAY_AUTH_MODE=disabled")
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in _commands(cfg, key) if "ray start" in c]
        if not starts:
            problems.append(f"{key}: no `ray start`")
        for cmd in starts:
            token = cmd.find("RAY_AUTH_MODE=token")
            if token < 0 or token > cmd.find("ray start"):
                problems.append(f"{key}: `ray start` without RAY_AUTH_MODE=token")
    return problems


def image_problems(cfg: dict) -> list[str]:
    """Every image is rayproject/ray pinned to 2.60.0 (ray-ml is discontinued; `latest` drifts)."""
    docker = cfg.get("docker") or {}
    images = [docker.get(k) for k in ("image", "head_image", "worker_image")]
    images += [(n.get("docker") or {}).get("worker_image") for n in cfg["available_node_types"].values()]
    images = [i for i in images if i]
    problems = [] if images else ["no docker image"]
    for image in images:
        name, _, tag = image.partition(":")
        if name != "rayproject/ray" or "2.60.0" not in tag or "latest" in tag:
            problems.append(f"image not pinned to rayproject/ray:2.60.0-*: {image}")
    return problems


def node_problems(cfg: dict) -> list[str]:
    """Head: CPU 0 plus a driver resource; workers scale from 0 and carry GPUs; --shm-size is set."""
    problems = []
    docker = cfg.get("docker") or {}
    shared = any("--shm-size" in str(o) for o in docker.get("run_options", []))
    per_role = all(any("--shm-size" in str(o) for o in docker.get(k, [])) for k in ("head_run_options",
                                                                                    "worker_run_options"))
    if not (shared or per_role):
        problems.append("--shm-size not set")
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]["resources"]
    if head.get("CPU") != 0:
        problems.append(f"head CPU is {head.get('CPU')}, not 0")
    if not any(v > 0 for k, v in head.items() if k not in {"CPU", "GPU", "memory"}):
        problems.append("head has no custom resource for the Tune/Train drivers")
    workers = {k: v for k, v in types.items() if k != cfg["head_node_type"]}
    for name, node in workers.items():
        if node.get("min_workers") != 0:
            problems.append(f"{name}: min_workers is {node.get('min_workers')}, not 0")
    if not any(n["resources"].get("GPU", 0) > 0 for n in workers.values()):
        problems.append("no GPU worker type")
    return problems


def install_problems(cfg: dict) -> list[str]:
    """The project is mounted and installed with torch pinned; MLflow has a database and S3 artifacts."""
    problems = []
    if "/home/ray/contralord" not in cfg.get("file_mounts", {}):
        problems.append("repo not mounted at /home/ray/contralord")
    for key in ("head_setup_commands", "worker_setup_commands"):
        text = " ".join(_commands(cfg, key))
        for pin in (r"\btorch==2\.14\.1\b", r"\btorchvision==0\.29\.1\b", r"pip install .*-e /home/ray/contralord"):
            if not re.search(pin, text):
                problems.append(f"{key}: missing {pin}")
    for cmd in (c for c in _all_commands(cfg) if "mlflow server" in c):
        if not re.search(r"--backend-store-uri[= ]+(sqlite:////|postgresql)", cmd):
            problems.append("mlflow backend is not an absolute sqlite path or Postgres (MLflow 3 has no file store)")
        if not re.search(r"--artifacts-destination[= ]+s3://", cmd):
            problems.append("mlflow artifacts are not on S3")
    return problems


def store_copy_problems(head_start: list[str], copy_prefix: str) -> list[str]:
    """The MLflow store outlives the cluster (tune/store/store_backup.py): restored before the server opens it, then
    watched for as long as the head lives (one watcher: flock), both on the server's database and on one copy
    folder that starts with ``copy_prefix`` (off the head)."""
    found = []
    server = next((i for i, c in enumerate(head_start) if "mlflow server" in c), None)
    restores = [i for i, c in enumerate(head_start) if "store_backup.py restore" in c]
    watches = [i for i, c in enumerate(head_start) if "store_backup.py watch" in c]
    if server is None or len(restores) != 1 or restores[0] > server:
        return ["the store is not restored (store_backup.py restore) before the mlflow server starts"]
    if len(watches) != 1 or watches[0] < server:
        return ["the store is not watched (store_backup.py watch) after the mlflow server starts"]
    store = re.search(r"--backend-store-uri[= ]+sqlite:///(\S+)", head_start[server])
    restore, watch = head_start[restores[0]], head_start[watches[0]]
    db = store.group(1) if store else None
    for what, cmd in (("restore", restore), ("watch", watch)):
        if db is None or not re.search(rf"--db[= ]+{re.escape(db.replace('$HOME', '~'))}(\s|$)",
                                       cmd.replace("$HOME", "~")):
            found.append(f"store_backup.py {what} does not name the server's database {db}")
    source = re.search(r"--from[= ]+(\S+)", restore)
    target = re.search(r"--to[= ]+(\S+)", watch)
    if not (source and target and source.group(1) == target.group(1) and source.group(1).startswith(copy_prefix)):
        found.append(f"the store's copy is not one folder under {copy_prefix} for restore and watch")
    if not re.search(r"^nohup flock -n \S+ .*&$", watch.strip()):
        found.append("the store's watcher is not one background process (nohup flock -n ... &)")
    return found


def problems(cfg: dict) -> list[str]:
    return (network_problems(cfg) + auth_problems(cfg) + image_problems(cfg) + node_problems(cfg)
            + install_problems(cfg) + store_copy_problems(_commands(cfg, "head_start_ray_commands"), "s3://"))


def credential_findings(text: str) -> list[str]:
    return [p for p in CREDENTIAL_PATTERNS if re.search(p, text, flags=re.IGNORECASE)]


# ----------------------------------------------------------------------------------------- Ray validator


def test_cluster_yaml__passes_ray_validator():
    ray_util.validate_config(_prepare(_raw()))


def test_cluster_yaml__raw_file_needs_prepare_config():
    """Ray's validator wants the defaults merged first; calling it on the raw file is a silent misuse."""
    with pytest.raises(RuntimeError, match="cluster_synced_files"):
        ray_util.validate_config(_raw())


@pytest.mark.parametrize("path", [("available_node_types", "gpu_worker"), ("docker",), ()])
def test_cluster_yaml__typo_rejected(path):
    raw = _raw()
    section = raw
    for key in path:
        section = section[key]
    section["min_worker"] = 1  # typo of min_workers
    with pytest.raises(jsonschema.ValidationError, match="min_worker"):
        ray_util.validate_config(_prepare(raw))


def test_cluster_yaml__unknown_head_type_rejected():
    raw = _raw()
    raw["head_node_type"] = "head"
    with pytest.raises(ValueError):
        ray_util.validate_config(_prepare(raw))


# ------------------------------------------------------------------------------- the promised properties


def test_cluster_yaml__meets_every_property():
    assert problems(_prepare(_raw())) == []


def _replace_in(key: str, old: str, new: str):
    def mutate(raw):
        assert any(old in c for c in raw[key]), f"{old!r} not in {key}"
        raw[key] = [c.replace(old, new) for c in raw[key]]
    return mutate


def _set(*path_and_value):
    *path, leaf, value = path_and_value

    def mutate(raw):
        section = raw
        for key in path:
            section = section[key]
        section[leaf] = value
    return mutate


BREAKAGES = {
    "dashboard_public": (_replace_in("head_start_ray_commands", "--dashboard-host=127.0.0.1",
                                     "--dashboard-host=0.0.0.0"), "dashboard bound to 0.0.0.0"),
    "dashboard_flag_dropped": (_replace_in("head_start_ray_commands", " --dashboard-host=127.0.0.1", ""),
                               "lacks --dashboard-host"),
    "ray_defaults_inherited": (lambda raw: raw.pop("head_start_ray_commands"), "dashboard bound to 0.0.0.0"),
    "mlflow_public": (_replace_in("head_start_ray_commands", "--host $(hostname -I | awk '{print $1}')",
                                  "--host 0.0.0.0"), "mlflow server bound to 0.0.0.0"),
    "mlflow_public_ipv6": (_replace_in("head_start_ray_commands", "--host $(hostname -I | awk '{print $1}')",
                                       "--host ::"), "mlflow server bound to ::"),
    "mlflow_file_store": (_replace_in("head_start_ray_commands", "sqlite:////home/ray/mlflow/mlflow.db",
                                      "./mlruns"), "no file store"),
    "mlflow_local_artifacts": (_replace_in("head_start_ray_commands", "s3://YOUR-BUCKET/mlflow-artifacts",
                                           "/home/ray/mlflow/artifacts"), "not on S3"),
    "store_not_restored": (lambda raw: raw["head_start_ray_commands"].pop(2), "not restored"),
    "store_restored_after_server": (lambda raw: raw["head_start_ray_commands"].insert(
        4, raw["head_start_ray_commands"].pop(2)), "not restored"),
    "store_not_watched": (lambda raw: raw["head_start_ray_commands"].pop(4), "not watched"),
    "store_copied_onto_the_head": (_replace_in("head_start_ray_commands", "s3://YOUR-BUCKET/mlflow-store",
                                               "/home/ray/mlflow/copy"), "copy is not one folder under s3://"),
    "store_watched_twice": (_replace_in("head_start_ray_commands", "nohup flock -n /home/ray/mlflow/backup.lock ",
                                        "nohup "), "not one background process"),
    "port_published": (lambda raw: raw["docker"]["run_options"].append("-p 8265:8265"), "publishes a port"),
    "head_without_token": (_replace_in("head_start_ray_commands", "RAY_AUTH_MODE=token", "RAY_AUTH_MODE=disabled"),
                           "head_start_ray_commands: `ray start` without RAY_AUTH_MODE=token"),
    "worker_without_token": (_replace_in("worker_start_ray_commands", "export RAY_AUTH_MODE=token ", "export "),
                             "worker_start_ray_commands: `ray start` without RAY_AUTH_MODE=token"),
    "image_latest": (_set("docker", "image", "rayproject/ray:latest-gpu"), "not pinned"),
    "image_ray_ml": (_set("docker", "image", "rayproject/ray-ml:2.60.0-py311-gpu"), "not pinned"),
    "image_other_version": (_set("docker", "image", "rayproject/ray:2.59.0-py311-gpu"), "not pinned"),
    "no_shm_size": (_set("docker", "run_options", ["--ulimit nofile=65536:65536"]), "--shm-size not set"),
    "head_trains": (_set("available_node_types", "head_cpu", "resources", {"CPU": 8, "train_driver": 8}),
                    "head CPU is 8"),
    "head_without_driver_resource": (_set("available_node_types", "head_cpu", "resources", {"CPU": 0}),
                                     "no custom resource"),
    "workers_always_on": (_set("available_node_types", "gpu_worker", "min_workers", 2), "min_workers is 2"),
    "no_gpus": (_set("available_node_types", "gpu_worker", "resources", {"CPU": 4}), "no GPU worker type"),
    "torch_unpinned": (_replace_in("setup_commands", '"torch==2.14.1"', "torch"), r"torch==2\.14\.1"),
    "repo_not_mounted": (lambda raw: raw["file_mounts"].pop("/home/ray/contralord"), "repo not mounted"),
}


@pytest.mark.parametrize("name", sorted(BREAKAGES))
def test_problems__flag_each_breakage(name):
    mutate, expected = BREAKAGES[name]
    raw = _raw()
    mutate(raw)
    found = problems(_prepare(raw))
    assert any(expected in p for p in found), found


# ---------------------------------------------------------------------------------- secrets, placeholders


@pytest.mark.parametrize("path", [CLUSTER_YAML, CLUSTER_DOC], ids=["yaml", "doc"])
def test_cluster_files__hold_no_credentials(path):
    assert credential_findings(path.read_text()) == []


@pytest.mark.parametrize("leak", [
    "AKIAIOSFODNN7EXAMPLE", "aws_secret_access_key: abc", "password=hunter2",
    "postgresql://mlflow:hunter2@db:5432/mlflow", "RAY_AUTH_TOKEN=0123abcd",
])
def test_credential_findings__flag_leaks(leak):
    text = CLUSTER_YAML.read_text() + f"\n# {leak}\n"
    assert credential_findings(text) != []


def test_cluster_doc__explains_every_placeholder():
    placeholders = set(re.findall(r"[\w-]*YOUR-[A-Z-]*[A-Z]", CLUSTER_YAML.read_text()))
    assert placeholders, "the YAML should carry YOUR-* placeholders, not real account data"
    doc = CLUSTER_DOC.read_text()
    assert sorted(p for p in placeholders if p not in doc) == []
