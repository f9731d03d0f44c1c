"""The epoch/step loop shared by both stages: timing, running means, logging, checkpoint cadence.

A stage supplies ``step_fn(epoch, step_in_epoch, global_step) -> {name: float}`` and
``save_fn(global_step) -> checkpoint path``; the loop resumes at any global step (mid-epoch too).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from contralord.training.tracking import MetricsLogger


class NonFiniteLossError(RuntimeError):
    """A step returned a NaN or infinite value: the run stops before anything of it is saved."""


@dataclass
class LoopSpec:
    stage: str  # "latent" | "encoder": metric prefix
    epochs: int
    steps_per_epoch: int
    images_per_step: int  # global batch size
    checkpoint_every: int = 0  # extra checkpoints every N steps (0 = epoch ends only)
    total_steps: int = 0  # stop after this many steps, inside the last epoch if need be (0 = epochs * steps_per_epoch)
    history: list[dict[str, float]] = field(default_factory=list)  # one entry per epoch, from the checkpoint's on
    last_step: dict[str, float] = field(default_factory=dict)  # the metrics of the latest step
    progress: Any = None  # ``contralord/training/progress.py``: told of every step (None: nothing shown)


def run_loop(spec: LoopSpec, start_step: int, step_fn: Callable[[int, int, int], dict[str, float]],
             save_fn: Callable[[int], str], logger: MetricsLogger,
             report: Callable[[dict[str, float], str | None], object]) -> LoopSpec:
    """Run steps ``start_step .. total_steps`` (or ``epochs*steps_per_epoch``); log and checkpoint each epoch."""
    total = spec.total_steps or spec.epochs * spec.steps_per_epoch
    step = start_step
    while step < total:
        epoch, sums, counts, count = step // spec.steps_per_epoch, {}, {}, 0
        started = time.perf_counter()
        epoch_end = min((epoch + 1) * spec.steps_per_epoch, total)
        while step < epoch_end:
            spec.last_step = step_fn(epoch, step % spec.steps_per_epoch, step)
            _check_finite(spec, spec.last_step, step)
            for name, value in spec.last_step.items():  # a key a step may omit (grad norms) averages its own
                sums[name], counts[name] = sums.get(name, 0.0) + value, counts.get(name, 0) + 1
            step, count = step + 1, count + 1
            if spec.progress is not None:
                loss = f", loss {sums['total'] / counts['total']:.4g}" if "total" in sums else ""
                spec.progress.update(1, f"epoch {epoch + 1}/{spec.epochs}{loss}")
            if spec.checkpoint_every and step % spec.checkpoint_every == 0 and step < epoch_end:
                save_fn(step)
        seconds = time.perf_counter() - started
        metrics = {f"{spec.stage}/train/{k}": v / counts[k] for k, v in sums.items()}
        metrics[f"{spec.stage}/train/images_per_s"] = count * spec.images_per_step / max(seconds, 1e-9)
        metrics[f"{spec.stage}/train/epoch"] = float(epoch + 1)
        metrics[f"{spec.stage}/train/step_end"] = float(step)  # where this entry ended (a rung's branch point splits
        spec.history.append(metrics)  # an epoch). A checkpoint holds the epochs it has run (resumed at the last step,
        logger.log_metrics(metrics, step)  # a run still knows the final epoch's metrics); logged before the checkpoint
        path = save_fn(step)  # is saved, so a run killed in between logs this epoch again (kept once), never not at all
        report(metrics, path)
    return spec


def final_names(metrics: dict[str, float]) -> dict[str, float]:
    """An epoch's ``<stage>/train/<name>`` metrics renamed ``<stage>/final/<name>``: what a run reports as
    where that stage ended (the trial's summary, the stage-1 run's step 0)."""
    return {k.replace("/train/", "/final/"): v for k, v in metrics.items()}


def _check_finite(spec: LoopSpec, values: dict[str, float], step: int) -> None:
    """Stop at once on a NaN/inf: every later step, checkpoint and cached artifact would be NaN too."""
    bad = next((name for name, value in values.items() if not math.isfinite(value)), None)
    if bad is not None:
        raise NonFiniteLossError(f"{spec.stage}/train/{bad}: {values[bad]} at step {step + 1} (epoch "
                                 f"{step // spec.steps_per_epoch + 1}); the run stopped and saved nothing from this "
                                 f"step on (lower {spec.stage}.lr, or check the data)")
