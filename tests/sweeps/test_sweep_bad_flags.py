"""Sweep flags that used to pass validation and start Ray (and stage 1) are refused first: one line,
exit 2, and Ray is never initialised in this process (the refusal returns before ``ray.init``)."""

import base64
import http.server
import os
import threading

import pytest

ray = pytest.importorskip("ray")

from tune.driver.run import main  # noqa: E402


def _refused(capsys, tmp_path, *args, kind="negatives") -> str:
    base = ["--preset", "smoke", "--storage", str(tmp_path / "ray"), "--tracking-uri", f"sqlite:///{tmp_path}/m.db"]
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(kind, base + list(args)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sweep: error: ") and "Traceback" not in err[0], err
    assert not ray.is_initialized()  # refused before Ray, so before stage 1 and any trial
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing created (no m.db, no ray/)
    return err[0]


@pytest.mark.parametrize("args, needle", [
    (["--max-concurrent", "-1"], "--max-concurrent: expected an int >= 0 (0 = as resources allow), got -1"),
    (["--cpus-per-worker", "0"], "--cpus-per-worker: expected a number >= 0.01, got 0.0"),
    (["--cpus-per-worker", "nan"], "--cpus-per-worker: expected a number >= 0.01, got nan"),
    (["--gpus-per-worker", "-1"], "--gpus-per-worker: expected a number >= 0, got -1.0"),
    (["--max-failures", "-7"], "--max-failures: expected an int >= 0 (or -1 = retry forever), got -7"),
    (["--workers-per-trial", "0"], "--workers-per-trial: expected an int >= 1, got 0"),
    (["--name", "../../.."], "--name: expected one folder name"),
    (["--name", "a/b"], "--name: expected one folder name"),
    (["--name", ""], "--name: expected one folder name"),
    (["--address", "127.0.0.1:99999"], "--address: invalid port 99999"),
    (["--method", "nosuch"], "--method: expected one of"),
    (["--resume"], "--resume: no sweep named 'sweep-negatives-smoke' ran under"),
    (["--set", "encoder.lr=inf"], "encoder.lr: expected a finite float"),
    (["--set", "encoder.queue_sise=4"], "did you mean encoder.queue_size"),
    (["--storage", "s3:///prefix"], "--storage: expected s3://BUCKET/prefix"),
])
def test_sweep__bad_flag_refused_before_ray(capsys, tmp_path, args, needle):
    assert needle in _refused(capsys, tmp_path, *args)


def test_sweep__optuna_needs_samples(capsys, tmp_path):
    assert "--num-samples: expected an int >= 1, got 0" in _refused(capsys, tmp_path, "--num-samples", "0",
                                                                    kind="optuna")


def test_sweep__database_uri_without_driver_is_one_line(capsys, tmp_path):
    line = _refused(capsys, tmp_path, "--tracking-uri", "postgresql://me:secret@127.0.0.1:1/mlflow")
    assert "--tracking-uri:" in line and ("not installed" in line or "does not answer" in line)
    assert "secret" not in line


class _NoBuckets(http.server.BaseHTTPRequestHandler):
    """An S3 endpoint where no bucket exists (HeadBucket answers 404)."""

    def do_HEAD(self):
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_s3(monkeypatch):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NoBuckets)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    for key, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1",
                       "AWS_EC2_METADATA_DISABLED": "true",
                       "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{server.server_port}"}.items():
        monkeypatch.setenv(key, value)
    yield server
    server.shutdown()
    server.server_close()


def test_sweep__nonexistent_bucket_refused_before_ray(capsys, tmp_path, fake_s3):
    base = ["--preset", "smoke", "--storage", "s3://no-such-bucket/contralord", "--tracking-uri",
            f"sqlite:///{tmp_path}/m.db"]
    assert main("negatives", base) == 2
    err = capsys.readouterr().err.strip()
    assert err == "sweep: error: --storage: bucket 'no-such-bucket' does not exist (or these credentials cannot see it)"
    assert not ray.is_initialized() and not os.listdir(tmp_path)


def test_sweep__unreachable_bucket_endpoint_refused(capsys, tmp_path, fake_s3, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    base = ["--preset", "smoke", "--storage", "s3://b/c", "--tracking-uri", f"sqlite:///{tmp_path}/m.db"]
    assert main("negatives", base) == 2
    assert "--storage: cannot reach bucket 'b'" in capsys.readouterr().err


class _AuthServer(http.server.BaseHTTPRequestHandler):
    """An MLflow behind basic auth: /health is open, the API wants admin:right."""

    def do_GET(self):
        wanted = "Basic " + base64.b64encode(b"admin:right").decode()
        ok = self.path.startswith("/health") or self.headers.get("Authorization") == wanted
        self.send_response(200 if ok else 401)
        body = b'{"experiments": []}' if ok else b""
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("login, needle", [(None, "refuses no login"), (("admin", "wrong"), "refuses user 'admin'"),
                                           (("admin", "right"), None)])
def test_sweep__mlflow_login_checked_before_ray(capsys, tmp_path, monkeypatch, login, needle):
    from tune.checks import SweepError, check_tracking_uri

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AuthServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    for name, value in zip(("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"), login or ("", ""), strict=True):
        monkeypatch.setenv(name, value)
    uri = f"http://127.0.0.1:{server.server_port}"
    try:
        if needle is None:
            check_tracking_uri(uri)
        else:
            with pytest.raises(SweepError, match=needle) as error:
                check_tracking_uri(uri)
            assert "HTTP 401" in str(error.value) and "right" not in str(error.value)
    finally:
        server.shutdown()
        server.server_close()


def test_sweep__foreign_sqlite_tracking_file_refused_and_unchanged(capsys, tmp_path):
    import hashlib
    import sqlite3

    path = tmp_path / "inventory.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE parts (id INTEGER)")
    db.close()
    (tmp_path / "notes.txt").write_text("mine")
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.iterdir()}
    for uri in (f"sqlite:///{path}", f"sqlite:///{tmp_path / 'notes.txt'}"):
        assert main("negatives", ["--preset", "smoke", "--storage", str(tmp_path / "ray"), "--tracking-uri", uri]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("sweep: error: --tracking-uri: ") and "left untouched" in err and "\n" not in err
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.iterdir()} == before
    assert not ray.is_initialized()


def test_sweep__storage_that_is_a_file_refused(capsys, tmp_path):
    (tmp_path / "file").write_text("x")
    assert "--storage: " in _refused(capsys, tmp_path, "--storage", str(tmp_path / "file" / "ray"))


def test_sweep__address_auto_is_resolved_and_checked_before_ray(capsys, tmp_path, monkeypatch):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")  # what `auto` joins; nothing listens there
    assert f"--address: no Ray head answers at 127.0.0.1:{port}" in _refused(capsys, tmp_path, "--address", "auto")


def test_sweep__existing_name_without_resume_refused_before_ray(capsys, tmp_path):
    state = tmp_path / "ray" / "sweep-negatives-smoke"
    state.mkdir(parents=True)
    (state / "tuner.pkl").write_bytes(b"an earlier sweep's state")
    line = _refused(capsys, tmp_path)
    assert "--name: sweep 'sweep-negatives-smoke' already exists" in line and "--resume" in line
    assert (state / "tuner.pkl").read_bytes() == b"an earlier sweep's state"


def test_sweep__a_set_key_the_rows_override_refused_naming_them(capsys, tmp_path):
    """--set of a key the sweep's rows set themselves was silently unused in those rows (a readings sweep with
    --set loss.sup=1 ran at the rows' 0.1, 2026-12-07)."""
    base = ["--preset", "smoke", "--storage", str(tmp_path / "ray"), "--tracking-uri", f"sqlite:///{tmp_path}/m.db",
            "--dry-run", "--no-calibrate"]
    assert main("losses", base + ["--set", "loss.con=0.5"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--set loss.con=0.5: the losses sweep's rows set it themselves" in err and "rec+sup+con+res (0.1)" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "ray").exists()
    assert main("negatives", base + ["--set", "encoder.queue_size=16"]) == 2  # the swept key itself
    assert "--set encoder.queue_size=16: the negatives sweep's rows set it themselves" in capsys.readouterr().err
    assert main("losses", base + ["--set", "encoder.steps=16"]) == 0  # a key no row sets
