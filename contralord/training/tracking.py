"""Metric sinks for the trainer, without MLflow (its adapter lives in ``tune/trial/mlflow_logger.py``).

Metric keys follow ``{stage}/{split}/{name}``, e.g. ``encoder/train/nce_content``.
"""

from __future__ import annotations

import sys
from typing import Any, Protocol


class MetricsLogger(Protocol):
    def log_params(self, params: dict[str, Any]) -> None: ...

    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...


class NullLogger:
    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        pass


class StdoutLogger:
    """One line per epoch: ``[encoder] epoch 3 step 120 | rec 0.0123 sup 1.234 ... grad/rec 0.08 ...``, and one
    per rung of a budget ladder with its headline scores: ``[rung 640] disentanglement 0.41 ...``. A run's
    end-of-run summary goes to the tracker only (hundreds of numbers; the sweep's table and summary.json show them
    named)."""

    HEADLINE = ("disentanglement", "completeness", "informativeness_test", "mig", "content_corr_min")

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout

    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        if not metrics:
            return
        stage = next(iter(metrics)).split("/")[0]
        epoch = metrics.get(f"{stage}/train/epoch")
        if epoch is not None:
            body = " ".join(f"{k.removeprefix(f'{stage}/train/')} {v:.4g}" for k, v in metrics.items()
                            if not k.endswith(("/epoch", "/step_end")))  # grad/rec: not a second "rec"
            self._write(f"[{stage}] epoch {int(epoch)} step {step} | {body}")
        elif stage == "rung":
            scores = {k.rsplit("/", 1)[-1]: v for k, v in metrics.items() if k.startswith("rung/encoder/eval/")}
            body = " ".join(f"{name} {scores[name]:.4g}" for name in self.HEADLINE if name in scores)
            self._write(f"[rung {step}] {body}")

    def _write(self, line: str) -> None:
        """A line above a progress bar on the same terminal, not through it (tqdm.write)."""
        from tqdm import tqdm

        tqdm.write(line, file=self.stream)
        self.stream.flush()


class MultiLogger:
    """Send everything to several loggers (e.g. the terminal and MLflow)."""

    def __init__(self, *loggers: MetricsLogger):
        self.loggers = loggers

    def log_params(self, params: dict[str, Any]) -> None:
        for logger in self.loggers:
            logger.log_params(params)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for logger in self.loggers:
            logger.log_metrics(metrics, step)
