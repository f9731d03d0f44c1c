"""Reading trial runs out of MLflow: the children of one sweep's parent run, or every trial of an experiment.

Each run is classified once: ``finished`` (FINISHED, not stopped early), ``failed`` (FAILED),
``early_stopped`` (tag ``stopped_early=true``, set by the sweep when a scheduler such as ASHA stopped it) or
``unfinished`` (RUNNING, SCHEDULED or KILLED). Only finished runs are averaged; the others are counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from ablations import store
from ablations.specs import ROUNDS_ARTIFACT  # noqa: F401  (cost_report reads it through here)
from contralord.config import KEYS_ADDED_WITH_OLD_BEHAVIOUR, as_it_ran
from contralord.run.file_checks import unwritable_reason

PARENT_TAG = "mlflow.parentRunId"
REUSED_TAG = "reused_from"  # a trial a sweep did not run again: the id of the run whose numbers it copies

NOT_TRIALS = ("sweep", "stage1")  # values of the ``role`` tag that are not trials
STATUS_OF = {"FINISHED": "finished", "FAILED": "failed", "RUNNING": "unfinished", "SCHEDULED": "unfinished",
             "KILLED": "unfinished"}


class AblationError(ValueError):
    """Bad input to a table; the message is one line naming the flag or run and what was expected."""


@dataclass(frozen=True)
class TrialRun:
    run_id: str
    status: str  # finished | failed | early_stopped | unfinished
    params: dict[str, str]
    metrics: dict[str, float]
    seed: str
    start_time: int
    tags: dict[str, str]


@dataclass(frozen=True)
class RunSource:
    runs: list[TrialRun]
    description: str  # "sweep run <id> (experiment <name>)" or "experiment <name>"
    sweep_kind: str  # "" when unknown


def check_readable(uri: str) -> None:
    """The store must already exist as an MLflow store of this MLflow's schema, and opening it must write
    nothing (``ablations/store.py``): MLflow would create a missing sqlite file, migrate an older or foreign
    database in place, and recreate a missing Default experiment."""
    problem = store.uri_problem(uri)  # a URI that does not parse, or a bad port, before any driver or connection
    if problem:
        raise AblationError(f"--tracking-uri: {problem}")
    scheme, shown = urlparse(uri).scheme, store.without_password(uri)
    if scheme == "sqlite":
        path = Path(uri[len("sqlite:///"):])
        if not path.is_file():
            raise AblationError(f"--tracking-uri: no MLflow database at {path} (from {uri})")
        problem = store.sqlite_store_problem(path, reading=True)
    elif scheme in ("", "file"):
        path = Path(urlparse(uri).path if scheme else uri)
        if not path.is_dir():
            raise AblationError(f"--tracking-uri: no MLflow file store at {path}")
        if not any(path.glob("*/meta.yaml")):  # MLflow would create its layout in any other folder
            raise AblationError(f"--tracking-uri: {path} is not an MLflow file store (no <experiment>/meta.yaml); "
                                f"left untouched")
        problem = ""
    elif scheme in ("http", "https"):
        problem = store.server_problem(uri)
    elif scheme.split("+")[0] not in store.DB_SCHEMES:
        raise AblationError(f"--tracking-uri: expected sqlite:///path.db, a folder, http(s)://host:port or a "
                            f"database URI ({', '.join(store.DB_SCHEMES)}), got {shown!r}")
    else:
        problem = store.database_problem(uri, reading=True)
    if problem:
        raise AblationError(f"--tracking-uri: {problem}")


def classify(status: str, tags: dict[str, str]) -> str:
    if status == "KILLED" and tags.get("stopped_early") == "true":
        return "early_stopped"
    return STATUS_OF.get(status, "unfinished")


def seed_order(seed: str) -> tuple[int, int, str]:
    """Sort key for seeds as MLflow stores them (strings): numbers by value (2 before 10), then any other name."""
    return (0, int(seed), "") if str(seed).isdigit() else (1, 0, str(seed))


def trial_run(run) -> TrialRun:
    params, tags = dict(run.data.params), dict(run.data.tags)
    params = as_it_ran(params, text=True)
    if params.get("encoder.backbone", "lord") == "lord":  # no BatchNorm: its split changes nothing, as it ran before
        params["encoder.bn_splits"] = str(KEYS_ADDED_WITH_OLD_BEHAVIOUR["encoder.bn_splits"])
    seed = params.get("run.seed", tags.get("seed", ""))
    return TrialRun(run.info.run_id, classify(run.info.status, tags), params, dict(run.data.metrics), seed,
                    run.info.start_time or 0, tags)


def search_all(client: MlflowClient, experiment_id: str, filter_string: str = "") -> list:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def from_sweep_run(client: MlflowClient, run_id: str) -> RunSource:
    """The trials nested under one sweep's parent run."""
    try:
        parent = client.get_run(run_id)
    except MlflowException:
        raise AblationError(f"--sweep-run: no run {run_id!r} in the tracking store") from None
    experiment = client.get_experiment(parent.info.experiment_id)
    children = search_all(client, parent.info.experiment_id, f"tags.`{PARENT_TAG}` = '{run_id}'")
    if not children:
        raise AblationError(f"--sweep-run: run {run_id} has no nested trial runs (is it a sweep's parent run?)")
    kind = parent.data.params.get("sweep.kind", "")
    trials, climbed = top_ladder([trial_run(r) for r in children])
    note = f"; {climbed} run(s) of its shorter ladders left to --rungs" if climbed else ""
    return RunSource(trials, f"sweep run {run_id} (experiment {experiment.name}{note})", kind)


def from_sweep_runs(client: MlflowClient, run_ids: list[str]) -> RunSource:
    """The trials of several sweeps read as one (``--sweep-run A,B,C``: a budget ladder run as separate sweeps of
    one kind, e.g. 160, 640 and 2560 steps); refused when the sweeps are of different kinds."""
    sources = [from_sweep_run(client, run_id) for run_id in dict.fromkeys(run_ids)]
    kinds = {source.sweep_kind for source in sources}
    if len(kinds) > 1:
        raise AblationError(f"--sweep-run: the sweeps are of different kinds ({', '.join(sorted(kinds))}); give "
                            f"sweeps of one table")
    runs = [run for source in sources for run in source.runs]
    ids = {run.run_id for run in runs}  # a copy one sweep reused from another listed sweep: counted once
    runs = [run for run in runs if run.tags.get(REUSED_TAG) not in ids]
    return RunSource(runs, "; ".join(source.description for source in sources), kinds.pop())


def top_ladder(runs: list[TrialRun]) -> tuple[list[TrialRun], int]:
    """The runs of a sweep whose ladder climbed (``--until-decided --max-rung``: its rows' trials were extended to
    a higher top rung): each run with rungs at the highest top, every run without; and how many were left out. The
    lower tops' evaluations stay in the extended runs' rung histories (``make_tables.py --rungs``)."""
    tops = {run.run_id: _top_rung(run.params.get("encoder.rungs", "")) for run in runs}
    highest = max(tops.values(), default=0)
    kept = [run for run in runs if tops[run.run_id] in (0, highest)]
    return kept, len(runs) - len(kept)


def _top_rung(text: str) -> int:
    """The top of ``encoder.rungs`` (0: no ladder, or a value that is none). Not ``contralord.schedules.
    parse_rungs``: that module loads torch, which the table commands otherwise never import."""
    try:
        return max((int(part) for part in text.split(",") if part.strip()), default=0)
    except ValueError:
        return 0


def latest_sweep_run(client: MlflowClient, name: str, flag: str = "--experiment") -> str:
    """The newest sweep parent run of an experiment (``--sweep-run latest``); ``flag`` is what named it."""
    experiment = _experiment(client, name, flag)
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.role = 'sweep'", max_results=1,
                              order_by=["attributes.start_time DESC"])
    if not runs:
        raise AblationError(f"--sweep-run latest: experiment {name!r} has no sweep runs")
    return runs[0].info.run_id


def _experiment(client: MlflowClient, name: str, flag: str = "--experiment"):
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        names = sorted(e.name for e in client.search_experiments())
        hint = ""
        if flag.startswith("--spec"):  # the user named a table, not the experiment: say where its runs come from
            sweep = f"tune/sweep_{name.removeprefix('contralord-')}.py"
            hint = (f"; {flag} reads the runs {sweep} logs there: pass the --tracking-uri of the store that sweep "
                    f"logged to, or run it with this one first")
        raise AblationError(f"{flag}: no experiment {name!r} in the tracking store "
                            f"(it has: {', '.join(names) or 'none'}){hint}")
    return experiment


def drop_reused_copies(runs: list) -> list:
    """Leave out a reused trial's copy (tag ``reused_from``, made by a sweep that reused a finished run) when
    its original is among ``runs``: one trial, one sample. A copy whose original lives elsewhere stays."""
    ids = {r.info.run_id for r in runs}
    return [r for r in runs if r.data.tags.get(REUSED_TAG) not in ids]


def from_experiment(client: MlflowClient, name: str, flag: str = "--experiment") -> RunSource:
    """Every trial run of an experiment, across all the sweeps logged there (``flag``: what named it)."""
    experiment = _experiment(client, name, flag)
    runs = [r for r in search_all(client, experiment.experiment_id) if r.data.tags.get("role") not in NOT_TRIALS]
    runs = drop_reused_copies(runs)
    kind = name.removeprefix("contralord-") if name.startswith("contralord-") else ""
    return RunSource([trial_run(r) for r in runs], f"experiment {name}", kind)


def out_folder(out: str) -> Path:
    """``--out`` as the real folder (symlinks resolved), checked before any store is read: its nearest existing
    part is a folder this user may write in (it need not exist yet), else a one-line AblationError."""
    folder = Path(out).resolve()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise AblationError(f"--out: cannot write there ({existing} is a file, expected a folder)")
    problem = unwritable_reason(existing)
    if problem:
        raise AblationError(f"--out: cannot write in {existing} ({problem})")
    return folder
