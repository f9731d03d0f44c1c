"""One ablation table from trial runs: rows by the values of the grouping keys, mean ± std and a 95% CI over
seeds per metric, the best row per column marked only beyond the intervals (``ablations/stats.py``).

Runs are averaged only when they share every config key except the grouping keys and ``run.seed``
(bookkeeping keys that change no number, ``IGNORED_KEYS``, are exempt); otherwise the table is refused and
the differing keys are listed. Failed, unfinished and early-stopped runs are counted per row, never
averaged. Two finished runs of the same row and seed are one sample: the newest is used, the other counted.
"""

from __future__ import annotations

import difflib
from collections import Counter
from dataclasses import dataclass, field

from ablations import specs, stats
from ablations.runs import AblationError, TrialRun

# where files go and how often checkpoints are written: neither changes a result (resume is bit-exact)
IGNORED_KEYS = ("run.latent_cache", "run.checkpoint_every")
SEED_KEY = "run.seed"
EXCLUDED = ("failed", "unfinished", "early_stopped", "duplicate")


@dataclass
class Row:
    key: tuple
    seeds: list[str]
    cells: dict[str, stats.Summary | None]
    excluded: Counter = field(default_factory=Counter)
    excluded_ids: dict[str, list[str]] = field(default_factory=dict)
    paper: dict[str, float] | None = None

    @property
    def n(self) -> int:
        return len(self.seeds)


@dataclass
class Table:
    spec: specs.TableSpec
    rows: list[Row]
    columns: list[str]
    best: dict[str, int | None]
    source: str
    unplaced: int = 0  # runs without the grouping keys (failed before logging their config)

    @property
    def has_paper(self) -> bool:
        return any(row.paper for row in self.rows)


def parse_value(text: str):
    """A param string as the number it is (for sorting and matching), else the string."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def check_keys_exist(runs: list[TrialRun], keys: tuple[str, ...]) -> None:
    known = set().union(*(r.params for r in runs)) if runs else set()
    for key in keys:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise AblationError(f"--by: no run has the config key {key!r}{hint}")


def differing_keys(runs: list[TrialRun], allowed: set[str]) -> dict[str, list[str]]:
    """{key: distinct values} for every config key (outside ``allowed``) on which the runs disagree."""
    keys = set().union(*(r.params for r in runs)) - allowed
    values = {key: sorted({r.params.get(key, "<missing>") for r in runs}) for key in sorted(keys)}
    return {key: vals for key, vals in values.items() if len(vals) > 1}


def refuse_incomparable(runs: list[TrialRun], by: tuple[str, ...], ignore: tuple[str, ...]) -> None:
    differing = differing_keys(runs, {*by, SEED_KEY, *IGNORED_KEYS, *ignore})
    if differing:
        shown = "; ".join(f"{k} ({', '.join(v[:4])}{', ...' if len(v) > 4 else ''})"
                          for k, v in list(differing.items())[:8])
        more = f" and {len(differing) - 8} more" if len(differing) > 8 else ""
        raise AblationError(f"refusing to average runs that differ in config keys other than "
                            f"{', '.join(by)} and {SEED_KEY}: {shown}{more}; add them to --by or select one "
                            f"sweep with --sweep-run")


def _row(key: tuple, runs: list[TrialRun], columns: list[str]) -> Row:
    newest_per_seed: dict[str, TrialRun] = {}
    excluded, ids = Counter(), {}
    for run in sorted(runs, key=lambda r: r.start_time, reverse=True):
        if run.status == "finished" and run.seed not in newest_per_seed:
            newest_per_seed[run.seed] = run
            continue
        reason = run.status if run.status != "finished" else "duplicate"
        excluded[reason] += 1
        ids.setdefault(reason, []).append(run.run_id)
    kept = sorted(newest_per_seed.values(), key=lambda r: parse_value(r.seed))
    cells = {}
    for column in columns:
        values = [r.metrics[specs.METRICS[column]] for r in kept if specs.METRICS[column] in r.metrics]
        cells[column] = stats.summarize(values) if values else None
    return Row(key, [r.seed for r in kept], cells, excluded, ids)


def _order(spec: specs.TableSpec, keys: list[tuple]) -> list[tuple]:
    """Numeric order of the key values; a table with paper rows lists those first, in the paper's order."""
    ordered = sorted(keys, key=lambda k: tuple((isinstance(v, str), v) for v in k))
    if not spec.paper_table:
        return ordered
    paper_order = list(specs.paper_rows(spec.paper_table))
    position = {k: paper_order.index(spec.paper_key(k)) if spec.paper_key(k) in paper_order else len(paper_order)
                for k in ordered}
    return sorted(ordered, key=lambda k: position[k])


def build_table(runs: list[TrialRun], spec: specs.TableSpec, source: str, with_paper: bool = False,
                ignore: tuple[str, ...] = ()) -> Table:
    """Group ``runs`` into the rows of ``spec``; raise AblationError for input that cannot make a table."""
    check_keys_exist(runs, spec.by)
    finished = [r for r in runs if r.status == "finished"]
    if not finished:
        counts = Counter(r.status for r in runs)
        found = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no runs at all"
        raise AblationError(f"no finished runs in {source} ({found})")
    placed = [r for r in runs if all(k in r.params for k in spec.by)]
    refuse_incomparable(placed, spec.by, ignore)
    groups: dict[tuple, list[TrialRun]] = {}
    for run in placed:
        groups.setdefault(tuple(parse_value(run.params[k]) for k in spec.by), []).append(run)
    columns = [c for c, metric in specs.METRICS.items() if any(metric in r.metrics for r in finished)]
    rows = [_row(key, groups[key], columns) for key in _order(spec, list(groups))]
    if with_paper and spec.paper_table:
        paper = specs.paper_rows(spec.paper_table)
        for row in rows:
            row.paper = paper.get(spec.paper_key(row.key))
    best = {c: stats.best_beyond_intervals([row.cells[c] for row in rows]) for c in columns}
    return Table(spec, rows, columns, best, source, unplaced=len(runs) - len(placed))
