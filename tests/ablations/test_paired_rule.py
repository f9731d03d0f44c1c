"""The paired decision rule: rows that share a stage 1 per seed, compared seed by seed (ablations/stats.py),
in tables, their footnotes and the readings spec."""

import math

import pytest
from fabricated_runs import mlflow_store  # noqa: F401  (the `store` fixture)
from mlflow import MlflowClient
from scipy import stats as scipy_stats

from ablations import render, specs, stats
from ablations.runs import from_experiment
from ablations.tables import build_table

EXP = "contralord-readings"


def test_paired__matches_scipy_ttest_rel_and_counts_signs():
    a = {"0": 0.61, "1": 0.40, "2": 0.75, "3": 0.52}
    b = {"0": 0.55, "1": 0.38, "2": 0.70, "3": 0.53, "9": 0.99}  # seed 9 is not shared: ignored
    c = stats.paired(a, b)
    diffs = [0.06, 0.02, 0.05, -0.01]
    assert c.n == 4 and c.mean == pytest.approx(sum(diffs) / 4) and (c.wins, c.losses) == (3, 1)
    assert c.p == pytest.approx(scipy_stats.ttest_rel([a[s] for s in "0123"], [b[s] for s in "0123"]).pvalue)
    half = scipy_stats.t.ppf(0.975, 3) * scipy_stats.tstd(diffs) / 2
    assert (c.ci_low, c.ci_high) == (pytest.approx(c.mean - half), pytest.approx(c.mean + half))
    assert not c.decided  # the interval includes 0


def test_paired__one_shared_seed_has_no_interval():
    c = stats.paired({"0": 1.0, "1": 2.0}, {"1": 1.5, "2": 0.0})
    assert c.n == 1 and c.mean == 0.5 and math.isnan(c.ci_low) and not c.decided


def test_best_paired__decides_where_seed_spread_hides_a_consistent_difference():
    # each seed moves both rows together (one stage 1 per seed): unpaired intervals overlap, paired do not
    base = {"0": 0.2, "1": 0.5, "2": 0.8}
    better = {s: v + 0.05 + 0.001 * int(s) for s, v in base.items()}
    summaries = [stats.summarize(list(r.values())) for r in (base, better)]
    assert stats.best_beyond_intervals(summaries) is None
    assert stats.best_paired([base, better]) == 1
    assert stats.open_rows_paired([base, better]) == {}
    mixed = {"0": 0.25, "1": 0.45, "2": 0.9}  # higher in two seeds, lower in one
    assert stats.best_paired([base, mixed]) is None
    why = stats.open_rows_paired([base, mixed, None])
    assert set(why) == {0, 1, 2} and "includes 0" in why[0] and why[2] == "no finished value"


def _readings(store):
    for seed, shift in enumerate([0.0, 0.3, 0.6]):  # the stage 1 of each seed shifts every row
        base = {"loss.con": "0.1", "loss.sup": "0.1", "loss.res": "0.0", "encoder.positive": "online"}
        store.trial(EXP, base | {"loss.con": "0.0", "encoder.anchor": "online", "encoder.augment": "True"},
                    {"disentanglement": 0.3 + shift}, seed)
        store.trial(EXP, base | {"encoder.anchor": "online", "encoder.augment": "True"},
                    {"disentanglement": 0.25 + shift + 0.001 * seed}, seed)
        store.trial(EXP, base | {"encoder.anchor": "stage1", "encoder.augment": "True"},
                    {"disentanglement": 0.36 + shift + 0.002 * seed}, seed)


def test_readings_table__paired_against_rec_sup_and_marked(store):
    _readings(store)
    source = from_experiment(MlflowClient(store.uri), EXP)
    table = build_table(source.runs, specs.SPECS["readings"], source.description)
    keys = [row.key for row in table.rows]
    baseline = (0.0, "online", "True", "False", "online")  # label_aware_negatives: not logged, read as it ran
    assert baseline in keys and specs.SPECS["readings"].is_baseline(baseline)
    stage1 = keys.index((0.1, "stage1", "True", "False", "online"))
    assert table.best["D"] == () and table.best_paired["D"] == (stage1,)
    text = render.to_markdown(table)
    assert "†" in text and "paired rule" in text
    lines = [n for n in render.paired_notes(table) if "minus loss.con=0, encoder.anchor=online" in n]
    assert len(lines) == 2  # each reading against the baseline row
    reading = ("encoder.anchor=online, encoder.augment=True, encoder.label_aware_negatives=False, "
               "encoder.positive=online minus")
    online = next(n for n in lines if reading in n)
    assert "-0.049" in online and "lower in 3 of 3 seeds" in online
    assert "\\dag{}" in render.to_latex(table)
    assert "D_best_paired" in render.to_csv(table).splitlines()[0]


def _table4(store, sup: str):
    for seed, shift in enumerate([0.0, 0.3, 0.6]):
        weights = {"loss.rec": "1.0", "loss.sup": sup, "loss.res": "0.0"}
        store.trial("contralord-losses", weights | {"loss.con": "0.0"}, {"disentanglement": 0.5 + shift}, seed)
        store.trial("contralord-losses", weights | {"loss.con": "0.1"},  # the best row: not what finds the baseline
                    {"disentanglement": 0.6 + shift + 0.001 * seed}, seed)


@pytest.mark.parametrize("sup", ["1.0", "0.1"], ids=["default-lambda-sup", "older-lambda-sup"])
def test_table4__each_row_against_rec_sup__also_at_an_older_lambda_sup(store, sup):
    """The baseline is rec+sup at the default λ_sup; a sweep run at another λ_sup (every Table 4 before λ_sup
    became 1) still compares each row with its own rec+sup row, found by which terms are on."""
    _table4(store, sup)
    source = from_experiment(MlflowClient(store.uri), "contralord-losses")
    table = build_table(source.runs, specs.SPECS["table4"], source.description)
    mark = "" if sup == "1.0" else f" ({float(sup):g})"
    assert specs.SPECS["table4"].is_baseline((1.0, float(sup), 0.0, 0.0)) == (sup == "1.0")
    lines = [n for n in render.paired_notes(table) if n.startswith("paired D:")]
    against = f"minus loss.rec=1, loss.sup={float(sup):g}, loss.con=0, loss.res=0:"
    assert any("loss.con=0.1, loss.res=0 " + against in n and "higher in 3 and lower in 0" in n for n in lines), lines
    assert f"| ✓ | ✓{mark} |  |  | 3 |" in render.to_markdown(table)
