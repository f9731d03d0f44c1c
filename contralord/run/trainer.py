"""End-to-end ContraLORD training (Algorithm 1): prepare, stage 1 (cached), stage 2, evaluate.

``train(cfg, out_dir)`` works in a notebook or a test with no Ray and no MLflow; the sweep service injects a
``Runtime`` (device, DDP wrapping, report hook) and a ``MetricsLogger``. Every check on the user's input runs in
``preflight.prepare``, before the first training step; this module only trains.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from contralord import machine
from contralord.config import ContraLordConfig
from contralord.encoding import CodeCache
from contralord.evaluation import evaluate
from contralord.latent_result import LatentResult, scored_factor_model
from contralord.run.ladder import RungRecords, add_top_rung, extends, load_extension
from contralord.run.preflight import prepare
from contralord.run.summary import summarize
from contralord.schedules import parse_rungs
from contralord.setup import Setup, needs_latent
from contralord.stage1.latent_stage import train_latent
from contralord.stage2.encoder_stage import EncoderTrainer, train_encoders
from contralord.training import checkpoint, distributed, sampling
from contralord.training.runtime import LocalRuntime
from contralord.training.tracking import MetricsLogger, NullLogger


def train(cfg: ContraLordConfig, out_dir: str | Path, runtime: LocalRuntime | None = None,
          logger: MetricsLogger | None = None, resume: bool = False, setup: Setup | None = None) -> dict[str, Any]:
    """Run both stages into ``out_dir``; return (and write to summary.json) the final summary. ``setup``:
    ``preflight.prepare(cfg, out_dir, resume)``'s result when the caller has it already (a sweep trial, the CLI); a
    ``Setup`` built otherwise skips the checks ``prepare`` makes. Without it, ``prepare`` runs here."""
    runtime, logger, out_dir = runtime or LocalRuntime(), logger or NullLogger(), Path(out_dir)
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    setup = setup if setup is not None else prepare(cfg, out_dir, resume)
    cfg = setup.cfg
    checkpoint.write_json_atomic(cfg.to_flat_dict(), out_dir / "config.json")
    logger.log_params(cfg.to_flat_dict())
    started = time.perf_counter()
    latent = train_latent(setup, cfg.run.latent_cache or out_dir / "latent_cache", runtime, logger) \
        if needs_latent(cfg) else None
    stage1_done = time.perf_counter()
    spe = sampling.steps_per_epoch(len(setup.data), cfg.encoder.batch_size)
    ladder = RungRecords(out_dir, logger, runtime.report, spe) if cfg.encoder.rungs else None
    extended = _extension(cfg, ladder) if extends(cfg, out_dir) else None
    at_rungs = setup.with_eval(floors=False)  # Table 1's floors depend on the data and seed: scored once, at the end

    def score_rung(rung: int, branch: EncoderTrainer) -> dict[str, float]:
        return ladder.record(rung, _scored(at_rungs, latent, branch, ladder.folder(rung), runtime.device))

    trainer = train_encoders(setup, latent, out_dir, runtime, logger, score_rung if ladder else None, extended)
    train_done = time.perf_counter()
    summary = _scored(setup, latent, trainer, out_dir, runtime.device)
    if ladder:  # the top rung is the run itself
        summary["rungs"] = _top_rung(out_dir, ladder, trainer, summary, parse_rungs(cfg.encoder.rungs)[-1])
    summary |= {"time/stage1": stage1_done - started, "time/train": train_done - stage1_done,
                "time/eval": time.perf_counter() - train_done}
    logger.log_metrics({k: v for k, v in summary.items() if isinstance(v, float)}, step=0)
    checkpoint.write_json_atomic(summary, out_dir / "summary.json")
    return summary


def _extension(cfg: ContraLordConfig, ladder: RungRecords) -> dict:
    """The state ``run.extend_from`` names (checked by ``preflight.check_extension``), its epochs and rungs logged as
    this run's own (``RungRecords.carry``)."""
    state = load_extension(cfg)
    ladder.carry({int(rung): metrics for rung, metrics in state["rungs"].items()}, state["history"])
    return state


def _top_rung(out_dir: Path, ladder: RungRecords, trainer: EncoderTrainer, summary: dict[str, Any],
              top: int) -> dict[str, dict[str, float]]:
    """Every rung's metrics by steps, the top rung (the run itself) recorded from ``summary``."""
    rungs = trainer.rungs | {top: ladder.record(top, summary)}
    by_steps = {str(rung): rungs[rung] for rung in sorted(rungs)}
    ladder.write(by_steps)
    add_top_rung(out_dir, top, rungs[top])
    return by_steps


def _scored(setup: Setup, latent: LatentResult | None, trainer: EncoderTrainer, folder: Path,
            device: torch.device) -> dict[str, Any]:
    """The summary of a trained encoder and, when evaluation is on, its scores (``evaluate`` writes
    ``folder/metrics.json`` and the grids)."""
    train_codes = CodeCache(trainer.online, setup.data.images, trainer.device)  # read by the summary and evaluate
    summary = summarize(setup, latent, trainer, train_codes)
    summary["machine"] = machine.describe().as_dict()  # tables refuse to pool runs across machines
    if setup.cfg.eval.enabled and distributed.is_main():
        factor_codes = scored_factor_model(setup, latent, device)
        scores = evaluate(setup, trainer.online, folder, device, train_codes, factor_codes)
        summary |= {f"encoder/eval/{k}": v for k, v in scores.items() if isinstance(v, float)}
    return summary
