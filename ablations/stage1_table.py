"""Stage 1 against its supervised-only reference, per labelled factor and seed, read from MLflow
(``make_tables.py --spec stage1``): replaces RESULTS.md's hand-copied stage-1 table.

A stage-1 run (experiment ``contralord-stage1``, tag ``role=stage1``; ``tune/trial/stage1.py``) logs, per labelled
factor, its classifier's accuracy on the images without labels (``latent/final/classifier_acc/<factor>``) and the
matched reference's: the same networks, optimiser and labelled batches trained on the labels alone
(``latent/final/ref_accuracy/<factor>``; ``contralord/stage1/reference_classifier.py``), the best reference's: the same
networks with their own recipe chosen on a validation split of the labels (``latent/final/best_ref_accuracy/<factor>``;
``contralord/stage1/best_reference.py``), and the DCI, MIG and SAP of its
codes g^c scored as an encoder is (``latent/final/codes/...``). Here: one row per seed, their mean, and per factor
stage 1 minus each reference paired by seed (a 95 % paired-t interval; **above** or **below** when it excludes 0).
With ``--sweep-run`` the stage-1 runs that sweep used (its parent's tag ``stage1_run_ids``) or one stage-1 run named
by its own id (a sweep stopped while its stage 1s trained never names them), else every finished stage-1 run of the
store, refused when they differ in a data or stage-1 key other than the seed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from ablations import stats
from ablations.runs import AblationError, TrialRun, search_all, seed_order, trial_run
from ablations.tables import differing_keys, machines_of

EXPERIMENT = "contralord-stage1"
ACCURACY, REFERENCE = "latent/final/classifier_acc/", "latent/final/ref_accuracy/"
BEST = "latent/final/best_ref_accuracy/"  # contralord/stage1/best_reference.py: its own recipe, chosen on validation
REFERENCES = {"matched reference": REFERENCE, "best reference": BEST}
CODES = {"codes D": "disentanglement", "C": "completeness", "I (test)": "informativeness_test", "MIG": "mig",
         "SAP": "sap"}
CODE_PREFIX = "latent/final/codes/"
LEAKAGE = ("latent/final/codes/residual_leakage", "latent/final/codes/residual_leakage_chance")
SHARED = ("data.", "latent.")  # what every averaged stage-1 run must share (the seed aside)


@dataclass
class Stage1Table:
    runs: list[TrialRun]  # one per seed, in seed order
    factors: list[str]
    source: str
    paired: dict[tuple[str, str], stats.Paired] = field(default_factory=dict)  # (factor, reference) -> stage 1 minus it


def stage1_runs(client: MlflowClient, sweep_run: str | None) -> tuple[list[TrialRun], str]:
    """The finished stage-1 runs of one sweep (its parent's ``stage1_run_ids``), the one named, or the store's, newest
    per seed."""
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        raise AblationError(f"--spec stage1: the store has no experiment {EXPERIMENT!r} (no sweep trained a stage 1)")
    if sweep_run:
        try:
            tags = client.get_run(sweep_run).data.tags
        except MlflowException:
            raise AblationError(f"--sweep-run: no run {sweep_run!r} in the tracking store") from None
        if tags.get("role") == "stage1":  # one stage-1 run, e.g. of a sweep stopped before it named its runs
            ids, source = {sweep_run}, f"stage-1 run {sweep_run}"
        else:
            ids, source = _named_stage1_runs(tags), f"the stage-1 runs of sweep run {sweep_run}"
        if not ids:
            raise AblationError(f"--sweep-run: run {sweep_run} is not a stage-1 run and names no stage-1 runs (tag "
                                f"stage1_run_ids: a sweep writes it before its stage 1s train)")
        every = search_all(client, experiment.experiment_id, "tags.role = 'stage1'")
        found = [r for r in every if r.info.run_id in ids]
    else:
        found = search_all(client, experiment.experiment_id, "tags.role = 'stage1'")
        source = f"every stage-1 run of experiment {EXPERIMENT}"
    finished = [trial_run(r) for r in found if r.info.status == "FINISHED"]
    newest: dict[str, TrialRun] = {}
    for run in sorted(finished, key=lambda r: r.start_time, reverse=True):
        newest.setdefault(run.seed, run)
    if not newest:
        raise AblationError(f"--spec stage1: no finished stage-1 run in {source}")
    return sorted(newest.values(), key=lambda r: seed_order(r.seed)), source


def _named_stage1_runs(tags: dict[str, str]) -> set[str]:
    try:
        return set(json.loads(tags.get("stage1_run_ids", "{}")).values())
    except (ValueError, AttributeError):  # not JSON, or JSON that is not an object
        return set()


def build_stage1_table(runs: list[TrialRun], source: str) -> Stage1Table:
    """Refuse runs that differ in a data or stage-1 key other than the seed, or ran on several machines."""
    allowed = {k for r in runs for k in r.params if not k.startswith(SHARED)} | {"run.seed", "data.max_array_gib"}
    differing = differing_keys(runs, allowed)
    if differing:
        shown = "; ".join(f"{k} ({', '.join(v[:3])})" for k, v in list(differing.items())[:6])
        raise AblationError(f"--spec stage1: refusing to average stage-1 runs that differ in {shown}; select one "
                            f"sweep's with --sweep-run")
    machines = machines_of(runs)
    if len(machines) > 1:
        raise AblationError(f"--spec stage1: refusing to average stage-1 runs of {len(machines)} machines; select "
                            f"one sweep's with --sweep-run")
    factors = sorted({k[len(ACCURACY):] for r in runs for k in r.metrics if k.startswith(ACCURACY)})
    if not factors:
        raise AblationError("--spec stage1: the runs log no latent/final/classifier_acc/<factor> (a stage 1 "
                            "without labelled-factor classifiers: latent.structure=factors)")
    table = Stage1Table(runs, factors, source)
    for factor in factors:
        ours = {r.seed: r.metrics[ACCURACY + factor] for r in runs if ACCURACY + factor in r.metrics}
        for name, prefix in REFERENCES.items():
            reference = {r.seed: r.metrics[prefix + factor] for r in runs if prefix + factor in r.metrics}
            if reference:
                table.paired[(factor, name)] = stats.paired(ours, reference)
    return table


def number(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.3f}"


def _cells(metrics: dict[str, float], factors: list[str]) -> list[str]:
    get = lambda key: metrics.get(key)  # noqa: E731
    cells = [f"{number(get(ACCURACY + f))} / {number(get(REFERENCE + f))} / {number(get(BEST + f))}"
             for f in factors]
    cells += [number(get(CODE_PREFIX + name)) for name in CODES.values()]
    leak, chance = (get(k) for k in LEAKAGE)
    return cells + [f"{number(leak)} ({number(chance)})"]


def verdict(p: stats.Paired) -> str:
    if p.n < 2 or math.isnan(p.ci_low):
        return "no paired test"
    return "**above**" if p.ci_low > 0 else "**below**" if p.ci_high < 0 else "not separated"


SETTING_KEYS = ("data.name", "data.size", "data.image_size", "data.num_labels", "data.labelled_factors",
                "data.factor_filter", "latent.epochs")  # each shown where the run logged a non-empty value


def interval(p: stats.Paired) -> str:
    """The 95 % paired-t interval, or what stands in for it where one seed gives none."""
    return f"[{p.ci_low:+.3f}, {p.ci_high:+.3f}]" if math.isfinite(p.ci_low) else "(no interval from one seed)"


def to_markdown(table: Stage1Table) -> str:
    header = ["seed", *[f"{f}: stage 1 / ref / best" for f in table.factors], *CODES, "h_r leakage (chance)"]
    lines = [f"**Stage 1 against its supervised-only references, and its codes** ({table.source}; "
             f"{len(table.runs)} seed(s))", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run in table.runs:
        lines.append(f"| {run.seed} | " + " | ".join(_cells(run.metrics, table.factors)) + " |")
    keys = {k for r in table.runs for k in r.metrics}
    mean = {k: math.fsum(r.metrics[k] for r in table.runs if k in r.metrics) / sum(k in r.metrics for r in table.runs)
            for k in keys}
    lines.append("| mean | " + " | ".join(_cells(mean, table.factors)) + " |")
    notes = [f"stage 1 minus {reference}, {factor}: {p.mean:+.3f} {interval(p)}, higher in "
             f"{p.wins} and lower in {p.losses} of {p.n} seeds → {verdict(p)}"
             for (factor, reference), p in table.paired.items()]
    first = table.runs[0]
    setting = ", ".join(f"{k}={first.params[k]}" for k in SETTING_KEYS if first.params.get(k, "") != "")
    machines = sorted(machines_of(table.runs).values())
    notes += [f"setting: {setting}", f"machine: {'; '.join(machines) or 'not recorded'}",
              "accuracy on the images without labels; ref (matched): the same networks, optimiser and labelled "
              "batches trained on the labels alone (stage 1 minus reconstruction); best: the same networks with "
              "the Adam beta1 and lr of highest accuracy on a fifth of the labels held out, refit on every label "
              "(– where the run predates it); codes: stage 1's g^c scored as an encoder is; verdict: the 95 % "
              "paired-t interval over seeds excludes 0"]
    return "\n".join(lines + [""] + [f"- {note}" for note in notes]) + "\n"
