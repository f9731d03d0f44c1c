"""Metric sinks for the trainer, without MLflow (its adapter lives in ``tune/mlflow_logger.py``).

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
    """One line per epoch: ``[encoder] epoch 3/10 step 120 | rec 0.0123 sup 1.234 ...``."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout

    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        if not metrics:
            return
        stage = next(iter(metrics)).split("/")[0]
        epoch = metrics.get(f"{stage}/train/epoch")
        head = f"[{stage}] epoch {int(epoch)}" if epoch is not None else f"[{stage}]"
        body = " ".join(f"{k.split('/')[-1]} {v:.4g}" for k, v in metrics.items() if not k.endswith("/epoch"))
        print(f"{head} step {step} | {body}", file=self.stream, flush=True)


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
