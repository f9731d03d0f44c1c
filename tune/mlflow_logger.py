"""The only writer of MLflow runs: experiments, the sweep's parent run, stage-1 runs, trial runs.

A trial's run is found again by its Ray trial id, so a restarted or resumed trial continues its own
run instead of starting a duplicate. Params are the trial's full flat config (``to_flat_dict``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import RunStatus

PARENT_TAG = "mlflow.parentRunId"
STOPPED_EARLY = "stopped_early"  # tag of a trial a scheduler (ASHA) stopped before its evaluation


def get_experiment_id(client: MlflowClient, name: str) -> str:
    """The id of experiment ``name``, created if missing (on the driver, once, to avoid races)."""
    experiment = client.get_experiment_by_name(name)
    return experiment.experiment_id if experiment else client.create_experiment(name)


def find_run(client: MlflowClient, experiment_id: str, tags: dict[str, str]) -> str | None:
    """The newest run of the experiment carrying all ``tags``, or None."""
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    runs = client.search_runs([experiment_id], filter_string=query, max_results=1,
                              order_by=["attributes.start_time DESC"])
    return runs[0].info.run_id if runs else None


def find_or_create_run(client: MlflowClient, experiment_id: str, key_tags: dict[str, str],
                       run_name: str, tags: dict[str, str] | None = None) -> str:
    """The run identified by ``key_tags`` (set back to RUNNING), or a new one."""
    run_id = find_run(client, experiment_id, key_tags)
    if run_id is None:
        return client.create_run(experiment_id, run_name=run_name, tags=key_tags | (tags or {})).info.run_id
    client.update_run(run_id, status="RUNNING")
    if STOPPED_EARLY in client.get_run(run_id).data.tags:  # continued after all: no longer stopped early
        client.delete_tag(run_id, STOPPED_EARLY)
    for key, value in (tags or {}).items():
        client.set_tag(run_id, key, value)
    return run_id


class MlflowLogger:
    """``contralord.tracking.MetricsLogger`` onto one MLflow run (use it on rank 0 only)."""

    def __init__(self, tracking_uri: str, run_id: str):
        self.client, self.run_id = MlflowClient(tracking_uri), run_id
        self._last_step: dict[str, int] = {}  # per metric: the last step already in the run

    def _already_logged(self, key: str, step: int) -> bool:
        """A retried trial re-runs the epochs after its last checkpoint: keep one point per step."""
        if key not in self._last_step:
            history = self.client.get_metric_history(self.run_id, key)
            self._last_step[key] = max((m.step for m in history), default=-1)
        return step <= self._last_step[key]

    def log_params(self, params: dict[str, Any]) -> None:
        existing = self.client.get_run(self.run_id).data.params
        fresh = {k: str(v) for k, v in params.items() if k not in existing}  # a resumed run keeps its params
        for start in range(0, len(fresh), 100):
            batch = [mlflow.entities.Param(k, v) for k, v in list(fresh.items())[start:start + 100]]
            self.client.log_batch(self.run_id, params=batch)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        stamp = mlflow.utils.time.get_current_time_millis()
        fresh = {k: v for k, v in metrics.items() if not self._already_logged(k, step)}
        batch = [mlflow.entities.Metric(k, float(v), stamp, step) for k, v in fresh.items()]
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)
        self._last_step |= {k: step for k in fresh}

    def log_artifacts(self, folder: Path, names: tuple[str, ...]) -> None:
        for name in names:
            if (Path(folder) / name).is_file():
                self.client.log_artifact(self.run_id, str(Path(folder) / name))

    def finish(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)

    def stopped_early(self) -> None:
        mark_stopped_early(self.client, self.run_id)


def mark_stopped_early(client: MlflowClient, run_id: str) -> None:
    """A scheduler stopped the trial before its evaluation: KILLED, tagged so tables count it apart."""
    client.set_tag(run_id, STOPPED_EARLY, "true")
    client.set_terminated(run_id, status="KILLED")


def mark_failed_if_running(client: MlflowClient, run_id: str) -> None:
    if client.get_run(run_id).info.status == RunStatus.to_string(RunStatus.RUNNING):
        client.set_terminated(run_id, status="FAILED")
