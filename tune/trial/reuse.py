"""Trial reuse: a planned trial whose numbers an earlier FINISHED trial run already holds is not run again.

A trial's numbers follow from its config, its seed, its data and the core's code, and (in their last digits)
from the machine. The **reuse key** hashes the first four: the full flat config less the keys that change no
number (``NO_NUMBER_KEYS``), the data fingerprint (a seed picks the subset, and files on disk can change) and
the **code version**, a hash of every ``.py`` file under ``contralord/`` (relative path and content; a git
commit would miss uncommitted edits). Every finished trial tags its run ``reuse_key`` and ``code_version``
(``tune/trial/worker.py``, from the code its node ran).

Where the sweep runs on this machine (no ``--address``) only runs tagged with the machine the trial would run
on are reused (``contralord/machine.py``: CPU model, torch build, the trial's thread count, GPU); on a
cluster the trial's machine is not known before it runs, so the table's machine check decides.

A reused trial becomes a nested run under the new sweep's parent, tagged ``reused_from=<the original's id>``,
with the original's params, final metrics and tags: the sweep's table counts it once, and a table over a whole
experiment drops a copy whose original it also reads (``ablations/runs.py``).

**Extending a ladder.** A WSD trial with rungs (``encoder.rungs``) also tags its run ``trunk_key``: the reuse key
less the budget (``LADDER_KEYS``), and logs its stable state (``stable/stable.pt``, ``contralord/run/ladder.py``). A
planned ladder trial no finished run answers, whose trunk key a finished ladder of lower top shares (every planned
rung at or below that top among its rungs), is an **extension**: the trial starts from that run's stable state
with its rung evaluations and trains only the steps above them (``tune/trial/worker.py``: ``run.extend_from``); its
numbers equal a straight run's, so its reuse key is a straight run's too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient

from ablations.runs import REUSED_TAG
from ablations.tables import IGNORED_KEYS
from contralord import machine
from contralord.config import HASH_IGNORED, ContraLordConfig
from contralord.schedules import branch_start, parse_rungs
from tune.trial import stage1
from tune.trial.mlflow_logger import PARENT_TAG, create_run, end_run, log_batch, log_outputs, send_batches

CORE = Path(__file__).resolve().parents[2] / "contralord"
KEY_TAG = "reuse_key"
CODE_TAG = "code_version"
FROM_TAG = REUSED_TAG  # the id of the run whose numbers a copy holds
NO_NUMBER_KEYS = frozenset({*IGNORED_KEYS, *HASH_IGNORED})  # where files go, checkpoint cadence, a memory cap
NOT_COPIED = ("mlflow.", "ray_trial_id")  # tag prefixes that belong to the original run only
TRUNK_TAG = "trunk_key"  # a ladder trial's key less its budget: the runs a longer ladder may extend
EXTENDED_TAG = "extended_from"  # the run whose stable state an extended trial started from
LADDER_KEYS = ("encoder.rungs", "encoder.steps", "encoder.epochs")  # the budget: what an extension changes
CURVES = ("rung/", "encoder/train/")  # metrics a copy keeps with their history, not only the last value
STABLE_ARTIFACT = "stable"  # the artifact folder of a ladder trial's stable state (checkpoints/stable.pt)


@dataclass(frozen=True)
class Planned:
    """One trial of a sweep before it runs: the pair Tune gets and the key of its numbers."""

    variant: str
    seed: int
    key: str
    machine: str = ""  # the machine id a reused run must carry ("" on a cluster: the table's check decides)
    generation: str = ""  # and its CPU generation, where the run carries one (``machine.cpu_generation``)
    trunk: str = ""  # ``trunk_key`` of a ladder trial ("" otherwise)
    rungs: tuple[int, ...] = ()
    decay_fraction: float = 0.2


@dataclass(frozen=True)
class Extension:
    """A finished ladder a planned trial extends: its run, its rungs and the step its stable state is at."""

    run_id: str
    rungs: tuple[int, ...]
    start: int


def code_version(root: Path = CORE) -> str:
    """sha256 (16 hex) over every ``.py`` file under ``root``: its relative path and its bytes."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        name, body = path.relative_to(root).as_posix().encode(), path.read_bytes()
        digest.update(len(name).to_bytes(8, "big") + name + len(body).to_bytes(8, "big") + body)
    return digest.hexdigest()[:16]


def reuse_key(cfg: ContraLordConfig, data_fingerprint: str, code: str, less: tuple[str, ...] = ()) -> str:
    """sha256 (20 hex) of the config's number-changing keys (less ``less``), the data fingerprint and the code
    version."""
    flat = {k: v for k, v in cfg.to_flat_dict().items() if k not in NO_NUMBER_KEYS and k not in less}
    payload = {"config": flat, "data": data_fingerprint, "code": code} | ({"less": sorted(less)} if less else {})
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


def trunk_key(cfg: ContraLordConfig, data_fingerprint: str, code: str) -> str:
    """The key of a ladder trial's trunk (its config less the budget), "" for a trial that is no WSD ladder."""
    if cfg.encoder.schedule != "wsd" or not cfg.encoder.rungs:
        return ""
    return reuse_key(cfg, data_fingerprint, code, less=LADDER_KEYS)


def trial_machine(cfg: ContraLordConfig, cpus_per_worker: float, use_gpu: bool) -> machine.Machine:
    """The machine a trial started here would run on: its thread count is ``run.threads``, else the worker's
    CPUs (``tune/trial/worker.py``); its BLAS threads are the worker's CPUs (Ray sets OMP_NUM_THREADS to them, and
    BLAS reads it when it loads), not this driver's; its GPU is this machine's first one when the trial asks
    for GPUs."""
    import torch

    cpus = max(1, int(cpus_per_worker))
    threads = cfg.run.threads or cpus
    gpu = torch.cuda.get_device_name(0) if use_gpu and torch.cuda.is_available() else "none"
    return dataclasses.replace(machine.describe(), threads=str(threads), gpu=gpu, blas_threads=str(cpus))


def plan_trials(configs: list[dict], overrides_of: Callable[[dict], dict], code: str,
                local: Callable[[ContraLordConfig], machine.Machine] | None) -> list[Planned]:
    """Each Tune config ({"variant", "run.seed", sampled keys}) with its reuse key, and its machine's id when
    ``local`` says where it would run. The data is built once per (data section, seed) for its fingerprint."""
    from contralord.setup import build_data

    prints: dict[tuple[str, int], str] = {}
    planned = []
    for config in configs:
        cfg = ContraLordConfig.from_overrides(overrides_of(config))
        data_id = (json.dumps(dataclasses.asdict(cfg.data), sort_keys=True, default=str), cfg.run.seed)
        if data_id not in prints:
            prints[data_id] = build_data(cfg).fingerprint
        where = local(cfg) if local else None
        planned.append(Planned(config.get("variant", ""), cfg.run.seed, reuse_key(cfg, prints[data_id], code),
                               where.id if where else "", where.cpu_generation if where else "",
                               trunk_key(cfg, prints[data_id], code), parse_rungs(cfg.encoder.rungs),
                               cfg.encoder.decay_fraction))
    return planned


def find_extensions(client: MlflowClient, planned: list[Planned]) -> dict[tuple[str, int], Extension]:
    """(variant, seed) -> the finished ladder each planned ladder trial extends (the highest top among those it
    can), for the trials that have one."""
    experiments = sweep_experiments(client)
    found = {}
    for trial in planned:
        extension = find_extension(client, experiments, trial) if trial.trunk and experiments else None
        if extension is not None:
            found[(trial.variant, trial.seed)] = extension
    return found


def find_extension(client: MlflowClient, experiment_ids: list[str], trial: Planned) -> Extension | None:
    """The finished original ladder run with ``trial``'s trunk key (and machine) of the highest top below the
    trial's that holds every rung the trial has at or below that top, and logged its stable state; else None."""
    query = f"tags.`{TRUNK_TAG}` = '{trial.trunk}' and attributes.status = 'FINISHED' and tags.role = 'trial'"
    if trial.machine:
        query += f" and tags.machine = '{trial.machine}'"
    best = None
    for run in client.search_runs(experiment_ids, query, max_results=200):
        if FROM_TAG in run.data.tags or run.data.tags.get("stopped_early") == "true":
            continue
        if not same_generation(run, trial.generation):
            continue
        try:
            rungs = parse_rungs(run.data.params.get("encoder.rungs", ""))
        except ValueError:
            continue
        extends = rungs and rungs[-1] < trial.rungs[-1] and all(r in rungs for r in trial.rungs if r <= rungs[-1])
        if extends and (best is None or rungs[-1] > best.rungs[-1]) and _has_stable_state(client, run.info.run_id):
            best = Extension(run.info.run_id, rungs, branch_start(rungs[-1], trial.decay_fraction))
    return best


def _has_stable_state(client: MlflowClient, run_id: str) -> bool:
    return any(item.path.endswith(".pt") for item in client.list_artifacts(run_id, STABLE_ARTIFACT))


def split_reused(client: MlflowClient, planned: list[Planned]) -> tuple[list[tuple[Planned, object]], list[Planned]]:
    """(trials an earlier finished run stands for, with that run; trials to run)."""
    experiments = sweep_experiments(client)
    reused, pending = [], []
    for trial in planned:
        earlier = find_earlier(client, experiments, trial.key, trial.machine or None, trial.generation)
        if earlier is None:
            pending.append(trial)
        else:
            reused.append((trial, earlier))
    return reused, pending


def sweep_experiments(client: MlflowClient) -> list[str]:
    """Ids of every experiment where contralord sweeps log trials (not the stage-1 one)."""
    found = client.search_experiments(filter_string="name LIKE 'contralord-%'")
    return [e.experiment_id for e in found if e.name != stage1.EXPERIMENT]


def same_generation(run, generation: str) -> bool:
    """``run`` ran on the CPU generation ``generation``, or one of them is not known (a run from before the tag, a
    machine without /proc/cpuinfo): one machine id can name two generations (``contralord/machine.py``)."""
    theirs = run.data.tags.get(machine.GENERATION_TAG, "")
    return not generation or not theirs or theirs == generation


def find_earlier(client: MlflowClient, experiment_ids: list[str], key: str, machine_id: str | None,
                 generation: str = ""):
    """A finished trial run with ``key`` (on ``machine_id`` when given, and ``generation`` where both are known;
    an original, not a copy), or None. A run stopped early by a scheduler is KILLED, so FINISHED excludes it; its
    tag is checked too."""
    if not experiment_ids:
        return None
    query = f"tags.`{KEY_TAG}` = '{key}' and attributes.status = 'FINISHED' and tags.role = 'trial'"
    if machine_id:
        query += f" and tags.machine = '{machine_id}'"
    runs = client.search_runs(experiment_ids, query, max_results=50, order_by=["attributes.start_time ASC"])
    runs = [r for r in runs if r.data.tags.get("stopped_early") != "true" and same_generation(r, generation)]
    originals = [r for r in runs if FROM_TAG not in r.data.tags]  # a copy only when its original was deleted
    return (originals or runs or [None])[0]


def link_earlier(client: MlflowClient, experiment_id: str, parent: str, earlier) -> str:
    """A FINISHED nested run under ``parent`` standing for ``earlier``: its params, final metrics and tags,
    tagged ``reused_from``, and its logged models as the copy's outputs (the run page lists them; they stay
    in the earlier run's experiment). Return the new run's id."""
    name = earlier.data.tags.get("mlflow.runName", earlier.info.run_id)
    tags = {k: v for k, v in earlier.data.tags.items() if not k.startswith(NOT_COPIED)}
    note = f"Reused: the numbers of run {earlier.info.run_id} (same config, seed, data, code version)."
    tags |= {PARENT_TAG: parent, FROM_TAG: earlier.info.run_id, "mlflow.note.content": note}
    run_id = create_run(client, experiment_id, f"{name}-reused", tags)
    curves = [key for key in earlier.data.metrics if key.startswith(CURVES)]
    log_batch(client, run_id, metrics={k: v for k, v in earlier.data.metrics.items() if k not in curves},
              params=earlier.data.params)
    points = [point for key in curves for point in client.get_metric_history(earlier.info.run_id, key)]
    send_batches(client, run_id, "metrics", points)  # at their steps: the rung tables and the UI's curves read them
    if earlier.outputs and earlier.outputs.model_outputs:
        log_outputs(client, run_id, earlier.outputs.model_outputs)
    end_run(client, run_id, "FINISHED")
    return run_id


def linked_keys(client: MlflowClient, experiment_id: str, parent: str) -> set[str]:
    """Keys already reused under ``parent`` (a resumed sweep links each once)."""
    runs = client.search_runs([experiment_id], f"tags.`{PARENT_TAG}` = '{parent}'", max_results=10000)
    return {r.data.tags.get(KEY_TAG, "") for r in runs if FROM_TAG in r.data.tags} - {""}
