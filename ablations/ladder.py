"""A table on the budget ladder (``encoder.rungs``; README, "A schedule that can be extended"): the table at every
rung, whether each row has converged, and whether each paired verdict is stable.

A trial of a ladder logs each rung's evaluation as ``rung/<metric>`` at step = the rung's steps; a run of one
budget (a cosine run, or a ladder run as separate runs with ``encoder.steps``) stands at its budget. Here each rung
becomes the runs' metrics for one ordinary table (``build_table``: the same rows, intervals and refusals), and:

- a row is **converged** at rung r when, in every seed, D and the minimum per-dimension correlation of h_c with
  its stage-1 target (``content_corr_min``) each changed by at most the threshold (default 0.02) from the rung
  before; a pooled number alone can hide an under-trained head;
- a paired verdict (a row against the spec's baseline or the best mean, ``render.paired_comparisons``) is
  **stable** when its sign and whether its 95 % interval excludes 0 are the same at the last two rungs.
"""

from __future__ import annotations

import dataclasses
import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from mlflow import MlflowClient

from ablations import render, specs, stats
from ablations.runs import AblationError, TrialRun, seed_order
from ablations.stats import Paired
from ablations.tables import Table, build_table

PREFIX = "rung/"  # contralord/run/ladder.py logs rung/<metric> at step = the rung's steps
CONVERGENCE = ("encoder/eval/disentanglement", "encoder/eval/content_corr_min")
THRESHOLD = 0.02
# what a reader checking convergence reads seed by seed (the ladder's "Per seed" section): the pooled D, the weakest
# dimension of h_c against its stage-1 target, and how much of the labelled factors the residual h_r still holds
PER_SEED = (("D", "encoder/eval/disentanglement"), ("content_corr_min", "encoder/eval/content_corr_min"),
            ("h_r leakage", "encoder/eval/residual_leakage"))
BUDGET_METRIC = "encoder/train/epoch"  # logged at step = the optimiser steps done, once per epoch


@dataclass
class Ladder:
    rungs: list[int]
    tables: dict[int, Table]  # rung -> the table of the runs' evaluations at that rung
    threshold: float
    movement: dict[str, dict[int, float | None]] = field(default_factory=dict)  # row -> rung -> largest change
    verdicts: list[tuple[str, str, str, dict[int, Paired], str]] = field(default_factory=list)
    values: dict[str, dict[int, dict[str, float]]] = field(default_factory=dict)  # run id -> rung -> metric
    seeds: dict[str, str] = field(default_factory=dict)  # run id -> seed
    cost: dict[int, tuple[int, float]] = field(default_factory=dict)  # top rung -> (runs, seconds of time/total)


def rung_values(client: MlflowClient, runs: list[TrialRun], metrics: tuple[str, ...]) -> dict[str, dict]:
    """{run id: {rung steps: {metric: value}}} from each run's ``rung/<metric>`` history. A run without rungs (one
    budget, e.g. a cosine run: a ladder of separate runs) stands at its budget with its end-of-run evaluation:
    its ``encoder.steps`` where set, else the step of its last training point (a run that logged neither, such as a
    copy of a reused run made before copies kept their histories, stands nowhere)."""
    found: dict[str, dict[int, dict[str, float]]] = {}
    for run in runs:
        if not any(name.startswith(PREFIX) for name in run.metrics):
            at = {metric: run.metrics[metric] for metric in metrics if metric in run.metrics}
            budget = _budget(client, run)
            if budget and at:
                found[run.run_id] = {budget: at}
            continue
        for metric in metrics:
            if PREFIX + metric not in run.metrics:
                continue
            for point in client.get_metric_history(run.run_id, PREFIX + metric):
                found.setdefault(run.run_id, {}).setdefault(int(point.step), {})[metric] = point.value
    return found


def _budget(client: MlflowClient, run: TrialRun) -> int:
    """A one-budget run's steps: ``encoder.steps`` where set, else its last training point's step (0: unknown)."""
    steps = run.params.get("encoder.steps", "0")
    if steps.isdigit() and int(steps) > 0:
        return int(steps)
    history = client.get_metric_history(run.run_id, BUDGET_METRIC) if BUDGET_METRIC in run.metrics else []
    return max((int(point.step) for point in history), default=0)


def build_ladder(client: MlflowClient, runs: list[TrialRun], spec: specs.TableSpec, source: str,
                 with_paper: bool = False, ignore: tuple[str, ...] = (), threshold: float = THRESHOLD) -> Ladder:
    """The spec's table at every rung the runs logged; AblationError when no run has a rung."""
    wanted = [*specs.METRICS.values(), *CONVERGENCE, *(metric for _, metric in PER_SEED)]
    values = rung_values(client, runs, tuple(dict.fromkeys(wanted)))
    rungs = sorted({rung for per_run in values.values() for rung in per_run})
    if not rungs:
        raise AblationError("--rungs: no run of the table logged a rung (rung/<metric>); train with "
                            "--set encoder.schedule=wsd --set encoder.rungs=160,640,2560")
    tables = {}
    for rung in rungs:
        at_rung = [dataclasses.replace(r, metrics=values[r.run_id][rung]) for r in runs
                   if rung in values.get(r.run_id, {})]
        tables[rung] = build_table(at_rung, spec, f"{source} at rung {rung}", with_paper, ignore)
    ladder = Ladder(rungs, tables, threshold, values=values, seeds={r.run_id: r.seed for r in runs},
                    cost=_cost(runs, values))
    ladder.movement = _movement(ladder)
    ladder.verdicts = _verdicts(ladder)
    return ladder


def _movement(ladder: Ladder) -> dict[str, dict[int, float | None]]:
    """Per row label and rung, the largest change over its seeds and ``CONVERGENCE`` from the rung before, seed by
    seed: a ladder run's own rungs, or a ladder of separate runs (one per budget) of the same row and seed (None at
    the first rung, or where a seed lacks either rung: that row cannot be called converged)."""
    moves: dict[str, dict[int, float | None]] = {}
    by_seed = _by_seed(ladder)
    for before, rung in zip([None, *ladder.rungs], ladder.rungs, strict=False):
        for label, now in by_seed[rung].items():
            then = by_seed[before].get(label) if before is not None else None
            moves.setdefault(label, {})[rung] = None if then is None else _largest_change(now, then)
    return moves


def _cost(runs: list[TrialRun], values: dict[str, dict]) -> dict[int, tuple[int, float]]:
    """Per top rung, the runs that end there and their summed ``time/total`` (a ladder run's covers its lower
    rungs' branches too; a reused run's copy carries its original's)."""
    cost: dict[int, tuple[int, float]] = {}
    for run in runs:
        if values.get(run.run_id) and "time/total" in run.metrics:
            top = max(values[run.run_id])
            count, seconds = cost.get(top, (0, 0.0))
            cost[top] = (count + 1, seconds + run.metrics["time/total"])
    return dict(sorted(cost.items()))


def _by_seed(ladder: Ladder) -> dict[int, dict[str, dict[str, dict[str, float]]]]:
    """rung -> row label -> seed -> that seed's metrics at the rung: a ladder run's own rungs, or the separate run
    of that budget (a ladder of separate runs)."""
    found = {}
    for rung in ladder.rungs:
        table = ladder.tables[rung]
        found[rung] = {render.row_label(table, row): {ladder.seeds[r]: ladder.values[r][rung] for r in row.run_ids}
                       for row in table.rows}
    return found


def _largest_change(now: dict[str, dict[str, float]], then: dict[str, dict[str, float]]) -> float | None:
    """The largest |change| of ``CONVERGENCE`` over the seeds of ``now`` ({seed: metrics}); None where a seed or a
    metric is missing from either rung, or the rungs hold different seeds (a row still being run)."""
    if set(now) != set(then):
        return None
    changes = []
    for seed, metrics in now.items():
        for metric in CONVERGENCE:
            if metric not in metrics or metric not in then.get(seed, {}):
                return None
            changes.append(abs(metrics[metric] - then[seed][metric]))
    return max(changes) if changes else None


def _verdicts(ladder: Ladder) -> list[tuple[str, str, str, dict[int, Paired], str]]:
    """The top rung's paired comparisons, each recomputed at every rung (same rows, same reference), and
    whether it is stable over the last two rungs."""
    found = []
    for column, label, ref, _ in render.paired_comparisons(ladder.tables[ladder.rungs[-1]]):
        at = {}
        for rung in ladder.rungs:
            rows = {render.row_label(ladder.tables[rung], row): row for row in ladder.tables[rung].rows}
            if label in rows and ref in rows and rows[label].values.get(column) and rows[ref].values.get(column):
                at[rung] = stats.paired(rows[label].values[column], rows[ref].values[column])
        found.append((column, label, ref, at, _stability(at, ladder.rungs)))
    return found


def _stability(at: dict[int, Paired], rungs: list[int]) -> str:
    last = [at.get(rung) for rung in rungs[-2:]]
    if len(rungs) < 2 or any(p is None or p.n < 2 or math.isnan(p.ci_low) for p in last):
        return "untested (needs two rungs with 2+ shared seeds)"
    signs = {(p.mean > 0, p.ci_low > 0 or p.ci_high < 0) for p in last}
    return "stable" if len(signs) == 1 else "moving"


def to_markdown(ladder: Ladder) -> str:
    """Each rung's table, then the convergence of each row and the stability of each paired verdict."""
    parts = [f"## At rung {rung} ({rung} steps)\n\n{render.to_markdown(ladder.tables[rung])}" for rung in ladder.rungs]
    header = "| row | " + " | ".join(str(r) for r in ladder.rungs) + " |"
    lines = [header, "|---|" + "---|" * len(ladder.rungs)]
    for label, moves in ladder.movement.items():
        cells = [_move_cell(moves.get(rung), ladder.threshold) for rung in ladder.rungs]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    rule = (f"converged at a rung: in every seed, D and content_corr_min each moved by at most {ladder.threshold:g} "
            f"from the rung before (cells: the largest change; ✓ converged, ✗ still moving)")
    verdicts = [f"- paired {column}: {row} minus {ref}: " + "; ".join(
        f"{rung}: {render.paired_text(p)}" for rung, p in at.items()) + f" → **{state}**"
        for column, row, ref, at, state in ladder.verdicts]
    stable_rule = ("a verdict is stable when its sign and its significance (95 % interval excluding 0) hold at the "
                   "last two rungs")
    cost = [f"- ending at rung {rung}: {count} run(s), {seconds / 60:.1f} trial-minutes" for rung, (count, seconds)
            in ladder.cost.items()]
    cost_rule = ("time/total summed over the runs whose budget (top rung) it is: a ladder run's covers its lower "
                 "rungs, a ladder of separate runs pays every rung in full")
    return "\n\n".join(parts + ["## Convergence by rung\n\n" + "\n".join(lines) + f"\n\n- {rule}",
                                "## Per seed\n\n" + per_seed_markdown(ladder),
                                "## Paired verdicts by rung\n\n" + "\n".join(verdicts or ["- none"])
                                + f"\n- {stable_rule}",
                                "## Cost by rung\n\n" + "\n".join(cost or ["- no run logged time/total"])
                                + f"\n- {cost_rule}"])


def per_seed_markdown(ladder: Ladder) -> str:
    """One line per row and seed: ``PER_SEED``'s values at every rung (``–`` where a run did not log one)."""
    names = [name for name, _ in PER_SEED]
    header = "| row | seed | " + " | ".join(f"{name} at {rung}" for name in names for rung in ladder.rungs) + " |"
    lines = [header, "|---|---|" + "---|" * (len(names) * len(ladder.rungs))]
    by_seed = _by_seed(ladder)
    labels = list(dict.fromkeys(label for rows in by_seed.values() for label in rows))
    for label in labels:
        seeds = sorted({seed for rows in by_seed.values() for seed in rows.get(label, {})}, key=seed_order)
        for seed in seeds:
            cells = [_value_cell(by_seed[rung].get(label, {}).get(seed, {}).get(metric))
                     for _, metric in PER_SEED for rung in ladder.rungs]
            lines.append(f"| {label} | {seed} | " + " | ".join(cells) + " |")
    note = ("- h_r leakage: the held-out accuracy of a logistic regression from the residual h_r to each labelled "
            "factor, averaged over them (encoder/eval/residual_leakage; lower is cleaner, each factor's chance is "
            "logged beside it); content_corr_min: the weakest dimension of h_c against its stage-1 target")
    return "\n".join(lines) + "\n\n" + note


def _value_cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _move_cell(change: float | None, threshold: float) -> str:
    if change is None:
        return "–"
    return f"{change:.3f} {'✓' if change <= threshold else '✗'}"


def plot_ladder(ladder: Ladder, path: Path, metric: str = CONVERGENCE[0]) -> Path:
    """``metric`` against steps (log axis): one colour per row, one line per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    table = ladder.tables[ladder.rungs[-1]]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    lines: dict[tuple[str, str], list[tuple[int, float]]] = {}  # (row label, seed) -> (rung, value), every rung
    for rung, rows in _by_seed(ladder).items():
        for label, seeds in rows.items():
            for seed, values in seeds.items():
                if metric in values:
                    lines.setdefault((label, seed), []).append((rung, values[metric]))
    labels = list(dict.fromkeys(label for label, _ in lines))
    shown = set()
    for (label, _seed), points in sorted(lines.items(), key=lambda item: (labels.index(item[0][0]), item[0][1])):
        axis.plot(*zip(*sorted(points), strict=True), marker="o", color=colours[labels.index(label) % len(colours)],
                  alpha=0.8, label=None if label in shown else label)
        shown.add(label)  # one legend entry per row
    axis.set_xscale("log")
    axis.set_xticks(ladder.rungs, [str(rung) for rung in ladder.rungs])
    axis.minorticks_off()
    axis.set_xlabel("stage-2 steps (rung)")
    axis.set_ylabel(metric.removeprefix("encoder/eval/"))
    title = f"{table.spec.title}: {metric.removeprefix('encoder/eval/')} by budget (a line per seed)"
    axis.set_title(textwrap.fill(title, 70), fontsize=10)  # a long table title stays inside the figure
    axis.legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
