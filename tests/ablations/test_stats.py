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


def _summary(mean, half, n=3):
    """A summary with the given mean and interval half-width (n seeds)."""
    from ablations.stats import Summary

    return Summary(n, mean, half, mean - half, mean + half)


def test_open_rows__a_row_clearly_below_the_best_is_decided_an_overlapping_one_is_not():
    from ablations.stats import open_rows

    column = [_summary(0.9, 0.05), _summary(0.5, 0.05), _summary(0.87, 0.05)]
    why = open_rows(column)
    assert set(why) == {0, 2} and "overlaps" in why[2] and "best mean" in why[0]


def test_open_rows__one_seed_has_no_interval_so_every_row_is_open():
    from ablations.stats import open_rows

    why = open_rows([summarize([0.9]), _summary(0.1, 0.01)])
    assert set(why) == {0, 1} and "no interval" in why[0]


def test_open_rows__a_row_without_values_is_open_and_one_row_alone_is_decided():
    from ablations.stats import open_rows

    assert open_rows([_summary(0.9, 0.01), None]) == {1: "no finished value"}
    assert open_rows([_summary(0.9, 0.01)]) == {}


@pytest.mark.parametrize("seed", range(40))
def test_open_rows__empty_exactly_when_the_table_marks_a_best_row(seed):
    """The rounds' rule is the table's: nothing open <=> best_beyond_intervals marks a row."""
    import random

    from ablations.stats import open_rows

    rng = random.Random(seed)
    column = [summarize([rng.gauss(rng.choice([0.2, 0.5, 0.52]), 0.03) for _ in range(rng.choice([1, 3, 3]))])
              for _ in range(rng.randint(2, 4))]
    assert (open_rows(column) == {}) == (best_beyond_intervals(column) is not None)
