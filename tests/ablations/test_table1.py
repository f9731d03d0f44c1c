"""Table 1 (``--spec table1``): each method's linear probe, the floors a run logged as rows of their own, only the
probe's columns, and the paper's values beside the rows of a data set the paper measured."""

import pytest
from fabricated_runs import Store, mlflow_store  # noqa: F401  (mlflow_store: the `store` fixture)

from ablations import render, specs
from ablations.runs import from_experiment
from ablations.tables import build_table

EXP = "contralord-linear"
TABLE1 = specs.SPECS["table1"]
METHOD = {"contralord": {"run.method": "contralord", "eval.floors": "True"},
          "moco": {"run.method": "moco", "eval.floors": "False", "encoder.negatives": "queue",
                   "encoder.augment_anchor": "True", "loss.rec": "0.0", "loss.sup": "0.0", "loss.res": "0.0"}}


def _fabricate(store: Store, dataset: str = "shapes3d") -> None:
    for seed in range(3):
        floors = {"floor_pixels_top1": 0.30 + 0.01 * seed, "floor_supervised_top1": 0.40 + 0.01 * seed}
        store.trial(EXP, METHOD["contralord"] | {"data.name": dataset},
                    {"probe_top1": 0.50 + 0.01 * seed, "disentanglement": 0.7} | floors, seed)
        store.trial(EXP, METHOD["moco"] | {"data.name": dataset}, {"probe_top1": 0.45 + 0.02 * seed}, seed)


def test_table1__floors_become_rows_and_only_the_probe_is_shown(store):
    _fabricate(store)
    source = from_experiment(store.client, EXP)
    table = build_table(source.runs, TABLE1, source.description)
    means = {row.key[1]: row.cells["Top-1"].mean for row in table.rows}
    assert means == {"contralord": pytest.approx(0.51), "moco": pytest.approx(0.47),
                     "pixels": pytest.approx(0.31), "supervised": pytest.approx(0.41)}
    assert table.columns == ["Top-1"]  # no Top-5 logged (4 classes), no D in Table 1
    assert all(row.n == 3 for row in table.rows)
    text = render.to_markdown(table)
    assert "| shapes3d | floor: raw pixels | 3 |" in text and "| shapes3d | MoCo | 3 |" in text
    pairs = [note for note in render.paired_notes(table) if "run.method=pixels minus data.name=shapes3d, "
             "run.method=contralord" in note]
    assert pairs and "lower in 3 of 3 seeds" in pairs[0]


def test_table1__paper_values_beside_a_dataset_the_paper_measured(store):
    _fabricate(store, "cifar10")
    source = from_experiment(store.client, EXP)
    table = build_table(source.runs, TABLE1, source.description, with_paper=True)
    papers = {row.key[1]: row.paper for row in table.rows}
    assert papers["moco"] == {"Top-1": 0.933, "Top-5": 0.9985} and papers["contralord"]["Top-1"] == 0.9401
    assert papers["pixels"] is None and papers["supervised"] is None
