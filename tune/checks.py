"""Checks of a sweep's command line that must pass before Ray starts or any trial runs; each failure
is one ``SweepError`` line naming the flag."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
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
    elif scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5) as response:
                response.read()
        except (urllib.error.URLError, OSError) as error:
            raise SweepError(f"--tracking-uri: MLflow server {uri} is not reachable ({error})") from None
    elif scheme.split("+")[0] not in DB_SCHEMES:
        raise SweepError(f"--tracking-uri: expected sqlite:////abs.db, http(s)://host:port or a database URI, "
                         f"got {uri!r}")


def check_address(address: str | None) -> None:
    """``host:port`` of a running Ray head must accept a TCP connection (``auto``/None pass)."""
    if address in (None, "", "auto", "local"):
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        raise SweepError(f"--address: expected host:port (or auto), got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError as error:
        raise SweepError(f"--address: no Ray head answers at {address} ({error})") from None


def is_uri(path: str) -> bool:
    return urlparse(path).scheme in URI_SCHEMES


def check_storage(storage: str) -> str:
    """An absolute local path or a cloud URI; returns it normalised."""
    if is_uri(storage):
        return storage.rstrip("/")
    if not Path(storage).is_absolute():
        raise SweepError(f"--storage: expected an absolute path or s3://... URI, got {storage!r}")
    return str(Path(storage))


def check_storage_shared(storage: str, alive_nodes: int, shared_fs: bool) -> None:
    """A cluster of several nodes needs storage that every node reaches at the same path."""
    if alive_nodes > 1 and not is_uri(storage) and not shared_fs:
        raise SweepError(f"--storage: {storage} is a local path but the cluster has {alive_nodes} nodes; "
                         f"use s3://... or pass --shared-fs if it is an NFS mount on every node")
