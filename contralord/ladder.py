"""What a run under ``encoder.rungs`` keeps of each rung's evaluation (``contralord/schedules.py`` trains them).

Each rung's ``metrics.json`` and grids in ``<out>/rungs/<steps>/``; its floats in the stage-2 checkpoint (so a
resumed run does not branch again) and, at the end, in ``<out>/rungs.json`` and under ``rungs`` in the run's
``metrics.json`` and ``summary.json``, keyed by steps. Each is logged as ``rung/<metric>`` at MLflow step = the
rung's steps, and reported to the runtime (a Tune trial: one report per rung, with ``rung/steps``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from contralord import checkpoint, distributed
from contralord.tracking import MetricsLogger

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
        named = {f"{PREFIX}{k}": v for k, v in metrics.items()}
        self.logger.log_metrics(named, step=rung)
        self.report(named | {"rung/steps": float(rung), "epoch": rung / self.steps_per_epoch}, None)
        return metrics

    def write(self, rungs: dict[str, dict[str, float]]) -> None:
        """Every rung's floats, keyed by steps, in ``rungs.json`` and under ``rungs`` in the run's metrics.json
        (when the run evaluated)."""
        checkpoint.write_json_atomic(rungs, self.path)  # rank 0 only
        scores = self.out_dir / "metrics.json"
        if distributed.is_main() and scores.is_file():
            checkpoint.write_json_atomic(json.loads(scores.read_text()) | {"rungs": rungs}, scores)
