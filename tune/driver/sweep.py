"""Running a planned sweep: Ray, the MLflow parent run, stage 1 once, the Tuner, the table."""

from __future__ import annotations

import dataclasses
import functools
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import ray
from mlflow import MlflowClient
from ray import tune
from ray.tune.search.basic_variant import BasicVariantGenerator

from ablations.runs import AblationError
from ablations.tables import Table
from contralord.config import ContraLordConfig
from tune import rounds, spaces
from tune.checks import DRIVER_CPU, DRIVER_RESOURCE, SweepInterrupted, TrialsFailed, check_storage_shared, is_uri
from tune.driver import publish
from tune.driver.records import ParentRun
from tune.plan import REPO, SweepPlan, git_commit, local_machine, local_work_dir
from tune.pricing.estimate import concurrency
from tune.trial import mlflow_logger as ml
from tune.trial import reuse
from tune.trial.context import SweepContext
from tune.trial.mlflow_logger import (
    find_run,
    get_experiment_id,
    mark_failed_if_running,
    mark_stopped_early,
    open_store_for_writing,
)
from tune.trial.stage1 import ensure_stage1
from tune.trial.worker import run_in_tune_trial, train_fn_per_worker, trial_started

# A Ray this sweep starts on its own machine has a resource of its own for the train path's drivers, so that a
# driver holds no CPU: with 0.01 CPU each, two drivers and two one-CPU workers did not fit 2 CPUs (2.02), and a
# 2-CPU machine trained one such trial at a time. A cluster's head gives --driver-resource the same way.
DRIVER_SLOTS = 1000.0  # 0.01 per driver: 100000 drivers
# A train-path trial waits this many times Ray Train's worker-group start timeout (60 s) for its workers' CPUs, then
# fails naming the cause. Ray Train's default retries for ever: on a 1-CPU cluster a driver's 0.01 CPU and a 1-CPU
# worker never fit, and a trial hung 65 minutes (2026-12-07). 30 minutes leaves an autoscaler time to add a node.
WORKER_GROUP_START_TRIES = 30
KEEP_CHECKPOINTS = 2  # a trial's checkpoints kept (Tune and Train paths): the latest is what a retry resumes


def start_ray(plan: SweepPlan) -> bool:
    """Connect to Ray (a local one by default); True when this call started it (``stop_ray`` ends it)."""
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")])),
           "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0"}
    os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")
    kwargs = {"runtime_env": {"env_vars": env}, "log_to_driver": True}
    started = not ray.is_initialized()  # else a caller (a notebook, a test) already connected
    if started and plan.options.local_ray:
        # Ray starts its workers at nice 15 (its worker_niceness): beside any other work on this machine, stage 1
        # and the trials then got ~5 % of a core (a smoke stage-1 step took 65 s beside two busy processes, not
        # 1 s). A sweep on one's own machine takes its fair share; a cluster keeps Ray's default. address="local":
        # a new Ray even where one runs on this machine already (`ray start`'s file, $RAY_ADDRESS), which Ray would
        # join without it and then refuse these resources with a traceback; --address auto joins that one.
        ray.init(address="local", _system_config={"worker_niceness": 0}, resources={DRIVER_RESOURCE: DRIVER_SLOTS},
                 **kwargs)
    elif started:
        ray.init(address=plan.options.address, **kwargs)
    alive = sum(1 for node in ray.nodes() if node.get("Alive"))
    check_storage_shared(plan.storage, alive, plan.options.shared_fs)
    return started


def stop_ray(started: bool) -> None:
    """Disconnect once no trial runs, when this sweep connected: the trials' last log lines (and a killed
    worker's dump) reach the console before the table or the sweep's last line, not after them."""
    if started and ray.is_initialized():
        ray.shutdown()


def _resources(plan: SweepPlan) -> dict[str, float]:
    res = {"CPU": plan.options.cpus_per_worker}
    if plan.options.gpus_per_worker:
        res["GPU"] = plan.options.gpus_per_worker
    return res


def _stage1_resources(plan: SweepPlan) -> dict[str, float]:
    """Stage 1 runs before any trial: on one machine give it every core (its threads follow)."""
    res = _resources(plan)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) == 1 and not plan.options.gpus_per_worker:
        res["CPU"] = max(res["CPU"], float(nodes[0]["Resources"].get("CPU", 1)))
    return res


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _source_tags(plan: SweepPlan) -> dict[str, str]:
    """MLflow's source/git tags for every run of the sweep; the entry point is the sweep's script."""
    repo = _git("remote", "get-url", "origin") or str(REPO)
    return ml.source_tags(f"tune/sweep_{plan.kind}.py", git_commit(), repo, _git("rev-parse", "--abbrev-ref", "HEAD"))


def _tuner_exists(plan: SweepPlan) -> bool:
    return tune.Tuner.can_restore(f"{plan.storage}/{plan.name}")


def _path(plan: SweepPlan) -> str:
    """``tune`` (the trial is the one worker) or ``train`` (the trial drives a TorchTrainer's worker group)."""
    estimate = getattr(plan, "estimate", None)
    return estimate.path if estimate else _path_without_estimate(plan)


def _concurrency_limit(plan: SweepPlan) -> int:
    """``--max-concurrent``; unset, on this machine under the ``train`` path, as many trials as its CPUs (and GPUs)
    hold. A driver's placement is tiny and its workers claim their CPUs only when they start, so Tune would start
    every trial's driver at once, each waiting for its workers and timing out every minute (with 0.01 CPU per
    driver their fractions also left the last worker a CPU short: a resumed sweep with 3 drivers on 2 CPUs
    trained one trial at a time). On a cluster the drivers may wait for the autoscaler: no limit there."""
    options = plan.options
    if options.max_concurrent:
        return options.max_concurrent
    if not options.local_ray or _path(plan) != "train":
        return 0
    held = ray.cluster_resources()
    return concurrency(held.get("CPU", 1.0), options.workers_per_trial * options.cpus_per_worker,
                       held.get("GPU", 0.0), options.workers_per_trial * options.gpus_per_worker)


def _trainable(plan: SweepPlan, ctx: SweepContext):
    if _path(plan) == "tune":
        return tune.with_resources(tune.with_parameters(run_in_tune_trial, ctx=ctx), _resources(plan))
    driver = tune.with_parameters(train_driver_fn, ctx=ctx, plan_storage=plan.storage)
    return tune.with_resources(driver, driver_placement(plan))


def driver_placement(plan: SweepPlan) -> dict[str, float]:
    """A train-path driver's resources: none of the CPUs its workers need where a resource of its own exists
    (``--driver-resource``, or the one a local Ray this sweep started has), else 0.01 CPU."""
    own = plan.options.driver_resource or (DRIVER_RESOURCE if ray.cluster_resources().get(DRIVER_RESOURCE) else "")
    return {"CPU": 0.0, own: DRIVER_CPU} if own else {"CPU": DRIVER_CPU}


def _path_without_estimate(plan: SweepPlan) -> str:
    """The trainer path when no estimate could be made: the one ``--trainer`` forces, else by worker count."""
    forced = plan.options.trainer
    return forced if forced in ("train", "tune") else ("tune" if plan.options.workers_per_trial == 1 else "train")


def train_driver_fn(config: dict, ctx: SweepContext, plan_storage: str) -> None:
    """A Tune trial that drives a Ray Train ``TorchTrainer`` (several workers, DDP)."""
    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    context = tune.get_context()
    trial_id, trial_name = context.get_trial_id(), context.get_trial_name()
    scaling = ray.train.ScalingConfig(num_workers=ctx.workers, use_gpu=ctx.use_gpu,
                                      resources_per_worker={"CPU": ctx.cpus_per_worker})
    run_config = train_run_config(ctx, plan_storage, trial_id, [TuneReportCallback()])
    loop = {"ctx": ctx, "config": config, "trial_id": trial_id, "trial_name": trial_name,
            "trial_started": trial_started()}
    TorchTrainer(train_fn_per_worker, train_loop_config=loop, scaling_config=scaling, run_config=run_config).fit()


def train_run_config(ctx: SweepContext, plan_storage: str, trial_id: str, callbacks: list) -> ray.train.RunConfig:
    """A train-path trial's RunConfig: ``--max-failures`` retries of a failed worker group, and a worker group that
    cannot start (no node holds its CPUs) given up after ``WORKER_GROUP_START_TRIES`` minutes."""
    failure = ray.train.FailureConfig(max_failures=ctx.max_failures, controller_failure_limit=WORKER_GROUP_START_TRIES)
    return ray.train.RunConfig(name=f"train-{trial_id}", storage_path=plan_storage, callbacks=callbacks,
                               failure_config=failure,
                               checkpoint_config=ray.train.CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS))


def placement_warning(plan: SweepPlan, cluster_cpus: float) -> str:
    """One line when a train-path trial on a joined cluster needs more CPUs than the cluster has now: its workers'
    and, without a resource of its own, its driver's 0.01. ("" when it fits, off a cluster, or on the tune path.)"""
    options = plan.options
    if options.local_ray or _path(plan) != "train":
        return ""
    driver = driver_placement(plan).get("CPU", 0.0)
    need = options.workers_per_trial * options.cpus_per_worker + driver
    if cluster_cpus + 1e-9 >= need:
        return ""
    fix = ("--trainer tune (the trial is its one worker)" if options.workers_per_trial == 1 else
           "fewer --workers-per-trial or --cpus-per-worker")
    return (f"--address: the cluster has {cluster_cpus:g} CPU(s) now and a trial needs {need:g} "
            f"({options.workers_per_trial} worker(s) x {options.cpus_per_worker:g} CPU + its driver's {driver:g}): "
            f"each trial waits up to {WORKER_GROUP_START_TRIES} min for more nodes (an autoscaler), then fails; on a "
            f"fixed cluster pass {fix} or --driver-resource")


def _log_cost(plan: SweepPlan, client: MlflowClient, parent: str) -> None:
    """Estimate the sweep (before stage 1), choose the trainer path, say both and log them on the parent run."""
    from tune.pricing.cost import estimate_sweep, reused_runs

    first = ParentRun(client, parent).logged_estimate() if plan.options.resume else None
    if first is not None:  # --resume: the sweep's estimate is its first attempt's (timing it again costs ~10 s)
        plan.estimate = first
        least = "at least " if first.unpriced else ""
        print(f"trainer path: {first.path} (the first attempt's: {first.why})\nestimate: the first attempt's, "
              f"{least}~{first.wall_s:.0f} s wall for the whole sweep (not timed again)", flush=True)
        return
    records = ParentRun(client, parent)
    try:
        plan.estimate = est = estimate_sweep(plan, client, reused_runs(plan))
    except Exception as error:  # an estimate is advice: its failure must not cost the sweep itself
        line = f"{type(error).__name__}: {error}".splitlines()[0][:300]
        print(f"estimate: not made ({line}); the sweep goes on, trainer path "
              f"{_path_without_estimate(plan)}", flush=True)
        records.estimate_failed(line)
        return
    parts = " + ".join(f"{k} {v:.0f} s" for k, v in est.parts.items())
    least = f"at least ~{est.wall_s:.0f} s wall ({est.unpriced} not priced: --no-calibrate)" if est.unpriced else (
        f"~{est.wall_s:.0f} s wall")
    print(f"trainer path: {est.path} ({est.why})\nestimate: {least} = {parts}", flush=True)
    from tune.pricing.cost import describe_calibrations, describe_later

    for line in ([describe_later(est.later)] if est.later else []) + describe_calibrations(est):
        print(line, flush=True)
    records.log_estimate(est)


def _log_actual(plan: SweepPlan, records: ParentRun) -> None:
    """At the end: the actual wall time (``actual/wall_s``) beside the estimate."""
    actual = time.time() - plan.started
    records.log_seconds("actual/wall_s", actual)
    least = "at least " if plan.estimate and plan.estimate.unpriced else ""
    estimated = f"estimated {least}{plan.estimate.wall_s:.0f} s" if plan.estimate else "no estimate"
    print(f"wall time: {actual:.0f} s, {estimated}", flush=True)


def _tuner(plan: SweepPlan, ctx: SweepContext, name: str, k: int, pairs: list[tuple[str, int]] | None,
           rungs: str = ""):
    """Round ``k``'s Tuner (stored as ``name``) over ``pairs`` (None: the Optuna search; ``rungs``: the ladder they
    train when it climbed), or the one a first attempt left there (``--resume``)."""
    trainable = _trainable(plan, ctx)
    path = f"{plan.storage}/{name}"
    if plan.options.resume and tune.Tuner.can_restore(path):
        return tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=True)
    # --resume of a sweep stopped before this Tuner saved any state (a later round, or round 0 killed in stage 1;
    # tune/driver/run.py checked that the sweep's parent run exists): the round starts its Tuner now
    tune_config, space = _search(plan, pairs, rungs)
    # a trial resumes from its latest checkpoint only (a ladder's stable state is an MLflow artifact): without a
    # limit Tune keeps one per epoch, 4.6 GB for a 6400-step cpu-preset trial
    run_config = tune.RunConfig(name=name, storage_path=plan.storage, verbose=1,
                                failure_config=tune.FailureConfig(max_failures=plan.options.max_failures),
                                checkpoint_config=tune.CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS))
    return tune.Tuner(trainable, param_space=space, tune_config=tune_config, run_config=run_config)


def _search(plan: SweepPlan, pairs: list[tuple[str, int]] | None, rungs: str = "") -> tuple[tune.TuneConfig, dict]:
    limit = _concurrency_limit(plan)
    if plan.kind != "optuna":  # exactly these (variant, seed) pairs: a grid would run their product
        points = _configs(pairs, rungs)
        space = {"variant": tune.choice(sorted({v for v, _ in pairs})),
                 "run.seed": tune.choice(sorted({s for _, s in pairs}))}  # presets must lie in the space
        space |= {"encoder.rungs": tune.choice([rungs])} if rungs else {}
        # Tune limits a Searcher through max_concurrent_trials, but not this generator: it takes its own limit
        generator = BasicVariantGenerator(points_to_evaluate=points, max_concurrent=limit)
        return tune.TuneConfig(search_alg=generator, num_samples=len(points)), space
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    options = plan.options
    define = functools.partial(spaces.optuna_space, preset=options.preset)
    searcher = OptunaSearch(space=define, metric=options.metric, mode=options.mode, seed=0)
    epochs = float(plan.base.get("encoder.epochs", 200))
    # max_t past the last epoch: ASHA stops at max_t, which would cut the trial's evaluation off
    asha = ASHAScheduler(time_attr="epoch", max_t=epochs + 1, grace_period=max(1.0, epochs // 4), reduction_factor=2)
    config = tune.TuneConfig(metric=options.metric, mode=options.mode, search_alg=searcher, scheduler=asha,
                             num_samples=options.num_samples, max_concurrent_trials=limit)
    return config, {}


@dataclass
class _Sweep:
    """A running sweep: what each round needs, and what the rounds have done so far."""

    plan: SweepPlan
    client: MlflowClient
    records: ParentRun  # the parent run's writer
    ctx: SweepContext
    code: str  # contralord/'s code version (tune/trial/reuse.py)
    local: Callable | None  # config -> the machine a trial would run on (None on a cluster)
    seeds: dict[str, int] = field(default_factory=dict)  # variant -> seeds planned so far
    trained: int = 0  # trials Tune ran
    reused: int = 0  # trials linked to earlier runs
    rungs: str = ""  # the ladder every trial now trains (encoder.rungs) once --max-rung climbed it; "" as planned
    failed: list[str] = field(default_factory=list)  # the error files of trials that ended in error

    @property
    def parent(self) -> str:
        return self.ctx.parent_run_id


def run_sweep(plan: SweepPlan) -> Table | None:
    """Run the sweep end to end; return its table (None when no trial finished)."""
    register = publish.register_target(plan)
    started = start_ray(plan)
    sweep = _start(plan)
    warning = placement_warning(plan, ray.cluster_resources().get("CPU", 0.0))  # after _start: it chose the path
    if warning:
        print(f"warning: {warning}", flush=True)
    try:
        _run_round(sweep, [(name, s) for name, _ in plan.variants for s in plan.seeds], 0)
        if plan.options.until_decided:
            sweep.records.log_seconds("actual/first_round_s", time.time() - plan.started)
            _until_decided(sweep)
    except BaseException:
        sweep.records.kill()
        stop_ray(started)
        raise
    stop_ray(started)
    sweep.records.log_counts(sweep.trained, sweep.reused)
    table = publish.publish(plan, sweep.client, sweep.records)
    if register and table is not None:
        publish.register_best(plan, sweep.client, sweep.ctx.experiment_id, sweep.records, *register)
    _log_actual(plan, sweep.records)
    failure = _failure(sweep, table)
    sweep.records.fail(failure) if failure else sweep.records.finish()
    print(f"MLflow UI: {ml.ui_link(plan.tracking_uri, sweep.ctx.experiment_id)}", flush=True)
    if failure:
        raise TrialsFailed(failure)
    return table


def _failure(sweep: _Sweep, table: Table | None) -> str:
    """Why the sweep did not fully succeed, in one line ('' when it did): the trials that ended in error, with
    their error files, and whether a table could be built from the others."""
    if not sweep.failed:
        return "" if table is not None else "no table could be built from the sweep's runs"
    shown = ", ".join(sweep.failed[:3]) + (f" and {len(sweep.failed) - 3} more" if len(sweep.failed) > 3 else "")
    kept = (f"the table holds the {sum(row.n for row in table.rows)} trials that finished" if table is not None
            else "no table could be built")
    count = f"{len(sweep.failed)} trial{'s' if len(sweep.failed) > 1 else ''}"
    return f"{count} ended in error (error files: {shown}); {kept}"


def _start(plan: SweepPlan) -> _Sweep:
    """The parent run, the sweep's context (stage-1 runs come per round) and how trials are matched."""
    client = open_store_for_writing(plan.tracking_uri)
    experiment_id = get_experiment_id(client, f"contralord-{plan.kind}")
    run_tags = _source_tags(plan)
    records = ParentRun.open(plan, client, experiment_id, run_tags, lambda: _tuner_exists(plan))
    parent = records.run_id
    _log_cost(plan, client, parent)
    # local storage: one shared cache; cloud storage: a node-local cache filled from MLflow's artifact store
    cache = f"{plan.storage}/latent_cache" if not is_uri(plan.storage) else local_work_dir(plan.storage, "latent")
    ctx = SweepContext(plan.kind, plan.base, dict(plan.variants), plan.storage, cache,
                       local_work_dir(plan.storage, plan.name), plan.tracking_uri, experiment_id, parent,
                       {}, plan.options.workers_per_trial, plan.options.gpus_per_worker > 0,
                       plan.options.cpus_per_worker, plan.options.max_failures, git_commit(), run_tags)
    local = local_machine(plan.options)
    code = reuse.code_version()
    records.log_code_version(reuse.CODE_TAG, code)
    if not plan.options.no_reuse and plan.kind != "optuna":
        where = ("runs of this machine only" if local else
                 "runs of any machine (on a cluster the table's machine check decides whether they pool)")
        print(f"reuse: finished trial runs with the same config, seed, data and code {code} ({where}); "
              f"--no-reuse runs every trial", flush=True)
    return _Sweep(plan, client, records, ctx, code, local)


def _run_round(sweep: _Sweep, pairs: list[tuple[str, int]], k: int, climbing: bool = False) -> None:
    """Link the trials earlier runs stand for, train stage 1 for the rest, run them in one Tuner (``climbing``:
    the pairs are trials already counted, now on a higher ladder)."""
    plan = sweep.plan
    name = plan.name if k == 0 else f"{plan.name}-round{k}"
    restored = plan.options.resume and tune.Tuner.can_restore(f"{plan.storage}/{name}")
    for variant, _ in [] if climbing else pairs:
        sweep.seeds[variant] = sweep.seeds.get(variant, 0) + 1
    pending = _link_reused(sweep, pairs, restored) if plan.kind != "optuna" else None
    if pending == [] and not restored:
        print(f"{name}: every trial reused; Tune starts no trial", flush=True)
        return
    seeds = sorted({s for _, s in pending}) if pending is not None else plan.seeds
    _ensure_stage1(sweep, seeds)
    results = _fit(sweep, _tuner(plan, sweep.ctx, name, k, pending, sweep.rungs))
    sweep.trained += len(results)


def _link_reused(sweep: _Sweep, pairs: list[tuple[str, int]], restored: bool) -> list[tuple[str, int]]:
    """Nested runs under the parent for the trials an earlier finished run stands for; return the others."""
    client, parent = sweep.client, sweep.parent
    if sweep.plan.options.no_reuse:
        return pairs
    planned = reuse.plan_trials(_configs(pairs, sweep.rungs), sweep.ctx.trial_overrides, sweep.code, sweep.local)
    linked = reuse.linked_keys(client, sweep.ctx.experiment_id, parent)  # by a first attempt (--resume)
    sweep.reused += sum(1 for t in planned if t.key in linked)
    rest = [t for t in planned if t.key not in linked]
    if restored:  # the restored Tuner holds the trials the first attempt did not link
        _plan_extensions(sweep, rest)
        return [(t.variant, t.seed) for t in rest]
    reused, pending = reuse.split_reused(client, rest)
    for trial, earlier in reused:
        reuse.link_earlier(client, sweep.ctx.experiment_id, parent, earlier)
        print(f"reuse: {trial.variant} seed {trial.seed} = run {earlier.info.run_id} "
              f"({earlier.data.tags.get('mlflow.runName', '')}); not run again", flush=True)
    sweep.reused += len(reused)
    _plan_extensions(sweep, pending)
    return [(t.variant, t.seed) for t in pending]


def _plan_extensions(sweep: _Sweep, pending: list[reuse.Planned]) -> None:
    """The ladder trials of ``pending`` that extend a finished ladder (tune/trial/reuse.py), into the trials'
    context."""
    found = reuse.find_extensions(sweep.client, pending)
    for (variant, seed), extension in found.items():
        top = next(t.rungs[-1] for t in pending if (t.variant, t.seed) == (variant, seed))
        print(f"extend: {variant} seed {seed} starts from run {extension.run_id} (rungs "
              f"{','.join(map(str, extension.rungs))}) at step {extension.start}; trains steps {extension.start}-{top}",
              flush=True)
    extensions = {f"{variant}/{seed}": e.run_id for (variant, seed), e in found.items()}
    sweep.ctx = dataclasses.replace(sweep.ctx, extensions=sweep.ctx.extensions | extensions)


def _configs(pairs: list[tuple[str, int]], rungs: str = "") -> list[dict]:
    """Tune's config of each (variant, seed): sampled keys are config overrides (``encoder.rungs`` once climbed)."""
    return [{"variant": variant, "run.seed": seed} | ({"encoder.rungs": rungs} if rungs else {})
            for variant, seed in pairs]


def _ensure_stage1(sweep: _Sweep, seeds: list[int]) -> None:
    """Stage 1 of the seeds this round trains (a seed whose trials are all reused needs none)."""
    plan = sweep.plan
    per_seed = {s: plan.base | {"run.seed": s, "run.latent_cache": sweep.ctx.latent_cache} for s in seeds}
    runs = ensure_stage1(per_seed, sweep.ctx.latent_cache, plan.tracking_uri, _stage1_resources(plan),
                         sweep.ctx.run_tags, named=lambda named: sweep.records.log_stage1_runs(
                             sweep.ctx.stage1_runs | named))  # before training: a killed sweep names its runs
    sweep.ctx = dataclasses.replace(sweep.ctx, stage1_runs=sweep.ctx.stage1_runs | runs)


def _fit(sweep: _Sweep, tuner: tune.Tuner):
    """Run one Tuner; an interrupted one leaves its state for ``--resume``."""
    before = signal.getsignal(signal.SIGINT)
    results = tuner.fit()
    interrupted = (results.num_terminated + results.num_errors < len(results)  # state saved by Tune
                   or _tune_caught_a_stop_signal(before))
    _close_trial_runs(results, sweep.client, sweep.ctx.experiment_id, interrupted)
    if interrupted:
        done = sum(r.error is None and "encoder/final/total" in (r.metrics or {}) for r in results)
        raise SweepInterrupted(f"interrupted: {done} of {len(results)} trials of this round finished")
    sweep.failed += [f"{result.path}/error.txt" for result in results if result.error is not None]
    return results


def _tune_caught_a_stop_signal(before) -> bool:
    """Ray Tune (2.60, ``tune.py: _setup_signal_catching``) puts its own SIGINT handler in place for a run and
    the previous one back only once a stop signal arrived, so ``before`` in place again means a Ctrl-C. (Its
    trials then count as terminated: the unstarted ones error on their missing metrics, and a count alone
    took the sweep for finished, exit 0.)"""
    tune_installs = threading.current_thread() is threading.main_thread() and os.environ.get(
        "TUNE_DISABLE_SIGINT_HANDLER", "0") in ("", "0")
    return tune_installs and signal.getsignal(signal.SIGINT) is before


def _until_decided(sweep: _Sweep) -> None:
    """Rounds of one more seed for the rows whose verdict is open (``tune/rounds.py``)."""
    plan = sweep.plan

    def table() -> Table | None:
        try:
            return publish.sweep_table(plan, sweep.client, sweep.parent)
        except AblationError as error:
            print(f"until-decided: no table ({error})", flush=True)
            return None

    rows = publish.variant_of_row(plan, publish.spec_of(plan))
    climber = _Climber(sweep, rows) if plan.options.max_rung else None
    run = functools.partial(_counted_round, sweep)
    rounds.until_decided(sweep.records, plan.options, sweep.seeds, rows, table, run, climber)
    rounds.log_cost(sweep.records, sweep.seeds, sweep.trained, sweep.reused, plan.options.max_seeds)


def _counted_round(sweep: _Sweep, pairs: list[tuple[str, int]], k: int, climbing: bool = False) -> tuple[int, int]:
    """``_run_round``, returning how many trials it reused and how many it trained."""
    before = (sweep.reused, sweep.trained)
    _run_round(sweep, pairs, k, climbing)
    return sweep.reused - before[0], sweep.trained - before[1]


@dataclass
class _Climber:
    """``--max-rung``: whether open rows still move at the sweep's top rung, and the round that climbs a rung."""

    sweep: _Sweep
    variant_of_row: dict[tuple, str]

    def moving(self, open_variants: set[str]) -> dict[str, str]:
        """{variant: how it moved} of the open variants whose row is not converged at the top rung
        (``ablations/ladder.py``: D or content_corr_min moved by more than its threshold from the rung before)."""
        from ablations.ladder import THRESHOLD, build_ladder
        from ablations.render import row_label
        from ablations.runs import from_sweep_run

        sweep = self.sweep
        source = from_sweep_run(sweep.client, sweep.parent)
        try:
            ladder = build_ladder(sweep.client, source.runs, publish.spec_of(sweep.plan), source.description)
        except AblationError as error:
            print(f"until-decided: no ladder ({error}); no rung climbed", flush=True)
            return {}
        top, moving = ladder.rungs[-1], {}
        for row in ladder.tables[top].rows:
            variant = self.variant_of_row.get(row.key)
            change = ladder.movement.get(row_label(ladder.tables[top], row), {}).get(top)
            if variant in open_variants and (change is None or change > THRESHOLD):
                moving[variant] = (f"moved {change:.3f} > {THRESHOLD} from the rung before {top}"
                                   if change is not None else f"no rung before {top} in every seed")
        return moving

    def next_rungs(self) -> str:
        """The ladder one rung higher ("" when its top is ``--max-rung``)."""
        plan = self.sweep.plan
        current = self.sweep.rungs or ContraLordConfig.from_overrides(plan.base | plan.variants[0][1]).encoder.rungs
        return rounds.next_ladder(current, plan.options.max_rung)

    def climb(self, ladder: str, k: int) -> tuple[int, int]:
        """Round ``k`` puts every trial so far on ``ladder`` (each extends its finished run); (reused, trained)."""
        sweep = self.sweep
        sweep.rungs = ladder
        pairs = [(variant, s) for variant, count in sweep.seeds.items() for s in range(count)]
        return _counted_round(sweep, pairs, k, climbing=True)


def _close_trial_runs(results, client: MlflowClient, experiment_id: str, interrupted: bool) -> None:
    """An errored trial's run is FAILED; in a sweep that ran to its end, a trial a scheduler (ASHA) stopped
    before its evaluation is KILLED with tag ``stopped_early=true``, so tables count it instead of averaging
    it. An interrupted sweep leaves its unfinished trials RUNNING for ``--resume`` to continue."""
    for result in results:
        trial_id = (result.metrics or {}).get("trial_id")
        finished = result.error is None and "encoder/final/total" in (result.metrics or {})
        run_id = find_run(client, experiment_id, {"ray_trial_id": trial_id}) if trial_id and not finished else None
        if run_id is None:
            continue
        if result.error is not None:
            mark_failed_if_running(client, run_id)
        elif not interrupted and client.get_run(run_id).info.status == "RUNNING":
            mark_stopped_early(client, run_id)
