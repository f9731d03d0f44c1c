"""Checks of a sweep's command line that must pass before Ray starts or any trial runs; each failure
is one ``SweepError`` line naming the flag."""

from __future__ import annotations

import difflib
import math
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

# sqlite_store_problem is also read from here by tune/pricing/history.py
from ablations.store import (  # noqa: F401
    DB_SCHEMES,
    database_problem,
    server_problem,
    sqlite_store_problem,
    uri_problem,
    without_password,
)
from contralord.run.file_checks import unwritable_reason
from tune.options import SweepOptions


class SweepError(ValueError):
    """Bad sweep input; the message names the flag and what was expected (exit 2)."""


class SweepInterrupted(SweepError):
    """Ctrl-C or a stop signal: what ran is saved, ``--resume`` continues it (exit 130)."""


class TrialsFailed(SweepError):
    """The sweep ran to its end, but a trial ended in error or no table could be built (exit 1)."""


URI_SCHEMES = ("s3", "gs", "gcs", "abfs", "hdfs")
# A train-path trial's driver: a resource of its own where one exists (a Ray a sweep starts; --driver-resource),
# else this much CPU (tune/driver/sweep.py driver_placement)
DRIVER_RESOURCE = "contralord_driver"
DRIVER_CPU = 0.01


def check_tracking_uri(uri: str, read_only: bool = False) -> None:
    """sqlite paths must be absolute with an existing folder; an existing store must be MLflow's at this
    MLflow's schema (never migrated here: ``ablations/store.py``); servers must answer /health and accept the
    login. ``read_only`` (a dry run) also refuses a store MLflow would write into on opening (no Default
    experiment). The password of a URI is never shown."""
    problem = uri_problem(uri)  # a URI that does not parse, or a bad port, before any driver or connection
    if problem:
        raise SweepError(f"--tracking-uri: {problem}")
    scheme, shown = urlparse(uri).scheme, without_password(uri)
    if scheme == "sqlite":
        path = uri[len("sqlite:///"):]
        if not uri.startswith("sqlite:////") or not Path(path).parent.is_dir():
            raise SweepError(f"--tracking-uri: expected sqlite:////ABSOLUTE/path.db in an existing folder, got {uri!r}")
        exists = Path(path).exists()
        problem = sqlite_store_problem(Path(path), new_ok=True, reading=read_only) if exists else ""
        if problem:
            raise SweepError(f"--tracking-uri: {problem}")
    elif scheme in ("http", "https"):
        problem = server_problem(uri)
        if problem:
            raise SweepError(f"--tracking-uri: {problem}")
    elif scheme.split("+")[0] not in DB_SCHEMES:
        raise SweepError(f"--tracking-uri: expected sqlite:////abs.db, http(s)://host:port or a database URI, "
                         f"got {shown!r}")
    else:
        problem = database_problem(uri, new_ok=True, reading=read_only)
        if problem:
            raise SweepError(f"--tracking-uri: {problem}")


def check_address(address: str | None) -> None:
    """``host:port`` of a running Ray head (or what ``auto`` finds) must accept a TCP connection."""
    if address in (None, "", "local"):
        return
    if address == "auto":
        address = _auto_address()
        if address == "auto":
            return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        raise SweepError(f"--address: expected host:port (or auto), got {address!r}")
    if not 1 <= int(port) <= 65535:
        raise SweepError(f"--address: invalid port {port} in {address!r}, expected 1-65535")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError as error:
        raise SweepError(f"--address: no Ray head answers at {address} ({error})") from None


def _auto_address() -> str:
    """What ``ray.init(address="auto")`` would join (RAY_ADDRESS or this machine's latest cluster)."""
    try:
        from ray._private.services import get_ray_address_from_environment  # Ray 2.60 (private)
    except ImportError:
        return "auto"
    try:
        return get_ray_address_from_environment("auto", None)
    except ConnectionError:
        raise SweepError("--address: auto found no running Ray cluster on this machine (start one with "
                         "`ray start --head`, or give host:port)") from None


def is_uri(path: str) -> bool:
    return urlparse(path).scheme in URI_SCHEMES


def check_storage(storage: str) -> str:
    """An absolute local path or a cloud URI; returns it normalised."""
    if is_uri(storage):
        return storage.rstrip("/")
    if not Path(storage).is_absolute():
        raise SweepError(f"--storage: expected an absolute path or s3://... URI, got {storage!r}")
    existing = next(p for p in (Path(storage), *Path(storage).parents) if p.exists())
    if not existing.is_dir():
        raise SweepError(f"--storage: {existing} is a file, expected a folder (or a path that can be created)")
    problem = unwritable_reason(existing)
    if problem:
        raise SweepError(f"--storage: cannot write in {existing} ({problem})")
    return str(Path(storage))


def check_bucket(storage: str) -> None:
    """An s3:// --storage must name a bucket that exists and that these credentials reach."""
    if urlparse(storage).scheme != "s3":
        return
    from pyarrow import fs

    bucket = urlparse(storage).netloc
    if not bucket:
        raise SweepError(f"--storage: expected s3://BUCKET/prefix, got {storage!r}")
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    try:
        s3 = fs.S3FileSystem(endpoint_override=endpoint, connect_timeout=5, request_timeout=5,
                             retry_strategy=fs.AwsStandardS3RetryStrategy(max_attempts=1))
        found = s3.get_file_info(bucket).type
    except OSError as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise SweepError(f"--storage: cannot reach bucket {bucket!r} ({first[:160]})") from None
    if found == fs.FileType.NotFound:
        raise SweepError(f"--storage: bucket {bucket!r} does not exist (or these credentials cannot see it)")


NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-=+")


MAX_NAME = 100  # a Tune experiment, its MLflow run name and <name>-round<k> folders stay well under NAME_MAX
TRAIN_PREFIX = "train-"  # Ray Train's own run folders (tune/driver/sweep.py), which the workers' IAM role may write


def check_name(name: str) -> None:
    """--name is one folder under --storage: a single path component, not '.' or '..', of at most MAX_NAME
    characters, and not ``train-*``: the sweep's own state (tuner.pkl, which --resume unpickles on the head)
    must never sit where the workers may write (docs/iam/contralord-worker-policy.json)."""
    if not name or name in (".", "..") or not set(name) <= NAME_CHARS:
        raise SweepError(f"--name: expected one folder name of letters, digits and ._-=+ (no '/'), got {name!r}")
    if len(name) > MAX_NAME:
        raise SweepError(f"--name: expected at most {MAX_NAME} characters, got {len(name)}")
    if name.startswith(TRAIN_PREFIX):
        raise SweepError(f"--name: {name!r} starts with {TRAIN_PREFIX!r}, the prefix of Ray Train's run folders, "
                         f"which workers may write; choose another name")


def check_counts(options: SweepOptions) -> None:
    """The numeric flags of a sweep: the first one out of range raises, naming it."""
    rules = (("seeds", 1, "an int >= 1"), ("workers_per_trial", 1, "an int >= 1"),
             ("max_concurrent", 0, "an int >= 0 (0 = as resources allow)"),
             ("max_failures", -1, "an int >= 0 (or -1 = retry forever)"), ("num_samples", 1, "an int >= 1"),
             ("gpus_per_worker", 0, "a number >= 0"))
    for name, low, expected in rules:
        value = getattr(options, name)
        if not math.isfinite(value) or value < low:
            raise SweepError(f"--{name.replace('_', '-')}: expected {expected}, got {value}")
    if not math.isfinite(options.cpus_per_worker) or options.cpus_per_worker < MIN_FRACTION:
        raise SweepError(f"--cpus-per-worker: expected a number >= {MIN_FRACTION}, got {options.cpus_per_worker}")
    if 0 < options.gpus_per_worker < MIN_FRACTION:
        raise SweepError(f"--gpus-per-worker: expected 0 or a number >= {MIN_FRACTION}, "
                         f"got {options.gpus_per_worker}")
    for name in ("seeds", "max_seeds"):
        if getattr(options, name) > MAX_SEEDS:
            raise SweepError(f"--{name.replace('_', '-')}: expected at most {MAX_SEEDS} seeds a row, "
                             f"got {getattr(options, name)}")
    if options.num_samples > MAX_SAMPLES:
        raise SweepError(f"--num-samples: expected at most {MAX_SAMPLES} Optuna trials, got {options.num_samples}")
    check_local_resources(options)
    check_register_best(options.register_best)


MIN_FRACTION = 0.01  # of a CPU or GPU per worker: Ray's resources are fractions of 1e-4, a slot is not a job
MAX_SEEDS = 100  # --seeds and --max-seeds: each seed is a trial per variant (100000 hung the dry run)
MAX_SAMPLES = 1000  # --num-samples: each is an Optuna trial (100000 ran the dry run past 2 minutes)
TRIAL_METRIC_PREFIXES = ("encoder/eval/", "encoder/train/")  # what a trial run logs (contralord/run/trainer.py)


def check_local_resources(options: SweepOptions) -> None:
    """On the local Ray (no --address) one trial's workers must fit this machine: more CPUs or GPUs than it
    has would leave the trial (and stage 1) pending forever. A cluster's resources are checked once joined."""
    if not options.local_ray:
        return
    cpus = options.cpus_per_worker * options.workers_per_trial
    if cpus > (os.cpu_count() or 1):
        raise SweepError(f"--cpus-per-worker x --workers-per-trial: a trial needs {cpus:g} CPUs, this machine has "
                         f"{os.cpu_count()} (the local Ray could never start it)")
    if options.gpus_per_worker > 0:
        import torch

        gpus = options.gpus_per_worker * options.workers_per_trial
        if gpus > torch.cuda.device_count():
            raise SweepError(f"--gpus-per-worker x --workers-per-trial: a trial needs {gpus:g} GPUs, this machine "
                             f"has {torch.cuda.device_count()}")


# Run in a child process: the GCS client logs from C++ on stderr and waits 40 s for an endpoint that is not a GCS.
_CLUSTER_QUERY = """
import json, sys
from ray._raylet import GCS_AUTOSCALER_CLUSTER_CONFIG_KEY, GCS_AUTOSCALER_STATE_NAMESPACE, GcsClient
from ray.autoscaler.v2.sdk import get_cluster_resource_state
from ray.core.generated import autoscaler_pb2
gcs = GcsClient(address=sys.argv[1])
nodes = [dict(n.total_resources) for n in get_cluster_resource_state(gcs).node_states
         if autoscaler_pb2.NodeStatus.Name(n.status) in ("RUNNING", "IDLE")]
raw = gcs.internal_kv_get(GCS_AUTOSCALER_CLUSTER_CONFIG_KEY.encode(), GCS_AUTOSCALER_STATE_NAMESPACE.encode())
groups = [dict(g.resources) for g in autoscaler_pb2.ClusterConfig.FromString(raw).node_group_configs
          if g.max_count != 0] if raw else []
status = json.loads(gcs.internal_kv_get(b"__autoscaling_status", None) or b"{}")
types = (status.get("autoscaler_report") or {}).get("node_type_mapping") or {}
fixed = all(kind in (node, "node_" + node) for node, kind in types.items())  # no node types to add: `ray start`
print(json.dumps({"nodes": nodes, "groups": groups, "fixed": fixed}))
"""


def cluster_shape(address: str, timeout: float = 30) -> dict | None:
    """The alive nodes' resources and the node groups an autoscaler may add, of the Ray cluster whose GCS is at
    ``address`` (read-only, without joining it), or None when that cannot be read (not a GCS, an older Ray)."""
    import json
    import subprocess
    import sys

    env = os.environ | {"RAY_gcs_rpc_server_connect_timeout_s": "5"}
    try:
        done = subprocess.run([sys.executable, "-c", _CLUSTER_QUERY, address], capture_output=True, text=True,
                              timeout=timeout, env=env)
        return json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None
    except (subprocess.TimeoutExpired, OSError, ValueError, IndexError):
        return None


def check_cluster_resources(options: SweepOptions) -> bool:
    """With ``--address``, one worker's CPUs and GPUs must fit a node the cluster has or its autoscaler may add
    (its node groups), else the trial, and stage 1 before it, would wait forever. Read from the GCS: a fixed
    cluster (``ray start``, the autoscaler's report names no node types) by its alive nodes, an autoscaler that
    publishes its node groups (v2) by those too. A ``ray up`` cluster of named node types (v1 autoscaler, which
    keeps their resources in its own YAML) is not judged: it may add a node this check cannot see.

    On a fixed cluster a train-path trial's driver takes ``DRIVER_CPU`` too, unless a driver resource exists:
    refused with ``--trainer train`` or several workers per trial; with ``--trainer auto`` the answer is False (take
    the tune path, where the trial is its one worker), else True."""
    address = options.address
    if options.local_ray or address.startswith("ray://"):
        return True
    if address == "auto":
        address = _auto_address()
    shape = cluster_shape(address)
    if shape is None or not (shape["fixed"] or shape["groups"]):
        return True  # node types unknown here (an autoscaler of named node types): Ray warns of an infeasible trial
    need = {"CPU": options.cpus_per_worker, "GPU": options.gpus_per_worker}
    nodes = shape["nodes"] + shape["groups"]
    if not any(all(node.get(key, 0) >= value for key, value in need.items() if value) for node in nodes):
        largest = max((node.get("CPU", 0), node.get("GPU", 0)) for node in nodes) if nodes else (0, 0)
        raise SweepError(f"--cpus-per-worker/--gpus-per-worker: a worker needs {need['CPU']:g} CPU(s) and "
                         f"{need['GPU']:g} GPU(s) on one node; no node of the cluster at {address} has them (the "
                         f"largest: {largest[0]:g} CPU(s), {largest[1]:g} GPU(s)), so its trials would never start")
    total = {key: sum(node.get(key, 0) for node in shape["nodes"]) for key in need}
    for key, value in need.items():
        if not shape["groups"] and value * options.workers_per_trial > total[key]:
            raise SweepError(f"--workers-per-trial x --{key.lower()}s-per-worker: a trial needs "
                             f"{value * options.workers_per_trial:g} {key}(s), the cluster at {address} has "
                             f"{total[key]:g} and adds no nodes, so its trials would never start")
    own_driver = options.driver_resource or any(DRIVER_RESOURCE in node for node in shape["nodes"])
    with_driver = options.cpus_per_worker * options.workers_per_trial + DRIVER_CPU
    if shape["groups"] or own_driver or with_driver <= total["CPU"] + 1e-9:
        return True
    if options.trainer == "train" or options.workers_per_trial > 1:
        raise SweepError(f"--trainer: a train-path trial needs {with_driver:g} CPU(s) ({options.workers_per_trial} "
                         f"worker(s) x {options.cpus_per_worker:g} + its driver's {DRIVER_CPU:g}), the cluster at "
                         f"{address} has {total['CPU']:g} and adds no nodes, so its workers would never start: pass "
                         f"fewer --cpus-per-worker, --driver-resource, or --trainer tune with one worker per trial")
    return False


def check_register_best(spec: str) -> None:
    """``--register-best METRIC[:max|min]`` names a metric every trial run logs (``encoder/eval/...`` at its end,
    ``encoder/train/...`` per epoch), not a table column such as ``D``; checked before Ray, dry run included."""
    if not spec:
        return
    metric, _, mode = spec.partition(":")
    if mode not in ("", "max", "min") or not metric:
        raise SweepError(f"--register-best: expected METRIC or METRIC:max or METRIC:min, got {spec!r}")
    if not metric.startswith(TRIAL_METRIC_PREFIXES) or metric in TRIAL_METRIC_PREFIXES:
        raise SweepError(f"--register-best: expected a metric a trial run logs, such as encoder/eval/mig or "
                         f"encoder/eval/disentanglement (encoder/eval/... or encoder/train/...), got {metric!r}"
                         f"{' (a table column, not a run metric)' if '/' not in metric else ''}")
    name = metric.removeprefix("encoder/eval/")
    if name != metric and name not in EVAL_METRICS and not name.startswith(EVAL_FAMILIES):
        close = difflib.get_close_matches(name, sorted(EVAL_METRICS), n=1)
        raise SweepError(f"--register-best: no trial logs {metric!r}"
                         f"{f' (did you mean encoder/eval/{close[0]}?)' if close else ''}; the evaluation logs "
                         f"encoder/eval/ + one of {', '.join(sorted(EVAL_METRICS))}")


def check_register_best_logged(spec: str, cfg) -> None:
    """The evaluation of ``cfg`` (every trial's config) logs the ``--register-best`` metric: LPIPS and FID only
    with their weight files, nothing under encoder/eval/ with eval.enabled=false but the summary's agreement."""
    metric = spec.partition(":")[0].removeprefix("encoder/eval/")
    needs = {"lpips_reconstruction": ("eval.lpips_weights", cfg.eval.lpips_weights),
             "fid_translation": ("eval.inception_weights", cfg.eval.inception_weights)}
    if metric in needs and not needs[metric][1]:
        raise SweepError(f"--register-best: encoder/eval/{metric} is logged only with {needs[metric][0]} set, "
                         f"which this sweep leaves empty")
    partial_only = metric in ("within_combination_variance", "residual_leakage", "residual_leakage_chance") or \
        metric.startswith(("dci_importance/", "residual_leakage/", "residual_leakage_chance/"))
    if partial_only and cfg.eval.protocol != "partial-labels":
        raise SweepError(f"--register-best: encoder/eval/{metric} is logged only under eval.protocol=partial-labels, "
                         f"this sweep evaluates with {cfg.eval.protocol}")
    if not cfg.eval.enabled and metric in EVAL_METRICS - SUMMARY_METRICS:
        raise SweepError(f"--register-best: encoder/eval/{metric} comes from the evaluation, which this sweep "
                         f"turns off (eval.enabled=false)")


# What a trial logs under encoder/eval/ (contralord/evaluation.py's scores, contralord/run/trainer.py's summary); the
# families end in their factor or code names. A name outside them is never logged: registering on it used to fail
# only after the whole sweep had run. tests/sweeps/test_hardening_register_best.py trains both protocols and
# checks that every logged name is here.
SUMMARY_METRICS = frozenset({"class_acc", "content_r2", "residual_r2", "content_corr_min"})
EVAL_METRICS = SUMMARY_METRICS | frozenset({
    "disentanglement", "completeness", "informativeness_train", "informativeness_test", "mig", "sap",
    "smoothness", "smoothness_content", "smoothness_residual", "smoothness_centred", "uniformity_content",
    "uniformity_projection", "nce_content_lagfree", "nce_residual_lagfree", "nce_chance_lagfree",
    "num_metric_train", "num_metric_test",
    "probe_top1", "probe_top5", "probe_classes", "floor_pixels_top1", "floor_pixels_top5", "floor_supervised_top1",
    "floor_supervised_top5", "recon_mse", "lpips_reconstruction", "fid_translation",
    "within_combination_variance", "residual_leakage", "residual_leakage_chance"})
EVAL_FAMILIES = ("dci_importance/", "residual_leakage/", "residual_leakage_chance/", "content_corr/")


def check_storage_shared(storage: str, alive_nodes: int, shared_fs: bool) -> None:
    """A cluster of several nodes needs storage that every node reaches at the same path."""
    if alive_nodes > 1 and not is_uri(storage) and not shared_fs:
        raise SweepError(f"--storage: {storage} is a local path but the cluster has {alive_nodes} nodes; "
                         f"use s3://... or pass --shared-fs if it is an NFS mount on every node")


def check_trainer(trainer: str, workers: int) -> None:
    """``--trainer auto|train|tune``; ``tune`` runs one worker inside the Tune trial."""
    if trainer not in ("auto", "train", "tune"):
        raise SweepError(f"--trainer: expected auto, train or tune, got {trainer!r}")
    if trainer == "tune" and workers > 1:
        raise SweepError(f"--trainer tune runs one worker inside the Tune trial, but --workers-per-trial is {workers} "
                         f"(use --trainer train or auto)")
