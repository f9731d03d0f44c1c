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


def test_table1__two_data_sets_are_ranked_and_paired_each_on_its_own(store):
    """Seed s of dSprites shares no stage 1 and no image with seed s of Shapes3D: every mark and paired comparison
    stays within one data set, and each row is compared with ContraLORD of its own data set (the paper's claim)."""
    _fabricate(store, "shapes3d")
    for seed in range(3):  # dSprites: every score lower, MoCo below ContraLORD in every seed
        floors = {"floor_pixels_top1": 0.20 + 0.01 * seed, "floor_supervised_top1": 0.21 + 0.02 * seed}
        store.trial(EXP, METHOD["contralord"] | {"data.name": "dsprites"},
                    {"probe_top1": 0.38 + 0.01 * seed} | floors, seed)
        store.trial(EXP, METHOD["moco"] | {"data.name": "dsprites"}, {"probe_top1": 0.30 + 0.02 * seed}, seed)
    source = from_experiment(store.client, EXP)
    table = build_table(source.runs, TABLE1, source.description)
    keys = [row.key for row in table.rows]
    best = {keys[i] for i in table.best_paired["Top-1"]}
    assert best == {("shapes3d", "contralord"), ("dsprites", "contralord")}  # one per data set
    notes = render.paired_notes(table)
    crossed = [n for n in notes if "shapes3d" in n and "dsprites" in n]
    assert notes and not crossed
    against = [n for n in notes if "dsprites, run.method=moco minus data.name=dsprites, run.method=contralord" in n]
    assert len(against) == 1 and "lower in 3 of 3 seeds" in against[0]
    text = render.to_markdown(table)
    assert text.count("†") == 2 + 1  # two marked cells, and the rule's footnote


def test_table2__names_each_seeds_stage1_and_warns_when_a_seeds_rows_regress_two(store):
    """The paired rule assumes the rows of one seed regress one stage 1: the table names it per seed and data set
    (the trials' stage1_run_id), and says so when a seed's rows do not share it."""
    for seed in range(2):
        for method, stage1 in (("contralord", f"s1-seed{seed}"), ("gabbay", f"s1-seed{seed}"), ("lord", "")):
            other = "s1-other" if (seed, method) == (1, "gabbay") else stage1
            store.trial("contralord-methods", {"run.method": method, "data.name": "shapes3d"},
                        {"disentanglement": 0.5 + 0.1 * seed}, seed, tags={"stage1_run_id": other})
    source = from_experiment(store.client, "contralord-methods")
    table = build_table(source.runs, specs.SPECS["table2"], source.description)
    text = render.to_markdown(table)
    assert "stage 1 (data.name=shapes3d), the run each seed's rows regress" in text
    assert "seed 0 s1-seed0; seed 1 s1-other, s1-seed1" in text
    assert "warning: the rows of seed(s) 1 (data.name=shapes3d) regress different stage-1 runs" in text


def test_table2__best_row_against_the_baseline_is_one_note_not_two(store):
    """Gabbay et al. is best and ContraLORD the baseline: one paired line per column, the row minus the baseline
    (the best row's own comparisons would repeat it reversed)."""
    for seed in range(3):
        for method, value in (("gabbay", 0.80), ("contralord", 0.60)):
            store.trial("contralord-methods", {"run.method": method, "data.name": "shapes3d"},
                        {"disentanglement": value + 0.01 * seed * (method == "gabbay")}, seed)
    source = from_experiment(store.client, "contralord-methods")
    table = build_table(source.runs, specs.SPECS["table2"], source.description)
    lines = [n for n in render.paired_notes(table) if n.startswith("paired D:")]
    assert len(lines) == 1 and "run.method=gabbay minus data.name=shapes3d, run.method=contralord" in lines[0], lines
