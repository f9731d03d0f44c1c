"""The loss balance of a table's rows (``make_tables.py --balance``): how hard each weighted term of Eq. 6 pulls on
the backbone, read from MLflow.

The trainer logs ||d(weight * term) / d f|| per term at the first step of every epoch (``encoder/train/grad/<term>``,
``contralord/stage2/encoder_stage.py: _grad_norms``). Per run, each term's median over its logged epochs after the first
(the first step's queue holds random keys, so L_con's and L_res's gradients are then unrepresentative); per row,
the mean over its seeds of those medians, each term's ratio to L_rec's, and the largest ratio between any two terms.
A reused trial's copy carries no history: its original (tag ``reused_from``) is read instead.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from mlflow import MlflowClient

from ablations import render
from ablations.runs import REUSED_TAG, AblationError, TrialRun
from ablations.tables import Table

PREFIX = "encoder/train/grad/"
TERMS = ("rec", "sup", "con", "res", "kl", "label")  # the order of the columns (Eq. 6's, then the VAE's)


@dataclass(frozen=True)
class RowBalance:
    label: str
    seeds: int  # runs whose history had a point after the first epoch
    norms: dict[str, float]  # term -> mean over seeds of the run's median gradient norm

    def ratio(self, term: str) -> float | None:
        """``term``'s norm over L_rec's (None without L_rec, or where L_rec's is 0)."""
        rec = self.norms.get("rec")
        return self.norms[term] / rec if rec else None

    def spread(self) -> float | None:
        """The largest norm over the smallest (None with fewer than two terms, or a zero norm)."""
        values = list(self.norms.values())
        return max(values) / min(values) if len(values) >= 2 and min(values) > 0 else None


def run_medians(client: MlflowClient, run_id: str, logged: set[str]) -> dict[str, float]:
    """term -> the median of its gradient norm over the run's logged epochs after the first ({} without any)."""
    medians = {}
    for term in TERMS:
        if PREFIX + term not in logged:
            continue
        history = sorted(client.get_metric_history(run_id, PREFIX + term), key=lambda point: point.step)
        later = [point.value for point in history[1:]]
        if later:
            medians[term] = statistics.median(later)
    return medians


def history_run(client: MlflowClient, run_id: str, tags: dict[str, str]) -> tuple[str, set[str]]:
    """(the run whose history to read, its logged metric names): a reused copy's original, else the run itself."""
    source = tags.get(REUSED_TAG) or run_id
    return source, set(client.get_run(source).data.metrics)


def build_balance(client: MlflowClient, table: Table, runs: list[TrialRun]) -> list[RowBalance]:
    """One RowBalance per row of ``table`` (its averaged runs, among ``runs``); AblationError when no run logged a
    gradient norm after its first epoch."""
    tags = {run.run_id: run.tags for run in runs}
    found = []
    for row in table.rows:
        per_run = [run_medians(client, *history_run(client, run_id, tags.get(run_id, {})))
                   for run_id in row.run_ids if run_id in tags]  # a floor row (Table 1) trains nothing
        per_run = [medians for medians in per_run if medians]
        terms = [term for term in TERMS if per_run and all(term in medians for medians in per_run)]
        norms = {term: statistics.fmean(medians[term] for medians in per_run) for term in terms}
        found.append(RowBalance(render.row_label(table, row), len(per_run), norms))
    if not any(row.norms for row in found):
        raise AblationError("--balance: no run of the table logged encoder/train/grad/<term> after its first epoch "
                            "(a one-process run logs it at each epoch's first step; a multi-worker run does not)")
    return found


def to_markdown(rows: list[RowBalance], source: str) -> str:
    terms = [term for term in TERMS if any(term in row.norms for row in rows)]
    header = ["row", "n", *[f"grad {t}" for t in terms], *[f"{t}/rec" for t in terms if t != "rec"], "max/min"]
    title = (f"**Loss balance** ({source}): each weighted term's gradient norm on the backbone, median over a run's "
             "epochs after the first, mean over seeds")
    lines = [title, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        norms = [f"{row.norms[t]:.3g}" if t in row.norms else "–" for t in terms]
        ratios = [_number(row.ratio(t)) if t in row.norms else "–" for t in terms if t != "rec"]
        lines.append("| " + " | ".join([row.label, str(row.seeds), *norms, *ratios, _number(row.spread())]) + " |")
    lines += ["", "The balance a weight sets: a term whose gradient is far below another's barely moves the "
                  "backbone. The first epoch's point is left out (random queue keys)."]
    return "\n".join(lines) + "\n"


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"
