"""A table as one PNG: a panel per metric, the mean against the knob with 95% CI error bars (the paper's
values, where the table has them, as hollow markers)."""

from __future__ import annotations

import math
from pathlib import Path

from ablations.tables import Table


def _positions(table: Table) -> tuple[list[float], bool, bool]:
    """(x, numeric, log2): the knob's values for one numeric knob (log2 when they span a factor of 4 or
    more, as batch sizes and K do), else one slot per row."""
    keys = [row.key[0] for row in table.rows] if len(table.spec.by) == 1 else []
    if keys and all(isinstance(k, int | float) and not isinstance(k, bool) for k in keys):
        return [float(k) for k in keys], True, min(keys) > 0 and max(keys) / min(keys) >= 4
    return [float(i) for i in range(len(table.rows))], False, False


def _labels(table: Table) -> list[str]:
    if table.spec.check_marks:  # Table 4: the names of the terms that are on
        return ["+".join(k.split(".")[-1] for k, v in zip(table.spec.by, row.key, strict=True) if float(v) > 0)
                for row in table.rows]
    return [",".join(str(v) for v in row.key) for row in table.rows]


PLOT_LIMIT = 1e300  # matplotlib cannot place ticks on an axis that reaches 1e308 ("arange: cannot compute length")


def _plottable(value: float) -> bool:
    return math.isfinite(value) and abs(value) <= PLOT_LIMIT


def _bar(mean: float, end: float) -> float:
    """The length of an error bar from ``mean`` to ``end``, or 0 where there is no end (one seed) or it is
    beyond what the axis can show (an interval around 1e308 overflows); the table's files keep the numbers."""
    return abs(end - mean) if _plottable(end) and _plottable(end - mean) else 0.0


def plot_table(table: Table, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs, numeric, log = _positions(table)
    labels = _labels(table)
    cols = min(4, max(len(table.columns), 1))
    rows = math.ceil(max(len(table.columns), 1) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.flat[len(table.columns):]:
        ax.set_visible(False)
    for ax, column in zip(axes.flat, table.columns, strict=False):
        points = [(x, row.cells[column]) for x, row in zip(xs, table.rows, strict=True)
                  if row.cells[column] and _plottable(row.cells[column].mean)]  # the CSV keeps the others
        means = [s.mean for _, s in points]
        errors = [[_bar(s.mean, s.ci_low) for _, s in points], [_bar(s.mean, s.ci_high) for _, s in points]]
        ax.errorbar([x for x, _ in points], means, yerr=errors, marker="o", capsize=3, label="ours",
                    linestyle="-" if numeric else "none")
        paper = [(x, row.paper[column]) for x, row in zip(xs, table.rows, strict=True)
                 if row.paper and column in row.paper]
        if paper:
            ax.plot(*zip(*paper, strict=True), "o", mfc="none", color="gray", label="paper")
        if log:
            ax.set_xscale("log", base=2)
        ax.set_xticks(xs, labels, fontsize=7, rotation=0 if numeric else 45,
                      ha="center" if numeric else "right")
        ax.minorticks_off()
        ax.set_title(column)
    axes[0][0].legend(fontsize=7)
    seeds = sorted({row.n for row in table.rows})
    fig.suptitle(f"{table.spec.title} — mean, 95% CI over seeds (n = {'/'.join(map(str, seeds))})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
