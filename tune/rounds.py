"""Seeds until decided (``--until-decided --max-seeds N``): after the sweep's first ``--seeds``, each round
adds one seed only to the rows whose verdict is still open under the table's own rule (``ablations/stats.py``:
the best row's 95% interval against every other row's), per the metric columns named by ``--decide-metric``
(default D); with ``--decide-rule paired``, under the paired rule instead (``stats.open_rows_paired``: the best
row above each other row seed by seed, as rows of one seed share its stage 1). The sweep stops when every
row is decided or has N seeds. Each round is one Tuner of the same
parent sweep; the parent run records per round which rows got a seed and why (``rounds.json``).

On a budget ladder (``encoder.rungs``) with ``--max-rung STEPS``, a verdict that may be about the budget gets a
rung before it gets seeds: while an open row still moves at the top rung (``ablations/ladder.py``: D or the
minimum per-dimension correlation of h_c changed by more than 0.02 from the rung before, in some seed), the round
climbs instead: every row's trials get the ladder's next rung (the top times the ratio of the last two rungs, at
most STEPS), each extending its finished run (``tune/trial/reuse.py``), so only the new steps are trained. Once nothing
open moves, or the top is STEPS, rounds add seeds as above.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from ablations import render, specs, stats
from contralord.schedules import parse_rungs
from tune.checks import SweepError
from tune.options import SweepOptions

if TYPE_CHECKING:  # tune/driver/run.py imports this module before Ray, and must not load MLflow
    from ablations.tables import Table

DEFAULT_METRIC = "D"
ARTIFACT = specs.ROUNDS_ARTIFACT  # the parent run's record of the rounds
RULES = ("unpaired", "paired")  # --decide-rule: ablations/stats.py's open_rows or open_rows_paired


@dataclass(frozen=True)
class RowDecision:
    variant: str
    seeds: int  # seeds planned for the row before this round
    verdict: str  # "decided", or why it is open
    added_seed: int | None  # the seed this round runs for the row (None: decided, or at --max-seeds)


def decide_columns(options: SweepOptions) -> list[str]:
    """The table columns whose verdicts must be decided (``--decide-metric D,MIG``)."""
    return [c.strip() for c in (options.decide_metric or DEFAULT_METRIC).split(",") if c.strip()]


def decide_rule(options: SweepOptions) -> str:
    """``--decide-rule``: which of ``RULES`` decides a row (default unpaired)."""
    return options.decide_rule or RULES[0]


def check_flags(kind: str, options: SweepOptions) -> None:
    """One-line errors for the round flags, before Ray starts."""
    if decide_rule(options) not in RULES:
        raise SweepError(f"--decide-rule: expected one of {', '.join(RULES)}, got {decide_rule(options)!r}")
    if not options.until_decided:
        if options.max_seeds or options.decide_metric or options.max_rung:
            raise SweepError("--max-seeds/--decide-metric/--max-rung: only with --until-decided")
        if options.decide_rule:
            raise SweepError("--decide-rule: only with --until-decided")
        return
    if kind == "optuna":
        raise SweepError("--until-decided: an Optuna sweep has no fixed rows to decide; use a grid sweep")
    if options.max_seeds <= options.seeds:
        raise SweepError(f"--until-decided: needs --max-seeds greater than --seeds ({options.seeds}), "
                         f"got {options.max_seeds}")
    ranked = [c for c in specs.METRICS if c not in specs.UNRANKED]  # a row is best in these only
    unknown = [c for c in decide_columns(options) if c not in ranked]
    if unknown or not decide_columns(options):
        raise SweepError(f"--decide-metric: expected table columns among {', '.join(ranked)}, "
                         f"got {options.decide_metric!r}")


def check_ladder(options: SweepOptions, configs: list) -> None:
    """``--max-rung``: every trial on one ladder (``encoder.rungs``) whose top is below it."""
    if not options.max_rung:
        return
    ladders = {cfg.encoder.rungs for cfg in configs}
    if len(ladders) != 1 or not next(iter(ladders)):
        raise SweepError(f"--max-rung: needs every trial on one budget ladder (--set encoder.schedule=wsd --set "
                         f"encoder.rungs=160,640), got encoder.rungs {', '.join(sorted(map(repr, ladders)))}")
    top = parse_rungs(next(iter(ladders)))[-1]
    if options.max_rung <= top:
        raise SweepError(f"--max-rung: expected more steps than the ladder's top rung {top}, got {options.max_rung}")


def next_ladder(rungs: str, max_rung: int) -> str:
    """The ladder one rung higher: the top times the ratio of the last two rungs (4 for a one-rung ladder), at most
    ``max_rung``; "" when the top is already ``max_rung``."""
    ladder = parse_rungs(rungs)
    if not ladder or ladder[-1] >= max_rung:
        return ""
    ratio = ladder[-1] / ladder[-2] if len(ladder) > 1 else 4.0
    return ",".join(map(str, (*ladder, min(max_rung, round(ladder[-1] * ratio)))))


def open_variants(table: Table, variant_of_row: dict[tuple, str], columns: list[str],
                  rule: str = RULES[0]) -> dict[str, str]:
    """{variant: why its verdict is open} over ``columns`` under ``rule``; a variant without a row in the table
    is open."""
    why: dict[str, list[str]] = {v: ["no row in the table"] for v in variant_of_row.values()}
    for row in table.rows:
        if row.key in variant_of_row:
            why[variant_of_row[row.key]] = []
    groups = table.groups
    for column, group in [(c, g) for c in columns for g in groups]:
        rows = [table.rows[i] for i in group]  # rows of one data set are decided among themselves
        names = [variant_of_row.get(row.key) or render.row_label(table, row) for row in rows]
        if rule == "paired":
            still_open = stats.open_rows_paired([row.values.get(column) for row in rows], names)
        else:
            still_open = stats.open_rows([row.cells.get(column) for row in rows], names)
        for index, reason in still_open.items():
            variant = variant_of_row.get(rows[index].key)
            if variant is not None:
                why[variant].append(f"{column}: {reason}")
    return {v: "; ".join(reasons) for v, reasons in why.items() if reasons}


def plan_round(open_why: dict[str, str], seeds: dict[str, int], max_seeds: int) -> list[RowDecision]:
    """One decision per variant: the next seed for an open row below ``max_seeds``, else nothing."""
    decisions = []
    for variant, count in seeds.items():
        if variant not in open_why:
            decisions.append(RowDecision(variant, count, "decided", None))
        elif count >= max_seeds:
            decisions.append(RowDecision(variant, count, f"open at --max-seeds ({open_why[variant]})", None))
        else:
            decisions.append(RowDecision(variant, count, f"open ({open_why[variant]})", count))
    return decisions


def describe_round(k: int, decisions: list[RowDecision]) -> str:
    """The printed line of a round: which rows got a seed."""
    added = [f"{d.variant}+seed{d.added_seed}" for d in decisions if d.added_seed is not None]
    decided = sum(1 for d in decisions if d.verdict == "decided")
    at_max = sum(1 for d in decisions if d.verdict.startswith("open at --max-seeds"))
    return (f"round {k}: {len(added)} open row(s) get a seed ({', '.join(added) or 'none'}); "
            f"{decided} of {len(decisions)} decided, {at_max} still open at --max-seeds")


def record(k: int, decisions: list[RowDecision], reused: int, trained: int) -> dict:
    """A round as it goes into ``rounds.json``."""
    return {"round": k, "reused": reused, "trained": trained, "rows": [asdict(d) for d in decisions]}


def until_decided(records, options: SweepOptions, seeds: dict[str, int],
                  variant_of_row: dict[tuple, str], table_of: Callable[[], Table | None],
                  run_round: Callable[[list[tuple[str, int]], int], tuple[int, int]], climber=None) -> None:
    """Round after round: decide on the sweep's table so far; while an open row still moves at the top rung
    (``climber.moving(open variants)``: {variant: how it moved}), climb a rung (``climber.next_rungs()``: the
    ladder one rung higher, "" at ``--max-rung``; ``climber.climb(ladder, k)`` runs it, returning (reused,
    trained)); else run one more seed for every open row below ``--max-seeds`` (``run_round`` returns (reused,
    trained)). Record each round on the parent run (``records``: its ``tune.driver.records.ParentRun``)."""
    columns, log = decide_columns(options), []
    for k in itertools.count(1):
        table = table_of()
        missing = [c for c in columns if table is None or c not in table.columns]
        if missing:
            print(f"until-decided: no column {', '.join(missing)} in the table; no more rounds", flush=True)
            return
        why = open_variants(table, variant_of_row, columns, decide_rule(options))
        moving = climber.moving(set(why)) if why and climber is not None else {}
        ladder = climber.next_rungs() if moving else ""
        if ladder:
            shown = "; ".join(f"{variant}: {how}" for variant, how in sorted(moving.items()))
            print(f"round {k}: open rows still move at the top rung ({shown}); every row climbs to rungs {ladder}",
                  flush=True)
            reused, trained = climber.climb(ladder, k)
            rows = [RowDecision(variant, count, f"climbs to rungs {ladder}" + (
                f" (moving: {moving[variant]})" if variant in moving else ""), None)
                for variant, count in seeds.items()]
            log.append(record(k, rows, reused, trained) | {"action": "rung", "rungs": ladder})
            records.log_rounds({"decide": columns, "rule": decide_rule(options), "max_seeds": options.max_seeds,
                                "rounds": log}, ARTIFACT, k)
            continue
        decisions = plan_round(why, dict(seeds), options.max_seeds)
        pairs = [(d.variant, d.added_seed) for d in decisions if d.added_seed is not None]
        print(describe_round(k, decisions), flush=True)
        reused, trained = run_round(pairs, k) if pairs else (0, 0)
        log.append(record(k, decisions, reused, trained))
        records.log_rounds({"decide": columns, "rule": decide_rule(options), "max_seeds": options.max_seeds,
                            "rounds": log}, ARTIFACT, k if pairs else k - 1)
        if not pairs:
            return


def log_cost(records, seeds: dict[str, int], trained: int, reused: int, max_seeds: int) -> None:
    """Print and log (``records``, the parent run's metrics) the trials run against ``max_seeds`` seeds on every row."""
    cost = cost_summary(seeds, trained, max_seeds)
    records.log_metrics(cost)
    print(f"until-decided: {cost['until_decided/trials']:.0f} trials ({trained} trained, {reused} reused) "
          f"against {cost['until_decided/trials_fixed_seeds']:.0f} with --max-seeds {max_seeds} on every row",
          flush=True)


def cost_summary(seeds: dict[str, int], trained: int, max_seeds: int) -> dict[str, float]:
    """Trials the sweep holds and trained, against ``max_seeds`` on every row."""
    fixed = len(seeds) * max_seeds
    total = sum(seeds.values())
    return {"until_decided/trials": total, "until_decided/trials_trained": trained,
            "until_decided/trials_fixed_seeds": fixed, "until_decided/trials_saved": fixed - total}
