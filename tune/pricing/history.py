"""Past runs as a cost model: how long FINISHED trials and stage-1 runs of the same config took on this
machine, read from the sweep's MLflow store without writing to it (a dry run leaves the store as it was).

A past trial matches a planned one when every logged param is equal except those that change no cost
(the seed, the cache folder); failing that, when the cost-shaping keys are (``SHAPE``: data, stage-2
schedule and size, evaluation, precision); in both cases on the same CPU model and GPU with the same
torch thread count. Its seconds are ``time/total`` when logged, else its MLflow run's duration plus the
part of the trial before the run existed (``RUN_START_S``); the launch of its process comes on top.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ablations.store import tracking_client
from contralord import machine
from contralord.config import as_it_ran
from tune.checks import DB_SCHEMES, database_problem, sqlite_store_problem
from tune.trial import reuse, stage1

IGNORED = ("run.seed", "run.latent_cache", "run.method", "run.extend_from")  # change no cost
SHAPE = ("data.", "encoder.epochs", "encoder.steps", "encoder.rungs", "encoder.batch_size", "encoder.backbone",
         "encoder.model", "encoder.content_head",  # stage 1's classifier trunks join the backbone
         "eval.", "run.eval_size", "run.precision", "run.channels_last", "run.compile", "run.device")
RUN_START_S = 3.0  # from a trial's session start to its MLflow run (time/start, smoke sweep, loaded 2-core box)


def open_store(uri: str):
    """A read-only view of the store at ``uri``, or None when it has nothing to read: a missing or empty
    sqlite file, or a database without MLflow's tables (a new PostgreSQL database), is never created or
    initialised (MLflow would write its schema into it: a dry run on an empty PostgreSQL database wrote 65 tables)."""
    if uri.startswith("sqlite:"):
        path = Path(uri[len("sqlite:///"):])
        if not path.is_file() or path.stat().st_size == 0 or sqlite_store_problem(path):
            return None
    elif urlparse(uri).scheme.split("+")[0] in DB_SCHEMES and database_problem(uri):
        return None
    return tracking_client(uri)


def machine_filter(threads: int) -> str:
    """MLflow filter: runs tagged with this machine's CPU model and GPU and ``threads`` torch threads."""
    here = machine.describe()
    return (f"tags.`machine.cpu` = '{here.cpu}' and tags.`machine.gpu` = '{here.gpu}' "
            f"and tags.`machine.threads` = '{threads}'")


def _same(params: dict[str, str], flat: dict[str, Any], shape_only: bool) -> bool:
    """A run logged before a key existed ran it at its old value (``KEYS_ADDED_WITH_OLD_BEHAVIOUR``)."""
    params = as_it_ran(params, text=True)
    keys = [k for k in flat if k not in IGNORED and (not shape_only or k.startswith(SHAPE))]
    return all(params.get(k) == str(flat[k]) for k in keys)


def _trial_seconds(run) -> float:
    if "time/total" in run.data.metrics:
        return float(run.data.metrics["time/total"])
    return (run.info.end_time - run.info.start_time) / 1000 + RUN_START_S


def past_trials(client, threads: int) -> list:
    """FINISHED trial runs of every ``contralord-*`` experiment on this machine at ``threads`` threads."""
    ids = reuse.sweep_experiments(client)
    if not ids:
        return []
    query = f"tags.role = 'trial' and attributes.status = 'FINISHED' and {machine_filter(threads)}"
    runs = client.search_runs(ids, query, max_results=5000)
    return [r for r in runs if reuse.EXTENDED_TAG not in r.data.tags]  # an extension timed only part of its steps


def trial_seconds(runs: list, flat: dict[str, Any]) -> tuple[float, str] | None:
    """(median seconds, source) of the past trials matching ``flat`` (the trial's resolved flat config)."""
    for shape_only, how in ((False, "same config"), (True, "same shape")):
        seconds = [_trial_seconds(r) for r in runs if _same(r.data.params, flat, shape_only)]
        if seconds:
            return statistics.median(seconds), f"history: {len(seconds)} past run(s), {how}"
    return None


def stage1_seconds(client, flat: dict[str, Any], threads: int) -> float | None:
    """Seconds of the quickest FINISHED stage-1 run of this data and stage-1 config on this machine (the
    quickest: a sweep creates its stage-1 runs at once, so a later one's duration includes its wait)."""
    experiment = client.get_experiment_by_name(stage1.EXPERIMENT)
    if experiment is None:
        return None
    query = f"tags.role = 'stage1' and attributes.status = 'FINISHED' and {machine_filter(threads)}"
    keys = {k: v for k, v in flat.items() if k.startswith(("data.", "latent."))}
    seconds = [(r.info.end_time - r.info.start_time) / 1000
               for r in client.search_runs([experiment.experiment_id], query, max_results=1000)
               if _same(r.data.params, keys, shape_only=False)]
    return min(seconds) if seconds else None
