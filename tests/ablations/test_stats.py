"""Summary statistics and the best-row rule, against values computed by hand."""

import math

import pytest

from ablations.stats import best_beyond_intervals, summarize

T_975_DF2 = 4.302652729911275  # Student t quantile, 97.5%, 2 degrees of freedom (tables)


def test_summarize__mean_std_and_t_interval_of_three_values():
    s = summarize([0.1, 0.2, 0.3])
    assert s.n == 3 and s.mean == pytest.approx(0.2) and s.std == pytest.approx(0.1)
    half = T_975_DF2 * 0.1 / math.sqrt(3)  # 0.248414
    assert half == pytest.approx(0.248414, abs=1e-6)
    assert (s.ci_low, s.ci_high) == (pytest.approx(0.2 - half), pytest.approx(0.2 + half))


def test_summarize__one_value_has_no_std_and_no_interval():
    s = summarize([0.5])
    assert s.mean == 0.5 and math.isnan(s.std) and math.isnan(s.ci_low) and not s.has_interval


def test_summarize__equal_values_give_a_zero_width_interval():
    s = summarize([0.4, 0.4])
    assert s.std == 0 and s.ci_low == s.ci_high == pytest.approx(0.4)


def test_summarize__refuses_no_values():
    with pytest.raises(ValueError, match="at least one value"):
        summarize([])


def test_best__marked_when_its_interval_clears_every_other():
    rows = [summarize([0.1, 0.11, 0.12]), summarize([0.9, 0.91, 0.92]), summarize([0.5, 0.52, 0.51])]
    assert best_beyond_intervals(rows) == 1


def test_best__not_marked_when_intervals_overlap():
    rows = [summarize([0.1, 0.5, 0.9]), summarize([0.6, 0.61, 0.62])]  # higher mean, but inside the wide CI
    assert best_beyond_intervals(rows) is None


def test_best__not_marked_when_any_row_has_one_seed():
    rows = [summarize([0.1]), summarize([0.9, 0.91, 0.92])]
    assert best_beyond_intervals(rows) is None


def test_best__missing_cells_are_skipped():
    rows = [None, summarize([0.1, 0.11]), summarize([0.9, 0.91])]
    assert best_beyond_intervals(rows) == 2


def test_best__identical_rows_tie_exactly():
    rows = [summarize([0.05, 0.05, 0.05]), summarize([0.05, 0.05, 0.05])]
    assert rows[0].std == 0.0 and best_beyond_intervals(rows) is None
    # a difference every seed agrees on is beyond the (zero-width) intervals
    assert best_beyond_intervals([summarize([0.05] * 3), summarize([0.06] * 3)]) == 1
