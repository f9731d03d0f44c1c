"""Issue 18, second look (classes 3 and 8): odd values in a sweep's runs give cost_report and make_tables one line
(a seed or thread count that str.isdigit() accepts but int() does not, a loss weight that is not a number in a
check-mark table); a store's error never shows the password of the URI; a URI that does not parse, or names a
port out of 1-65535 (postgres included: no driver or server is needed to refuse it), is one line naming
--tracking-uri in make_tables, cost_report and the sweeps, before any connection; an http(s) URI that carries
its login is checked with that login (urllib took user:password@ for the host name)."""

import base64
import http.server
import threading

import pytest
from fabricated_runs import mlflow_store  # noqa: F401  (the `store` fixture)

from ablations import cost_report, make_tables
from ablations.store import server_problem, uri_problem


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


ROUNDS = {"max_seeds": 3, "rounds": [{"rows": [{"variant": "K128", "seeds": 1, "verdict": "decided"}]}]}


@pytest.mark.parametrize("seed, tags, needle", [
    ("\u00b2", {}, "has run.seed '\u00b2', expected an int"),  # '²'.isdigit() is True, int('²') raises
    ("0", {"machine.threads": "\u00b2"}, "machine.threads"),
])
def test_cost_report__digits_that_are_not_ints__one_line(store, capsys, monkeypatch, seed, tags, needle):
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    parent = store.parent("contralord-negatives", "negatives")
    store.trial("contralord-negatives", {"encoder.queue_size": "128", "run.seed": seed}, {"disentanglement": 0.5},
                seed, parent=parent, tags=tags)
    store.client.log_dict(parent, ROUNDS, "rounds.json")
    assert cost_report.main(["--tracking-uri", store.uri, "--spec", "table6", "--sweep-run", parent]) == 2
    assert needle in _one_line(capsys)


def test_cost_report__a_loss_weight_that_is_not_a_number__one_line(store, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    parent = store.parent("contralord-losses", "losses")
    store.trial("contralord-losses", {"loss.con": "abc"}, {"disentanglement": 0.5}, 0, parent=parent)
    store.client.log_dict(parent, ROUNDS, "rounds.json")
    assert cost_report.main(["--tracking-uri", store.uri, "--spec", "table4", "--sweep-run", parent]) == 2
    assert "loss.con 'abc'" in _one_line(capsys)


@pytest.mark.parametrize("uri, needle", [
    ("postgresql://ann:hunter2@127.0.0.1:99999/mlflow", "expected a port from 1 to 65535"),
    ("postgresql://ann:hunter2@127.0.0.1:port/mlflow", "expected a port from 1 to 65535"),
    ("postgresql+psycopg2://ann:hunter2@127.0.0.1:0/mlflow", "expected a port from 1 to 65535, got 0"),
    ("mysql://ann:hunter2@127.0.0.1:70000/mlflow", "expected a port from 1 to 65535"),
    ("http://ann:hunter2@127.0.0.1:99999", "expected a port from 1 to 65535"),
    ("https://ann:hunter2@[::1", "is not a valid URI"),
    ("http://:5000", "names no host"),
])
def test_uri_that_does_not_parse__one_line_naming_the_flag_everywhere(capsys, tmp_path, uri, needle):
    from tune.driver.run import main as sweep

    assert needle in uri_problem(uri)
    for run, argv in ((make_tables.main, ["--spec", "table6"]), (cost_report.main, ["--spec", "table6"])):
        assert run(["--tracking-uri", uri, *argv]) == 2
        line = _one_line(capsys)
        assert line.startswith("error: --tracking-uri: ") and needle in line and "hunter2" not in line
    assert sweep("negatives", ["--preset", "smoke", "--dry-run", "--storage", str(tmp_path / "ray"),
                               "--tracking-uri", uri]) == 2
    line = _one_line(capsys)
    assert line.startswith("sweep: error: --tracking-uri: ") and needle in line and "hunter2" not in line
    assert sorted(p.name for p in tmp_path.iterdir()) == []


class _Login(http.server.BaseHTTPRequestHandler):
    """/health for everyone, the API for ann:hunter2 only (MLflow's basic-auth app, in miniature)."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        good = "Basic " + base64.b64encode(b"ann:hunter2").decode()
        ok = self.path == "/health" or self.headers.get("Authorization") == good
        self.send_response(200 if ok else 401)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def test_server_uri_with_its_login__checked_with_that_login(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    server = http.server.HTTPServer(("127.0.0.1", 0), _Login)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        assert server_problem(f"http://ann:hunter2@127.0.0.1:{port}") == ""
        refused = server_problem(f"http://ann:wrong@127.0.0.1:{port}")
        assert "refuses user 'ann' (HTTP 401)" in refused and "wrong" not in refused
        assert "no login" in server_problem(f"http://127.0.0.1:{port}")
    finally:
        server.shutdown()
