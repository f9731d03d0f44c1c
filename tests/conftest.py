import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest
import torch

from contralord.config import ContraLordConfig
from tune.store.bench_store import group_running

# The tiniest honest configuration: 32x32 procedural shapes, 2-3 steps per stage.
TINY = {
    "data.name": "shapes3d", "data.image_size": 32, "data.size": 96, "data.num_labels": 24,
    "latent.class_dim": 8, "latent.content_dim": 4, "latent.residual_dim": 4, "latent.generator_width": 16,
    "latent.epochs": 1, "latent.batch_size": 32, "latent.best_reference_steps": 8,
    "encoder.backbone_width": 8, "encoder.epochs": 1, "encoder.batch_size": 32, "encoder.queue_size": 40,
    "run.eval_size": 64, "run.threads": 1, "eval.num_train": 64, "eval.num_test": 32, "eval.grid_size": 3,
}


# `mlflow server` without MLflow's GenAI job runner (8 huey processes: judges, trace rollups), which nothing of
# ours uses; ray_cluster*.yaml start the head's server the same way. Measured here: a server's start costs
# 4.8 CPU-s instead of 19.6.
SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
SLOW_TIMEOUT_S = 900  # a slow test (a real sweep or two on 2 busy cores) that runs past this is hung
# Files handed to the xdist workers first, longest first (CI's --durations, 2026-12-07), so that the longest
# work starts at once and the short files fill in at the end. A stale order costs time, never coverage.
LONGEST_FIRST = ("test_sweep_recovery.py", "test_multinode.py", "test_tracking_server_outage.py",
                 "test_ray_up_local.py", "test_two_sweeps_one_store.py", "test_postgres_store.py",
                 "test_sweep_smoke.py", "test_sweep_reuse.py", "test_sweep_dryrun.py")


def pytest_collection_modifyitems(config, items):
    """Slow tests get a longer timeout than pyproject's, unless they set their own.

    Under pytest-xdist (``-n 2``; pyproject adds ``--dist loadfile --no-loadscope-reorder``) each test file
    runs whole in one worker, so a module-scoped fixture (a sweep, a store of logged models) is built once;
    files with slow tests are handed out first, the longest of them (``LONGEST_FIRST``) first of all, so that
    the two workers start on the longest work and the short tests fill in beside it. (``--dist loadgroup``
    would be finer, but pytest-xdist 3.8 cannot mark pytest 9.2's node ids with a group: every test would be
    scheduled alone.)"""
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT_S))
    if hasattr(config, "workerinput"):  # an xdist worker; every worker sorts alike (the same collection)
        slow_files = {item.path for item in items if item.get_closest_marker("slow")}

        def order(item) -> tuple[int, int]:  # stable: each file stays whole, in order
            rank = LONGEST_FIRST.index(item.path.name) if item.path.name in LONGEST_FIRST else len(LONGEST_FIRST)
            return item.path not in slow_files, rank

        items.sort(key=order)


@pytest.fixture(autouse=True)
def _no_mlruns_in_the_working_directory():
    """A test that gives an MLflow experiment no artifact location writes ``./mlruns`` into the folder pytest
    runs in (the repository): our stores keep artifacts beside the database, and so must a test's."""
    folder = os.path.join(os.getcwd(), "mlruns")
    existed = os.path.exists(folder)
    yield
    assert existed or not os.path.exists(folder), f"this test wrote {folder} (an experiment without a location)"


@pytest.fixture(scope="session", autouse=True)
def _mlflow_schema_once(tmp_path_factory):
    """A new MLflow SQLite store opened in this process gets its tables by copying (SQLite's backup API) the
    empty schema that MLflow's own migrations built for the first store of the session, instead of running
    those migrations again: creating a store costs 3-12 s on 2 cores, copying it well under one, and most
    tests make a store of their own. The copy is what the migrations make (same MLflow, same session);
    stores opened by other processes (sweep scripts, ``mlflow server``) still run the migrations."""
    try:
        import mlflow.store.db.utils as db_utils  # noqa: TID251  (test set-up of MLflow stores, not the core)
    except ImportError:
        yield
        return
    template = tmp_path_factory.mktemp("mlflow-schema") / "empty.db"
    migrate = db_utils._initialize_tables

    def initialize(engine):
        if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
            return migrate(engine)
        if not template.exists():
            migrate(engine)
            _copy_sqlite(engine, template, into_engine=False)
            return None
        return _copy_sqlite(engine, template, into_engine=True)

    db_utils._initialize_tables = initialize
    yield
    db_utils._initialize_tables = migrate


def _copy_sqlite(engine, template, into_engine: bool) -> None:
    """SQLite's online backup from the template into the engine's database, or the other way round."""
    import sqlite3

    raw, other = engine.raw_connection(), sqlite3.connect(template)
    try:
        source, target = (other, raw.driver_connection) if into_engine else (raw.driver_connection, other)
        source.backup(target)
    finally:
        other.close()
        raw.close()


@pytest.fixture(scope="session", autouse=True)
def _calibrations_of_the_session(tmp_path_factory):
    """Calibration timings (tune/pricing/calibrate.py) go to a folder of the session, never the user's ~/.cache: a
    module's sweep fixture (and the sweep processes it starts) reads and writes there."""
    os.environ["CONTRALORD_CACHE"] = str(tmp_path_factory.mktemp("calibrations"))
    yield


@pytest.fixture(autouse=True)
def _calibrations_of_the_test(tmp_path_factory, monkeypatch):
    """Each test starts with no cached calibration (what a dry run prints depends on it)."""
    monkeypatch.setenv("CONTRALORD_CACHE", str(tmp_path_factory.mktemp("calibrations")))


@pytest.fixture(scope="module", autouse=True)
def _module_folders_removed(request, tmp_path_factory):
    """The folders a test module made under the session's base folder (its module fixtures' sweeps and stores,
    its tests' calibration caches) are removed when the module ends with no failed test; a failing module's
    stay to be read. With pyproject's ``tmp_path_retention_policy = "failed"`` (a passing test's tmp_path
    goes as it ends) the suite's disk stays at about one module's worth instead of growing to 2.5 GB."""
    base = tmp_path_factory.getbasetemp()
    before, failed_before = set(base.iterdir()), request.session.testsfailed
    yield
    if request.session.testsfailed == failed_before:
        for folder in set(base.iterdir()) - before:
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    yield


@pytest.fixture
def tiny_overrides():
    return dict(TINY)


@pytest.fixture
def tiny_cfg():
    return ContraLordConfig.from_overrides(TINY)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_http(url: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} never answered")


def group_members(pgid: int) -> list[psutil.Process]:
    """The live processes of process group ``pgid`` (zombies are already dead)."""
    members = []
    for pid in group_running(pgid):
        with contextlib.suppress(psutil.NoSuchProcess):
            members.append(psutil.Process(pid))
    return members


def end_group(pgid: int, grace: float = 5) -> None:
    """End process group ``pgid`` (one a test created with ``start_new_session``): SIGTERM, then SIGKILL
    after ``grace`` seconds; return once none of its processes is left. Nothing outside it is touched."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 30)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.time() + wait
        while time.time() < deadline:
            if not group_members(pgid):
                return
            time.sleep(0.2)
    raise AssertionError(f"process group {pgid} outlived SIGKILL: {group_members(pgid)}")


class OwnProcesses:
    """Processes a test starts, each the leader of a new session and process group, so that the test can end
    them and everything they spawned (a server's workers, a local Ray) by that group, and nothing else."""

    def __init__(self):
        self.groups: list[int] = []

    def start(self, command: list[str], **kwargs) -> subprocess.Popen:
        process = subprocess.Popen(command, start_new_session=True, **kwargs)
        self.groups.append(process.pid)
        return process

    def run(self, command: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
        """``subprocess.run`` in a group of its own; on timeout the whole group ends, then the test fails."""
        process = self.start(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            end_group(process.pid)
            out, err = process.communicate()
            raise AssertionError(f"{command[:3]} ran past {timeout} s: {err[-3000:]}") from None
        return subprocess.CompletedProcess(command, process.returncode, out, err)

    def end_all(self) -> None:
        for pgid in reversed(self.groups):
            end_group(pgid)


@pytest.fixture
def own_processes():
    """``OwnProcesses`` whose groups all end when the test does."""
    processes = OwnProcesses()
    yield processes
    processes.end_all()


@pytest.fixture
def mlflow_server(own_processes, tmp_path):
    """Start ``mlflow server`` on a store, on 127.0.0.1 and a free port, in a folder of its own; return its URL."""

    def start(store_uri: str, *options: str) -> str:
        port = free_port()
        folder = tmp_path / f"mlflow-server-{port}"
        folder.mkdir()
        log = open(folder / "server.log", "w")
        own_processes.start(["mlflow", "server", "--backend-store-uri", store_uri, "--host", "127.0.0.1",
                             "--port", str(port), "--workers", "1", *options], cwd=folder, stdout=log,
                            stderr=subprocess.STDOUT, env=os.environ | SERVER_ENV | {"PATH": _venv_path()})
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/health")
        return url

    return start


def _venv_path() -> str:
    return os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
