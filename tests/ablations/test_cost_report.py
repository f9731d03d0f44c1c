"""The cost-to-verdict report (ablations/cost_report.py): the ways to the same tables, counted by hand."""

import pytest

from ablations.cost_report import SweepCost, Trial, render, shared_rows, ways
from ablations.runs import AblationError

SECONDS = {"a": 10.0, "d": 20.0, "b": 30.0}


def _trials(row, seeds, trained_by=None):
    return tuple(Trial(row, s, f"{trained_by or row}-{s}", SECONDS[trained_by or row], f"s1-{s}") for s in seeds)


def _sweeps(initial=2, most=4):
    # table A: row a decided after 2 seeds, the default row d ran to 4; table B: row b to 4, and the default
    # row (its own label d') linked to A's runs of d (trial reuse): the same trained runs
    a = SweepCost("A", "ra", initial, most, 1, 2, ("a", "d"), 100.0, _trials("a", [0, 1]) + _trials("d", range(4)))
    b = SweepCost("B", "rb", initial, most, 0, 1, ("b", "d'"), float("nan"),
                  _trials("b", range(4)) + _trials("d'", range(4), trained_by="d"))
    return [a, b]


def test_shared_rows__rows_with_a_common_trained_run_are_one_configuration():
    groups = shared_rows(_sweeps())
    assert sorted(sorted(g) for g in groups) == [[("A", "a")], [("A", "d"), ("B", "d'")], [("B", "b")]]


def test_ways__trials_and_seconds_counted_by_hand():
    got = {w.name: (w.how, w.trials, w.trial_s, w.stage1_runs, w.stage1_s, w.decided) for w in ways(_sweeps(), 50.0)}
    assert got == {
        "fixed 2 seeds, each table its own trials": ("measured", 8, 160.0, 2, 100.0, "1 of 4 rows"),
        "fixed 2 seeds, shared rows reused": ("measured", 6, 120.0, 2, 100.0, "1 of 4 rows"),
        "until decided, at most 4 seeds": ("measured", 10, 220.0, 4, 200.0, "3 of 4 rows"),
        "fixed 4 seeds, shared rows reused": ("projected", 12, 240.0, 4, 200.0, "not run"),
        "fixed 4 seeds, each table its own trials": ("projected", 16, 320.0, 4, 200.0, "not run"),
    }


def test_ways__refuses_sweeps_with_different_seed_settings():
    a, b = _sweeps()
    with pytest.raises(AblationError, match="--seeds/--max-seeds"):
        ways([a, SweepCost(**{**b.__dict__, "max_seeds": 5})], 0.0)


def test_render__one_line_per_way_and_seeds_per_row():
    text = render(_sweeps(), {"r0": ("0", 60.0), "r1": ("1", 120.0), "r2": ("2", 900.0)})
    assert "| until decided, at most 4 seeds | 10 | 3.7 | 4 | 7.7 | 3 of 4 rows | measured |" in text
    assert "- A (sweep run ra, sweep wall 1.7 min): 1 of 2 rows decided after 2 seeds, 2 at the end; " \
           "seeds per row: a 2, d 4" in text
    assert "- B (sweep run rb): 0 of 2 rows" in text and "not finished" not in text and "1.0 CPU-min a seed" in text
    assert "(seed 0 1 min, seed 1 2 min, seed 2 15 min; one created" in text


def test_render__says_what_it_left_out():
    a, b = _sweeps()
    text = render([a, SweepCost(**{**b.__dict__, "excluded": 2, "variants": 3, "partial": True})], {})
    assert "- B (sweep run rb): 0 of 3 rows decided" in text and "2 trial(s) not finished, not counted" in text
    assert "1 row(s) without a finished trial" in text and "the sweep did not finish" in text
    assert "| 1 of 5 rows |" in text  # the row without a finished trial still counts as a row
