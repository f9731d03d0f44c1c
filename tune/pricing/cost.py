"""A planned sweep's cost before any work: the trials, the reuse of earlier runs, the stage-1 runs still
needed, the resources per trial, the execution path and a wall-time estimate (``--dry-run`` prints it and
exits without starting Ray; a real sweep logs it on its parent run beside the actual time).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path

from contralord.config import ContraLordConfig
from contralord.latent_result import ARTIFACT, latent_key
from contralord.schedules import parse_rungs
from contralord.setup import Setup, build_data, needs_latent, resolved_config
from tune.checks import is_uri
from tune.plan import SweepPlan, local_machine, local_work_dir
from tune.pricing import calibrate, history
from tune.pricing.estimate import WORKER_GROUP_S, SweepEstimate, TrialCost, combine, concurrency, later_rounds
from tune.rounds import next_ladder
from tune.trial import reuse, stage1

UNPRICED = math.nan  # --no-calibrate: a stage 1 or trial neither a past run nor a cached calibration prices


def latent_cache(plan: SweepPlan) -> str:
    """The stage-1 cache ``run_sweep`` uses: shared under local storage, node-local under a URI."""
    return f"{plan.storage}/latent_cache" if not is_uri(plan.storage) else local_work_dir(plan.storage, "latent")


def trial_list(plan: SweepPlan) -> list[tuple[str, int]]:
    """(variant, seed) of every trial, in Tune's grid order; Optuna: ``--num-samples`` trials of seed 0."""
    if plan.kind == "optuna":
        return [("optuna", int(plan.base.get("run.seed", 0)))] * plan.options.num_samples
    return [(name, seed) for seed in plan.seeds for name, _ in plan.variants]


def reused_runs(plan: SweepPlan) -> dict[tuple[str, int], str] | None:
    """(variant, seed) -> the earlier FINISHED run that answers it, as ``run_sweep`` would link it
    (``tune/trial/reuse.py``: same config, seed, data, code and, on a local Ray, machine); None when reuse is off
    (``--no-reuse``, Optuna). Reads the store only; a missing store has nothing to reuse."""
    if plan.options.no_reuse or plan.kind == "optuna":
        return None
    client = history.open_store(plan.tracking_uri)
    if client is None:
        return {}
    local = local_machine(plan.options)
    configs = [{"variant": variant, "run.seed": seed} for variant, seed in trial_list(plan)]
    planned = reuse.plan_trials(configs, lambda c: _config(plan, c["variant"], c["run.seed"]).to_flat_dict(),
                                reuse.code_version(), local)
    reused, _ = reuse.split_reused(client, planned)
    return {(trial.variant, trial.seed): run.info.run_id for trial, run in reused}


def extended_runs(plan: SweepPlan, client, reused: dict | None) -> dict[tuple[str, int], reuse.Extension]:
    """(variant, seed) -> the finished ladder each trial not reused would extend (``tune/trial/reuse.py``), as
    ``run_sweep`` would find it; {} when reuse is off, the store is missing, or no trial is a ladder."""
    if reused is None or client is None:
        return {}
    pairs = [(v, s) for v, s in trial_list(plan) if (v, s) not in reused]
    if not any(_config(plan, v, s).encoder.rungs for v, s in dict.fromkeys(pairs)):
        return {}
    planned = reuse.plan_trials([{"variant": v, "run.seed": s} for v, s in pairs],
                                lambda c: _config(plan, c["variant"], c["run.seed"]).to_flat_dict(),
                                reuse.code_version(), local_machine(plan.options))
    return reuse.find_extensions(client, planned)


def _extended(plan: SweepPlan, trial: TrialCost, extension: reuse.Extension | None) -> TrialCost:
    """A trial's cost when it extends a ladder: scaled to the share of its steps it still trains."""
    if extension is None:
        return trial
    top = parse_rungs(_config(plan, trial.variant, trial.seed).encoder.rungs)[-1]
    share = (top - extension.start) / top
    return dataclasses.replace(trial, seconds=trial.seconds * share, source=f"extends run {extension.run_id} from "
                               f"step {extension.start}: {share:.0%} of {_seconds(trial.seconds)} s ({trial.source})")


def _config(plan: SweepPlan, variant: str | None, seed: int) -> ContraLordConfig:
    """A trial's config, or (``variant=None``) the one ``run_sweep`` trains stage 1 with."""
    overrides = dict(plan.variants).get(variant, {}) if variant else {}
    return ContraLordConfig.from_overrides(plan.base | overrides | {"run.seed": seed,
                                                                      "run.latent_cache": latent_cache(plan)})


def _node() -> tuple[int, int]:
    """CPUs and GPUs of this machine (a cluster's are not known before Ray starts)."""
    import torch

    return os.cpu_count() or 1, torch.cuda.device_count()


def stage1_threads(plan: SweepPlan) -> int:
    """Torch threads of a stage-1 run: every core of a one-node CPU sweep (``sweep._stage1_resources``)."""
    cpus, _ = _node()
    single = plan.options.local_ray and not plan.options.gpus_per_worker
    return cpus if single else max(1, int(plan.options.cpus_per_worker))


def _stage1_shape(cfg: ContraLordConfig, data) -> str:
    """What stage 1's cost depends on: its sections, ``latent.structure`` resolved on ``data`` (no other check)."""
    return resolved_config(cfg, data).section_hash("data", "latent")


def _stage1_costs(plan: SweepPlan, client, reused: dict | None,
                  calibrated: dict[str, tuple[calibrate.Timing, object]] | None = None,
                  seen: list[calibrate.Timing] | None = None) -> tuple[dict[int, float], list[int], dict[str, object]]:
    """Seconds of every stage-1 run still needed (per seed; none for a seed whose trials are all reused), the
    seeds already cached, and the untrained stage-1 trainers the calibration built, by stage-1 shape (the
    stage-2 calibration reuses them). ``calibrated`` (stage-1 shape -> (seconds, trainer)) is filled here and
    may be passed again: a shape is calibrated once, whatever the seed (a seed picks images, not cost); each
    calibration goes into ``seen``."""
    needed, cached = {}, []
    calibrated = {} if calibrated is None else calibrated
    pending = {seed for variant, seed in trial_list(plan) if (variant, seed) not in (reused or {})}
    for seed in sorted(pending):
        cfg = _config(plan, None, seed)
        if not needs_latent(cfg):
            continue
        setup = Setup.of(cfg, build_data(cfg))
        key = latent_key(setup)
        if client and stage1.cached_run(client, latent_cache(plan), key):
            cached.append(seed)
            continue
        # a stage-1 run logs its unresolved config (tune/trial/stage1.py)
        past = history.stage1_seconds(client, cfg.to_flat_dict(), stage1_threads(plan)) if client else None
        if past is None:
            shape = _stage1_shape(cfg, setup.data)
            try:
                if shape not in calibrated:
                    calibrated[shape] = calibrate.stage1_seconds(cfg, setup, stage1_threads(plan),
                                                                 plan.options.gpus_per_worker > 0)
                    _note(seen, calibrated[shape][0], "stage1")
                past = calibrated[shape][0].seconds
            except calibrate.NotCalibrated:  # --no-calibrate, and neither a past run nor the cache knows it
                past = UNPRICED
        needed[seed] = past
    return needed, cached, {shape: trainer for shape, (_, trainer) in calibrated.items()}


def _trial_costs(plan: SweepPlan, client, trainers: dict[str, object], reused: dict | None,
                 seen: list[calibrate.Timing] | None = None) -> list[TrialCost]:
    """Every trial's seconds: from past runs on this machine when there are any, else calibrated (once per
    variant; the evaluation once per sweep: every variant evaluates the same images). Either way plus the
    launch of the trial's process, timed now (``time/total`` starts after it); not timed when every trial
    is reused (no trial process starts)."""
    threads, gpu = max(1, int(plan.options.cpus_per_worker)), plan.options.gpus_per_worker > 0
    runs = history.past_trials(client, threads) if client else []
    starts = any(trial not in (reused or {}) for trial in trial_list(plan))
    try:
        launch = _note(seen, calibrate.launch_seconds(), "trials").seconds if starts else 0.0
    except calibrate.NotCalibrated:
        launch = 0.0  # --no-calibrate: a few seconds a trial, not counted
    per_variant: dict[str, tuple[float, str]] = {}
    eval_s = None
    for variant, seed in dict.fromkeys(trial_list(plan)):
        if variant in per_variant:
            continue
        cfg = _config(plan, variant, seed)
        setup = Setup.of(cfg, build_data(cfg))
        found = history.trial_seconds(runs, setup.cfg.to_flat_dict())
        if found is None:
            try:
                own, trainer = _own_stage1(plan, cfg, setup, trainers, threads, gpu)
                timed = calibrate.trial_seconds(setup, trainer, threads, eval_s is None, gpu)
                rest = calibrate.data_seconds(cfg).seconds + calibrate.LOG_S
            except calibrate.NotCalibrated:
                per_variant[variant] = (UNPRICED, "not priced: no past run and no cached calibration (--no-calibrate)")
                continue
            parts = {name: _note(seen, timing, "trials").seconds for name, timing in timed.items()}
            eval_s = parts.get("eval", 0.0) if eval_s is None else eval_s
            found = (parts["train"] + eval_s + rest + own, f"calibration: train {parts['train']:.0f} s + eval "
                     f"{eval_s:.0f} s + data, log {rest:.0f} s" + (f" + its own stage 1 {own:.0f} s" if own else ""))
        per_variant[variant] = (found[0] + launch, f"{found[1]} + launch {launch:.0f} s")
    reused = reused or {}
    return [TrialCost(v, s, *per_variant[v], reused=reused.get((v, s), "")) for v, s in trial_list(plan)]


def _own_stage1(plan: SweepPlan, cfg: ContraLordConfig, setup: Setup, trainers: dict[str, object], threads: int,
                gpu: bool) -> tuple[float, object]:
    """(seconds of the stage 1 this trial trains itself, 0 when the sweep's serves it or it is cached; an
    untrained stage-1 trainer of its shape for the calibration, None when it needs no stage 1). A variant
    whose stage 1 differs from the sweep's (Table 2's LORD row) trains its own inside the trial."""
    if not needs_latent(cfg):
        return 0.0, None
    shape = _stage1_shape(cfg, setup.data)
    own = shape != _stage1_shape(_config(plan, None, cfg.run.seed), setup.data)
    cached = (Path(latent_cache(plan)) / latent_key(setup) / ARTIFACT).is_file()
    if shape in trainers and not own:
        return 0.0, trainers[shape]
    timing, trainers[shape] = calibrate.stage1_seconds(cfg, setup, threads, gpu)
    return (timing.seconds if own and not cached else 0.0), trainers[shape]


def estimate_sweep(plan: SweepPlan, client, reused: dict | None = None) -> SweepEstimate:
    """The sweep's estimate (``client``: a read-only view of its store, or None; ``reused``: from
    ``reused_runs``)."""
    if plan.options.no_calibrate:
        with calibrate.cache_only():  # price from past runs and cached timings only
            return _estimate_sweep(plan, client, reused)
    return _estimate_sweep(plan, client, reused)


def _estimate_sweep(plan: SweepPlan, client, reused: dict | None) -> SweepEstimate:
    started = time.perf_counter()
    calibrated: dict[str, tuple[calibrate.Timing, object]] = {}
    seen: list[calibrate.Timing] = []
    stage1, cached, trainers = _stage1_costs(plan, client, reused, calibrated, seen)
    extended = extended_runs(plan, client, reused)
    trials = [_extended(plan, t, extended.get((t.variant, t.seed)))
              for t in _trial_costs(plan, client, trainers, reused, seen)]
    cpus, gpus = _node()
    options = plan.options
    slots = concurrency(cpus, options.workers_per_trial * options.cpus_per_worker, gpus,
                        options.workers_per_trial * options.gpus_per_worker, options.max_concurrent)
    est = combine(trials, stage1, cached, slots, options.trainer, options.workers_per_trial,
                  options.gpus_per_worker > 0)
    if options.until_decided:
        extra = WORKER_GROUP_S if est.path == "train" else 0.0
        # a row's next seed is its seed count: the seeds --seeds did not run, up to --max-seeds
        later = dataclasses.replace(plan, seeds=list(range(len(plan.seeds), options.max_seeds)))
        more, _, _ = _stage1_costs(later, client, None, calibrated)  # 0 s where cached or no stage 1
        est = dataclasses.replace(est, later=later_rounds(trials, {s: more.get(s, 0.0) for s in later.seeds},
                                                          slots, extra))
    est.parts["estimate"] = time.perf_counter() - started  # a real sweep spends it too
    return dataclasses.replace(est, calibrations=tuple(seen))


def _note(seen: list | None, timing: calibrate.Timing, part: str) -> calibrate.Timing:
    """Keep ``timing`` in ``seen``, marked with the estimate's part it prices (``describe_calibrations``)."""
    if seen is not None:
        seen.append(dataclasses.replace(timing, part=part))
    return timing


def resources(plan: SweepPlan, path: str) -> str:
    options = plan.options
    gpu = f", GPU {options.gpus_per_worker:g}" if options.gpus_per_worker else ""
    worker = f"CPU {options.cpus_per_worker:g}{gpu}"
    own = options.driver_resource or ("a resource of its own where the sweep starts Ray" if options.local_ray else "")
    driver = (f" + a driver (no CPU: 0.01 of {own})" if own else " + a driver (CPU 0.01)") if path == "train" else ""
    return f"{options.workers_per_trial} worker(s) x {{{worker}}}{driver}"


def report(plan: SweepPlan, est: SweepEstimate, reused: dict | None) -> list[str]:
    """The dry run's lines: trials, reuse, stage 1, resources, path, estimate."""
    lines = [f"dry run of {plan.name} ({plan.kind}, preset {plan.options.preset}): {len(est.trials)} trial(s); "
             f"Ray not started, nothing written"]
    lines += [f"  {t.variant:<24} seed {t.seed}  ~{_seconds(t.seconds):>6} s  "
              f"({t.reused and 'reuses ' + t.reused or t.source})" for t in est.trials]
    lines.append("reuse: off (--no-reuse or Optuna)" if reused is None else
                 f"reuse: {sum(1 for t in est.trials if t.reused)} of {len(est.trials)} trial(s) reuse earlier runs")
    stage1 = ", ".join(f"seed {s} ~{_seconds(v)} s" for s, v in est.stage1.items()) or "none"
    lines.append(f"stage 1 to train: {len(est.stage1)} ({stage1}); already cached: {len(est.stage1_cached)}"
                 + (f" (seed {', '.join(map(str, est.stage1_cached))})" if est.stage1_cached else ""))
    cpus, gpus = _node()
    where = "this machine" if plan.options.local_ray else "this machine (the cluster's are unknown)"
    lines.append(f"resources per trial: {resources(plan, est.path)}; {est.slots} trial(s) at once "
                 f"({cpus} CPU(s){f', {gpus} GPU(s)' if gpus else ''} of {where}, --max-concurrent "
                 f"{plan.options.max_concurrent or 'unset'})")
    lines.append(f"trainer path: {est.path} ({est.why})")
    parts = " + ".join(f"{k} {v:.0f} s" for k, v in est.parts.items())
    early = " (an upper bound: ASHA stops trials early)" if plan.kind == "optuna" else ""
    unpriced = est.unpriced
    least = ("at least " if unpriced else "")
    lines.append(f"estimate: {least}~{est.wall_s:.0f} s wall ({est.wall_s / 60:.1f} min) = {parts}{early}")
    if unpriced:
        lines.append(f"  not priced: {unpriced} (--no-calibrate, and no past run or cached calibration knows them; "
                     f"run the dry run without --no-calibrate to time them once)")
    lines += describe_calibrations(est)
    if est.later:
        lines.append(describe_later(est.later))
    if plan.options.max_rung:
        lines.append(describe_climbs(_config(plan, plan.variants[0][0], 0).encoder.rungs, plan.options.max_rung))
    return lines


def _seconds(value: float) -> str:
    return "?" if math.isnan(value) else f"{value:.0f}"


def describe_calibrations(est: SweepEstimate) -> list[str]:
    """What the calibrated part of the estimate assumed: the cache, the spread of the timed steps as a range, and
    the load while timing (with the idle machine's estimate beside a busy one's)."""
    timings = list(est.calibrations)
    if not timings:
        return []
    now = sum(not t.cached for t in timings)
    lines = [f"calibration: {len(timings)} timing(s), {len(timings) - now} from the cache "
             f"({calibrate.cache_file()}), {now} timed now"]
    seconds = sum(t.seconds for t in timings)
    timed = est.parts.get("stage1", 0.0) + est.parts.get("trials", 0.0)  # the parts the timings make
    rest = est.wall_s - timed
    if seconds > 0:
        low, high = (sum(getattr(t, side) for t in timings) / seconds for side in ("low", "high"))
        lines.append(f"  range: ~{rest + timed * low:.0f}-{rest + timed * high:.0f} s if every step took as long as "
                     f"the fastest or the slowest timed one")
    busy = [t for t in timings if t.busy]
    if busy:
        worst = max(busy, key=lambda t: t.load / t.cpus)
        slowdown = max(1.0, worst.load / worst.cpus)
        low, high = (rest + sum(est.parts.get(part, 0.0) * _idle_share(timings, part, slowdown)[side]
                                for part in ("stage1", "trials")) for side in (0, 1))
        idle = f"{low:.0f} s" if math.isclose(low, high, rel_tol=0.01) else f"{low:.0f}-{high:.0f} s"
        retimed = sorted({t.retimed for t in timings if t.retimed})
        how = (f"stage 1 and trials divided by load / CPUs = {slowdown:.1f}" if not retimed else
               "a timing whose threads outnumbered the free cores was timed again on them: " + "; ".join(retimed)
               + "; idle lies between perfect and no scaling to its threads, the rest divided by load / CPUs")
        lines.append(f"  machine busy while timing (load average {worst.load:.1f} on {worst.cpus} CPUs, "
                     f"{worst.when}): the estimate assumes that load lasts; on an idle machine about {idle} ({how})")
    else:
        loads = max(t.load for t in timings)
        lines.append(f"  load while timing: at most {loads:.1f} on {timings[0].cpus} CPUs (idle enough)")
    return lines


def _idle_share(timings: list, part: str, slowdown: float) -> tuple[float, float]:
    """(low, high) share of ``part``'s busy seconds an idle machine takes: its own timings' idle bounds against
    their seconds (each timing counts once: a ratio, whatever the seeds and trials it prices), else 1 / the
    worst load / CPUs (a part priced from past runs alone)."""
    own = [t for t in timings if t.part == part]
    seconds = sum(t.seconds for t in own)
    if seconds <= 0:
        return 1.0 / slowdown, 1.0 / slowdown
    return sum(t.idle()[0] for t in own) / seconds, sum(t.idle()[1] for t in own) / seconds


def describe_climbs(rungs: str, max_rung: int) -> str:
    """``--max-rung``: the ladders a sweep whose open rows keep moving climbs through, and what each climb costs."""
    ladders = [rungs]
    while next_ladder(ladders[-1], max_rung):
        ladders.append(next_ladder(ladders[-1], max_rung))
    tops = [parse_rungs(ladder)[-1] for ladder in ladders]
    steps = ", ".join(f"{a} -> {b}" for a, b in zip(tops, tops[1:], strict=False))
    return (f"until-decided: before seeds, open rows that still move climb at most {len(ladders) - 1} rung(s) "
            f"({steps} steps); each climb extends every trial so far from its stable state (about the share of the "
            f"new steps of a trial at the higher top each), not counted in the estimate above")


def describe_later(later) -> str:
    """The ``--until-decided`` bound as one line."""
    if not later.seeds:
        return "until-decided: no later round (--max-seeds is reached by --seeds)"
    least = "at least " if later.unpriced else ""  # --no-calibrate: parts unpriced
    return (f"until-decided: then at most {len(later.seeds)} round(s) (seed {', '.join(map(str, later.seeds))}) "
            f"and {later.trials} trial(s); if every row stays open: stage 1 {least}~{later.stage1_s:.0f} s, "
            f"{least}~{later.wall_s:.0f} s more wall ({later.wall_s / 60:.1f} min) by the same estimate; each "
            f"decided row stops adding seeds")


def dry_run(plan: SweepPlan) -> int:
    """Print the plan and its estimate; start no Ray, write nothing (the store is only read)."""
    reused = reused_runs(plan)
    est = estimate_sweep(plan, history.open_store(plan.tracking_uri), reused)
    print("\n".join(report(plan, est, reused)), flush=True)
    return 0
