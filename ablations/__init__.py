"""Ablation tables from MLflow runs: mean ± std and 95% confidence intervals over seeds, one row per value
of the swept config key(s), with the paper's values beside ours. ``python ablations/make_tables.py``."""

import os


def telemetry_off() -> None:
    """MLflow's usage telemetry stays off unless the user turns it on (MLFLOW_DISABLE_TELEMETRY=false): its
    background thread sets and unsets an environment variable while a request of another thread reads the
    environment, and that request then fails with "_MLFLOW_TELEMETRY_SESSION_ID" (docs/MLFLOW.md, "Telemetry").
    Only effective before mlflow is imported: this package calls it on import (tune/ imports it first), and our
    scripts call it before their own mlflow imports."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


telemetry_off()
