"""PostgreSQL for real (issue 33 item 3), on a throwaway server on loopback (``tests/pg_server.py``): a smoke sweep
logs into it as a user's would, ``make_tables`` and ``cost_report`` read it back, and a wrong password, a missing
database and a server that is down are each one line naming ``--tracking-uri``, never its password. Skipped,
saying why, where the server binaries are missing."""

import os
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray")
from conftest import OwnProcesses, free_port  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from pg_server import postgres_server  # noqa: E402, F401  (postgres_server: the `postgres` fixture)

from ablations.cost_report import main as cost_report  # noqa: E402
from ablations.make_tables import main as make_tables  # noqa: E402
from tune.driver.run import main as sweep  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
FAST = ["--set", "data.size=320", "--set", "latent.epochs=1", "--set", "encoder.epochs=2",
        "--set", "eval.num_train=64", "--set", "eval.num_test=32", "--set", "eval.grid_size=2"]


@pytest.mark.slow
def test_smoke_sweep__logs_into_postgresql_and_the_tables_read_it_back(postgres, tmp_path, capsys):
    uri = postgres.uri()
    processes = OwnProcesses()
    try:
        # until decided (a second round adds seed 1 to the rows still open), so that cost_report has rounds to read
        command = [sys.executable, str(REPO / "tune" / "sweep_negatives.py"), "--preset", "smoke", *FAST,
                   "--until-decided", "--max-seeds", "2", "--decide-metric", "D", "--no-calibrate",
                   "--tracking-uri", uri, "--storage", str(tmp_path / "ray")]
        done = processes.run(command, timeout=800, cwd=tmp_path, env=dict(os.environ))  # under pytest's 900 s
    finally:
        processes.end_all()
    assert done.returncode == 0, done.stderr[-3000:]
    assert postgres.password not in done.stdout + done.stderr  # the URI is shown with *** only
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("contralord-negatives")
    runs = client.search_runs([experiment.experiment_id])
    trials = [r for r in runs if r.data.tags.get("role") == "trial"]
    assert len(trials) == 4 and all(t.info.status == "FINISHED" for t in trials)  # 2 rows x seeds 0, 1
    assert all(len(client.get_metric_history(t.info.run_id, "encoder/train/total")) == 2 for t in trials)
    assert make_tables(["--tracking-uri", uri, "--spec", "table6", "--sweep-run", "latest"]) == 0
    table = capsys.readouterr().out
    assert "| 128 (40 % of N) | 2 |" in table and "| 256 (80 % of N) | 2 |" in table  # of data.size=320
    assert cost_report(["--tracking-uri", uri, "--spec", "table6"]) == 0
    report = capsys.readouterr().out
    assert "| until decided, at most 2 seeds | 4 |" in report and "table6 (sweep run" in report


@pytest.mark.parametrize("case", ["wrong password", "missing database", "server down"])
def test_bad_postgresql_uri__one_line_naming_tracking_uri_without_the_password(postgres, tmp_path, capsys, case):
    uri = {"wrong password": postgres.uri(password="not-the-password"),
           "missing database": postgres.uri(database="no_such_db"),
           "server down": f"postgresql+psycopg://admin:{postgres.password}@127.0.0.1:{free_port()}/mlflow"}[case]
    assert make_tables(["--tracking-uri", uri, "--spec", "table6"]) == 2
    argv = ["--preset", "smoke", "--tracking-uri", uri, "--storage", str(tmp_path / "ray"), "--dry-run"]
    assert sweep("negatives", argv) == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 2 and all("--tracking-uri" in line for line in lines), lines
    assert postgres.password not in captured.out + captured.err and "not-the-password" not in captured.err
    assert "admin:***@" in captured.err
    assert not (tmp_path / "ray").exists()  # refused before anything was written


def test_dry_run_on_a_new_postgresql_database__writes_nothing(postgres, tmp_path, capsys):
    """A dry run reads its store for history and reuse; on a database without MLflow's tables MLflow would create
    them on opening it (it wrote 65), so the dry run reads nothing there and leaves it empty."""
    import sqlalchemy
    from pg_server import create_database

    create_database(postgres, "fresh")
    uri = postgres.uri(database="fresh")
    argv = ["--preset", "smoke", "--tracking-uri", uri, "--storage", str(tmp_path / "ray"), "--dry-run",
            "--no-calibrate"]
    assert sweep("negatives", argv) == 0
    assert "nothing written" in capsys.readouterr().out
    engine = sqlalchemy.create_engine(uri)
    try:
        assert sqlalchemy.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()
