"""Summary statistics over seeds: mean, sample std, and a Student-t 95% confidence interval of the mean.

The best row of a column is marked only when it is best *beyond the intervals*: its interval's lower end
lies above the upper end of every other row's interval. Non-overlapping 95% intervals is a conservative
test: for two rows with equal n and std it is a Welch t-test at a two-sided p of about 0.006 for many
seeds, 0.004 for 3 seeds. It needs n >= 2 in every row: a row with one seed has no interval, so nothing
is marked in that column.

Rows that share a stage 1 per seed (every row of one sweep does: one stage 1 per seed serves every trial) are
also compared **paired by seed** (``paired``, ``best_paired``, ``open_rows_paired``): the difference of two rows
is taken seed by seed, so the stage-1 draw, which moves every row of a seed together, cancels. The best row
is decided against another when the paired 95% interval of their difference (Student t over the shared
seeds, the paired t-test at two-sided p < 0.05) lies above zero; the sign count (seeds where the best is
higher / lower) is reported beside it. It needs at least 2 shared seeds and is sharper than the unpaired
rule when the seeds' spread is shared, never a substitute for more seeds when it is not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float  # sample std (ddof=1); nan when n == 1
    ci_low: float  # nan when n == 1
    ci_high: float

    @property
    def has_interval(self) -> bool:
        return self.n >= 2


def summarize(values: list[float], confidence: float = CONFIDENCE) -> Summary:
    """mean ± t_{(1+confidence)/2, n-1} · std / sqrt(n); std and interval are nan for one value."""
    if not values:
        raise ValueError("summarize: expected at least one value, got none")
    n = len(values)
    if n == 1:
        return Summary(1, values[0], math.nan, math.nan, math.nan)
    if min(values) == max(values):  # exactly: rounding would otherwise leave a ~1e-17 std that could break ties
        return Summary(n, values[0], 0.0, values[0], values[0])
    mean = math.fsum(values) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


def best_beyond_intervals(column: list[Summary | None]) -> int | None:
    """Index of the row with the highest mean if its interval clears every other row's; else None."""
    present = [(i, s) for i, s in enumerate(column) if s is not None]
    if len(present) < 2 or not all(s.has_interval for _, s in present):
        return None
    best, top = max(present, key=lambda item: item[1].mean)
    if all(_clears(top, s) for i, s in present if i != best):
        return best
    return None


def _clears(top: Summary, other: Summary) -> bool:
    """The best row's interval lies wholly above the other row's: the verdict between the two is decided."""
    return top.ci_low > other.ci_high


def open_rows(column: list[Summary | None], names: list[str] | None = None) -> dict[int, str]:
    """{row index: why its verdict is open} under ``best_beyond_intervals``'s rule; rows not listed are decided.
    ``names`` (one per row) name the best row in the reasons; without them it is named by its index in ``column``.

    A row is open when it has no value or no interval (n < 2), or when its interval and the best row's overlap
    (the best row itself is then open too). A row whose interval lies below the best row's is decided; so is
    the best row once every other row is. When the best row has no interval, no other row is decided.
    Empty when ``best_beyond_intervals`` marks a row, or when there is at most one row with a value.
    """
    present = [(i, s) for i, s in enumerate(column) if s is not None]
    why = {i: "no finished value" for i, s in enumerate(column) if s is None}
    if len(present) < 2:
        return why
    best, top = max(present, key=lambda item: item[1].mean)
    for i, s in present:
        if not s.has_interval:
            why[i] = f"n={s.n}: no interval"
        elif i != best and not top.has_interval:
            why[i] = f"the best mean ({_name(best, names)}) has no interval yet"
        elif i != best and not _clears(top, s):
            why[i] = f"[{s.ci_low:.4g}, {s.ci_high:.4g}] overlaps the best's [{top.ci_low:.4g}, {top.ci_high:.4g}]"
    others = [i for i, _ in present if i != best and i in why]
    if others and best not in why:
        why[best] = f"best mean, its interval overlaps {len(others)} other row(s)"
    return why


def _name(index: int, names: list[str] | None) -> str:
    return names[index] if names is not None else f"row {index}"


@dataclass(frozen=True)
class Paired:
    """``a - b`` seed by seed over the seeds both rows have."""

    n: int  # shared seeds
    mean: float  # mean difference
    ci_low: float  # nan when n < 2
    ci_high: float
    p: float  # two-sided paired t-test; nan when n < 2, 1.0 when every difference is 0
    wins: int  # seeds where a > b
    losses: int  # seeds where a < b

    @property
    def decided(self) -> bool:
        """a is above b beyond the paired 95% interval."""
        return self.n >= 2 and self.ci_low > 0


def paired(a: dict[str, float], b: dict[str, float], confidence: float = CONFIDENCE) -> Paired:
    """Compare two rows' ``{seed: value}`` on the seeds they share."""
    seeds = sorted(set(a) & set(b))
    diffs = [a[s] - b[s] for s in seeds]
    wins, losses = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
    if len(diffs) < 2:
        mean = diffs[0] if diffs else math.nan
        return Paired(len(diffs), mean, math.nan, math.nan, math.nan, wins, losses)
    summary = summarize(diffs, confidence)
    if summary.std == 0:
        p = 1.0 if summary.mean == 0 else 0.0
    else:
        p = float(stats.ttest_1samp(diffs, 0.0).pvalue)
    return Paired(len(diffs), summary.mean, summary.ci_low, summary.ci_high, p, wins, losses)


def _best_by_mean(rows: list[dict[str, float] | None]) -> int | None:
    present = [(i, math.fsum(r.values()) / len(r)) for i, r in enumerate(rows) if r]
    return max(present, key=lambda item: item[1])[0] if len(present) >= 2 else None


def best_paired(rows: list[dict[str, float] | None]) -> int | None:
    """Index of the row with the highest mean if, paired by seed, it is above every other row; else None."""
    best = _best_by_mean(rows)
    if best is None:
        return None
    others = [paired(rows[best], r) for i, r in enumerate(rows) if r and i != best]
    return best if all(c.decided for c in others) else None


def open_rows_paired(rows: list[dict[str, float] | None], names: list[str] | None = None) -> dict[int, str]:
    """{row index: why it is open} under the paired rule (``best_paired``); rows not listed are decided.
    A row is decided once the best row is above it paired by seed; the best row once every other row is.
    ``names`` as in ``open_rows``."""
    why = {i: "no finished value" for i, r in enumerate(rows) if not r}
    best = _best_by_mean(rows)
    if best is None:
        return why
    for i, r in enumerate(rows):
        if r and i != best:
            c = paired(rows[best], r)
            if c.n < 2:
                why[i] = f"{c.n} seed(s) shared with the best row ({_name(best, names)}): no paired interval"
            elif not c.decided:
                why[i] = f"paired difference to the best [{c.ci_low:.4g}, {c.ci_high:.4g}] includes 0"
    others = [i for i in why if i != best]
    if others:
        why[best] = f"best mean, not above {len(others)} other row(s) paired by seed"
    return why
