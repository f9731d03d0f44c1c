"""Each row's InfoNCE terms against chance (``make_tables.py --infonce``): did L_con and L_res learn to tell images
apart, read from MLflow.

InfoNCE with K negatives is -log(e^(a.p/tau) / (e^(a.p/tau) + sum_k e^(a.n_k/tau))). When every similarity is the
same, as for a projection that maps every image to one point, it is exactly log(1 + K): chance. A value far below
chance says the positive stands out from the negatives, not why. Under Algorithm 1's online positive the positive is
the online encoder's and the negatives are the momentum encoder's, so a projection that differs between the two
encoders (the momentum encoder lags the online one by about 1 / (1 - m) steps) can score low without telling images
apart; such a loss climbs back towards chance when the lag shrinks (measured: L_res at the end of a cosine schedule,
as the lr goes to 0). The training curve alone cannot say which of the two a low loss is: the lag-free value can.

Per run and term (``encoder/train/nce_content``, ``encoder/train/nce_residual``; every epoch's last step): the first
logged value, the lowest and its step, the last, the same term at evaluation without the lag where the run logged
it (``encoder/eval/nce_<content|residual>_lagfree``, ``contralord/lagfree_nce.py``: every vector from the trained
online encoder), and chance, log(1 + encoder.queue_size) with the queue's negatives (log(2B - 1) with
``encoder.negatives=batch``, B = encoder.batch_size, for one process: W processes each see B / W images, and the
runs do not log W). A mask that drops negatives (``encoder.label_aware_negatives``, ``encoder.mask_own_keys``) lowers
chance by what it drops, so log(1 + K) is then an upper bound. Per row, the mean over seeds, and how many seeds end
within ``NEAR`` of chance. A reused trial's copy carries no history: its original (tag ``reused_from``) is read
instead. With ``--out``, ``<table>_infonce.png`` draws every run's curve against steps, a panel per term, with chance
and the run's lr (``encoder/train/lr``) beside it.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from mlflow import MlflowClient

from ablations import render
from ablations.balance import history_run
from ablations.runs import AblationError, TrialRun
from ablations.tables import Table

TERMS = {"con": "encoder/train/nce_content", "res": "encoder/train/nce_residual"}
# the same terms recomputed at evaluation with every vector from the online encoder (contralord/lagfree_nce.py)
LAGFREE = {"con": "encoder/eval/nce_content_lagfree", "res": "encoder/eval/nce_residual_lagfree"}
LAGFREE_CHANCE = "encoder/eval/nce_chance_lagfree"
LR = "encoder/train/lr"
NEAR = 0.9  # a run ends near chance when its last value is at least this fraction of log(1 + K)


@dataclass(frozen=True)
class RunCurve:
    """One run's InfoNCE term: its first, lowest and last logged value, the lowest's step, and chance."""

    first: float
    lowest: float
    lowest_step: int
    last: float
    last_step: int
    chance: float
    lagfree: float | None = None  # the term at evaluation without the momentum lag (older runs: None)
    lagfree_chance: float | None = None  # its chance, log(n)
    points: tuple[tuple[int, float], ...] = field(default=(), compare=False, repr=False)  # (step, loss), by step
    lr: tuple[tuple[int, float], ...] = field(default=(), compare=False, repr=False)  # (step, lr), by step

    @property
    def near_chance(self) -> bool:
        return self.last >= NEAR * self.chance


@dataclass(frozen=True)
class RowTerm:
    label: str
    term: str  # con | res
    curves: tuple[RunCurve, ...]  # one per seed with a history

    def mean(self, field: str) -> float:
        return statistics.fmean(getattr(curve, field) for curve in self.curves)

    def near(self) -> int:
        return sum(curve.near_chance for curve in self.curves)

    def lagfree(self) -> tuple[float, float] | None:
        """(mean lag-free loss, mean its chance) over the seeds that logged it; None when none did."""
        found = [c for c in self.curves if c.lagfree is not None and c.lagfree_chance is not None]
        if not found:
            return None
        return statistics.fmean(c.lagfree for c in found), statistics.fmean(c.lagfree_chance for c in found)


def chance(params: dict[str, str]) -> float:
    """log(1 + negatives): the InfoNCE of a projection that maps every image to one point (closed form)."""
    if params.get("encoder.negatives", "queue") == "batch":
        return math.log(2 * int(params["encoder.batch_size"]) - 1)
    return math.log(1 + int(params["encoder.queue_size"]))


def run_curve(client: MlflowClient, run_id: str, term: str, params: dict[str, str], metrics: dict[str, float],
              lr: tuple[tuple[int, float], ...]) -> RunCurve | None:
    """The run's history of ``term`` (con | res) summarised, with its lag-free value from ``metrics`` (the run's
    final metrics) where logged and its ``lr`` history; None when it logged no history of the term."""
    history = sorted(client.get_metric_history(run_id, TERMS[term]), key=lambda point: point.step)
    if not history:
        return None
    lowest = min(history, key=lambda point: (point.value, point.step))
    return RunCurve(history[0].value, lowest.value, lowest.step, history[-1].value, history[-1].step, chance(params),
                    metrics.get(LAGFREE[term]), metrics.get(LAGFREE_CHANCE),
                    tuple((int(point.step), float(point.value)) for point in history), lr)


def lr_history(client: MlflowClient, run_id: str) -> tuple[tuple[int, float], ...]:
    """The run's (step, lr) points, by step: read once per run, drawn beside each of its terms."""
    return tuple(sorted((int(point.step), float(point.value)) for point in client.get_metric_history(run_id, LR)))


def build_infonce(client: MlflowClient, table: Table, runs: list[TrialRun]) -> list[RowTerm]:
    """One RowTerm per row of ``table`` and InfoNCE term its runs logged; AblationError when none logged one."""
    by_id = {run.run_id: run for run in runs}
    found = []
    for row in table.rows:
        members = [by_id[run_id] for run_id in row.run_ids if run_id in by_id]  # a floor row trains nothing
        sources = [(*history_run(client, run.run_id, run.tags), run) for run in members]
        lrs = {source: lr_history(client, source) for source, logged, _ in sources if logged & set(TERMS.values())}
        for term, key in TERMS.items():
            curves = [run_curve(client, source, term, run.params, run.metrics, lrs[source])
                      for source, logged, run in sources if key in logged]
            curves = [curve for curve in curves if curve is not None]
            if curves:
                found.append(RowTerm(render.row_label(table, row), term, tuple(curves)))
    if not found:
        raise AblationError("--infonce: no run of the table logged encoder/train/nce_content or nce_residual "
                            "(rows without L_con and L_res have no InfoNCE term)")
    return found


def to_markdown(rows: list[RowTerm], source: str) -> str:
    header = ["#", "row", "term", "n", "chance log(1+K)", "first", "lowest (mean step)", "last (step)", "last / chance",
              f"seeds ending ≥ {NEAR:g} × chance", "lag-free at evaluation / its chance"]
    title = (f"**InfoNCE against chance** ({source}): each contrastive term's training loss, mean over seeds; chance "
             "is the loss of a projection that maps every image to one point")
    lines = [title, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    numbers = row_numbers(rows)
    for row in rows:
        lowest = f"{row.mean('lowest'):.3f} ({row.mean('lowest_step'):.0f})"
        last = f"{row.mean('last'):.3f} ({row.mean('last_step'):.0f})"
        cells = [str(numbers[row.label]), row.label, f"L_{row.term}", str(len(row.curves)),
                 f"{row.mean('chance'):.3f}", f"{row.mean('first'):.3f}", lowest, last,
                 f"{row.mean('last') / row.mean('chance'):.2f}", f"{row.near()} of {len(row.curves)}",
                 _lagfree_cell(row)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Per seed (first / lowest / last training loss; lag-free at evaluation where logged):", ""]
    for row in rows:
        seeds = "; ".join(f"{c.first:.3f} / {c.lowest:.3f} / {c.last:.3f}"
                          + (f", lag-free {c.lagfree:.3f}" if c.lagfree is not None else "") for c in row.curves)
        lines.append(f"- {row.label}, L_{row.term}: {seeds}")
    lines += ["", "A training loss far below chance says the positive stands out from the negatives, not why: under "
                  "the online positive the negatives come from the lagging momentum encoder (ablations/infonce.py). "
                  "Lag-free: the term recomputed at evaluation with the anchor, the positive and K negatives all from "
                  "the trained online encoder (contralord/lagfree_nce.py; the online anchor and no mask on the "
                  "negatives whatever the run's reading), mean over the seeds that logged it; near its chance, the "
                  "projection does not tell images apart. With a mask on the negatives the training chance is lower "
                  "than log(1+K); in-batch chance assumes one process."]
    return "\n".join(lines) + "\n"


def _lagfree_cell(row: RowTerm) -> str:
    found = row.lagfree()
    if found is None:
        return "– (not logged: runs before the check)"
    logged = sum(c.lagfree is not None for c in row.curves)
    return f"{found[0]:.3f} / {found[1]:.3f} ({found[0] / found[1]:.2f}; {logged} of {len(row.curves)} seeds)"


def row_numbers(rows: list[RowTerm]) -> dict[str, int]:
    """Each row label's number (1, 2, ... in table order): the plot's legend names rows by it."""
    return {label: i for i, label in enumerate(dict.fromkeys(row.label for row in rows), start=1)}


def plot_infonce(rows: list[RowTerm], path: Path) -> Path:
    """A panel per term: every run's loss against steps (a colour per row, a line per seed), chance dashed, and the
    first run's lr on a grey second axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    terms = [term for term in TERMS if any(row.term == term for row in rows)]
    numbers = row_numbers(rows)
    fig, axes = plt.subplots(1, len(terms), figsize=(4.6 * len(terms), 3.4), squeeze=False)
    for ax, term in zip(axes[0], terms, strict=True):
        shown_lr = False
        for row in (row for row in rows if row.term == term):
            colour = f"C{(numbers[row.label] - 1) % 10}"
            for i, curve in enumerate(row.curves):
                ax.plot(*zip(*curve.points, strict=True), color=colour, lw=1,
                        label=f"row {numbers[row.label]}" if i == 0 else None)
                if curve.lr and not shown_lr:
                    twin = ax.twinx()
                    twin.plot(*zip(*curve.lr, strict=True), color="0.6", lw=0.8, ls=":")
                    twin.set_ylabel("lr (dotted)", fontsize=7, color="0.5")
                    twin.tick_params(labelsize=6, colors="0.5")
                    shown_lr = True
        for value in sorted({curve.chance for row in rows if row.term == term for curve in row.curves}):
            ax.axhline(value, color="k", ls="--", lw=0.8)
        ax.set_title(f"L_{term}: training InfoNCE (dashed: chance, log(1+K))", fontsize=8)
        ax.set_xlabel("steps", fontsize=8)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
