"""Running a planned sweep: Ray, the MLflow parent run, stage 1 once, the Tuner, the table."""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

import ray
from mlflow import MlflowClient
from ray import tune

from ablations import render, specs
from ablations.runs import AblationError, from_sweep_run
from ablations.tables import Table, build_table, parse_value
from contralord.config import ContraLordConfig
from tune import mlflow_logger as ml
from tune import spaces
from tune.checks import SweepError, check_storage_shared, is_uri
from tune.context import SweepContext
from tune.mlflow_logger import find_run, get_experiment_id, mark_failed_if_running, mark_stopped_early
from tune.run import REPO, SweepPlan, git_commit, local_work_dir
from tune.stage1 import ensure_stage1
from tune.worker import run_in_tune_trial, train_fn_per_worker, trial_started


def start_ray(plan: SweepPlan) -> None:
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")])),
           "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0"}
    os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")
    kwargs = {"runtime_env": {"env_vars": env}, "log_to_driver": True}
    if ray.is_initialized():  # a caller (a notebook, a test) already connected
        pass
    elif plan.args.address in (None, "", "local"):
        ray.init(**kwargs)
    else:
        ray.init(address=plan.args.address, **kwargs)
    alive = sum(1 for node in ray.nodes() if node.get("Alive"))
    check_storage_shared(plan.storage, alive, plan.args.shared_fs)


def _resources(plan: SweepPlan) -> dict[str, float]:
    res = {"CPU": plan.args.cpus_per_worker}
    if plan.args.gpus_per_worker:
        res["GPU"] = plan.args.gpus_per_worker
    return res


def _stage1_resources(plan: SweepPlan) -> dict[str, float]:
    """Stage 1 runs before any trial: on one machine give it every core (its threads follow)."""
    res = _resources(plan)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) == 1 and not plan.args.gpus_per_worker:
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


def _register_target(plan: SweepPlan) -> tuple[str, str] | None:
    """``--register-best METRIC[:max|min]`` as (metric, mode); checked before Ray starts."""
    spec = getattr(plan.args, "register_best", None)
    if not spec:
        return None
    metric, _, mode = spec.partition(":")
    if mode not in ("", "max", "min") or not metric:
        raise SweepError(f"--register-best: expected METRIC or METRIC:max or METRIC:min, got {spec!r}")
    return metric, mode or "max"


def _parent_run(plan: SweepPlan, client: MlflowClient, experiment_id: str, tags: dict[str, str]) -> str:
    sweep_path = f"{plan.storage}/{plan.name}"
    key = {"sweep_path": sweep_path, "role": "sweep"}
    if plan.args.resume:
        run_id = find_run(client, experiment_id, key)
        if run_id is None:
            raise SweepError(f"--resume: no MLflow sweep run for {sweep_path} in {plan.tracking_uri}")
        client.update_run(run_id, status="RUNNING")
        return run_id
    if find_run(client, experiment_id, key) is not None and _tuner_exists(plan):
        raise SweepError(f"--name: sweep {plan.name!r} already exists under {plan.storage} (pass --resume, "
                         f"or another --name)")
    run_id = client.create_run(experiment_id, run_name=plan.name,
                               tags=key | {"git_commit": git_commit()} | tags).info.run_id
    params = {"sweep.kind": plan.kind, "sweep.preset": plan.args.preset, "sweep.seeds": len(plan.seeds),
              "sweep.knob": plan.knob, "sweep.variants": json.dumps([name for name, _ in plan.variants]),
              "sweep.workers_per_trial": plan.args.workers_per_trial} | {f"base.{k}": v for k, v in plan.base.items()}
    for k, v in params.items():
        client.log_param(run_id, k, str(v)[:6000])
    return run_id


def _tuner_exists(plan: SweepPlan) -> bool:
    return tune.Tuner.can_restore(f"{plan.storage}/{plan.name}")


def _trainable(plan: SweepPlan, ctx: SweepContext):
    path = plan.estimate.path if plan.estimate else ("tune" if plan.args.workers_per_trial == 1 else "train")
    if path == "tune":
        return tune.with_resources(tune.with_parameters(run_in_tune_trial, ctx=ctx), _resources(plan))
    driver = tune.with_parameters(train_driver_fn, ctx=ctx, plan_storage=plan.storage)
    placement = {"CPU": 0.0, plan.args.driver_resource: 0.01} if plan.args.driver_resource else {"CPU": 0.01}
    return tune.with_resources(driver, placement)


def train_driver_fn(config: dict, ctx: SweepContext, plan_storage: str) -> None:
    """A Tune trial that drives a Ray Train ``TorchTrainer`` (several workers, DDP)."""
    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    context = tune.get_context()
    trial_id, trial_name = context.get_trial_id(), context.get_trial_name()
    scaling = ray.train.ScalingConfig(num_workers=ctx.workers, use_gpu=ctx.use_gpu,
                                      resources_per_worker={"CPU": ctx.cpus_per_worker})
    run_config = ray.train.RunConfig(name=f"train-{trial_id}", storage_path=plan_storage,
                                     callbacks=[TuneReportCallback()],
                                     failure_config=ray.train.FailureConfig(max_failures=ctx.max_failures),
                                     checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2))
    loop = {"ctx": ctx, "config": config, "trial_id": trial_id, "trial_name": trial_name,
            "trial_started": trial_started()}
    TorchTrainer(train_fn_per_worker, train_loop_config=loop, scaling_config=scaling, run_config=run_config).fit()


def _log_cost(plan: SweepPlan, client: MlflowClient, parent: str) -> None:
    """First call: estimate the sweep (before stage 1), choose the trainer path, say both and log them on the
    parent run. Second call, at the end: the actual wall time beside the estimate (``actual/wall_s``)."""
    from tune.cost import estimate_sweep, reused_runs

    if plan.estimate is not None:
        actual = time.time() - plan.started
        client.log_metric(parent, "actual/wall_s", actual)
        print(f"wall time: {actual:.0f} s, estimated {plan.estimate.wall_s:.0f} s", flush=True)
        return
    plan.estimate = est = estimate_sweep(plan, client, reused_runs(plan))
    parts = " + ".join(f"{k} {v:.0f} s" for k, v in est.parts.items())
    print(f"trainer path: {est.path} ({est.why})\nestimate: ~{est.wall_s:.0f} s wall = {parts}", flush=True)
    client.set_tag(parent, "trainer_path", est.path)
    client.set_tag(parent, "trainer_why", est.why)
    if "sweep.trainer" not in client.get_run(parent).data.params:  # a resumed sweep keeps its params
        client.log_param(parent, "sweep.trainer", est.path)
    seconds = {"estimate/wall_s": est.wall_s} | {f"estimate/{k}_s": v for k, v in est.parts.items()}
    for name, value in seconds.items():
        client.log_metric(parent, name, value)


def _tuner(plan: SweepPlan, ctx: SweepContext) -> tune.Tuner:
    trainable = _trainable(plan, ctx)
    path = f"{plan.storage}/{plan.name}"
    if plan.args.resume:
        if not tune.Tuner.can_restore(path):
            raise SweepError(f"--resume: nothing to resume at {path}")
        return tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=True)
    tune_config, space = _search(plan)
    run_config = tune.RunConfig(name=plan.name, storage_path=plan.storage, verbose=1,
                                failure_config=tune.FailureConfig(max_failures=plan.args.max_failures))
    return tune.Tuner(trainable, param_space=space, tune_config=tune_config, run_config=run_config)


def _search(plan: SweepPlan) -> tuple[tune.TuneConfig, dict]:
    limit = plan.args.max_concurrent or 0
    if plan.kind != "optuna":
        space = {"variant": tune.grid_search([name for name, _ in plan.variants]),
                 "run.seed": tune.grid_search(plan.seeds)}
        return tune.TuneConfig(max_concurrent_trials=limit), space
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    define = functools.partial(spaces.optuna_space, preset=plan.args.preset)
    searcher = OptunaSearch(space=define, metric=plan.args.metric, mode=plan.args.mode, seed=0)
    epochs = float(plan.base.get("encoder.epochs", 200))
    # max_t past the last epoch: ASHA stops at max_t, which would cut the trial's evaluation off
    asha = ASHAScheduler(time_attr="epoch", max_t=epochs + 1, grace_period=max(1.0, epochs // 4), reduction_factor=2)
    config = tune.TuneConfig(metric=plan.args.metric, mode=plan.args.mode, search_alg=searcher, scheduler=asha,
                             num_samples=plan.args.num_samples, max_concurrent_trials=limit)
    return config, {}


def run_sweep(plan: SweepPlan) -> Table | None:
    """Run the sweep end to end; return its table (None when no trial finished)."""
    register = _register_target(plan)
    start_ray(plan)
    client = MlflowClient(plan.tracking_uri)
    experiment_id = get_experiment_id(client, f"contralord-{plan.kind}")
    run_tags = _source_tags(plan)
    parent = _parent_run(plan, client, experiment_id, run_tags)
    _log_cost(plan, client, parent)
    # local storage: one shared cache; cloud storage: a node-local cache filled from MLflow's artifact store
    cache = f"{plan.storage}/latent_cache" if not is_uri(plan.storage) else local_work_dir(plan.storage, "latent")
    per_seed = {s: plan.base | {"run.seed": s, "run.latent_cache": cache} for s in plan.seeds}
    stage1_runs = ensure_stage1(per_seed, cache, plan.tracking_uri, _stage1_resources(plan), run_tags)
    client.set_tag(parent, "stage1_run_ids", json.dumps(stage1_runs))
    ctx = SweepContext(plan.kind, plan.base, dict(plan.variants), plan.storage, cache,
                       local_work_dir(plan.storage, plan.name), plan.tracking_uri, experiment_id, parent,
                       stage1_runs, plan.args.workers_per_trial, plan.args.gpus_per_worker > 0,
                       plan.args.cpus_per_worker, plan.args.max_failures, git_commit(), run_tags)
    try:
        results = _tuner(plan, ctx).fit()
    except BaseException:
        client.set_terminated(parent, status="KILLED")
        raise
    interrupted = results.num_terminated + results.num_errors < len(results)  # state saved by Tune
    _close_trial_runs(results, client, experiment_id, interrupted)
    if interrupted:
        client.set_terminated(parent, status="KILLED")
        raise SweepError(f"interrupted: {results.num_terminated} of {len(results)} trials finished; "
                         f"continue with --resume --name {plan.name}")
    table = _publish(plan, client, parent)
    if register:
        _register_best(plan, client, experiment_id, parent, *register)
    _log_cost(plan, client, parent)
    client.set_terminated(parent, status="FINISHED")
    print(f"MLflow UI: {ml.ui_link(plan.tracking_uri, experiment_id)}", flush=True)
    return table


def _register_best(plan: SweepPlan, client: MlflowClient, experiment_id: str, parent: str, metric: str,
                   mode: str) -> None:
    trials = client.search_runs([experiment_id], f"tags.`mlflow.parentRunId` = '{parent}' and "
                                "attributes.status = 'FINISHED'", max_results=10000)
    name = f"contralord-{plan.kind}-encoder"
    try:
        run_id, value, version = ml.register_best(client, trials, metric, mode, name)
    except ValueError as error:
        client.set_terminated(parent, status="FINISHED")
        raise SweepError(str(error)) from None
    client.set_tag(parent, "registered_model", f"{name}/{version}")
    print(f"registered the encoder of run {run_id} ({mode} {metric} = {value:.4g}) as {name} version {version}",
          flush=True)


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


def _publish(plan: SweepPlan, client: MlflowClient, parent: str) -> Table | None:
    """The sweep's table from its MLflow runs (ablations/, as make_tables.py builds it) onto the parent run."""
    spec = specs.spec_for_sweep_kind(plan.kind) or specs.spec_for_keys((plan.knob,))
    source = from_sweep_run(client, parent)
    try:
        table = build_table(source.runs, spec, source.description, with_paper=True)
    except AblationError as error:
        print(f"\n{plan.name}: no table ({error})", flush=True)
        client.set_tag(parent, "mlflow.note.content", f"No table: {error}")
        return None
    texts = render.render_all(table, list(render.FORMATS))
    ml.log_sweep_table(client, parent, texts["md"], _table_means(plan, table))
    with tempfile.TemporaryDirectory() as folder:
        for path in render.save(table, texts, Path(folder), "table"):
            client.log_artifact(parent, str(path))
    print(f"\n{plan.name} ({len(source.runs)} trials, tracking {plan.tracking_uri}):\n{texts['md']}", flush=True)
    return table


def _table_means(plan: SweepPlan, table: Table) -> dict[str, float]:
    """``<column>/<variant>``: each cell's mean, the row named by the sweep's variant ("MIG/K128")."""
    names = {}
    for name, overrides in plan.variants:
        flat = ContraLordConfig.from_overrides(plan.base | overrides).to_flat_dict()
        names[tuple(parse_value(str(flat.get(k, ""))) for k in table.spec.by)] = name
    means = {}
    for row in table.rows:
        label = names.get(row.key) or " ".join(specs.show_value(v) for v in row.key)
        label = re.sub(r"[^\w.\- ]", "_", label.replace("=", "").replace(",", " ").replace("+", "-"))
        means |= {f"{column}/{label}": cell.mean for column, cell in row.cells.items() if cell is not None}
    return means
