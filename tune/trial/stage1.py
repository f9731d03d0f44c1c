"""Stage 1 once per (data, stage-1 config, seed): every knob the sweeps vary belongs to stage 2.

The artifact lives in the sweep's shared latent cache keyed by its hash (a second sweep with the same
stage-1 config finds it too); its MLflow run lives in the experiment ``contralord-stage1``, found
again by the same key. Training runs as a Ray task with one trial worker's resources, so on a
cluster it lands on a GPU node, not on the head.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlflow import MlflowClient

from ablations.store import tracking_client
from contralord.config import ContraLordConfig
from contralord.latent_result import ARTIFACT, latent_key
from contralord.setup import Setup, build_data, needs_latent
from tune.trial.mlflow_logger import create_run, find_run, get_experiment_id, set_running

EXPERIMENT = "contralord-stage1"


class _DriverBar:
    """Stage 1's progress as a bar in place on the driver's terminal: Ray's tqdm (``ray.experimental.tqdm_ray``)
    sends each update to the driver, which draws it (with the time left); a task's own output is no terminal."""

    def __init__(self, total: int, initial: int, desc: str):
        from ray.experimental.tqdm_ray import tqdm

        self.desc, self.bar = desc, tqdm(total=total, desc=desc, unit="step")
        self.bar.update(initial)

    def update(self, n: int = 1, postfix: str = "") -> None:
        self.bar.set_description(f"{self.desc} {postfix}")  # tqdm_ray sends at most one update a second
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


def _train_stage1(overrides: dict[str, Any], cache: str, tracking_uri: str, run_id: str, threads: int,
                  in_place: bool = False) -> dict:
    import torch

    from contralord import machine
    from contralord.stage1.latent_stage import train_latent
    from contralord.training.runtime import LocalRuntime
    from tune.trial.mlflow_logger import MlflowLogger, image_dataset

    torch.set_num_threads(threads)
    cfg = ContraLordConfig.from_overrides(overrides)
    logger = MlflowLogger(tracking_uri, run_id)
    logger.log_params({k: v for k, v in cfg.to_flat_dict().items() if k.split(".")[0] in ("data", "latent", "run")})
    try:
        setup = Setup.of(cfg, build_data(cfg))
        logger.log_dataset(image_dataset(setup))
        with logger.system_metrics():
            # the console gets a progress line every 5 % (epoch, loss, time left); the epochs' metrics go to MLflow
            runtime = LocalRuntime(progress=_DriverBar) if in_place else LocalRuntime()
            result = train_latent(setup, cache, runtime, logger=logger)
        logger.set_tags(machine.describe().tags())
        logger.log_metrics(result.final_metrics(), step=0)  # before the model: its link copies step 0's metrics
        # also in MLflow's artifact store (S3 on a cluster): trials on other nodes fetch it from there
        logger.log_artifact(result.path)
        logger.best_effort("generator_model", _log_generator, logger, setup, result)
    except BaseException:
        logger.finish("FAILED")
        raise
    logger.finish()
    return result.metrics


def _log_generator(logger, setup: Setup, result) -> None:
    """The stage-1 generator G as an MLflow PyTorch model: codes [d, g^c, g^r] (B, Dd+Dc+Dr) -> images."""
    import torch

    from contralord.models.build import build_generator
    from tune.trial.export import CodeGenerator

    data = setup.data
    generator = build_generator(setup)
    generator.load_state_dict(result.generator_state)
    index = torch.arange(min(2, len(data)))
    codes = torch.cat([result.class_codes[data.classes[index]], result.content[index], result.residual[index]], 1)
    logger.log_model(CodeGenerator(generator.eval(), setup.layout.dims), "generator", codes.float())


def fetch_stage1(tracking_uri: str, run_id: str, cache: str) -> None:
    """Make the stage-1 artifact of ``run_id`` present in this node's ``cache`` (no-op if it is)."""
    client = tracking_client(tracking_uri)
    key = client.get_run(run_id).data.tags.get("latent_key")
    target = Path(cache) / key
    if key and not (target / ARTIFACT).is_file():
        target.mkdir(parents=True, exist_ok=True)
        client.download_artifacts(run_id, ARTIFACT, str(target))


def cached_run(client: MlflowClient, cache: str, key: str) -> str | None:
    """The newest stage-1 run of ``key`` when it FINISHED and its artifact is in ``cache`` (a sweep then trains
    no stage 1 for it), else None. Reads only: the experiment is not created."""
    experiment = client.get_experiment_by_name(EXPERIMENT)
    run_id = find_run(client, experiment.experiment_id, {"latent_key": key}) if experiment else None
    if run_id is None or not (Path(cache) / key / ARTIFACT).is_file():
        return None
    return run_id if client.get_run(run_id).info.status == "FINISHED" else None


def interrupted_run(client: MlflowClient, experiment_id: str, key: str) -> str | None:
    """The newest stage-1 run of ``key`` when it did not finish (its sweep was killed or interrupted), set
    RUNNING again; else None."""
    run_id = find_run(client, experiment_id, {"latent_key": key})
    if run_id is None or client.get_run(run_id).info.status == "FINISHED":
        return None
    set_running(client, run_id)
    return run_id


def ensure_stage1(overrides_per_seed: dict[int, dict[str, Any]], cache: str, tracking_uri: str,
                  resources: dict[str, float], run_tags: dict[str, str] | None = None,
                  named: Callable[[dict[str, str]], None] | None = None) -> dict[str, str]:
    """Train the missing stage-1 artifacts; return {seed: stage-1 MLflow run id}. ``run_tags`` (MLflow's
    source/git tags) go on the runs created here; ``named`` gets the same ids before any training starts (a sweep
    killed during stage 1 has then already said which runs are its own)."""
    import ray

    client = tracking_client(tracking_uri)
    experiment_id = get_experiment_id(client, EXPERIMENT)
    runs, pending = {}, []
    for seed, overrides in overrides_per_seed.items():
        cfg = ContraLordConfig.from_overrides(overrides)
        if not needs_latent(cfg):
            continue
        data = build_data(cfg)
        key = latent_key(Setup.of(cfg, data))
        runs[str(seed)] = run_id = cached_run(client, cache, key)
        if run_id is not None:
            continue
        # a sweep killed during stage 1 left its run unfinished: continue that run (training resumes from the
        # cache's checkpoint) rather than leave it RUNNING for ever beside a new one
        runs[str(seed)] = run_id = interrupted_run(client, experiment_id, key) or create_run(
            client, experiment_id, f"stage1-seed{seed}-{key}",
            {"latent_key": key, "data_fingerprint": data.fingerprint, "seed": str(seed), "role": "stage1"}
            | (run_tags or {}))
        pending.append((overrides, cache, tracking_uri, run_id, max(1, int(resources.get("CPU", 1))),
                        sys.stdout.isatty()))  # a terminal: a bar in place; else a line every 5 %
    if named is not None:
        named(runs)
    task = ray.remote(**_task_resources(resources))(_train_stage1)
    ray.get([task.remote(*args) for args in pending])
    return runs


def _task_resources(resources: dict[str, float]) -> dict[str, float]:
    return {"num_cpus": resources.get("CPU", 1), "num_gpus": resources.get("GPU", 0)}
