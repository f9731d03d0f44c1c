"""Trial reuse and seeds until decided on a real local Ray (2 CPUs) and a temporary MLflow store.

The first sweep runs ``--until-decided --seeds 1 --max-seeds 2``: round 0 trains one seed per row; with one
seed no row has an interval, so every row is open and round 1 trains seed 1 everywhere; then every row has
--max-seeds. The same sweep again (another --name) trains nothing: every trial of both rounds is linked to
the first sweep's run, and its table equals the first's. A third, plain sweep (--seeds 1) reuses too.
"""

import json
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
from mlflow import MlflowClient  # noqa: E402

from ablations.runs import from_experiment, from_sweep_run  # noqa: E402
from ablations.specs import SPECS  # noqa: E402
from ablations.tables import build_table  # noqa: E402
from tune.driver.run import main  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
FAST = ["--set", "data.size=320", "--set", "latent.epochs=1", "--set", "encoder.epochs=2",
        "--set", "eval.num_train=64", "--set", "eval.num_test=32", "--set", "eval.grid_size=2"]
ROUNDS = ["--until-decided", "--seeds", "1", "--max-seeds", "2"]


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    root = tmp_path_factory.mktemp("reuse")
    uri = f"sqlite:///{root}/mlflow.db"
    common = ["--preset", "smoke", "--storage", str(root / "ray"), "--tracking-uri", uri, *FAST, "--no-calibrate"]
    walls = {}
    ray.init(address="local", num_cpus=2, include_dashboard=False,  # its own, not a running one
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    try:
        for name, extra in (("first", ROUNDS), ("second", ROUNDS), ("plain", ["--seeds", "1"])):
            start = time.perf_counter()
            assert main("negatives", [*common, *extra, "--name", name]) == 0
            walls[name] = time.perf_counter() - start
    finally:
        ray.shutdown()
    print(f"\nreuse walls: {json.dumps({k: round(v, 1) for k, v in walls.items()})}")
    return MlflowClient(uri), root, walls


def _parent(client, name):
    experiment = client.get_experiment_by_name("contralord-negatives")
    runs = client.search_runs([experiment.experiment_id], f"tags.role = 'sweep' and attributes.run_name = '{name}'")
    assert len(runs) == 1
    return runs[0]


def _children(client, parent):
    return client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")


def _cells(table):
    return [(row.key, row.seeds, {c: (s.mean, s.ci_low, s.ci_high) for c, s in row.cells.items() if s})
            for row in table.rows]


@pytest.mark.slow
def test_until_decided__adds_a_seed_to_open_rows_up_to_max_seeds(swept):
    client, _, _ = swept
    first = _parent(client, "first")
    trials = _children(client, first)
    assert len(trials) == 4 and all(t.info.status == "FINISHED" for t in trials)
    assert sorted(t.data.params["run.seed"] for t in trials) == ["0", "0", "1", "1"]
    assert all(t.data.tags.get("reuse_key") and t.data.tags.get("code_version") for t in trials)
    log = json.loads(Path(client.download_artifacts(first.info.run_id, "rounds.json")).read_text())
    assert log["decide"] == ["D"] and [r["round"] for r in log["rounds"]] == [1, 2]
    round1, round2 = log["rounds"]
    assert round1["trained"] == 2
    assert all(r["added_seed"] == 1 and "no interval" in r["verdict"] for r in round1["rows"])
    assert round2["trained"] == 0 and all(r["added_seed"] is None for r in round2["rows"])
    metrics = first.data.metrics
    assert metrics["until_decided/trials"] == 4 and metrics["until_decided/trials_fixed_seeds"] == 4


@pytest.mark.slow
def test_reuse__second_identical_sweep_starts_no_trial_and_has_the_same_table(swept):
    client, root, walls = swept
    first, second = _parent(client, "first"), _parent(client, "second")
    copies = _children(client, second)
    originals = {t.info.run_id for t in _children(client, first)}
    assert len(copies) == 4 and {c.data.tags["reused_from"] for c in copies} == originals
    assert not any((root / "ray" / name).exists() for name in ("second", "second-round1"))  # no Tuner at all
    assert second.data.metrics["until_decided/trials_trained"] == 0
    assert second.info.status == "FINISHED" and {a.path for a in client.list_artifacts(second.info.run_id)} >= {
        "table.md", "rounds.json"}
    spec = SPECS["table6"]
    tables = [build_table(from_sweep_run(client, p.info.run_id).runs, spec, "x") for p in (first, second)]
    assert _cells(tables[0]) == _cells(tables[1])
    assert walls["second"] < walls["first"] / 3, walls


@pytest.mark.slow
def test_reuse__experiment_table_counts_each_trial_once(swept):
    client, _, _ = swept
    source = from_experiment(client, "contralord-negatives")
    assert len(source.runs) == 4  # 4 originals; the 6 copies of the later sweeps are left out
    table = build_table(source.runs, SPECS["table6"], source.description)
    assert all(row.n == 2 and not row.excluded for row in table.rows)
    plain = _children(client, _parent(client, "plain"))
    assert len(plain) == 2 and all(c.data.tags.get("reused_from") for c in plain)


@pytest.mark.slow
def test_cost_report__reads_the_rounds_and_counts_a_reused_sweep_at_its_originals_time(swept, capsys):
    from ablations import cost_report

    client, root, _ = swept
    first, second = _parent(client, "first"), _parent(client, "second")
    uri = f"sqlite:///{root}/mlflow.db"
    assert cost_report.main(["--tracking-uri", uri, "--spec", "table6", "--sweep-run", first.info.run_id,
                             "--out", str(root / "report")]) == 0
    text = (root / "report" / cost_report.REPORT).read_text()
    assert "| until decided, at most 2 seeds | 4 |" in text and "0 of 2 rows decided after 1 seeds" in text
    seconds = sum(t.data.metrics["time/total"] for t in _children(client, first))
    assert f"| {seconds / 60:.1f} |" in text
    sweep = cost_report.read_sweep(client, SPECS["table6"], second.info.run_id)
    assert {t.seconds for t in sweep.trials} == {t.data.metrics["time/total"] for t in _children(client, first)}
    capsys.readouterr()
    assert cost_report.main(["--tracking-uri", uri, "--spec", "table6", "--sweep-run",
                             _parent(client, "plain").info.run_id]) == 2
    assert "rounds.json" in capsys.readouterr().err
