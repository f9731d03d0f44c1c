"""tune/store/store_backup.py: the cluster's MLflow store copied where it outlives the cluster, and restored from there.

Real MLflow SQLite stores made by MLflow itself; the destination is a local folder through pyarrow.fs (the same
calls serve s3://). tests/sweeps/test_ray_up_local.py runs the watcher and the restore on test hosts.
"""

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tune.store import store_backup
from tune.store.store_backup import StoreState, backup, backup_due, copy_problem, restore

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tune" / "store" / "store_backup.py"


def _client(db: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{db}")


@pytest.fixture(scope="module")
def made_store(tmp_path_factory) -> Path:
    """An MLflow store with 3 runs (2 finished, one with a 5-point history); made once, copied per test."""
    db = tmp_path_factory.mktemp("made") / "mlflow.db"
    client = _client(db)
    experiment = client.create_experiment("contralord-negatives")
    for i in range(3):
        run = client.create_run(experiment, tags={"role": "trial"})
        for step in range(5 if i == 0 else 1):
            client.log_metric(run.info.run_id, "eval/D", 0.1 * step + i, step=step)
        if i < 2:
            client.set_terminated(run.info.run_id)
    return db


@pytest.fixture
def store(made_store, tmp_path) -> Path:
    db = tmp_path / "head" / "mlflow.db"
    db.parent.mkdir()
    shutil.copyfile(made_store, db)
    return db


def _runs(db: Path) -> dict:
    """run id -> (status, every metric point), read through MLflow."""
    client = _client(db)
    experiment = client.get_experiment_by_name("contralord-negatives")
    return {r.info.run_id: (r.info.status, sorted((m.step, m.value) for m in
                                                   client.get_metric_history(r.info.run_id, "eval/D")))
            for r in client.search_runs([experiment.experiment_id])}


def _runs_of_copy(dest: Path, tmp_path: Path) -> dict:
    """_runs of the copy as it is now: read from a file of its own, since MLflow keeps one engine per URI and its
    pooled connection would go on reading the file the copy replaced."""
    read = tmp_path / f"read-{time.monotonic_ns()}.db"
    shutil.copyfile(dest / "mlflow.db", read)
    return _runs(read)


def test_backup_then_restore_into_a_new_head__every_run_and_point_back(store, tmp_path):
    (tmp_path / "bucket").mkdir()
    dest = tmp_path / "bucket" / "mlflow-store"
    assert "3 runs" in backup(store, str(dest))
    assert copy_problem(dest / "mlflow.db") == ""  # MLflow's own schema (its one trigger included) passes
    new_head = tmp_path / "new-head" / "mlflow.db"
    new_head.parent.mkdir()
    assert "restored" in restore(str(dest), new_head)
    assert _runs(new_head) == _runs(store)
    assert sorted(p.name for p in new_head.parent.iterdir()) == ["mlflow.db"]
    assert new_head.stat().st_mode & 0o777 == 0o600  # every run of the cluster: this user's only


def test_backup_while_mlflow_writes__the_copy_is_whole_and_holds_what_came_before(store, tmp_path):
    client = _client(store)
    run_id = client.create_run(client.get_experiment_by_name("contralord-negatives").experiment_id).info.run_id
    logged, done = [], threading.Event()

    def writer():
        step = 0
        while not done.is_set():
            client.log_metric(run_id, "eval/D", float(step), step=step)
            logged.append(step)
            step += 1
    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while len(logged) < 20:
            time.sleep(0.05)
        before = len(logged)
        dest = tmp_path / "dest"
        backup(store, str(dest))
    finally:
        done.set()
        thread.join()
    copied = _client(dest / "mlflow.db").get_metric_history(run_id, "eval/D")
    assert copy_problem(dest / "mlflow.db") == ""
    assert before <= len(copied) <= len(logged)
    assert sorted(m.step for m in copied) == list(range(len(copied)))  # a prefix of the writes: nothing torn


def test_restore_never_replaces_a_store_that_exists(store, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    shutil.copyfile(store, other / "mlflow.db")
    _client(other / "mlflow.db").create_experiment("only-in-the-copy")
    backup(other / "mlflow.db", str(tmp_path / "dest"))
    before = store.read_bytes()
    assert "kept the existing store" in restore(str(tmp_path / "dest"), store)
    assert store.read_bytes() == before


def test_restore_without_a_copy__leaves_the_store_missing(tmp_path):
    db = tmp_path / "mlflow.db"
    assert "no copy at" in restore(str(tmp_path / "empty-dest"), db)
    assert list(tmp_path.iterdir()) == []


def _garbage(path: Path, made: Path) -> None:
    path.write_bytes(os.urandom(4096))


def _truncated(path: Path, made: Path) -> None:
    path.write_bytes(made.read_bytes()[: made.stat().st_size // 2])


def _not_mlflow(path: Path, made: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE runs (run_uuid TEXT)")


def _with_a_trigger(path: Path, made: Path) -> None:
    shutil.copyfile(made, path)
    with sqlite3.connect(path) as db:  # rewrites every metric MLflow logs
        db.execute("CREATE TRIGGER zero AFTER INSERT ON metrics BEGIN UPDATE metrics SET value = 0; END")


def _trigger_under_mlflows_name(path: Path, made: Path) -> None:
    shutil.copyfile(made, path)
    with sqlite3.connect(path) as db:
        db.execute("DROP TRIGGER prevent_secrets_aad_mutation")
        db.execute("CREATE TRIGGER prevent_secrets_aad_mutation AFTER INSERT ON metrics BEGIN "
                   "UPDATE metrics SET value = 0; END")


def _with_a_view(path: Path, made: Path) -> None:
    shutil.copyfile(made, path)
    with sqlite3.connect(path) as db:
        db.execute("CREATE VIEW watching AS SELECT * FROM runs")


@pytest.mark.parametrize("make, expected", [
    (_garbage, "not an SQLite database"), (_truncated, "database disk image is malformed"),
    (_not_mlflow, "not an MLflow store"), (_with_a_trigger, "SQL MLflow does not make: trigger zero"),
    (_trigger_under_mlflows_name, "SQL MLflow does not make: trigger prevent_secrets_aad_mutation"),
    (_with_a_view, "SQL MLflow does not make: view watching")],
    ids=["garbage", "truncated", "not-mlflow", "extra-trigger", "trigger-under-mlflows-name", "view"])
def test_restore_refuses_a_hostile_or_broken_copy__one_line_exit_2_nothing_written(make, expected, made_store,
                                                                                      tmp_path, capsys):
    dest = tmp_path / "dest"
    dest.mkdir()
    make(dest / "mlflow.db", made_store)
    head = tmp_path / "head"
    head.mkdir()
    code = store_backup.main(["restore", "--db", str(head / "mlflow.db"), "--from", str(dest)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("store_backup: --from: the copy at") and expected in err
    assert list(head.iterdir()) == []


def test_backup_of_a_store_that_is_not_mlflows__refused_and_the_last_copy_kept(store, tmp_path, capsys):
    dest = tmp_path / "dest"
    backup(store, str(dest))
    kept = (dest / "mlflow.db").read_bytes()
    foreign = tmp_path / "foreign.db"
    _not_mlflow(foreign, store)
    assert store_backup.main(["backup", "--db", str(foreign), "--to", str(dest)]) == 2
    assert "store_backup: --db: not copied" in capsys.readouterr().err
    assert (dest / "mlflow.db").read_bytes() == kept
    assert sorted(p.name for p in dest.iterdir()) == ["mlflow.db", "mlflow.db.runs"]


def test_backup_to_a_destination_that_cannot_be_written__one_line_naming_to(store, tmp_path, capsys):
    blocker = tmp_path / "a-file"  # where the copy's folder should be
    blocker.write_text("not a folder")
    assert store_backup.main(["backup", "--db", str(store), "--to", str(blocker)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("store_backup: --to: cannot write") and len(err.strip().splitlines()) == 1


def test_an_unmounted_shared_folder_is_an_error__not_an_empty_place_to_start(store, tmp_path, capsys):
    unmounted = tmp_path / "shared" / "mlflow-store"  # tmp_path/shared does not exist
    new_head = tmp_path / "new-head"
    new_head.mkdir()
    assert store_backup.main(["restore", "--db", str(new_head / "mlflow.db"), "--from", str(unmounted)]) == 2
    assert store_backup.main(["backup", "--db", str(store), "--to", str(unmounted)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all("does not exist (the shared folder not mounted?)" in line for line in err)
    assert not (tmp_path / "shared").exists() and list(new_head.iterdir()) == []


def test_a_store_with_fewer_runs_never_replaces_the_copy__unless_forced(store, tmp_path, capsys):
    dest = tmp_path / "dest"
    backup(store, str(dest))
    kept = (dest / "mlflow.db").read_bytes()
    fewer = tmp_path / "other-cluster" / "mlflow.db"  # e.g. another cluster on the same bucket
    fewer.parent.mkdir()
    shutil.copyfile(store, fewer)
    client = _client(fewer)
    client.delete_experiment(client.get_experiment_by_name("contralord-negatives").experiment_id)
    with sqlite3.connect(fewer) as db:
        db.execute("DELETE FROM metrics")
        db.execute("DELETE FROM tags")
        db.execute("DELETE FROM runs WHERE run_uuid IN (SELECT run_uuid FROM runs LIMIT 1)")
    assert store_backup.main(["backup", "--db", str(fewer), "--to", str(dest)]) == 2
    assert "holds 2 runs and the copy at" in capsys.readouterr().err
    assert (dest / "mlflow.db").read_bytes() == kept
    assert store_backup.main(["backup", "--db", str(fewer), "--to", str(dest), "--force"]) == 0
    assert (dest / "mlflow.db.runs").read_text() == "2\n"
    assert sorted(p.name for p in dest.iterdir()) == ["mlflow.db", "mlflow.db.runs"]  # no partial left


def test_mlflows_own_schema_makes_exactly_the_triggers_a_copy_may_have(made_store):
    with sqlite3.connect(f"file:{made_store}?mode=ro", uri=True) as db:
        found = {(name, table, " ".join(sql.split())) for name, table, sql in
                 db.execute("SELECT name, tbl_name, sql FROM sqlite_master WHERE type IN ('trigger', 'view')")}
    assert found == store_backup.MLFLOW_TRIGGERS


def test_a_copy_is_due_only_when_the_store_changed__at_once_after_a_run_ends():
    copied = StoreState(files=(("mlflow.db", 1, 10),), last_end=100)
    same = StoreState(files=(("mlflow.db", 1, 10),), last_end=100)
    written = StoreState(files=(("mlflow.db", 2, 12),), last_end=100)
    run_ended = StoreState(files=(("mlflow.db", 3, 14),), last_end=200)
    assert backup_due(written, None, 0.0, 300.0)  # nothing copied yet
    assert not backup_due(same, copied, 10_000.0, 300.0)  # unchanged: never, however long
    assert not backup_due(written, copied, 299.0, 300.0) and backup_due(written, copied, 300.0, 300.0)
    assert backup_due(run_ended, copied, 0.0, 300.0)  # a run (a trial, a sweep) finished: now


def test_watch__copies_after_a_run_ends_and_once_more_on_sigterm(store, tmp_path):
    dest = tmp_path / "dest"
    log = tmp_path / "watch.log"
    with open(log, "w") as out:
        watcher = subprocess.Popen([sys.executable, str(SCRIPT), "watch", "--db", str(store), "--to", str(dest),
                                    "--poll", "0.2", "--every", "3600"], stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_for(lambda: log.read_text().count("backup: ") == 1, log)  # the first copy, at start
        client = _client(store)
        unfinished = next(r for r, (status, _) in _runs(store).items() if status == "RUNNING")
        client.set_terminated(unfinished)
        _wait_for(lambda: log.read_text().count("backup: ") == 2, log)  # the run's end, not the hour
        assert _runs_of_copy(dest, tmp_path)[unfinished][0] == "FINISHED"
        client.log_metric(unfinished, "eval/D", 9.0, step=9)  # a write without a run ending: waits for --every
        watcher.send_signal(signal.SIGTERM)
        assert watcher.wait(timeout=60) == 0
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    text = log.read_text()
    assert text.count("backup: ") == 3 and text.rstrip().endswith("stopped"), text
    assert (9, 9.0) in _runs_of_copy(dest, tmp_path)[unfinished][1], text


def _wait_for(probe, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout:.0f} s:\n{log.read_text()}")
