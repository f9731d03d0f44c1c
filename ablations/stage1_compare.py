"""Two stage-1 recipes paired by seed (``make_tables.py --spec stage1 --sweep-run A,B``): which stage 1 to keep.

Each side is one sweep's stage-1 runs, checked as ``--spec stage1`` checks them (one setting, one machine). The
comparison names the data and stage-1 keys in which the sides differ, and pairs A minus B by seed: each labelled
factor's classifier accuracy on the images without labels, both references (the matched one moves with the
recipe, the best one should not), and the codes' D and MIG. Both sides must come from one machine: stage 1 differs
by thread count alone (RESULTS.md), so a comparison across machines would credit the machine to the recipe.
"""

from __future__ import annotations

from dataclasses import dataclass

from ablations import stats
from ablations.runs import AblationError, seed_order
from ablations.stage1_table import (
    ACCURACY,
    BEST,
    CODE_PREFIX,
    REFERENCE,
    SHARED,
    Stage1Table,
    interval,
    number,
    verdict,
)
from ablations.tables import IGNORED_KEYS, machines_of

COMPARED_CODES = {"codes D": CODE_PREFIX + "disentanglement", "codes MIG": CODE_PREFIX + "mig"}
ABSENT = "(not logged)"


@dataclass
class Stage1Comparison:
    a: Stage1Table
    b: Stage1Table
    differing: dict[str, tuple[str, str]]  # key -> (A's value, B's value)
    rows: list[tuple[str, float, float, stats.Paired]]  # (what, A's mean, B's mean, A minus B) over the shared seeds


def _values(table: Stage1Table, key: str) -> str:
    return ", ".join(sorted({r.params.get(key, ABSENT) for r in table.runs}))


def build_comparison(a: Stage1Table, b: Stage1Table) -> Stage1Comparison:
    """Refuse sides from several machines or without a seed in common."""
    machines = machines_of([*a.runs, *b.runs])
    if len(machines) > 1:
        raise AblationError(f"--spec stage1: refusing to compare stage-1 runs of {len(machines)} machines (stage 1 "
                            f"differs by machine and thread count alone); compare sweeps of one machine")
    if not {r.seed for r in a.runs} & {r.seed for r in b.runs}:
        raise AblationError("--spec stage1: the two sweeps' stage-1 runs share no seed; nothing to pair")
    if a.factors != b.factors:
        raise AblationError(f"--spec stage1: the two sweeps label different factors ({', '.join(a.factors)} against "
                            f"{', '.join(b.factors)}); compare stage 1s of one labelling")
    keys = sorted({k for r in [*a.runs, *b.runs] for k in r.params
                   if k.startswith(SHARED) and k != "run.seed" and k not in IGNORED_KEYS})
    differing = {k: (_values(a, k), _values(b, k)) for k in keys if _values(a, k) != _values(b, k)}
    rows = []
    measures = [(f"{f}: {what}", prefix + f) for f in a.factors
                for what, prefix in (("stage 1", ACCURACY), ("matched reference", REFERENCE), ("best reference", BEST))]
    measures += list(COMPARED_CODES.items())
    for what, metric in measures:
        ours = {r.seed: r.metrics[metric] for r in a.runs if metric in r.metrics}
        theirs = {r.seed: r.metrics[metric] for r in b.runs if metric in r.metrics}
        both = sorted({*ours} & {*theirs})  # the columns average the seeds the difference pairs, no others
        if both:  # a measure one side did not log (the best reference of older runs) is left out
            rows.append((what, sum(ours[s] for s in both) / len(both), sum(theirs[s] for s in both) / len(both),
                         stats.paired(ours, theirs)))
    return Stage1Comparison(a, b, differing, rows)


def to_markdown(comparison: Stage1Comparison) -> str:
    shown = "; ".join(f"`{k}` {va} (A) against {vb} (B)" for k, (va, vb) in comparison.differing.items())
    lines = [f"**Two stage-1 recipes, paired by seed** (A: {comparison.a.source}; B: {comparison.b.source})", "",
             f"A and B differ in: {shown or 'no data or stage-1 key (replicates)'}", "",
             "| on the images without labels | A | B | A − B, paired [95 % CI] | A higher / lower | verdict |",
             "|---|---|---|---|---|---|"]
    for what, mean_a, mean_b, p in comparison.rows:
        lines.append(f"| {what} | {number(mean_a)} | {number(mean_b)} | {p.mean:+.3f} {interval(p)} | "
                     f"{p.wins} / {p.losses} of {p.n} | {verdict(p)} |")
    machines = sorted(machines_of(comparison.a.runs).values())
    lines += ["", f"- machine: {'; '.join(machines) or 'not recorded'}", f"- {_seeds_line(comparison)}",
              f"- a key a run predates is read at the value it ran with (contralord/config.py "
              f"KEYS_ADDED_WITH_OLD_BEHAVIOUR); {ABSENT}: no such value is known",
              "- verdict: the 95 % paired-t interval over the seeds both sides ran excludes 0 (**above**: A higher)"]
    return "\n".join(lines) + "\n"


def _seeds_line(comparison: Stage1Comparison) -> str:
    """Which seeds A and B (the columns as well as the difference) are read at, and any one side ran alone."""
    a, b = {r.seed for r in comparison.a.runs}, {r.seed for r in comparison.b.runs}
    line = f"seeds: A, B and A − B are each read at seed(s) {', '.join(sorted(a & b, key=seed_order))}"
    for side, alone in (("A", a - b), ("B", b - a)):
        if alone:
            line += f"; {side}'s seed(s) {', '.join(sorted(alone, key=seed_order))} left out (the other side has none)"
    return line
