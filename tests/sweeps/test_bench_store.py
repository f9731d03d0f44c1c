"""tune/store/bench_store.py (issue 33 fault f): N loggers against an ``mlflow server`` on loopback, bounded and
self-stopping; every point the server acknowledged is in the store afterwards."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tune.store import bench_store
from tune.store.bench_store import main


@pytest.mark.slow
def test_bench__loggers_write_every_acknowledged_point_and_the_server_ends(tmp_path, capsys, monkeypatch):
    retries = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where its temporary store goes
    servers, start = [], bench_store._start_server
    monkeypatch.setattr(bench_store, "_start_server", lambda *a: servers.append(start(*a)) or servers[-1])
    out = tmp_path / "bench.json"
    assert main(["--loggers", "3", "--seconds", "3", "--processes", "2", "--out", str(out)]) == 0
    (outcome,) = json.loads(out.read_text())
    assert outcome["store"] == "sqlite" and outcome["loggers"] == 3
    assert outcome["requests"] > 0 and outcome["failed"] == 0
    assert outcome["points_acknowledged"] == 10 * outcome["requests"]
    assert outcome["points_stored"] == outcome["points_acknowledged"] and outcome["points_lost"] == 0
    assert "N=3" in capsys.readouterr().out
    ((server, _),) = servers
    assert server.poll() is not None and bench_store.group_running(server.pid) == []  # its whole group has ended
    assert list(tmp_path.iterdir()) == [out]  # its temporary store (and the server's folder) is removed
    assert os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES") == retries  # set in the loggers only


@pytest.mark.parametrize("argv, needle", [
    (["--loggers", "8,x"], "--loggers: expected comma-separated positive ints"),
    (["--loggers", "0"], "--loggers: expected each N in [1, 1024]"),
    (["--seconds", "0"], "--seconds: expected (0, 600]"),
    (["--interval", "-1"], "--interval [0, 60]"),
    (["--store", "mongodb://host/db"], "--store: expected sqlite (a new store) or a database URI"),
    (["--store", "postgresql://u:secret@h/db", "--out", "/no/such/folder/x.json"], "--out: the folder of"),
])
def test_bench__bad_flags_one_line_exit_2_before_any_server(argv, needle, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and needle in err and len(err.strip().splitlines()) == 1 and "secret" not in err


@pytest.mark.slow
def test_bench__a_server_that_cannot_start__one_line_exit_1(capsys):
    assert main(["--store", "sqlite:////proc/no-such-store/mlflow.db", "--loggers", "1", "--seconds", "1"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: mlflow server on sqlite:////proc/no-such-store/mlflow.db exited with code")
    assert len(err.splitlines()) == 1


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads /proc")
def test_group_running__a_zombie_member_has_ended_a_live_one_runs():
    leader = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        assert bench_store.group_running(leader.pid) == [leader.pid]
        os.kill(leader.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while ") Z " not in Path(f"/proc/{leader.pid}/stat").read_text() and time.monotonic() < deadline:
            time.sleep(0.05)  # not reaped yet: a zombie, which killpg(pgid, 0) still finds
        os.killpg(leader.pid, 0)
        assert bench_store.group_running(leader.pid) == []
    finally:
        leader.kill()
        leader.wait()
    with pytest.raises(ProcessLookupError):
        os.killpg(leader.pid, 0)
