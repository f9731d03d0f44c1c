"""The per-trial training function: flat overrides -> config -> the core ``train`` with a Ray runtime
and an MLflow logger. One code path for both ways a trial runs:

- ``run_in_tune_trial``: one worker, the trainer runs inside the Tune trial process
  (``tune.report``/``tune.get_checkpoint``) — our default for 1-worker trials, since a Train worker
  group costs ~40 s of start-up per trial on a small machine (README, "Measured");
- ``train_fn_per_worker``: inside a Ray Train ``TorchTrainer`` (``ray.train.report``), DDP across
  workers through the core's ``DDPRuntime`` (Ray Train has initialised the process group).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ablations.store import tracking_client
from contralord import machine
from contralord.config import ContraLordConfig
from contralord.latent_result import latent_key
from contralord.run.preflight import prepare
from contralord.run.trainer import train
from contralord.setup import Setup, needs_latent
from contralord.stage2.encoder_stage import CHECKPOINT, STABLE
from contralord.training import checkpoint as ckpt
from contralord.training import distributed
from contralord.training.progress import Silent
from contralord.training.runtime import DDPRuntime, LocalRuntime
from contralord.training.tracking import MultiLogger, NullLogger, StdoutLogger
from tune.trial import export, reuse
from tune.trial.context import SweepContext
from tune.trial.mlflow_logger import PARENT_TAG, MlflowLogger, find_or_create_run, find_run, image_dataset
from tune.trial.stage1 import fetch_stage1

GRIDS = ("reconstructions.png", "translation.png")  # written by the core's evaluation
ARTIFACTS = ("metrics.json", "summary.json", "config.json", *GRIDS)
EPOCH_IMAGES = 8  # training images reconstructed after every epoch (image key "epoch_reconstructions")


def _restore(checkpoint, out_dir: Path) -> None:
    """Make ``out_dir``'s encoder.pt the newest checkpoint of this trial: the one Tune restored (``checkpoint``),
    unless the trial's own folder holds a later one. A driver killed with SIGKILL (or a lost node's retry) can
    restart a trial with an older checkpoint than its last attempt wrote there, or with none at all."""
    if checkpoint is None:
        return
    own = out_dir / "checkpoints" / CHECKPOINT
    with checkpoint.as_directory() as folder:
        reported = Path(folder) / CHECKPOINT
        if _saved_step(own) >= _saved_step(reported):
            return
        own.parent.mkdir(parents=True, exist_ok=True)
        partial = own.with_name(f".{own.name}.{os.getpid()}.tmp")  # workers of one node may copy at once
        shutil.copy2(reported, partial)
        os.replace(partial, own)


def _saved_step(path: Path) -> int:
    """The step a stage-2 checkpoint was saved at; -1 when there is none or it cannot be read (the other wins)."""
    if not path.is_file():
        return -1
    try:
        return int(ckpt.load(path, required=("step",))["step"])
    except (ckpt.CheckpointError, TypeError, ValueError):
        return -1


def _trial_logger(ctx: SweepContext, cfg: ContraLordConfig, trial_id: str, trial_name: str) -> MlflowLogger:
    client = tracking_client(ctx.tracking_uri)
    seed = str(cfg.run.seed)
    tags = {PARENT_TAG: ctx.parent_run_id, "role": "trial", "sweep_kind": ctx.kind, "seed": seed,
            "config_hash": cfg.section_hash("data", "latent", "encoder", "loss", "eval", "run"),
            "stage1_run_id": ctx.stage1_runs.get(seed, ""), "git_commit": ctx.git_commit} | ctx.run_tags
    run_id = find_or_create_run(client, ctx.experiment_id, {"ray_trial_id": trial_id}, trial_name, tags)
    return MlflowLogger(ctx.tracking_uri, run_id)


def _stage1_tags(ctx: SweepContext, setup: Setup) -> dict[str, str]:
    """``stage1_run_id``: the sweep's stage-1 run of this seed when it is this trial's stage 1; a trial whose
    stage 1 differs (Table 2's LORD row: class codes) trains its own inside the trial and names none."""
    run_id = ctx.stage1_runs.get(str(setup.cfg.run.seed), "")
    if not run_id or not needs_latent(setup.cfg):
        return {"stage1_run_id": ""}
    shared = tracking_client(ctx.tracking_uri).get_run(run_id).data.tags.get("latent_key")
    if shared == latent_key(setup):
        return {"stage1_run_id": run_id}
    return {"stage1_run_id": "", "stage1": "trained in the trial (its stage 1 differs from the sweep's of this seed)"}


def run_trial(ctx: SweepContext, config: dict[str, Any], trial_id: str, trial_name: str, checkpoint,
              runtime: LocalRuntime | None, is_main: bool, started: float | None = None) -> dict[str, Any]:
    """Train one trial; log to MLflow from the main rank; mark the run FAILED on any error. ``started``: the
    wall time the trial began (``trial_started``), the zero of its ``time/*`` breakdown."""
    clock = TrialClock(started if started is not None else time.time())
    finished = finished_summary(ctx, trial_id)
    if finished is not None:
        return finished
    overrides = ctx.trial_overrides(config)
    out_dir = Path(ctx.work_dir) / trial_id  # the trial's own: an earlier attempt's files there are continued
    _restore(checkpoint, out_dir)
    extended_from = ctx.extension_of(config) if not (out_dir / "checkpoints" / CHECKPOINT).is_file() else ""
    if extended_from:
        overrides |= {"run.extend_from": str(_fetch_stable_state(ctx.tracking_uri, extended_from, out_dir))}
    cfg = ContraLordConfig.from_overrides(overrides)
    runtime = runtime or LocalRuntime(progress=Silent)
    logger = _trial_logger(ctx, cfg, trial_id, trial_name) if is_main else None
    if logger and extended_from:
        logger.set_tags({reuse.EXTENDED_TAG: extended_from})
    clock.lap("time/start")
    try:
        if ctx.stage1_runs.get(str(cfg.run.seed)):
            fetch_stage1(ctx.tracking_uri, ctx.stage1_runs[str(cfg.run.seed)], ctx.latent_cache)
        clock.lap("time/stage1_fetch")
        setup = prepare(cfg, out_dir, resume=True)  # refuses only a checkpoint of another config
        if logger:
            logger.set_tags(_stage1_tags(ctx, setup))
        clock.lap("time/data")
        sinks = MultiLogger(StdoutLogger(), logger) if logger else NullLogger()
        if logger:
            logger.log_dataset(image_dataset(setup))
            runtime = dataclasses.replace(runtime, report=_with_epoch_images(runtime.report, logger, setup))
        with logger.system_metrics() if logger else contextlib.nullcontext():
            summary = train(cfg, out_dir, runtime=runtime, logger=sinks, resume=True, setup=setup)
        clock.lap("time/train_call")
    except SystemExit as stop:  # Tune ends a trial its scheduler stopped (ASHA) with sys.exit(0) in report()
        if logger:
            logger.stopped_early() if stop.code in (0, None) else logger.finish("FAILED")
        raise
    except BaseException:
        if logger:
            logger.finish("FAILED")
        raise
    if logger:
        _publish_trial(logger, cfg, setup, out_dir, summary)
        clock.lap("time/log")
        logger.log_metrics(clock.breakdown(summary), step=0)
        logger.finish()
    return summary


def _fetch_stable_state(tracking_uri: str, run_id: str, out_dir: Path) -> Path:
    """The stable state of the ladder run ``run_id`` (its ``stable/`` artifact), in ``out_dir/extend/``."""
    folder = out_dir / "extend"
    folder.mkdir(parents=True, exist_ok=True)
    client = tracking_client(tracking_uri)
    return Path(client.download_artifacts(run_id, f"{reuse.STABLE_ARTIFACT}/{STABLE}", str(folder)))


def finished_summary(ctx: SweepContext, trial_id: str) -> dict[str, Any] | None:
    """The summary of this trial's run when the run has FINISHED (its evaluation, files and model all logged), else
    None. A driver killed outright after the trial's end, before Tune recorded it, restarts the trial: it reports
    what it logged instead of evaluating and logging again. Every rank asks, so all of them return alike."""
    client = tracking_client(ctx.tracking_uri)
    run_id = find_run(client, ctx.experiment_id, {"ray_trial_id": trial_id})
    if run_id is None or client.get_run(run_id).info.status != "FINISHED":
        return None
    with tempfile.TemporaryDirectory() as folder:
        summary = json.loads(Path(client.download_artifacts(run_id, "summary.json", folder)).read_text())
    print(f"trial {trial_id}: its MLflow run {run_id} had finished; reported from it, not run again", flush=True)
    return summary


class TrialClock:
    """Wall seconds of a trial's parts, each from the end of the one before (``time.time()``: the trial's
    start may have been taken in another process of the same node)."""

    def __init__(self, started: float):
        self.started, self.last, self.parts = started, started, {}

    def lap(self, name: str) -> None:
        now = time.time()
        self.parts[name], self.last = max(0.0, now - self.last), now

    def breakdown(self, summary: dict[str, Any]) -> dict[str, float]:
        """``time/start, data, stage1_fetch, log, total``, and ``time/train`` when the core's summary has
        no ``time/train``/``time/eval`` of its own (then it is the whole ``train`` call, evaluation included;
        the core logs its own keys with the summary)."""
        parts = {k: v for k, v in self.parts.items() if k != "time/train_call"}
        if "time/train" not in summary:
            parts["time/train"] = self.parts.get("time/train_call", 0.0)
        return parts | {"time/total": self.last - self.started}


def trial_started() -> float:
    """The wall time Tune began setting up this trial's actor (its session's start), else now. What comes
    before it (placing the actor, starting its process, importing torch) is not measured here: Ray reuses
    worker processes across tasks and trials, so a process's start time is not this trial's. The sweep's
    estimate times it separately (``tune/pricing/calibrate.py: launch_seconds``)."""
    from ray.train._internal import session  # Tune's function-trainable session (no public accessor)

    current = session.get_session()
    return float(getattr(current, "last_report_time", 0.0) or time.time()) if current else time.time()


def _publish_trial(logger: MlflowLogger, cfg: ContraLordConfig, setup: Setup, out_dir: Path,
                   summary: dict[str, Any]) -> None:
    """What a finished trial adds to its run: tags of its data and machine, files, images, the encoder. ``cfg``:
    the trial's config as Tune gave it (its reuse keys), ``setup`` the run's resolved inputs."""
    tags = {"data_fingerprint": summary["data_fingerprint"], "latent_key": summary.get("latent_key", "")}
    if summary.get("machine"):  # what the trainer ran on (its thread count, not the driver's)
        tags |= machine.Machine(**{k: v for k, v in summary["machine"].items() if k != "id"}).tags()
    code = reuse.code_version()  # the core this trial ran, on this node: later sweeps reuse the run by it
    tags |= {reuse.KEY_TAG: reuse.reuse_key(cfg, summary["data_fingerprint"], code), reuse.CODE_TAG: code}
    trunk = reuse.trunk_key(cfg, summary["data_fingerprint"], code)
    if trunk and (out_dir / "checkpoints" / STABLE).is_file():  # a longer ladder extends this run from it
        logger.log_artifacts(out_dir / "checkpoints", (STABLE,), reuse.STABLE_ARTIFACT)
        tags[reuse.TRUNK_TAG] = trunk
    logger.set_tags(tags)
    logger.log_artifacts(out_dir, ARTIFACTS)
    logger.log_images(out_dir, GRIDS, step=cfg.encoder.epochs)
    logger.best_effort("encoder_model", _log_encoder, logger, setup, out_dir / "checkpoints" / CHECKPOINT)


def _log_encoder(logger: MlflowLogger, setup: Setup, path: Path) -> None:
    online = export.load_online(setup, path)
    logger.log_model(export.CodeEncoder(online), "encoder", export.example_images(setup.data))


def _with_epoch_images(report: Callable, logger: MlflowLogger, setup: Setup):
    """The runtime's report hook, and after each stage-2 epoch (when L_rec gives a generator) the first
    ``EPOCH_IMAGES`` training images over their reconstructions as the image ``epoch_reconstructions``, read
    from the checkpoint the trainer just wrote (the core stays free of MLflow)."""
    if setup.cfg.loss.rec <= 0:
        return report
    from torchvision.utils import make_grid

    x = export.example_images(setup.data, EPOCH_IMAGES)  # (n, C, H, W)

    @torch.no_grad()
    def render(path: str, epoch: int) -> None:
        recon = export.load_online(setup, path)(x, decode=True)[1].clamp(0, 1)  # (n, C, H, W)
        grid = make_grid(torch.cat([x, recon]), nrow=len(x)).permute(1, 2, 0).numpy()  # (H', W', C)
        logger.log_image(grid, "epoch_reconstructions", epoch)

    def hook(metrics: dict[str, float], path: str | None) -> None:
        epoch = metrics.get("encoder/train/epoch")
        if path and Path(path).name == CHECKPOINT and epoch is not None:
            logger.best_effort("epoch_reconstructions", render, path, int(epoch))
        report(metrics, path)

    return hook


def _reporter(report: Callable, checkpoint_cls) -> Callable[[dict[str, float], str | None], None]:
    """The trainer's per-epoch hook -> Ray report, with the encoder checkpoint when there is one."""

    def hook(metrics: dict[str, float], path: str | None) -> None:
        clean = {k: float(v) for k, v in metrics.items()}
        epoch_key = next((k for k in clean if k.endswith("/train/epoch")), None)
        clean["epoch"] = clean[epoch_key] if epoch_key else clean.get("epoch", 0.0)  # a rung's report gives its own
        if path and Path(path).name == CHECKPOINT and distributed.is_main():
            with tempfile.TemporaryDirectory() as folder:
                shutil.copy2(path, Path(folder) / CHECKPOINT)
                report(clean, checkpoint=checkpoint_cls.from_directory(folder))
        else:
            report(clean)

    return hook


def run_in_tune_trial(config: dict[str, Any], ctx: SweepContext) -> None:
    """Tune function trainable: the whole trial in this process (1 worker)."""
    from ray import tune

    started = trial_started()
    torch.set_num_threads(max(1, int(ctx.cpus_per_worker)))
    context = tune.get_context()
    device = torch.device("cuda" if ctx.use_gpu and torch.cuda.is_available() else "cpu")
    runtime = LocalRuntime(device=device, report=_reporter(tune.report, tune.Checkpoint), progress=Silent)
    summary = run_trial(ctx, config, context.get_trial_id(), context.get_trial_name(), tune.get_checkpoint(),
                        runtime, is_main=True, started=started)
    tune.report(_final_metrics(summary))


def train_fn_per_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train per-worker function (``TorchTrainer``): DDP through the core's runtime."""
    import ray.train
    import ray.train.torch

    ctx, config, trial_id, trial_name = (loop_config[k] for k in ("ctx", "config", "trial_id", "trial_name"))
    torch.set_num_threads(max(1, int(ctx.cpus_per_worker)))
    runtime_cls = DDPRuntime if ray.train.get_context().get_world_size() > 1 else LocalRuntime
    runtime = runtime_cls(device=ray.train.torch.get_device(), report=_reporter(ray.train.report, ray.train.Checkpoint),
                          progress=Silent)  # Tune's status table and the epoch lines show a trial's progress
    is_main = ray.train.get_context().get_world_rank() == 0
    summary = run_trial(ctx, config, trial_id, trial_name, ray.train.get_checkpoint(), runtime, is_main,
                        loop_config.get("trial_started"))
    ray.train.report(_final_metrics(summary))


def _final_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """The numbers Tune keeps for the sweep's table: floats only, plus ``epoch`` (ASHA's time axis)."""
    final = {k: float(v) for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    final["epoch"] = final.get("encoder/final/epoch", 0.0)
    # the last epoch's training metrics under their per-epoch names, for searchers that read them
    last_epoch = {k.replace("encoder/final/", "encoder/train/"): v for k, v in final.items()
                  if k.startswith("encoder/final/")}
    return final | last_epoch
