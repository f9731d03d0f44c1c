"""Checks of a sweep's command line that must pass before Ray starts or any trial runs; each failure
is one ``SweepError`` line naming the flag."""

from __future__ import annotations

import base64
import math
import os
import socket
import sqlite3
import urllib.error
import urllib.request
from argparse import Namespace
from pathlib import Path
from urllib.parse import urlparse


class SweepError(ValueError):
    """Bad sweep input; the message names the flag and what was expected."""


URI_SCHEMES = ("s3", "gs", "gcs", "abfs", "hdfs")
DB_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")


def check_tracking_uri(uri: str) -> None:
    """sqlite paths must be absolute with an existing folder; servers must answer /health."""
    scheme = urlparse(uri).scheme
    if scheme == "sqlite":
        path = uri[len("sqlite:///"):]
        if not uri.startswith("sqlite:////") or not Path(path).parent.is_dir():
            raise SweepError(f"--tracking-uri: expected sqlite:////ABSOLUTE/path.db in an existing folder, got {uri!r}")
        problem = sqlite_store_problem(Path(path), new_ok=True) if Path(path).exists() else ""
        if problem:
            raise SweepError(f"--tracking-uri: {problem}")
    elif scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5) as response:
                response.read()
        except (urllib.error.URLError, OSError) as error:
            raise SweepError(f"--tracking-uri: MLflow server {uri} is not reachable ({error})") from None
        check_login(uri)
    elif scheme.split("+")[0] not in DB_SCHEMES:
        raise SweepError(f"--tracking-uri: expected sqlite:////abs.db, http(s)://host:port or a database URI, "
                         f"got {uri!r}")
    else:
        problem = probe_database(uri)
        if problem:
            raise SweepError(f"--tracking-uri: {problem}")


SQLITE_HEADER = b"SQLite format 3\x00"
MLFLOW_TABLES = {"experiments", "runs", "alembic_version"}


def sqlite_store_problem(path: Path, new_ok: bool = False) -> str:
    """'' when ``path`` is an MLflow SQLite store (or, with ``new_ok``, an empty file or database that MLflow
    may initialise), else why not. Opened read-only: MLflow would otherwise write its schema into the file."""
    if new_ok and path.stat().st_size == 0:
        return ""
    with open(path, "rb") as f:
        if f.read(16) != SQLITE_HEADER:
            return f"{path} is not an SQLite database (left untouched)"
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.Error as error:
        return f"cannot read the SQLite database {path} ({error})"
    if MLFLOW_TABLES <= tables or (new_ok and not tables):
        return ""
    found = ", ".join(sorted(tables)[:5]) or "no tables"
    return (f"{path} is an SQLite database but not an MLflow store (expected tables "
            f"{', '.join(sorted(MLFLOW_TABLES))}; found {found}); left untouched")


def check_login(uri: str) -> None:
    """A server behind MLflow's basic-auth app must accept the login in MLFLOW_TRACKING_USERNAME/PASSWORD."""
    request = urllib.request.Request(uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1")
    user, secret = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and secret:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):
            who = f"user {user!r}" if user and secret else "no login (MLFLOW_TRACKING_USERNAME/PASSWORD unset)"
            raise SweepError(f"--tracking-uri: MLflow server {uri} refuses {who} (HTTP {error.code}); "
                             f"source your mlflow.env (docs/SECURITY.md)") from None
    except (urllib.error.URLError, OSError) as error:
        raise SweepError(f"--tracking-uri: MLflow server {uri} is not reachable ({error})") from None


def probe_database(uri: str) -> str:
    """Open (and close) one connection to a database URI: '' when it answers, else why not, in one line.

    Nothing is created or written; the password, if any, is left out of the message.
    """
    import sqlalchemy
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

    shown = _without_password(uri)
    timeout = {"postgresql": {"connect_timeout": 5}, "mysql": {"connect_timeout": 5}}
    try:
        engine = sqlalchemy.create_engine(uri, connect_args=timeout.get(urlparse(uri).scheme.split("+")[0], {}))
    except (ImportError, NoSuchModuleError, ArgumentError) as error:
        missing = getattr(error, "name", None) or str(error).splitlines()[0]
        return f"the database driver for {shown} is not installed ({missing}); pip install it or use sqlite:////abs.db"
    try:
        with engine.connect():
            pass
    except SQLAlchemyError as error:
        first = (str(getattr(error, "orig", error)).strip().splitlines() or [type(error).__name__])[0]
        return f"database {shown} does not answer ({first[:160]})"
    finally:
        engine.dispose()
    return ""


def _without_password(uri: str) -> str:
    parsed = urlparse(uri)
    if parsed.password is None:
        return uri
    return uri.replace(f":{parsed.password}@", ":***@", 1)


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
    from contralord.preflight import unwritable_reason  # lazily: it imports torch

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
TRAIN_PREFIX = "train-"  # Ray Train's own run folders (tune/sweep.py), which the workers' IAM role may write


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


def check_counts(args: Namespace) -> None:
    """The numeric flags of a sweep: the first one out of range raises, naming it."""
    rules = (("seeds", 1, "an int >= 1"), ("workers_per_trial", 1, "an int >= 1"),
             ("max_concurrent", 0, "an int >= 0 (0 = as resources allow)"),
             ("max_failures", -1, "an int >= 0 (or -1 = retry forever)"), ("num_samples", 1, "an int >= 1"),
             ("gpus_per_worker", 0, "a number >= 0"))
    for name, low, expected in rules:
        value = getattr(args, name)
        if not math.isfinite(value) or value < low:
            raise SweepError(f"--{name.replace('_', '-')}: expected {expected}, got {value}")
    if not math.isfinite(args.cpus_per_worker) or args.cpus_per_worker <= 0:
        raise SweepError(f"--cpus-per-worker: expected a number > 0, got {args.cpus_per_worker}")


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
