"""make_tables.py refuses, and leaves alone, what it must not write into: an SQLite file that is not an
MLflow store, an existing table in --out (unless --overwrite, which also removes its stale formats), and
a database URI whose driver is missing."""

import hashlib
import sqlite3

from fabricated_runs import mlflow_store  # noqa: F401  (the `store` fixture)

from ablations.make_tables import main


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _errors(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err


def _sweep(store):
    parent = store.parent("contralord-negatives", "negatives")
    for seed in (0, 1):
        for k in ("128", "1024"):
            store.trial("contralord-negatives", {"encoder.queue_size": k}, {"disentanglement": 0.1 + seed}, seed,
                        parent=parent)


def test_foreign_sqlite_file__refused_and_unchanged(tmp_path, capsys):
    path = tmp_path / "inventory.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE parts (id INTEGER, name TEXT)")
        db.execute("INSERT INTO parts VALUES (1, 'bolt')")
    db.close()
    before = _sha(path)
    line = _errors(capsys, ["--tracking-uri", f"sqlite:///{path}", "--spec", "table6"])
    assert "is an SQLite database but not an MLflow store" in line and "found parts" in line
    assert _sha(path) == before
    with sqlite3.connect(path) as db:
        assert [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")] == ["parts"]


def test_out__existing_table_is_kept_unless_overwrite_which_removes_stale_formats(store, tmp_path, capsys):
    _sweep(store)
    out = tmp_path / "tables"
    argv = ["--tracking-uri", store.uri, "--spec", "table6", "--out", str(out)]
    assert main(argv + ["--format", "markdown", "--format", "csv"]) == 0
    capsys.readouterr()
    before = {p.name: _sha(p) for p in out.iterdir()}
    line = _errors(capsys, argv + ["--format", "markdown"])
    assert "table6." in line and "exists" in line and "--overwrite" in line and "nothing written" in line
    assert {p.name: _sha(p) for p in out.iterdir()} == before
    assert main(argv + ["--format", "markdown", "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["table6.md", "table6.png"]  # no stale table6.csv beside it


def test_database_uri_without_its_driver__one_line(capsys):
    line = _errors(capsys, ["--tracking-uri", "postgresql://user:secret@127.0.0.1:1/mlflow", "--spec", "table6"])
    assert "--tracking-uri:" in line and ("not installed" in line or "does not answer" in line)
    assert "secret" not in line


def test_folder_that_is_not_a_file_store__refused_and_untouched(tmp_path, capsys):
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    line = _errors(capsys, ["--tracking-uri", str(folder), "--spec", "table6"])
    assert "is not an MLflow file store" in line and "left untouched" in line
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]


def test_mlflow_file_store__one_line_not_a_traceback(tmp_path, capsys):
    store = tmp_path / "mlruns"
    (store / "0").mkdir(parents=True)
    (store / "0" / "meta.yaml").write_text("experiment_id: '0'\nname: Default\n")
    line = _errors(capsys, ["--tracking-uri", str(store), "--spec", "table6"])
    assert line.startswith("error: --tracking-uri: ") and len(line) < 320
