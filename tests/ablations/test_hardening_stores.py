"""Read-only commands write nothing into a store, and no command migrates one (issue 18, class 3); URIs never
show a password and a malformed database URI is one line (class 8). make_tables and a sweep's checks refuse,
in one line and leaving the file byte-identical: an MLflow store missing tables of this MLflow's schema
(MLflow would create them and migrate), one at another schema revision (naming `mlflow db upgrade`; also an older
MLflow's store, which lacks the newer tables), a foreign SQLite with `experiments`/`runs` tables, and, for
reading, a store without its Default experiment (MLflow would recreate it). A store at this schema opens and
reads with its bytes unchanged."""

import shutil
import socket
import sqlite3

import pytest
from fabricated_runs import mlflow_store  # noqa: F401  (the `store` fixture)
from test_make_tables_refusals import _errors as _refused  # make_tables' one-line refusal
from test_make_tables_refusals import _sha

from ablations.make_tables import main
from ablations.store import database_problem, sqlite_store_problem, without_password
from tune.checks import SweepError, check_tracking_uri


@pytest.fixture
def good_db(store, tmp_path):
    """An MLflow store at this MLflow's schema, with one sweep of two trials; its path (closed)."""
    parent = store.parent("contralord-negatives", "negatives")
    for seed in (0, 1):
        store.trial("contralord-negatives", {"encoder.queue_size": "128"}, {"disentanglement": 0.1 + seed}, seed,
                    parent=parent)
    return tmp_path / "mlflow.db"


def _altered(good_db, tmp_path, name, *statements):
    """A copy of the good store changed by SQL ``statements``."""
    path = tmp_path / f"{name}.db"
    shutil.copy(good_db, path)
    db = sqlite3.connect(path)
    with db:
        for statement in statements:
            db.execute(statement)
    db.close()
    return path


def _a_schema_table(good_db) -> str:
    """A table of MLflow's schema other than the core ones (an older MLflow lacks such tables)."""
    with sqlite3.connect(good_db) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    return sorted(tables - {"experiments", "runs", "alembic_version", "metrics", "params", "tags"})[0]


def test_stores_that_opening_would_change__refused_and_unchanged(good_db, tmp_path, capsys):
    cases = {
        "older": (["DROP TABLE " + _a_schema_table(good_db)], "tables missing"),
        "revision": (["UPDATE alembic_version SET version_num = '0a8213491aaa'"], "mlflow db upgrade sqlite:////"),
        "older-mlflow": (["DROP TABLE " + _a_schema_table(good_db),  # a store a fresh install's newer MLflow reads
                          "UPDATE alembic_version SET version_num = '0a8213491aaa'"], "mlflow db upgrade sqlite:////"),
        "unknown-revision": (["DROP TABLE " + _a_schema_table(good_db),
                              "UPDATE alembic_version SET version_num = 'ffffffffffff'"], "tables missing"),
        "foreign": (["CREATE TABLE other (x)"] + [f"DROP TABLE {t}" for t in _droppable(good_db)],
                    "tables missing"),
        "no-default": (["DELETE FROM experiment_tags WHERE experiment_id = 0",
                        "DELETE FROM experiments WHERE experiment_id = 0"], "no Default experiment"),
    }
    for name, (statements, expected) in cases.items():
        path = _altered(good_db, tmp_path, name, *statements)
        before = _sha(path)
        line = _refused(capsys, ["--tracking-uri", f"sqlite:///{path}", "--spec", "table6"])
        assert "--tracking-uri" in line and expected in line and "left untouched" in line, (name, line)
        if name != "no-default":  # a sweep refuses to migrate; it may recreate Default, a dry run may not
            with pytest.raises(SweepError, match=expected):
                check_tracking_uri(f"sqlite:///{path}")
        else:
            check_tracking_uri(f"sqlite:///{path}")
            with pytest.raises(SweepError, match=expected):
                check_tracking_uri(f"sqlite:///{path}", read_only=True)
        assert _sha(path) == before, name


def _droppable(good_db) -> list[str]:
    """Every table but experiments, runs and alembic_version: what a foreign database does not have."""
    with sqlite3.connect(good_db) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    return [t for t in tables if t not in ("experiments", "runs", "alembic_version")]


def test_current_store__reads_and_stays_byte_identical(good_db, capsys):
    before = _sha(good_db)
    assert sqlite_store_problem(good_db, reading=True) == ""
    assert main(["--tracking-uri", f"sqlite:///{good_db}", "--spec", "table6"]) == 0
    assert "K" in capsys.readouterr().out
    assert _sha(good_db) == before


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_passwords__never_shown(capsys):
    assert without_password("http://ann:hunter2@h:5000") == "http://ann:***@h:5000"
    assert without_password("postgresql://ann:hun@ter2@db:5432/m") == "postgresql://ann:***@db:5432/m"
    uri = f"http://ann:hunter2@127.0.0.1:{_free_port()}"
    with pytest.raises(SweepError) as refused:
        check_tracking_uri(uri)
    assert "hunter2" not in str(refused.value) and "ann:***@" in str(refused.value)
    line = _refused(capsys, ["--tracking-uri", uri, "--spec", "table6"])
    assert "hunter2" not in line and "--tracking-uri" in line


@pytest.mark.parametrize("uri", ["postgresql://ann:hunter2@127.0.0.1:99999/mlflow",
                                 "postgresql://ann:hunter2@127.0.0.1:port/mlflow"])
def test_database_uri_with_a_bad_port__one_line_naming_the_flag(uri, capsys):
    assert database_problem(uri) != ""
    line = _refused(capsys, ["--tracking-uri", uri, "--spec", "table6"])
    assert line.startswith("error: --tracking-uri:") and "hunter2" not in line
    with pytest.raises(SweepError, match="^--tracking-uri: ") as refused:
        check_tracking_uri(uri)
    assert "hunter2" not in str(refused.value)
