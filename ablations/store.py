"""Checking an MLflow tracking store before MLflow opens it, so that reading one changes nothing.

MLflow's SQL store writes when it opens a database: it creates every missing table and migrates the schema
when any of its tables is missing (an older store, or a foreign database that happens to have ``experiments``
and ``runs`` tables), and it recreates the Default experiment (id 0) when that row is gone. A read-only
command (``make_tables``, a sweep's ``--dry-run``) must not do any of that, and a sweep should not migrate a
store the user has not chosen to migrate. So the store is inspected first, through a read-only connection,
with MLflow's own schema helpers: every table of this MLflow's schema, the schema revision MLflow expects,
and, for reading, the Default experiment. Anything else is one line naming the store and, for an older
schema, ``mlflow db upgrade`` for the user to run knowingly. Shown URIs never carry a password.

The sweeps (``tune/checks.py``) call the same checks before Ray starts; this module imports nothing of
``tune``.
"""

from __future__ import annotations

import base64
import os
import re
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse, urlsplit

if TYPE_CHECKING:
    from mlflow import MlflowClient

DB_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
SQLITE_HEADER = b"SQLite format 3\x00"
MLFLOW_TABLES = {"experiments", "runs", "alembic_version"}  # the least a store has; the schema check does the rest
CONNECT_TIMEOUT = {"postgresql": {"connect_timeout": 5}, "mysql": {"connect_timeout": 5}}


def tracking_client(tracking_uri: str) -> MlflowClient:
    """A client of the store at ``tracking_uri``, built here and nowhere else (tests/sweeps/test_one_mlflow_writer.py).
    Any module may read with it; only ``tune/trial/mlflow_logger.py``, the one writer, writes with it (and opens a new
    database store with it under a lock: ``open_store_for_writing``). MLflow is imported here, not above: checking
    a store, the rest of this module, needs no MLflow."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri)


def without_password(uri: str) -> str:
    """``uri`` with the password of its ``user:password@`` part, if any, replaced by ``***`` (database and
    http(s) URIs alike; also when the rest of the URI does not parse, such as a port that is not a number)."""
    return re.sub(r"^([a-zA-Z][\w+.-]*://[^/@:]*):[^/]*@", r"\1:***@", uri)


def uri_problem(uri: str) -> str:
    """'' when ``uri`` parses as a URI and the port of its host part, if any, is 1-65535, else why not in one line
    (never with its password). Checked before any driver or connection, so that a typo in the port is named as
    such (sqlalchemy and urllib give tracebacks or 'Name or service not known' for it)."""
    shown = without_password(uri)
    try:
        parts = urlsplit(uri)
        port = parts.port  # ValueError for a port out of range or not a number
    except ValueError as error:
        found = without_password(_first_line(error))
        if found.startswith("Port"):
            return f"{shown}: expected a port from 1 to 65535 ({found})"
        return f"{shown} is not a valid URI ({found})"
    if parts.netloc and port == 0:
        return f"{shown}: expected a port from 1 to 65535, got 0"
    if parts.scheme in ("http", "https") and not parts.hostname:
        return f"{shown} names no host, expected {parts.scheme}://host:port"
    return ""


def _login(uri: str) -> tuple[str, str | None, str | None]:
    """(``uri`` without its ``user:password@``, the login to send): MLFLOW_TRACKING_USERNAME/PASSWORD as MLflow
    sends them, else the user and password written in the URI (urllib would take them for the host name)."""
    parts = urlsplit(uri)
    bare = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
    user, secret = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if not (user and secret) and parts.username is not None:
        user, secret = unquote(parts.username), unquote(parts.password or "")
    return bare, user, secret


def server_problem(uri: str) -> str:
    """'' when the MLflow server at ``uri`` answers /health and accepts the login in
    MLFLOW_TRACKING_USERNAME/PASSWORD (MLflow's basic-auth app) or in the URI, else why not in one line."""
    shown = without_password(uri)
    problem = uri_problem(uri)
    if problem:
        return problem
    uri, user, secret = _login(uri)
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5) as response:
            response.read()
    except (urllib.error.URLError, OSError, ValueError) as error:
        return f"MLflow server {shown} is not reachable ({without_password(_first_line(error))})"
    request = urllib.request.Request(uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1")
    if user and secret:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):
            who = f"user {user!r}" if user and secret else "no login (MLFLOW_TRACKING_USERNAME/PASSWORD unset)"
            return (f"MLflow server {shown} refuses {who} (HTTP {error.code}); source your MLflow login file "
                    f"(docs/SECURITY.md)")
    except (urllib.error.URLError, OSError, ValueError) as error:
        return f"MLflow server {shown} is not reachable ({without_password(_first_line(error))})"
    return ""


def sqlite_store_problem(path: Path, new_ok: bool = False, reading: bool = False) -> str:
    """'' when ``path`` is an MLflow SQLite store at this MLflow's schema (or, with ``new_ok``, an empty file or
    database that MLflow may initialise), else why not. With ``reading``, the Default experiment must exist
    too (MLflow would recreate it). Opened read-only: the file is never changed."""
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
    if new_ok and not tables:
        return ""
    if not MLFLOW_TABLES <= tables:
        found = ", ".join(sorted(tables)[:5]) or "no tables"
        return (f"{path} is an SQLite database but not an MLflow store (expected tables "
                f"{', '.join(sorted(MLFLOW_TABLES))}; found {found}); left untouched")
    return _schema_problem(f"sqlite:///file:{path}?mode=ro&uri=true", str(path), reading,
                           f"sqlite:///{path.absolute()}")


def database_problem(uri: str, new_ok: bool = False, reading: bool = False) -> str:
    """'' when the database at ``uri`` answers and is an MLflow store at this MLflow's schema (or, with
    ``new_ok``, has no tables yet), else why not, in one line. One connection, reads only."""
    import sqlalchemy
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

    shown = without_password(uri)
    problem = uri_problem(uri)
    if problem:
        return problem
    args = CONNECT_TIMEOUT.get(urlparse(uri).scheme.split("+")[0], {})
    try:
        engine = sqlalchemy.create_engine(uri, connect_args=args)
    except (ImportError, NoSuchModuleError) as error:
        missing = getattr(error, "name", None) or str(error).splitlines()[0]
        return f"the database driver for {shown} is not installed ({missing}); pip install it or use sqlite:////abs.db"
    except (ArgumentError, ValueError) as error:  # a port that is not a number, an unparsable URI
        return f"{shown} is not a valid database URI ({_first_line(error)})"
    try:
        with engine.connect() as connection:
            tables = set(sqlalchemy.inspect(connection).get_table_names())
    except (SQLAlchemyError, ValueError, OSError) as error:
        return f"database {shown} does not answer ({_first_line(getattr(error, 'orig', None) or error)})"
    finally:
        engine.dispose()
    if new_ok and not tables:
        return ""
    return _schema_problem(uri, shown, reading, shown)


def _schema_problem(engine_uri: str, shown: str, reading: bool, upgrade_uri: str) -> str:
    """The store has every table of this MLflow's schema at its head revision (MLflow's own helpers,
    ``mlflow.store.db.utils``), and with ``reading`` the Default experiment. ``upgrade_uri``: the URI the advice
    hands to ``mlflow db upgrade`` (it takes a URI, never a bare path)."""
    import sqlalchemy
    from mlflow.store.db import utils

    engine = sqlalchemy.create_engine(engine_uri)
    try:
        found, expected = utils._get_schema_version(engine), utils._get_latest_schema_revision()
        older_mlflow = found != expected and _is_mlflow_revision(found)  # it lacks the newer MLflow's tables
        if not older_mlflow and not utils._all_tables_exist(engine):
            return (f"{shown} is not an MLflow store of this MLflow's schema (tables missing: a foreign database, "
                    f"or an MLflow store older than its tables); left untouched")
        if found != expected:
            return (f"{shown} is an MLflow store of schema revision {found}, this MLflow expects {expected}; left "
                    f"untouched: back it up and run `mlflow db upgrade {upgrade_uri}` yourself if you mean to migrate "
                    f"it")
        if reading and not _has_default_experiment(engine):
            return (f"{shown} has no Default experiment (id 0), which MLflow would recreate on opening it; left "
                    f"untouched (open it once with a writing command, e.g. a sweep, if you accept that)")
    except sqlalchemy.exc.SQLAlchemyError as error:
        return f"cannot read the MLflow store {shown} ({_first_line(getattr(error, 'orig', None) or error)})"
    finally:
        engine.dispose()
    return ""


def _is_mlflow_revision(revision: str | None) -> bool:
    """``revision`` is one of this MLflow's own schema migrations (so ``mlflow db upgrade`` knows the way)."""
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError
    from mlflow.store.db import utils

    if not revision:
        return False
    try:
        return ScriptDirectory.from_config(utils._get_alembic_config(db_url="")).get_revision(revision) is not None
    except CommandError:
        return False


def _has_default_experiment(engine) -> bool:
    import sqlalchemy

    with engine.connect() as connection:
        query = sqlalchemy.text("SELECT COUNT(*) FROM experiments WHERE experiment_id = 0")
        return connection.execute(query).scalar() > 0


def _first_line(error: object) -> str:
    return ((str(error).strip().splitlines() or [type(error).__name__])[0])[:160]
