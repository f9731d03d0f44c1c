"""Offline checks of `ray_cluster.local.yaml` (Ray's on-premise launcher): Ray's validator, then the properties
docs/CLUSTER.md ("Own machines") promises. tests/sweeps/test_ray_up_local.py runs the file for real.

`prepare_config` merges Ray's local `defaults.yaml` and turns the provider into one node type the way `ray up`
does, so every property is checked on the merged config. Private API, checked against Ray 2.60.0.
"""

import copy
import json
import pathlib
import re

import pytest
import yaml
from test_cluster_yaml import _replace_in, store_copy_problems  # shared by both cluster files' property checks

ray_util = pytest.importorskip("ray.autoscaler._private.util")  # Ray 2.60.0 private API
jsonschema = pytest.importorskip("jsonschema")

ROOT = pathlib.Path(__file__).resolve().parents[1]
LOCAL_YAML = ROOT / "ray_cluster.local.yaml"
CLUSTER_DOC = ROOT / "docs" / "CLUSTER.md"
SECRETS = [r"-----BEGIN [A-Z ]*PRIVATE KEY", r"RAY_AUTH_TOKEN=", r"password\s*[=:]", r"://[^\s/:@]+:[^\s/@]+@"]


def _raw() -> dict:
    return yaml.safe_load(LOCAL_YAML.read_text())


def _prepare(raw: dict) -> dict:
    return ray_util.prepare_config(copy.deepcopy(raw))


def _ray_starts(cfg: dict, key: str) -> list[str]:
    return [c for c in cfg[key] if "ray start" in c]


def problems(cfg: dict) -> list[str]:
    """What breaks a promise of docs/CLUSTER.md, on the merged config."""
    found = []
    if "0.0.0.0" in json.dumps(cfg):
        found.append("0.0.0.0 appears in the merged config")
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = _ray_starts(cfg, key)
        if len(starts) != 1:
            found.append(f"{key}: {len(starts)} `ray start` commands")
        for cmd in starts:
            if not 0 <= cmd.find("RAY_AUTH_MODE=token") < cmd.find("ray start"):
                found.append(f"{key}: `ray start` without RAY_AUTH_MODE=token")
            if "--node-ip-address=$NODE_IP" not in cmd:
                found.append(f"{key}: `ray start` without --node-ip-address=$NODE_IP")
    head = " ".join(_ray_starts(cfg, "head_start_ray_commands"))
    if "--dashboard-host=127.0.0.1" not in head:
        found.append("head `ray start` lacks --dashboard-host=127.0.0.1")
    if "RAY_enable_autoscaler_v2=0" not in head:
        found.append("head starts autoscaler v2, which never starts local workers in Ray 2.60")
    mlflow = [c for c in cfg["head_start_ray_commands"] if "mlflow server" in c]
    if not any("--host $NODE_IP" in c and "sqlite:///$HOME/" in c for c in mlflow):
        found.append("no mlflow server on $NODE_IP with an absolute sqlite store in head_start_ray_commands")
    setup = " ".join(cfg["head_setup_commands"] + cfg["worker_setup_commands"])
    for pin in (r'"torch==2\.14\.1"', r'"ray\[default,tune,train\]==2\.60\.0"', r"pip install -q -e ~/contralord"):
        if not re.search(pin, setup):
            found.append(f"setup commands lack {pin}")
    if cfg["file_mounts"].get("~/contralord") != ".":
        found.append("repo not mounted at ~/contralord")
    if cfg["file_mounts"].get("~/ray_auth_token") != "~/.ray/auth_token":
        found.append("the token is not copied from ~/.ray/auth_token")
    found += store_copy_problems(cfg["head_start_ray_commands"], "YOUR-SHARED-DIR/")
    node = cfg["available_node_types"]["local.cluster.node"]
    if node["min_workers"] != len(cfg["provider"]["worker_ips"]):
        found.append("not every worker IP joins the cluster")
    return found


def test_local_yaml__passes_ray_validator():
    ray_util.validate_config(_prepare(_raw()))


@pytest.mark.parametrize("section, key", [((), "worker_ips"), (("auth",), "ssh_key")])
def test_local_yaml__misplaced_or_misspelt_key_rejected(section, key):
    """worker_ips outside `provider`, ssh_key for ssh_private_key. (Ray's schema leaves `provider` open.)"""
    raw = _raw()
    target = raw
    for name in section:
        target = target[name]
    target[key] = "x"
    with pytest.raises(jsonschema.ValidationError, match=key):
        ray_util.validate_config(_prepare(raw))


def test_local_yaml__meets_every_property():
    assert problems(_prepare(_raw())) == []


BREAKAGES = {
    "dashboard_public": (_replace_in("head_start_ray_commands", "--dashboard-host=127.0.0.1",
                                     "--dashboard-host=0.0.0.0"), "0.0.0.0"),
    "defaults_inherited": (lambda raw: raw.pop("head_start_ray_commands"), "RAY_AUTH_MODE=token"),
    "head_without_token": (_replace_in("head_start_ray_commands", "RAY_AUTH_MODE=token", "RAY_AUTH_MODE=disabled"),
                           "head_start_ray_commands: `ray start` without RAY_AUTH_MODE=token"),
    "worker_without_token": (_replace_in("worker_start_ray_commands", "RAY_AUTH_MODE=token ", ""),
                             "worker_start_ray_commands: `ray start` without RAY_AUTH_MODE=token"),
    "autoscaler_v2": (_replace_in("head_start_ray_commands", " RAY_enable_autoscaler_v2=0", ""), "autoscaler v2"),
    "mlflow_public": (_replace_in("head_start_ray_commands", "--host $NODE_IP", "--host 0.0.0.0"), "0.0.0.0"),
    "mlflow_relative_store": (_replace_in("head_start_ray_commands", "sqlite:///$HOME/", "sqlite:///"), "mlflow"),
    "worker_ip_guessed": (_replace_in("worker_start_ray_commands", " --node-ip-address=$NODE_IP", ""),
                          "--node-ip-address"),
    "torch_unpinned": (_replace_in("setup_commands", '"torch==2.14.1"', "torch"), "torch"),
    "repo_not_installed": (_replace_in("setup_commands", "pip install -q -e ~/contralord", "true"), "-e ~/contralord"),
    "token_from_elsewhere": (lambda raw: raw["file_mounts"].update({"~/ray_auth_token": "./token"}), "token"),
    "store_not_restored": (lambda raw: raw["head_start_ray_commands"].pop(2), "not restored"),
    "store_copied_into_home": (_replace_in("head_start_ray_commands", "YOUR-SHARED-DIR/mlflow-store", "~/copy"),
                               "copy is not one folder"),
    "fewer_workers": (lambda raw: raw.update(min_workers=1), "not every worker IP"),
}


@pytest.mark.parametrize("name", sorted(BREAKAGES))
def test_problems__flag_each_breakage(name):
    mutate, expected = BREAKAGES[name]
    raw = _raw()
    mutate(raw)
    found = problems(_prepare(raw))
    assert any(expected in p for p in found), found


def test_local_yaml__holds_no_secrets():
    text = LOCAL_YAML.read_text()
    assert [p for p in SECRETS if re.search(p, text, flags=re.IGNORECASE)] == []


def test_cluster_doc__explains_every_local_placeholder():
    placeholders = set(re.findall(r"YOUR-[A-Z0-9-]*[A-Z0-9]", LOCAL_YAML.read_text()))
    assert {"YOUR-HEAD-IP", "YOUR-USER"} <= placeholders
    section = CLUSTER_DOC.read_text().partition("## Own machines")[2]
    assert section, "docs/CLUSTER.md has no 'Own machines' section"
    assert sorted(p for p in placeholders if p not in section) == []
