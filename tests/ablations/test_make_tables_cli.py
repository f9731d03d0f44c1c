"""``python ablations/make_tables.py``: one command per table, files written, one-line errors."""

import subprocess
import sys
from pathlib import Path

import pytest
from fabricated_runs import Store, mlflow_store  # noqa: F401  (mlflow_store: the `store` fixture)

from ablations.make_tables import main

REPO = Path(__file__).resolve().parents[2]


def _errors(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    return err


def _sweep(store, seeds=(0, 1, 2)):
    parent = store.parent("contralord-negatives", "negatives")
    for seed in seeds:
        for k, d in (("128", 0.1), ("1024", 0.5)):
            store.trial("contralord-negatives", {"encoder.queue_size": k}, {"disentanglement": d + 0.01 * seed,
                                                                           "probe_top1": 0.5}, seed, parent=parent)
    return parent


@pytest.fixture(scope="module")
def three_seeds(tmp_path_factory):
    """One sweep of three seeds, fabricated once for the tests that only read it (make_tables writes nothing
    into a store: test_hardening_stores); the store and the sweep's parent run."""
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('three-seeds') / 'mlflow.db'}")
    return store, _sweep(store)


def test_cli__spec_alone_reads_its_experiment_and_writes_every_format(three_seeds, tmp_path, capsys):
    store, _ = three_seeds
    out = tmp_path / "tables"
    argv = ["--tracking-uri", store.uri, "--spec", "table6", "--paper", "--out", str(out)]
    assert main(argv + ["--format", "markdown", "--format", "latex", "--format", "csv"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["table6.csv", "table6.md", "table6.png", "table6.tex"]
    printed = capsys.readouterr().out
    assert "| 1024 (50 % of N) | 3 | **0.510 ± 0.010** † | 0.500 ± 0.000 |" in printed and "\\begin{table}" in printed


def test_cli__sweep_run_infers_the_table_from_the_sweep_kind(three_seeds, capsys):
    store, parent = three_seeds
    assert main(["--tracking-uri", store.uri, "--sweep-run", parent]) == 0
    assert "Table 6: queue length K" in capsys.readouterr().out


def test_cli__latest_sweep_run_of_the_specs_experiment(store, capsys):
    _sweep(store, seeds=(0,))
    newest = _sweep(store, seeds=(0, 1))  # the same config again: only the newest sweep's trials are read
    assert main(["--tracking-uri", store.uri, "--spec", "table6", "--sweep-run", "latest"]) == 0
    out = capsys.readouterr().out
    assert f"sweep run {newest}" in out and "| 128 (6.25 % of N) | 2 | 0.105 ± 0.007 |" in out
    assert "repeated seed" not in out


def test_cli__one_line_errors(store, tmp_path, capsys):
    missing = f"sqlite:///{tmp_path / 'absent.db'}"
    assert "no MLflow database at" in _errors(capsys, ["--tracking-uri", missing, "--spec", "table6"])
    assert not (tmp_path / "absent.db").exists()  # reading never creates a store
    assert "is not reachable" in _errors(capsys, ["--tracking-uri", "http://127.0.0.1:9", "--spec", "table6"])
    assert "give --sweep-run" in _errors(capsys, ["--tracking-uri", store.uri])
    assert "give one" in _errors(capsys, ["--tracking-uri", store.uri, "--sweep-run", "x", "--experiment", "y"])
    assert "also give --experiment" in _errors(capsys, ["--tracking-uri", store.uri, "--sweep-run", "latest"])
    _sweep(store, seeds=(0,))
    assert "no experiment 'contralord-losses'" in _errors(capsys, ["--tracking-uri", store.uri, "--spec", "table4"])
    assert "no run has the config key 'encoder.nope'" in _errors(
        capsys, ["--tracking-uri", store.uri, "--experiment", "contralord-negatives", "--by", "encoder.nope"])
    assert "--sweep-run: no run 'feedbeef'" in _errors(capsys, ["--tracking-uri", store.uri, "--sweep-run", "feedbeef"])
    trial = store.client.search_runs([store.experiment("contralord-negatives")])[0].info.run_id
    assert "has no nested trial runs" in _errors(capsys, ["--tracking-uri", store.uri, "--sweep-run", trial])
    (tmp_path / "file").write_text("x")
    assert "--out: cannot write there" in _errors(
        capsys, ["--tracking-uri", store.uri, "--spec", "table6", "--out", str(tmp_path / "file")])


@pytest.mark.parametrize("content", [b"", b"not a database at all, just text"])
def test_cli__a_file_that_is_not_a_store_is_refused_and_left_alone(tmp_path, capsys, content):
    path = tmp_path / "mlflow.db"
    path.write_bytes(content)
    assert "is not an SQLite database" in _errors(capsys, ["--tracking-uri", f"sqlite:///{path}", "--spec", "table6"])
    assert path.read_bytes() == content


def test_cli__ignore_key_lets_a_known_inert_key_differ(store, capsys):
    _sweep(store, seeds=(0,))
    store.trial("contralord-negatives", {"encoder.queue_size": "128", "run.threads": "4"}, {"disentanglement": 0.3}, 1)
    argv = ["--tracking-uri", store.uri, "--spec", "table6"]
    assert "run.threads (4, <missing>)" in _errors(capsys, argv)
    assert main(argv + ["--ignore-key", "run.threads"]) == 0
    assert "| 128 (6.25 % of N) | 2 | 0.200 ± 0.141 |" in capsys.readouterr().out


def test_cli__one_seed_prints_n_equals_1(store, capsys):
    _sweep(store, seeds=(0,))
    assert main(["--tracking-uri", store.uri, "--spec", "table6"]) == 0
    out = capsys.readouterr().out
    assert "| 128 (6.25 % of N) | 1 | 0.100 (n=1) | 0.500 (n=1) |" in out and "± 0.000" not in out


@pytest.mark.slow
def test_cli__runs_as_a_script_from_anywhere(three_seeds, tmp_path):
    store, _ = three_seeds
    done = subprocess.run([sys.executable, str(REPO / "ablations" / "make_tables.py"), "--tracking-uri", store.uri,
                           "--spec", "table6", "--format", "csv"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("encoder.queue_size,n,seeds,failed,")
