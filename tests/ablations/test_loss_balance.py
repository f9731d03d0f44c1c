"""``make_tables.py --balance``: each row's per-term gradient norms and their ratios, on fabricated runs whose
gradient histories are known exactly (medians and means worked out by hand)."""

import pytest
from fabricated_runs import Store, mlflow_store  # noqa: F401  (mlflow_store: the `store` fixture)
from mlflow.entities import Metric

from ablations import make_tables
from ablations.balance import build_balance
from ablations.runs import from_experiment
from ablations.specs import spec_for_keys
from ablations.tables import build_table

EXPERIMENT = "contralord-losses"


def _log_grads(store: Store, run_id: str, grads: dict[str, list[float]]) -> None:
    points = [Metric(f"encoder/train/grad/{term}", value, 0, epoch) for term, values in grads.items()
              for epoch, value in enumerate(values)]
    store.client.log_batch(run_id, metrics=points)


def _fabricate(store: Store) -> None:
    """Row con=0: rec and sup; row con=1: rec, sup and con, whose seed 1 is a reused copy without history. The first
    epoch's point (index 0) is absurd on purpose: it must be left out."""
    for seed in range(2):
        run_id = store.trial(EXPERIMENT, {"loss.con": "0.0"}, {"disentanglement": 0.5}, seed)
        _log_grads(store, run_id, {"rec": [99.0, 1.0, 2.0, 3.0], "sup": [99.0, 4.0, 6.0 + seed * 2, 100.0]})
    original = store.trial("contralord-schedule", {"loss.con": "1.0"}, {"disentanglement": 0.4}, 1)
    _log_grads(store, original, {"rec": [0.0, 2.0, 2.0], "sup": [0.0, 1.0, 1.0], "con": [0.0, 8.0, 8.0]})
    seed0 = store.trial(EXPERIMENT, {"loss.con": "1.0"}, {"disentanglement": 0.4}, 0)
    _log_grads(store, seed0, {"rec": [0.0, 1.0, 1.0], "sup": [0.0, 3.0, 3.0], "con": [0.0, 2.0, 2.0]})
    copy = store.trial(EXPERIMENT, {"loss.con": "1.0"}, {"disentanglement": 0.4}, 1, tags={"reused_from": original})
    assert not store.client.get_metric_history(copy, "encoder/train/grad/rec")


def test_balance__medians_after_the_first_epoch_mean_over_seeds(store):
    _fabricate(store)
    source = from_experiment(store.client, EXPERIMENT)
    table = build_table(source.runs, spec_for_keys(("loss.con",)), source.description)
    rows = {row.label: row for row in build_balance(store.client, table, source.runs)}
    plain, contrastive = rows["loss.con=0"], rows["loss.con=1"]
    # medians over epochs 1..: rec 2 and 2; sup 6 (seed 0: 4, 6, 100) and 8 (seed 1: 4, 8, 100)
    assert plain.seeds == 2 and plain.norms == {"rec": pytest.approx(2.0), "sup": pytest.approx(7.0)}
    assert plain.ratio("sup") == pytest.approx(3.5) and plain.spread() == pytest.approx(3.5)
    # seed 0 its own history, seed 1 its original's: rec (1 + 2) / 2, sup (3 + 1) / 2, con (2 + 8) / 2
    assert contrastive.seeds == 2
    assert contrastive.norms == {"rec": pytest.approx(1.5), "sup": pytest.approx(2.0), "con": pytest.approx(5.0)}
    assert contrastive.ratio("con") == pytest.approx(5.0 / 1.5) and contrastive.spread() == pytest.approx(5.0 / 1.5)


def test_balance_command__prints_writes_and_refuses(store, tmp_path, capsys):
    _fabricate(store)
    argv = ["--tracking-uri", store.uri, "--experiment", EXPERIMENT, "--by", "loss.con", "--balance",
            "--out", str(tmp_path / "out")]
    assert make_tables.main(argv) == 0
    text = capsys.readouterr().out
    assert "| loss.con=0 | 2 | 2 | 7 | – | 3.5 | – | 3.5 |" in text
    assert (tmp_path / "out" / "by-loss.con_balance.md").read_text().strip() == text.strip()
    assert make_tables.main(argv) == 2  # the file exists: refused, unchanged
    assert "--overwrite" in capsys.readouterr().err
    assert make_tables.main([*argv, "--format", "csv"]) == 2


def test_balance__runs_without_gradient_norms_are_refused(store, capsys):
    for seed in range(2):
        store.trial(EXPERIMENT, {"loss.con": "0.0"}, {"disentanglement": 0.5}, seed)
    argv = ["--tracking-uri", store.uri, "--experiment", EXPERIMENT, "--by", "loss.con", "--balance"]
    assert make_tables.main(argv) == 2
    assert "encoder/train/grad/<term>" in capsys.readouterr().err
