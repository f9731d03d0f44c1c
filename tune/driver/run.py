"""The shared command line and Tuner of every sweep (``python tune/sweep_<kind>.py``).

    python tune/sweep_negatives.py --preset cpu --seeds 3
    python tune/sweep_negatives.py --preset paper --address auto --storage s3://bucket/contralord \
        --tracking-uri http://127.0.0.1:5000 --workers-per-trial 2 --gpus-per-worker 1

Everything that can be wrong on the command line is checked before Ray starts a trial. Then: stage 1
once per seed (``tune/trial/stage1.py``), one Tune trial per (variant, seed), a parent MLflow run for the
sweep with one nested run per trial, and the sweep's table and plots on the parent run.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path

from ablations.store import tracking_client
from contralord.cli.main import OneLineParser
from contralord.config import ConfigError, ContraLordConfig, parse_set_args
from contralord.data import DataError
from contralord.presets import PRESETS, SCALE_PRESETS, resolve_presets
from contralord.run.evaluation_checks import check_evaluation, check_weight_contents
from contralord.run.preflight import check_backbone, check_sizes, validate_against_data
from contralord.setup import Setup, build_data
from contralord.training.loop import NonFiniteLossError
from tune import rounds, spaces
from tune.checks import (
    SweepError,
    SweepInterrupted,
    TrialsFailed,
    check_address,
    check_bucket,
    check_cluster_resources,
    check_counts,
    check_name,
    check_register_best_logged,
    check_storage,
    check_tracking_uri,
    check_trainer,
)
from tune.options import SweepOptions
from tune.plan import SweepPlan

DEFAULTS = SweepOptions()


def build_parser(kind: str) -> argparse.ArgumentParser:
    parser = OneLineParser(prog=f"tune/sweep_{kind}.py", description=f"ContraLORD sweep: {kind}")
    parser.add_argument("--preset", help=f"scale preset: {', '.join(SCALE_PRESETS)} (default {DEFAULTS.preset})")
    parser.add_argument("--method", action="append", help="extra presets after the scale (e.g. lord)")
    parser.add_argument("--seeds", type=int, help="repeat every variant with seeds 0..N-1")
    parser.add_argument("--row", action="append", metavar="NAME", help="run only this row (a variant "
                        "name as the dry run lists it; repeat for more), e.g. a longer budget for the rows a verdict "
                        "needs; default every row")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    parser.add_argument("--address", help="join a running Ray cluster (host:port or auto)")
    parser.add_argument("--tracking-uri", help="MLflow URI (default sqlite:////$PWD/mlflow.db)")
    parser.add_argument("--storage", help="absolute path or s3:// URI (default $PWD/ray_results)")
    parser.add_argument("--name", help="sweep name (default sweep-<kind>-<preset>)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted sweep of this name")
    parser.add_argument("--max-concurrent", type=int, help="trials at once (0 = as resources allow)")
    parser.add_argument("--workers-per-trial", type=int, help="Ray Train workers (DDP) per trial")
    parser.add_argument("--gpus-per-worker", type=float)
    parser.add_argument("--cpus-per-worker", type=float)
    parser.add_argument("--max-failures", type=int, help="retries of a trial after a lost worker")
    parser.add_argument("--shared-fs", action="store_true", help="--storage is a path every node mounts")
    parser.add_argument("--driver-resource", help="custom resource pinning multi-worker trial "
                        "drivers to a node (ray_cluster.yaml's head has train_driver)")
    parser.add_argument("--num-samples", type=int, help="Optuna: trials to sample")
    parser.add_argument("--metric", help="Optuna/ASHA: a per-epoch metric to optimise "
                        "(encoder/train/...; Optuna and ASHA read it at every epoch)")
    parser.add_argument("--mode", choices=("max", "min"))
    parser.add_argument("--no-reuse", action="store_true", help="run every trial, even one an earlier finished "
                        "run with the same config, seed, data and code (and machine) stands for")
    parser.add_argument("--until-decided", action="store_true", help="after --seeds, add one seed per round to the "
                        "rows whose verdict (best row's 95%% interval against the others') is still open")
    parser.add_argument("--max-seeds", type=int, help="--until-decided: at most this many seeds a row")
    parser.add_argument("--decide-metric", metavar="COLUMN[,COLUMN]", help="--until-decided: the "
                        "table columns whose verdicts must be decided (default D)")
    parser.add_argument("--decide-rule", metavar="unpaired|paired", help="--until-decided: decide a "
                        "row by the unpaired 95%% intervals (default) or paired by seed (rows of a seed share its "
                        "stage 1; ablations/stats.py)")
    parser.add_argument("--max-rung", type=int, metavar="STEPS", help="--until-decided on a budget "
                        "ladder (encoder.rungs): while an open row still moves at the top rung (D or content_corr_min "
                        "by more than 0.02 from the rung before), every row first climbs a rung (the ladder's ratio, "
                        "at most STEPS; its trials extend their runs) before open rows get seeds")
    parser.add_argument("--register-best", metavar="METRIC[:max|min]", help="register the encoder of "
                        "the trial with the best METRIC (default max) in the MLflow Model Registry")
    parser.add_argument("--no-calibrate", action="store_true", help="time nothing for the estimate: price stage 1 "
                        "and trials from the store's past runs and the cached calibrations only, and say what is left "
                        "unpriced (the estimate is then a lower bound)")
    parser.add_argument("--dry-run", action="store_true", help="print the trials, reuse, stage-1 runs, resources "
                        "and a wall-time estimate, then exit without starting Ray")
    parser.add_argument("--trainer", help="auto | train (Ray Train TorchTrainer) | tune (in the "
                        "Tune trial, 1 worker); auto: TorchTrainer when >1 worker or its start-up is <5%% of a trial")
    # the defaults are SweepOptions' (stated once): a flag's list starts empty, a repeated flag's tuple
    parser.set_defaults(**{name: list(value) if isinstance(value, tuple) else value
                           for name, value in dataclasses.asdict(DEFAULTS).items()})
    return parser


def parse_options(kind: str, argv: list[str]) -> SweepOptions:
    """The options of a ``kind`` sweep's command line ``argv`` (argparse exits 2 on a malformed flag)."""
    return SweepOptions.from_namespace(build_parser(kind).parse_args(argv))


def plan_sweep(kind: str, options: SweepOptions) -> SweepPlan:
    """Validate the whole sweep (flags, URIs, paths, every trial's config, the data) without starting Ray."""
    _check_flags(kind, options)
    name = options.name if options.name is not None else f"sweep-{kind}-{options.preset}"
    check_name(name)
    storage = check_storage(options.storage or str(Path.cwd() / "ray_results"))
    tracking_uri = options.tracking_uri or f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    check_tracking_uri(tracking_uri, read_only=options.dry_run)
    check_address(options.address)
    # check_cluster_resources reads the cluster's GCS; it joins nothing
    if not check_cluster_resources(options) and options.trainer == "auto":
        options = dataclasses.replace(options, trainer="tune")
        print(f"trainer: tune (auto): a train-path trial's driver would not fit the cluster at {options.address} "
              f"beside its worker", flush=True)
    check_bucket(storage)
    _check_resumable(kind, storage, name, tracking_uri, options.resume)
    overrides = parse_set_args(list(options.set))
    base = resolve_presets([options.preset, *options.method], overrides)
    knob, variants = (("optuna", [("optuna", {})]) if kind == "optuna" else spaces.variants(kind, options.preset))
    variants = only_rows(variants, options.row)
    check_set_not_overridden(overrides, base, variants, kind)
    seeds = list(range(options.seeds))
    configs = [ContraLordConfig.from_overrides(base | v | {"run.seed": s}) for _, v in variants for s in seeds]
    data = build_data(configs[0])
    evaluations = set()  # (data, eval, seed): what check_evaluation reads (all-factors builds the held-out images)
    for cfg in configs:
        validate_against_data(cfg, len(data))
        setup = Setup.of(cfg, data)
        check_sizes(setup)
        if (cfg.data, cfg.eval, cfg.run.seed) not in evaluations:
            check_evaluation(setup)  # the end-of-trial metrics can score this data
            evaluations.add((cfg.data, cfg.eval, cfg.run.seed))
        if options.register_best:
            check_register_best_logged(options.register_best, cfg)
    rounds.check_ladder(options, configs)
    check_backbone(configs[0], data)
    check_weight_contents(configs[0], data)  # user weight files load (weights_only) into their modules
    return SweepPlan(kind, options, knob, variants, base, seeds, storage, tracking_uri, name)


def check_set_not_overridden(overrides: dict, base: dict, variants: list, kind: str) -> None:
    """A ``--set`` key that a row of the sweep sets to another value would be silently unused in that row (the row
    wins: it is what the row means, e.g. Table 4's loss weights): refused, naming the key, the rows and their value.
    (A readings sweep with --set loss.sup=1 ran at the rows' 0.1, 2026-12-07.)"""
    wanted = ContraLordConfig.from_overrides(base).to_flat_dict()
    rows = [(name, keys, ContraLordConfig.from_overrides(base | keys).to_flat_dict()) for name, keys in variants
            if set(keys) & set(overrides)]
    for key in overrides:
        differing = [(name, flat[key]) for name, keys, flat in rows if key in keys and flat[key] != wanted[key]]
        if differing:
            shown = ", ".join(f"{name} ({value!r})" for name, value in differing[:4])
            more = f" and {len(differing) - 4} more" if len(differing) > 4 else ""
            raise SweepError(f"--set {key}={wanted[key]!r}: the {kind} sweep's rows set it themselves, so these rows "
                             f"would not use it: {shown}{more}; drop it, choose other rows with --row, or sweep it "
                             f"with the sweep that varies it")


def only_rows(variants: list, rows: tuple[str, ...]) -> list:
    """The variants named in ``rows`` (--row), in the sweep's order; every variant when ``rows`` is empty."""
    names = [name for name, _ in variants]
    unknown = [row for row in rows if row not in names]
    if unknown:
        raise SweepError(f"--row: expected one of {', '.join(names)}, got {unknown[0]!r}")
    return [(name, keys) for name, keys in variants if not rows or name in rows]


def _check_flags(kind: str, options: SweepOptions) -> None:
    if options.preset not in SCALE_PRESETS:
        raise SweepError(f"--preset: expected one of {', '.join(SCALE_PRESETS)}, got {options.preset!r}")
    unknown = [m for m in options.method if m not in PRESETS]
    if unknown:
        raise SweepError(f"--method: expected one of {', '.join(PRESETS)}, got {unknown[0]!r}")
    if kind == "optuna" and not options.metric.startswith("encoder/train/"):
        raise SweepError(f"--metric: Optuna and ASHA read the metric at every epoch, so it must be a per-epoch "
                         f"encoder/train/... metric; {options.metric!r} is not reported per epoch")
    check_counts(options)
    rounds.check_flags(kind, options)
    check_trainer(options.trainer, options.workers_per_trial)


def _check_resumable(kind: str, storage: str, name: str, tracking_uri: str, resume: bool) -> None:
    """--resume needs the sweep's MLflow store (read, never created) and either the Tuner's saved state or, for
    a sweep stopped before its Tuner started (killed during stage 1), the sweep's parent run in that store;
    without --resume, a sweep of that name must not exist (its state would be mixed with the new one)."""
    from ray import tune  # reads files only; starts no Ray

    exists = tune.Tuner.can_restore(f"{storage}/{name}")
    if not resume:
        if exists:
            raise SweepError(f"--name: sweep {name!r} already exists under {storage} (pass --resume to continue "
                             f"it, or another --name); nothing was changed")
        return
    no_database = tracking_uri.startswith("sqlite:") and not Path(tracking_uri[len("sqlite:///"):]).is_file()
    if not exists and (no_database or not started_before_tuner(kind, storage, name, tracking_uri)):
        raise SweepError(f"--resume: no sweep named {name!r} ran under {storage} (nothing to resume; drop --resume "
                         f"to start it)")
    if no_database:
        raise SweepError(f"--resume: the sweep's MLflow database {tracking_uri[len('sqlite:///'):]} does not exist")


def started_before_tuner(kind: str, storage: str, name: str, tracking_uri: str) -> bool:
    """The store holds the parent run of sweep ``name`` under ``storage``: it started, then stopped before its
    first Tuner saved any state (during stage 1)."""
    from tune.trial.mlflow_logger import find_run

    client = tracking_client(tracking_uri)
    experiment = client.get_experiment_by_name(f"contralord-{kind}")
    tags = {"sweep_path": f"{storage}/{name}", "role": "sweep"}
    return experiment is not None and find_run(client, experiment.experiment_id, tags) is not None


EXIT_CODES = {0: "every trial finished and the table was built",
              1: "a trial ended in error, no table could be built, or stage 1 stopped on a non-finite loss",
              2: "bad input (flags, config, data, store, paths), found before the work it would spoil",
              130: "interrupted (Ctrl-C): --resume continues from the last checkpoints"}


def stop_driver_bars() -> None:
    """Stage 1's bars in place on this terminal (``tune/trial/stage1.py``: Ray's tqdm, drawn by the driver) are cleared
    and no longer drawn: Ray redraws them after every print, and a stopped task's last update can arrive late."""
    tqdm_ray = sys.modules.get("ray.experimental.tqdm_ray")  # imported only where a bar was drawn
    manager = getattr(tqdm_ray, "_manager", None)
    if manager is None:
        return
    with manager.lock:
        manager.hide_bars()
        manager.bar_groups.clear()
        manager.process_state_update = lambda state: None


def resume_command(kind: str, argv: list[str]) -> str:
    """The command that continues this sweep: the same flags with --resume (and without --dry-run)."""
    kept = [a for a in argv if a not in ("--resume", "--dry-run")]
    return shlex.join(["python", f"tune/sweep_{kind}.py", *kept, "--resume"])


def main(kind: str, argv: list[str] | None = None) -> int:
    """Run a sweep; return its exit code (``EXIT_CODES``)."""
    argv = sys.argv[1:] if argv is None else argv
    options = parse_options(kind, argv)
    try:
        plan = plan_sweep(kind, options)
    except (SweepError, ConfigError, DataError, ValueError, OSError) as error:
        print(f"sweep: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nsweep: interrupted while checking the sweep; Ray was not started, nothing was written",
              file=sys.stderr)
        return 130
    if options.dry_run:
        from tune.pricing.cost import dry_run

        return dry_run(plan)
    from tune.driver.sweep import run_sweep

    try:
        try:
            run_sweep(plan)
        finally:
            stop_driver_bars()  # the sweep's last line comes after stage 1's bar, not under a redrawn one
    except SweepInterrupted as error:
        print(f"sweep: {error}; continue with: {resume_command(kind, argv)}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:  # before or between the Tuners' own handling (stage 1, the table)
        print(f"\nsweep: interrupted; continue with: {resume_command(kind, argv)}", file=sys.stderr)
        return 130
    except TrialsFailed as error:
        print(f"sweep: failed: {error}; after fixing the cause, rerun what failed with: "
              f"{resume_command(kind, argv)}", file=sys.stderr)
        return 1
    except SweepError as error:
        print(f"sweep: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # a Ray task's error (RayTaskError) carries ours in .cause
        cause = getattr(error, "cause", error)
        if not isinstance(cause, NonFiniteLossError):
            raise
        print(f"sweep: error: stage 1 stopped (its MLflow run is FAILED): {cause.args[0]}", file=sys.stderr)
        return 1
    return 0
