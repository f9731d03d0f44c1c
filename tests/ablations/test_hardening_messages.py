"""Messages (issue 18, class 8): a usage error is one line (contralord, make_tables, cost_report); cost_report
gives one line for a malformed rounds.json, an odd trial param, an --out that is a file or read-only, keeps an
existing report unless --overwrite, and names its own flags; a 1e308 metric still gives make_tables its plot."""

import pytest
from fabricated_runs import mlflow_store  # noqa: F401  (the `store` fixture)

from ablations import cost_report, make_tables
from contralord.cli import main as cli


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


@pytest.mark.parametrize("entry, argv, needle", [
    (cli.main, ["train", "--out", "x", "--bogus"], "contralord: error: unrecognized arguments: --bogus"),
    (cli.main, ["train"], "contralord train: error: the following arguments are required: --out"),
    (cli.main, ["nosuch"], "contralord: error: argument command: invalid choice"),
    (make_tables.main, ["--spec", "table6"], "the following arguments are required: --tracking-uri"),
    (cost_report.main, ["--tracking-uri", "x", "--spec", "nope"], "argument --spec: invalid choice"),
])
def test_usage_errors__one_line(capsys, entry, argv, needle):
    with pytest.raises(SystemExit) as stopped:
        entry(argv)
    assert stopped.value.code == 2 and needle in _one_line(capsys)


def _until_decided_sweep(store, rounds: dict | None, seed="0") -> str:
    parent = store.parent("contralord-negatives", "negatives")
    store.trial("contralord-negatives", {"encoder.queue_size": "128", "run.seed": seed}, {"disentanglement": 0.5},
                seed, parent=parent)
    if rounds is not None:
        store.client.log_dict(parent, rounds, "rounds.json")
    return parent


GOOD_ROUNDS = {"max_seeds": 3, "rounds": [{"rows": [{"variant": "K128", "seeds": 1, "verdict": "decided"}]}]}


@pytest.mark.parametrize("rounds, seed, needle", [
    ({"max_seeds": 3, "rounds": [{"rows": [{"variant": "K128", "seeds": "x", "verdict": "open"}]}]}, "0",
     "rounds.json is not one tune/rounds.py writes"),
    ({"max_seeds": 3, "rounds": {"rows": []}}, "0", "rounds.json is not one tune/rounds.py writes"),
    (GOOD_ROUNDS, "abc", "has run.seed 'abc', expected an int"),
])
def test_cost_report__malformed_rounds_or_params__one_line(store, capsys, monkeypatch, rounds, seed, needle):
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    parent = _until_decided_sweep(store, rounds, seed)
    assert cost_report.main(["--tracking-uri", store.uri, "--spec", "table6", "--sweep-run", parent]) == 2
    assert needle in _one_line(capsys)


def test_cost_report__names_its_own_flag_for_a_missing_experiment(store, capsys):
    store.experiment("contralord-other")
    assert cost_report.main(["--tracking-uri", store.uri, "--spec", "table6"]) == 2
    line = _one_line(capsys)
    assert line.startswith("error: --spec table6: no experiment 'contralord-negatives'") and "--experiment" not in line
    assert line.endswith("reads the runs tune/sweep_negatives.py logs there: pass the --tracking-uri of the store "
                         "that sweep logged to, or run it with this one first")


def test_cost_report__out_checked_first_and_a_report_kept(store, tmp_path, capsys):
    parent = _until_decided_sweep(store, GOOD_ROUNDS)
    argv = ["--tracking-uri", store.uri, "--spec", "table6", "--sweep-run", parent]
    (tmp_path / "a-file").write_text("mine")
    assert cost_report.main(argv + ["--out", str(tmp_path / "a-file")]) == 2
    assert "is a file, expected a folder" in _one_line(capsys)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        assert cost_report.main(argv + ["--out", str(locked)]) == 2
        assert f"--out: cannot write in {locked}" in _one_line(capsys)
    finally:
        locked.chmod(0o755)
    out = tmp_path / "reports"
    out.mkdir()
    (out / cost_report.REPORT).write_text("an earlier report")
    assert cost_report.main(argv + ["--out", str(out)]) == 2
    assert "--overwrite" in _one_line(capsys) and (out / cost_report.REPORT).read_text() == "an earlier report"
    assert cost_report.main(argv + ["--out", str(out), "--overwrite"]) == 0
    assert (out / cost_report.REPORT).read_text() != "an earlier report"


def test_make_tables__huge_metric__one_line_and_nothing_written(store, tmp_path, capsys):
    parent = store.parent("contralord-negatives", "negatives")
    for seed in (0, 1):
        store.trial("contralord-negatives", {"encoder.queue_size": "128"}, {"disentanglement": 1e308}, seed,
                    parent=parent)
        store.trial("contralord-negatives", {"encoder.queue_size": "1024"}, {"disentanglement": 0.5 + seed},
                    seed, parent=parent)
    out = tmp_path / "tables"
    assert make_tables.main(["--tracking-uri", store.uri, "--spec", "table6", "--format", "csv",
                             "--out", str(out)]) == 2
    assert "encoder/eval/disentanglement = 1e+308, too large to average" in _one_line(capsys)
    assert not out.exists()


def test_plot__a_mean_or_interval_that_overflows_is_left_out(tmp_path):
    """The plot never raises on a cell near 1e308 or infinite (matplotlib could not place its ticks: "arange:
    cannot compute length"); such a point or bar is left out of the picture, the table's files keep it."""
    from ablations.plot import plot_table
    from ablations.specs import SPECS
    from ablations.stats import Summary
    from ablations.tables import Row, Table

    spec = SPECS["table6"]
    cells = [Summary(n=2, mean=m, std=0.0, ci_low=lo, ci_high=hi) for m, lo, hi in
             ((0.5, 0.4, 0.6), (1e308, 1e308, 1e308), (1e299, -1.7e308, 1.7e308), (float("inf"), 0.0, 1.0))]
    rows = [Row(key=(k,), seeds=["0", "1"], cells={"D": c}) for k, c in zip((128, 256, 512, 1024), cells, strict=True)]
    table = Table(spec=spec, rows=rows, columns=["D"], best={}, source="test")
    assert plot_table(table, tmp_path / "t.png").stat().st_size > 0
