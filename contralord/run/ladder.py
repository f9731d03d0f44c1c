"""What a run under ``encoder.rungs`` keeps of each rung's evaluation (``contralord/schedules.py`` trains them),
and how a longer ladder extends a finished one.

Each rung's ``metrics.json`` and grids in ``<out>/rungs/<steps>/``; its floats in the stage-2 checkpoint (so a
resumed run does not branch again) and, at the end, in ``<out>/rungs.json`` and under ``rungs`` in the run's
``metrics.json`` and ``summary.json``, keyed by steps. Each is logged as ``rung/<metric>`` at MLflow step = the
rung's steps, and reported to the runtime (a Tune trial: one report per rung, with ``rung/steps``).

**Extending.** Until its top rung's cooldown a WSD run does not depend on its budget, so a finished ladder
(say 40,80) saves its trunk where the top rung's cooldown starts (``checkpoints/stable.pt``, step 64) with every
rung's evaluation, the top's included. A run of the same config with a higher top (40,80,160) and
``run.extend_from`` pointing there starts from that state with those evaluations and trains only steps 64-160:
its rungs and its end equal a straight 40,80,160 run's (tests/test_ladder_extend.py). Every rung the longer ladder
has at or below the old top must be one of the old ladder's; a rung of the old ladder the new one lacks is dropped.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from contralord.config import ConfigError, ContraLordConfig
from contralord.schedules import branch_start, parse_rungs
from contralord.stage2.encoder_stage import CHECKPOINT, RESUME_IGNORED, RESUME_KEYS, STABLE
from contralord.training import checkpoint, distributed
from contralord.training.tracking import MetricsLogger

PREFIX = "rung/"  # rung/encoder/eval/disentanglement at step 640: the rung of 640 steps


class RungRecords:
    """The rung evaluations of one run in ``out_dir``."""

    def __init__(self, out_dir: Path, logger: MetricsLogger, report: Callable[[dict[str, float], str | None], object],
                 steps_per_epoch: int):
        self.out_dir, self.logger, self.report, self.steps_per_epoch = Path(out_dir), logger, report, steps_per_epoch
        self.path = self.out_dir / "rungs.json"

    def folder(self, rung: int) -> Path:
        return self.out_dir / "rungs" / str(rung)

    def record(self, rung: int, summary: dict[str, Any]) -> dict[str, float]:
        """Log and report rung ``rung``'s floats (timings left out); return them."""
        metrics = {k: v for k, v in summary.items() if isinstance(v, float) and not k.startswith("time/")}
        self._log(rung, metrics)
        return metrics

    def _log(self, rung: int, metrics: dict[str, float]) -> None:
        """``rung/<metric>`` at step = the rung's steps, and one report of the rung (its epoch on Tune's axis)."""
        named = {f"{PREFIX}{k}": v for k, v in metrics.items()}
        self.logger.log_metrics(named, step=rung)
        self.report(named | {"rung/steps": float(rung), "epoch": rung / self.steps_per_epoch}, None)

    def carry(self, rungs: dict[int, dict[str, float]], history: list[dict[str, float]]) -> None:
        """Log what an extended run starts with: the earlier ladder's epochs (at the step each ended) and its rungs'
        evaluations, as that run logged them; each rung is reported too (a scheduler sees every milestone)."""
        for epoch in history:
            self.logger.log_metrics(epoch, step=epoch_end_step(epoch, self.steps_per_epoch))
        for rung in sorted(rungs):
            self._log(rung, rungs[rung])

    def write(self, rungs: dict[str, dict[str, float]]) -> None:
        """Every rung's floats, keyed by steps, in ``rungs.json`` and under ``rungs`` in the run's metrics.json
        (when the run evaluated)."""
        checkpoint.write_json_atomic(rungs, self.path)  # rank 0 only
        scores = self.out_dir / "metrics.json"
        if distributed.is_main() and scores.is_file():
            checkpoint.write_json_atomic(json.loads(scores.read_text()) | {"rungs": rungs}, scores)


def epoch_end_step(epoch: dict[str, float], steps_per_epoch: int) -> int:
    """The global step at which a history entry's epoch ended (its ``*/train/step_end``, else full epochs)."""
    end = next((v for k, v in epoch.items() if k.endswith("/train/step_end")), None)
    if end is not None:
        return int(end)
    return int(next(v for k, v in epoch.items() if k.endswith("/train/epoch"))) * steps_per_epoch


def stable_path(out_dir: str | Path) -> Path:
    return Path(out_dir) / "checkpoints" / STABLE


def add_top_rung(out_dir: str | Path, top: int, metrics: dict[str, float]) -> None:
    """Put the top rung's evaluation into the run's stable state: a run that extends it then has every rung."""
    path = stable_path(out_dir)
    if distributed.is_main() and path.is_file():
        state = checkpoint.load(path, required=("rungs",))
        checkpoint.save_atomic(state | {"rungs": state["rungs"] | {str(top): dict(metrics)}}, path)


def extends(cfg: ContraLordConfig, out_dir: Path) -> bool:
    """The run starts from ``run.extend_from`` (set, and no checkpoint of its own to resume yet)."""
    return bool(cfg.run.extend_from) and not (Path(out_dir) / "checkpoints" / CHECKPOINT).is_file()


def load_extension(cfg: ContraLordConfig) -> dict:
    """The state ``run.extend_from`` names, ready to train on under ``cfg``: its rungs kept where ``cfg`` has them,
    its schedule pointed at ``cfg``'s top rung. ConfigError naming ``run.extend_from`` for a file that is not a
    finished ladder's stable state of the same config, or one this ladder does not extend."""
    key, path, rungs = "run.extend_from", Path(cfg.run.extend_from), parse_rungs(cfg.encoder.rungs)
    if cfg.encoder.schedule != "wsd" or not rungs:
        raise ConfigError(f"{key}: extends a budget ladder; it needs encoder.schedule=wsd and encoder.rungs")
    try:
        saved = checkpoint.load(path, required=(*RESUME_KEYS, "rungs", "history"))
        checkpoint.check_compatible(saved["config"], cfg.to_flat_dict(), path,
                                    ignore=(*RESUME_IGNORED, "encoder.rungs", "encoder.steps", "encoder.epochs"))
        old = parse_rungs(str(saved["config"].get("encoder.rungs", "")))
        done = {int(rung): dict(metrics) for rung, metrics in saved["rungs"].items()}
    except (FileNotFoundError, ValueError, TypeError, AttributeError) as error:
        raise ConfigError(f"{key}: {error}") from None
    if not old or int(saved["step"]) != branch_start(old[-1], cfg.encoder.decay_fraction) or old[-1] not in done:
        raise ConfigError(f"{key}: {path} is not the stable state of a finished ladder (a run's "
                          f"checkpoints/{STABLE} is complete once its top rung is evaluated)")
    missing = [r for r in rungs if r <= old[-1] and r not in done]
    if rungs[-1] <= old[-1] or missing:
        raise ConfigError(f"{key}: {path} holds rungs {','.join(map(str, old))}; encoder.rungs={cfg.encoder.rungs} "
                          f"must go above {old[-1]} and have no rung at or below it that those lack"
                          + (f" ({', '.join(map(str, missing))})" if missing else ""))
    scheduler = saved["scheduler"] | {"budget": rungs[-1]}
    return saved | {"scheduler": scheduler, "rungs": {str(r): done[r] for r in rungs if r in done}}
