"""Tables from runs fabricated in a temporary MLflow store: means, stds and intervals checked by hand,
the refusal to average incomparable runs, excluded runs, and every output format."""

import csv
import io
import math
import shutil

import pytest
from fabricated_runs import Store, mlflow_store  # noqa: F401  (mlflow_store: the `store` fixture)
from mlflow import MlflowClient

from ablations import render, specs
from ablations.plot import _positions, plot_table
from ablations.runs import AblationError, from_experiment, from_sweep_run
from ablations.tables import build_table

EXP = "contralord-negatives"
T_975_DF2 = 4.302652729911275
TABLE6 = specs.SPECS["table6"]


def _table(store, spec=TABLE6, **kwargs):
    source = from_experiment(MlflowClient(store.uri), EXP)
    return build_table(source.runs, spec, source.description, **kwargs)


def _two_clear_rows(store):
    for seed, (low, high) in enumerate([(0.1, 0.80), (0.2, 0.82), (0.3, 0.84)]):
        store.trial(EXP, {"encoder.queue_size": "128"}, {"disentanglement": low, "sap": 0.5}, seed)
        store.trial(EXP, {"encoder.queue_size": "256"}, {"disentanglement": high, "sap": 0.5 + 0.01 * seed}, seed)


@pytest.fixture(scope="module")
def clear_rows_db(tmp_path_factory):
    """The store of ``_two_clear_rows``, fabricated once; its path (closed)."""
    path = tmp_path_factory.mktemp("clear-rows") / "mlflow.db"
    _two_clear_rows(Store(f"sqlite:///{path}"))
    return path


@pytest.fixture
def clear_rows(clear_rows_db):
    """``_two_clear_rows``' store, shared by the tests that only read it (reading writes nothing into a store:
    test_hardening_stores)."""
    return Store(f"sqlite:///{clear_rows_db}")


@pytest.fixture
def clear_rows_copy(clear_rows_db, tmp_path):
    """A copy of ``_two_clear_rows``' store, for a test that adds runs."""
    shutil.copy(clear_rows_db, tmp_path / "mlflow.db")
    return Store(f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_table__means_stds_and_intervals_by_hand(clear_rows):
    store = clear_rows
    table = _table(store)
    assert [row.key for row in table.rows] == [(128,), (256,)] and table.columns == ["D", "SAP"]
    low, high = (row.cells["D"] for row in table.rows)
    assert (low.n, low.mean, low.std) == (3, pytest.approx(0.2), pytest.approx(0.1))
    assert (high.mean, high.std) == (pytest.approx(0.82), pytest.approx(0.02))
    half = T_975_DF2 * 0.02 / math.sqrt(3)  # 0.049683
    assert (high.ci_low, high.ci_high) == (pytest.approx(0.82 - half), pytest.approx(0.82 + half))
    assert table.rows[0].seeds == ["0", "1", "2"]


def test_table__best_marked_only_beyond_the_intervals(clear_rows):
    store = clear_rows
    table = _table(store)
    # D: [0.770, 0.870] clears [-0.048, 0.448]; SAP: 0.51 ± 0.025 overlaps 0.5 ± 0
    assert table.best == {"D": (1,), "SAP": ()}
    markdown = render.to_markdown(table)
    # D is best under the paired rule too (†): lower in every seed; SAP's paired differences 0, .01, .02 are not
    assert table.best_paired == {"D": (1,), "SAP": ()}
    assert "| 256 (12.5 % of N) | 3 | **0.820 ± 0.020** † | 0.510 ± 0.010 |" in markdown
    assert "| 128 (6.25 % of N) | 3 | 0.200 ± 0.100 | 0.500 ± 0.000 |" in markdown
    assert "no row is best beyond the intervals in SAP" in markdown
    assert "no row is best paired by seed in SAP" in markdown


def test_table__excluded_runs_are_counted_not_averaged(store):
    store.trial(EXP, {"encoder.queue_size": "128"}, {"disentanglement": 0.9}, 0)  # older run of seed 0
    store.trial(EXP, {"encoder.queue_size": "128"}, {"disentanglement": 0.1}, 0)  # newer: this one counts
    store.trial(EXP, {"encoder.queue_size": "128"}, {"disentanglement": 0.3}, 1)
    store.trial(EXP, {"encoder.queue_size": "128"}, {}, 2, status="FAILED")
    store.trial(EXP, {"encoder.queue_size": "256"}, {"disentanglement": 0.5}, 0)
    store.trial(EXP, {"encoder.queue_size": "256"}, {"disentanglement": 0.99}, 1, status="RUNNING")
    store.trial(EXP, {"encoder.queue_size": "256"}, {"disentanglement": 0.98}, 2, status="KILLED",
                tags={"stopped_early": "true"})
    table = _table(store)
    k128, k256 = table.rows
    assert k128.n == 2 and k128.cells["D"].mean == pytest.approx(0.2)
    assert (k128.excluded["duplicate"], k128.excluded["failed"]) == (1, 1)
    assert k256.n == 1 and k256.cells["D"].mean == 0.5
    assert (k256.excluded["unfinished"], k256.excluded["early_stopped"]) == (1, 1)
    markdown = render.to_markdown(table)
    assert "| 256 (12.5 % of N) | 1 | 0.500 (n=1) |" in markdown and "0.000" not in markdown
    assert "encoder.queue_size=128: 1 FAILED run(s) not averaged" in markdown
    assert "encoder.queue_size=256: 1 stopped early run(s)" in markdown
    assert "encoder.queue_size=128: 1 repeated seed (newest kept)" in markdown
    assert table.best["D"] == ()  # a row with one seed has no interval


def test_table__a_cell_with_fewer_runs_than_its_row_says_so(store):
    store.trial(EXP, {}, {"disentanglement": 0.1, "mig": 0.4}, 0)
    store.trial(EXP, {}, {"disentanglement": 0.3}, 1)
    row = _table(store).rows[0]
    assert row.cells["MIG"].n == 1 and "0.400 (n=1)" in render.cell_text(row.cells["MIG"], row.n)


def test_table__refuses_runs_that_differ_outside_the_grouped_key(store):
    store.trial(EXP, {"encoder.queue_size": "128"}, {"disentanglement": 0.1}, 0)
    store.trial(EXP, {"encoder.queue_size": "256", "encoder.temperature": "0.2"}, {"disentanglement": 0.1}, 0)
    store.trial(EXP, {"encoder.queue_size": "256", "run.latent_cache": "/elsewhere"}, {"disentanglement": 0.1}, 1)
    with pytest.raises(AblationError, match=r"differ in config keys other than encoder.queue_size and run.seed: "
                                            r"encoder.temperature \(0.07, 0.2\); add them to --by"):
        _table(store)
    grouped = _table(store, spec=specs.spec_for_keys(("encoder.queue_size", "encoder.temperature")))
    assert [row.key for row in grouped.rows] == [(128, 0.07), (256, 0.07), (256, 0.2)]
    assert len(_table(store, ignore=("encoder.temperature",)).rows) == 2


def test_table__one_line_errors(store):
    store.trial(EXP, {}, {}, 0, status="FAILED")
    store.trial(EXP, {}, {}, 1, status="RUNNING")
    with pytest.raises(AblationError, match=r"^no finished runs in experiment contralord-negatives "
                                            r"\(1 failed, 1 unfinished\)$"):
        _table(store)
    store.trial(EXP, {}, {"disentanglement": 0.1}, 2)
    with pytest.raises(AblationError, match=r"--by: no run has the config key 'encoder.queue_sise'; "
                                            r"did you mean encoder.queue_size"):
        _table(store, spec=specs.spec_for_keys(("encoder.queue_sise",)))
    client = MlflowClient(store.uri)
    with pytest.raises(AblationError, match="--experiment: no experiment 'nope'.*contralord-negatives"):
        from_experiment(client, "nope")
    with pytest.raises(AblationError, match="--sweep-run: no run 'abc123'"):
        from_sweep_run(client, "abc123")


def test_table__sweep_run_selects_only_its_children(store):
    parent = store.parent(EXP, "negatives")
    store.trial(EXP, {}, {"disentanglement": 0.1}, 0, parent=parent)
    store.trial(EXP, {}, {"disentanglement": 0.3}, 1, parent=parent)
    store.trial(EXP, {"encoder.temperature": "0.5"}, {"disentanglement": 0.9}, 0)  # another sweep's trial
    source = from_sweep_run(MlflowClient(store.uri), parent)
    assert source.sweep_kind == "negatives" and len(source.runs) == 2
    table = build_table(source.runs, TABLE6, source.description)
    assert table.rows[0].cells["D"].mean == pytest.approx(0.2)


def _table4(store, with_paper=True):
    loss = ("loss.rec", "loss.sup", "loss.con", "loss.res")
    for seed in (0, 1):
        for weights in ((1, 1, 1, 1), (1, 0, 0, 0), (1, 1, 0, 1)):
            params = {k: str(float(w)) for k, w in zip(loss, weights, strict=True)}
            store.trial(EXP, params, {"disentanglement": 0.1 * sum(weights) + 0.002 * seed}, seed)
    return _table(store, spec=specs.SPECS["table4"], with_paper=with_paper)


def test_table4__rows_in_the_papers_order_with_check_marks_and_paper_values(store):
    table = _table4(store)
    assert [row.key for row in table.rows] == [(1.0, 0.0, 0.0, 0.0), (1.0, 1.0, 0.0, 1.0), (1.0, 1.0, 1.0, 1.0)]
    assert table.rows[0].paper["D"] == 0.02 and table.rows[2].paper["Smoothness"] == 0.96
    markdown = render.to_markdown(table)
    assert "| ✓ |  |  |  | 2 | 0.101 ± 0.001 |" in markdown
    assert "| paper |  |  |  |  | 0.02 |" not in markdown and "| paper |  |  |  |  | 0.020 |" in markdown
    latex = render.to_latex(table)
    assert r"\checkmark & \checkmark & \checkmark & \checkmark & 2 & \textbf{0.401 $\pm$ 0.001}$^\dagger$ \\" in latex
    assert r"\textit{paper} &  &  &  &  & 1.000 \\" in latex


def test_latex__booktabs_with_escaped_keys_and_bold_best(clear_rows):
    store = clear_rows
    latex = render.to_latex(_table(store))
    assert latex.startswith(r"\begin{table}") and r"\toprule" in latex and latex.rstrip().endswith(r"\end{table}")
    assert r"encoder.queue\_size & n & D & SAP \\" in latex
    assert r"256 (12.5 \% of N) & 3 & \textbf{0.820 $\pm$ 0.020}$^\dagger$ & 0.510 $\pm$ 0.010 \\" in latex


def test_csv__every_number_with_its_interval(clear_rows):
    store = clear_rows
    rows = list(csv.DictReader(io.StringIO(render.to_csv(_table(store, with_paper=True)))))
    assert [r["encoder.queue_size"] for r in rows] == ["128", "256"]
    k256 = rows[1]
    half = T_975_DF2 * 0.02 / math.sqrt(3)
    assert float(k256["D_mean"]) == pytest.approx(0.82) and float(k256["D_std"]) == pytest.approx(0.02)
    assert float(k256["D_ci95_low"]) == pytest.approx(0.82 - half)
    assert float(k256["D_ci95_high"]) == pytest.approx(0.82 + half)
    assert (k256["D_best"], k256["SAP_best"], k256["n"], k256["seeds"]) == ("1", "0", "3", "0 1 2")
    assert k256["D_paper"] == "" and k256["failed"] == "0"  # the paper has no K=256 row


def test_plot__png_written(store, tmp_path):
    table = _table4(store)
    path = plot_table(table, tmp_path / "table4.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_plot__numeric_knob_on_a_log2_axis(clear_rows_copy, tmp_path):
    store = clear_rows_copy
    assert _positions(_table(store)) == ([128.0, 256.0], True, False)  # a factor of 2: linear axis
    store.trial(EXP, {"encoder.queue_size": "1024"}, {"disentanglement": 0.5}, 0)
    table = _table(store)
    assert _positions(table) == ([128.0, 256.0, 1024.0], True, True)  # a factor of 8: log2 axis
    path = plot_table(table, tmp_path / "table6.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_table__other_data_is_refused_and_code_versions_are_named(store):
    store.trial(EXP, {}, {"disentanglement": 0.1}, 0)
    store.trial(EXP, {}, {"disentanglement": 0.2}, 1, tags={"git_commit": "fedcba9876543210"})
    markdown = render.to_markdown(_table(store))
    assert "code: runs from 2 git commits: 0123456789, fedcba9876" in markdown
    assert "setting: data.name=shapes3d, data.size=2048" in markdown
    early = store.trial(EXP, {}, {}, 3, status="KILLED", tags={"stopped_early": "true"})
    store.client.delete_tag(early, "data_fingerprint")  # a trial stopped before the trainer tagged its data
    assert _table(store).rows[0].excluded["early_stopped"] == 1
    store.trial(EXP, {"encoder.queue_size": "256"}, {"disentanglement": 0.3}, 2, tags={"data_fingerprint": "beef"})
    assert _table(store).rows[1].n == 1  # another seed may see another subset of the data
    store.trial(EXP, {}, {"disentanglement": 0.3}, 2, tags={"data_fingerprint": "cafe"})
    with pytest.raises(AblationError, match=r"runs of seed 2 trained on different data \(tag data_fingerprint: "
                                            r"beef, cafe\)"):
        _table(store)


def test_table__same_number_spelled_twice_is_one_value(store):
    store.trial(EXP, {"encoder.temperature": "0.070"}, {"disentanglement": 0.1}, 0)
    store.trial(EXP, {"encoder.queue_size": "128.0"}, {"disentanglement": 0.3}, 1)
    table = _table(store)
    assert len(table.rows) == 1 and table.rows[0].n == 2


def test_table__non_finite_values_are_left_out_and_counted(store):
    store.trial(EXP, {}, {"disentanglement": 0.1, "mig": float("nan")}, 0)
    store.trial(EXP, {}, {"disentanglement": 0.3, "mig": 0.2}, 1)
    table = _table(store)
    assert table.rows[0].cells["MIG"].n == 1 and table.rows[0].cells["D"].n == 2
    assert "encoder.queue_size=128: 1 non-finite MIG value(s) left out" in render.to_markdown(table)
    assert "nan" not in render.to_markdown(table).split("- ")[0]


def test_table__runs_without_the_grouping_key_are_counted(store):
    store.trial(EXP, {}, {"disentanglement": 0.1}, 0)
    run_id = store.client.create_run(store.experiment(EXP), tags={"role": "trial"}).info.run_id
    store.client.set_terminated(run_id, status="FAILED")  # failed before logging its config
    table = _table(store)
    assert table.unplaced == 1 and "1 run(s) without the grouping keys" in render.to_markdown(table)


def test_table4__paper_values_only_on_the_papers_dataset(store):
    for seed in (0, 1):
        store.trial(EXP, {"data.name": "dsprites"}, {"disentanglement": 0.1 + seed}, seed)
    table = _table(store, spec=specs.SPECS["table4"], with_paper=True)
    assert not table.has_paper and "| paper |" not in render.to_markdown(table)


def test_table4__loss_weights_must_be_numbers(store):
    store.trial(EXP, {"loss.sup": "on"}, {"disentanglement": 0.1}, 0)
    with pytest.raises(AblationError, match="expected numbers .* has 1.0, on, 1.0, 1.0"):
        _table(store, spec=specs.SPECS["table4"])


def test_markdown_and_latex__special_characters_are_escaped(store):
    store.trial(EXP, {"data.factor_filter": "a|b_$"}, {"disentanglement": 0.1}, 0)
    table = _table(store, spec=specs.spec_for_keys(("data.factor_filter",)))
    assert "| a\\|b_$ | 1 |" in render.to_markdown(table)
    assert r"a|b\_\$ & 1 &" in render.to_latex(table)


def test_table2__methods_rows_with_the_papers_names_and_values(store):
    exp = "contralord-methods"
    presets = {"lord": {"loss.con": "0.0", "loss.res": "0.0", "latent.structure": "class"},
               "contralord": {"latent.structure": "factors"},
               "locatello": {"loss.sup": "0.0", "loss.con": "0.0", "loss.res": "0.0", "encoder.model": "vae",
                             "latent.structure": "factors"}}
    for seed in range(2):
        for method, params in presets.items():
            store.trial(exp, params | {"run.method": method}, {"disentanglement": 0.1 * seed + len(method) / 10}, seed)
    source = from_experiment(MlflowClient(store.uri), exp)
    table = build_table(source.runs, specs.SPECS["table2"], source.description, with_paper=True)
    assert {row.key for row in table.rows} == {("shapes3d", m) for m in presets}
    by_method = {row.key[1]: row for row in table.rows}
    assert by_method["contralord"].paper["D"] == 1.0 and by_method["lord"].paper["D"] == 0.54
    assert by_method["locatello"].paper["MIG"] == 0.02
    assert "| shapes3d | Gabbay et al." not in render.to_markdown(table)
    assert "| shapes3d | LORD | 2 |" in render.to_markdown(table)
    # a key the method presets do not set must still agree between rows
    store.trial(exp, presets["lord"] | {"run.method": "lord", "encoder.queue_size": "999"}, {"disentanglement": 0.5}, 5)
    source = from_experiment(MlflowClient(store.uri), exp)
    with pytest.raises(AblationError, match="encoder.queue_size"):
        build_table(source.runs, specs.SPECS["table2"], source.description)


def test_table2__each_dataset_checks_its_own_data_per_seed(store):
    exp = "contralord-methods"
    for name, fingerprint in (("shapes3d", "a1"), ("dsprites", "b2")):  # one seed, two datasets: two subsets
        store.trial(exp, {"data.name": name, "run.method": "contralord"}, {"disentanglement": 0.5}, 0,
                    tags={"data_fingerprint": fingerprint})
    source = from_experiment(MlflowClient(store.uri), exp)
    table = build_table(source.runs, specs.SPECS["table2"], source.description)
    assert {row.key for row in table.rows} == {("shapes3d", "contralord"), ("dsprites", "contralord")}
    assert "data.name" not in table.setting and table.setting["data.size"] == "2048"  # a row key, not the setting
    store.trial(exp, {"data.name": "dsprites", "run.method": "gabbay"}, {"disentanglement": 0.4}, 0,
                tags={"data_fingerprint": "c3"})  # another dSprites subset for the same seed
    source = from_experiment(MlflowClient(store.uri), exp)
    with pytest.raises(AblationError, match=r"seed 0, data.name=dsprites trained on different data .*b2, c3"):
        build_table(source.runs, specs.SPECS["table2"], source.description)


def test_by_keys_with_a_data_set__ranks_each_data_set_among_its_own_rows(store):
    """``--by data.name,KEY``: Shapes3D's K=256 is best of its own rows, and dSprites' K=128 of its rows, although
    every dSprites row lies below every Shapes3D row (pooled, only Shapes3D's best would be marked)."""
    values = {("shapes3d", "128"): 0.60, ("shapes3d", "256"): 0.80,
              ("dsprites", "128"): 0.30, ("dsprites", "256"): 0.10}
    for (name, queue), value in values.items():
        for seed in range(3):
            store.trial(EXP, {"data.name": name, "encoder.queue_size": queue}, {"disentanglement": value + 0.01 * seed},
                        seed)
    spec = specs.spec_for_keys(("data.name", "encoder.queue_size"))
    assert spec.separate == ("data.name",) and specs.spec_for_keys(("encoder.queue_size",)).separate == ()
    table = _table(store, spec=spec)
    best = {table.rows[i].key for i in table.best["D"]}
    assert best == {("shapes3d", 256), ("dsprites", 128)}
    assert {table.rows[i].key for i in table.best_paired["D"]} == best


def test_table6_mask__rows_with_and_without_the_mask_and_the_paper_only_beside_the_unmasked(store):
    """The paper's K = 12800 row sits beside our unmasked K = 12800 row only (the paper has no mask); K/N is worked
    out from data.size (12800 of 480,000: 2.7 %)."""
    for seed in range(2):
        for mask in ("False", "True"):
            store.trial(EXP, {"encoder.queue_size": "12800", "encoder.mask_own_keys": mask, "data.size": "480000"},
                        {"disentanglement": 0.5 + 0.1 * (mask == "True") + 0.01 * seed}, seed)
    table = _table(store, spec=specs.SPECS["table6_mask"], with_paper=True)
    rows = {row.key: row for row in table.rows}
    assert set(rows) == {(12800, "False"), (12800, "True")}
    assert rows[(12800, "False")].paper["D"] == 1.0 and rows[(12800, "True")].paper is None
    markdown = render.to_markdown(table)
    assert "| 12800 (2.67 % of N) | False | 2 |" in markdown and "| 12800 (2.67 % of N) | True | 2 |" in markdown
    assert "0.33-10.7 % of N" in markdown  # the note on the paper's grid


def test_bn_splits__inert_without_batch_norm_so_runs_from_before_it_average_with_later_ones(store):
    """encoder.bn_splits (split BN, default 8) changes nothing for the lord backbone, which has no BatchNorm: a run
    logged before the key existed (read as 1) and one logged after it (8) are one row, not a refusal."""
    store.trial(EXP, {"encoder.queue_size": "128", "encoder.backbone": "lord"}, {"disentanglement": 0.4}, 0)
    store.trial(EXP, {"encoder.queue_size": "128", "encoder.backbone": "lord", "encoder.bn_splits": "8"},
                {"disentanglement": 0.5}, 1)
    (row,) = _table(store).rows
    assert row.n == 2 and row.cells["D"].mean == pytest.approx(0.45)
