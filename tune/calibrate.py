"""A short calibration on this machine, for sweeps the store has no past runs of: a few training steps of
stage 1 and of each variant's stage 2 with the trial's config and thread count, and the evaluation on a
sample of its images, each scaled up to the full run (``tune/estimate.py`` adds the rest).

Codes and generator are random, as in ``contralord bench``: a step's time does not depend on their
values. The evaluation is timed at ``EVAL_FRACTION`` of its images, after a warm-up at a tiny size (the
first call pays imports and first-call set-up), and scaled linearly: measured at the cpu preset on the
loaded 2-core box, 0.25 of the images took 14.3 s and all of them 58.0 s (4.06x).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time

import torch

from contralord import labels, sampling
from contralord.bench import time_steps
from contralord.config import ContraLordConfig
from contralord.data import ImageFactorData
from contralord.runtime import LocalRuntime

STEPS = 5  # timed steps per stage (after one warm-up step)
EVAL_FRACTION = 0.25  # of eval.num_train / eval.num_test timed (after a tiny warm-up), then scaled
LOG_S = 6.0  # a finished trial's publishing (artifacts, images, the encoder model): time/log on the loaded 2-core box
STAGE1_FIXED_S = 15.0  # per stage-1 run besides its steps: the task's start, MLflow logging, the generator model


def _threads(threads: int):
    """Run the timing at the trial's torch thread count, then restore this process's."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    return before


def _runtime(gpu: bool) -> LocalRuntime:
    """The trial's device: a GPU trial calibrates on this machine's GPU (``tune/worker.py`` does the same)."""
    return LocalRuntime(device=torch.device("cuda" if gpu and torch.cuda.is_available() else "cpu"))


def stage1_seconds(cfg: ContraLordConfig, data: ImageFactorData, threads: int,
                   gpu: bool = False) -> tuple[float, object]:
    """Predicted seconds of stage 1, and its (untrained) trainer for the stage-2 calibration."""
    from contralord.latent_stage import build_trainer

    before = _threads(threads)
    try:
        trainer = build_trainer(cfg, data, _runtime(gpu))
        spe = sampling.steps_per_epoch(len(data), cfg.latent.batch_size)
        per_step = time_steps(lambda i: trainer.step(0, i % spe, i), STEPS)
    finally:
        torch.set_num_threads(before)
    return STAGE1_FIXED_S + per_step * spe * cfg.latent.epochs, trainer


def trial_seconds(cfg: ContraLordConfig, data: ImageFactorData, stage1, threads: int,
                  with_eval: bool = True, gpu: bool = False) -> dict[str, float]:
    """Predicted ``train`` and ``eval`` seconds of one trial at ``threads`` torch threads."""
    from contralord.bench import _random_latent
    from contralord.encoder_stage import EncoderTrainer
    from contralord.trainer import stage1_factor_codes

    cfg = labels.resolved(cfg, data)
    before = _threads(threads)
    try:
        latent = _random_latent(cfg, data, stage1) if stage1 is not None else None
        runtime = _runtime(gpu)
        trainer = EncoderTrainer(cfg, data, latent, runtime)
        spe = sampling.steps_per_epoch(len(data), cfg.encoder.batch_size)
        per_step = time_steps(lambda i: trainer.step(0, i % spe, i), STEPS)
        factor_codes = stage1_factor_codes(cfg, data, latent, runtime.device)  # eval.scored_code=classifier scores them
        evaluation = (eval_seconds(cfg, trainer.online, data, runtime.device, factor_codes)
                      if with_eval and cfg.eval.enabled else 0.0)
    finally:
        torch.set_num_threads(before)
    return {"train": per_step * sampling.encoder_steps(cfg, len(data))[0], "eval": evaluation}


def launch_seconds() -> float:
    """A trial's launch before it trains: a fresh Python importing what a trial process imports (torch,
    the core, MLflow, Ray Tune), timed now, so it carries the machine's current load."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import ray.tune, tune.worker"], check=False, capture_output=True,
                   timeout=300, env=_env())
    return time.perf_counter() - started


def data_seconds(cfg: ContraLordConfig) -> float:
    """Building the trial's dataset (``time/data``)."""
    from contralord.trainer import build_data

    started = time.perf_counter()
    build_data(cfg)
    return time.perf_counter() - started


def _env() -> dict[str, str]:
    import os
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    return os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH", "")]))}


def _eval_sized(cfg: ContraLordConfig, fraction: float, data: ImageFactorData) -> ContraLordConfig:
    """The evaluation at ``fraction`` of its sizes, never below what the metrics accept: every held-out
    split (``all-factors``: num_test; ``partial-labels``: 20% of the scored images) holds at least as many
    images as the largest factor has values (dSprites' positions: 32)."""
    values = max(data.factor_sizes, default=1)
    return ContraLordConfig.from_overrides(cfg.to_flat_dict() | {
        "eval.num_train": max(100, 4 * values, round(cfg.eval.num_train * fraction)),
        "eval.num_test": max(50, 2 * values, round(cfg.eval.num_test * fraction))})


def eval_seconds(cfg: ContraLordConfig, online, data: ImageFactorData, device: torch.device,
                 factor_codes: torch.nn.Module | None = None) -> float:
    """The evaluation at ``EVAL_FRACTION`` of its sizes, timed and scaled back to the full sizes
    (``factor_codes``: stage 1's classifiers, which ``eval.scored_code=classifier`` scores)."""
    from contralord.evaluation import evaluate

    small = _eval_sized(cfg, EVAL_FRACTION, data)
    scale = (cfg.eval.num_train + cfg.eval.num_test) / (small.eval.num_train + small.eval.num_test)
    with tempfile.TemporaryDirectory() as folder:
        evaluate(_eval_sized(cfg, 0.0, data), online, data, folder, device, factor_codes=factor_codes)  # warm-up
        started = time.perf_counter()
        evaluate(small, online, data, folder, device, factor_codes=factor_codes)
        return (time.perf_counter() - started) * scale
