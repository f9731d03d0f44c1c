"""What the sweep's parent run records, decided in one place and written through ``tune/trial/mlflow_logger.py``, the
one MLflow writer.

A sweep is one MLflow run (``role=sweep``) with its trials nested under it. Everything the driver records on
that run goes through ``ParentRun``: the sweep's params, the wall-time estimate and the actual wall time,
how many trials ran or were reused, the code version, the stage-1 runs, the table with its files, the
registered encoder, the rounds of ``--until-decided`` (planned by ``tune/rounds.py``) and their cost, and the
run's end. Trial runs are recorded by the trials (``MlflowLogger``), stage-1 runs by ``tune/trial/stage1.py``, linked
copies of reused trials by ``tune/trial/reuse.py``; all of them write through the writer too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

from mlflow import MlflowClient

from ablations.store import without_password
from tune.checks import SweepError
from tune.plan import SweepPlan, git_commit
from tune.pricing.estimate import SweepEstimate
from tune.trial import mlflow_logger as ml

PARAM_CHARS = 6000  # MLflow's limit on a param value


class ParentRun:
    """The records of one sweep's parent run (``run_id``) in ``client``'s store."""

    def __init__(self, client: MlflowClient, run_id: str):
        self.client, self.run_id = client, run_id

    @classmethod
    def open(cls, plan: SweepPlan, client: MlflowClient, experiment_id: str, tags: dict[str, str],
             tuner_exists: Callable[[], bool]) -> ParentRun:
        """The sweep's run: found again and set RUNNING with ``--resume``, else new, with the sweep's params.
        A run of this sweep path whose Tuner state exists is a sweep of that name already (refused)."""
        sweep_path = f"{plan.storage}/{plan.name}"
        key = {"sweep_path": sweep_path, "role": "sweep"}
        found = ml.find_run(client, experiment_id, key)
        if plan.options.resume:
            if found is None:
                raise SweepError(f"--resume: no MLflow sweep run for {sweep_path} in "
                                 f"{without_password(plan.tracking_uri)}")
            ml.set_running(client, found)
            return cls(client, found)
        if found is not None and tuner_exists():
            raise SweepError(f"--name: sweep {plan.name!r} already exists under {plan.storage} (pass --resume, "
                             f"or another --name)")
        run_id = ml.create_run(client, experiment_id, plan.name, key | {"git_commit": git_commit()} | tags)
        parent = cls(client, run_id)
        parent._log_params(_sweep_params(plan))
        return parent

    def _log_params(self, params: dict[str, object]) -> None:
        existing = self.client.get_run(self.run_id).data.params  # a resumed sweep keeps its params
        ml.log_batch(self.client, self.run_id,
                     params={k: str(v)[:PARAM_CHARS] for k, v in params.items() if k not in existing})

    def log_estimate(self, estimate) -> None:
        """The trainer path and why, and the estimate's seconds (``tune.pricing.estimate.SweepEstimate``)."""
        ml.log_batch(self.client, self.run_id, tags={"trainer_path": estimate.path, "trainer_why": estimate.why}
                     | ({"estimate.unpriced": estimate.unpriced} if estimate.unpriced else {}))
        self._log_params({"sweep.trainer": estimate.path})
        seconds = {"estimate/wall_s": estimate.wall_s} | {f"estimate/{k}_s": v for k, v in estimate.parts.items()}
        if estimate.later:  # the first round is what estimate/wall_s predicts; actual/first_round_s is its measure
            seconds["estimate/until_decided_max_s"] = estimate.wall_s + estimate.later.wall_s
        ml.log_batch(self.client, self.run_id, metrics=seconds)
        if estimate.calibrations:  # the load the timings saw, beside the sweep's own: the estimate's error in context
            worst = max(estimate.calibrations, key=lambda t: t.load / t.cpus)
            ml.log_batch(self.client, self.run_id, tags={"estimate.load": f"{worst.load:.2f} on {worst.cpus} CPUs",
                                                         "estimate.calibrations_cached": sum(
                                                             t.cached for t in estimate.calibrations)})

    def logged_estimate(self) -> SweepEstimate | None:
        """The trainer path and the estimate's seconds ``log_estimate`` wrote (a first attempt's, read by
        ``--resume``), or None when there are none (the estimate failed, or the sweep stopped before it)."""
        run = self.client.get_run(self.run_id)
        path, why = run.data.tags.get("trainer_path"), run.data.tags.get("trainer_why", "")
        totals = ("estimate/wall_s", "estimate/until_decided_max_s")  # sums of the parts, not parts
        parts = {k[len("estimate/"):-len("_s")]: v for k, v in run.data.metrics.items()
                 if k.startswith("estimate/") and k.endswith("_s") and k not in totals}
        if path not in ("train", "tune") or not parts:
            return None
        unpriced = run.data.tags.get("estimate.unpriced", "")
        return SweepEstimate([], {}, [], 1, path, why, parts, unpriced_logged=unpriced)

    def estimate_failed(self, line: str) -> None:
        ml.set_tag(self.client, self.run_id, "estimate_error", line)

    def log_seconds(self, name: str, seconds: float) -> None:
        """A measured time: ``actual/wall_s``, ``actual/first_round_s``."""
        ml.log_metric(self.client, self.run_id, name, seconds)

    def log_code_version(self, tag: str, code: str) -> None:
        ml.set_tag(self.client, self.run_id, tag, code)

    def log_stage1_runs(self, runs: dict[str, str]) -> None:
        """{seed: stage-1 run id} of every round so far."""
        ml.set_tag(self.client, self.run_id, "stage1_run_ids", json.dumps(runs))

    def log_counts(self, trained: int, reused: int) -> None:
        ml.log_batch(self.client, self.run_id, tags={"trials_trained": trained, "trials_reused": reused})

    def log_table(self, markdown: str, means: dict[str, float], files: Iterable[Path]) -> None:
        """The table as the run's description and per-cell metrics (``ml.log_sweep_table``), and its files."""
        ml.log_sweep_table(self.client, self.run_id, markdown, means)
        for path in files:
            ml.log_artifact(self.client, self.run_id, path)

    def no_table(self, why: str) -> None:
        ml.set_tag(self.client, self.run_id, "mlflow.note.content", f"No table: {why}")

    def log_registered(self, name: str, version: str) -> None:
        ml.set_tag(self.client, self.run_id, "registered_model", f"{name}/{version}")

    def log_rounds(self, log: dict, artifact: str, rounds: int) -> None:
        """``--until-decided``'s log so far (rule, columns, each round's decisions) and how many rounds ran."""
        ml.log_dict(self.client, self.run_id, log, artifact)
        ml.set_tag(self.client, self.run_id, "until_decided.rounds", str(rounds))

    def log_metrics(self, metrics: dict[str, float]) -> None:
        ml.log_batch(self.client, self.run_id, metrics=metrics)

    def finish(self) -> None:
        if "sweep_failed" in self.client.get_run(self.run_id).data.tags:  # an earlier attempt's, now rerun
            ml.delete_tag(self.client, self.run_id, "sweep_failed")
        ml.end_run(self.client, self.run_id, "FINISHED")

    def fail(self, why: str) -> None:
        """A sweep that ran to its end with trials in error or no table (``--resume`` reruns the failed trials)."""
        ml.set_tag(self.client, self.run_id, "sweep_failed", why[:5000])
        ml.end_run(self.client, self.run_id, "FAILED")

    def kill(self) -> None:
        """An interrupted or failed sweep (``--resume`` continues it)."""
        ml.end_run(self.client, self.run_id, "KILLED")


def _sweep_params(plan: SweepPlan) -> dict[str, object]:
    return {"sweep.kind": plan.kind, "sweep.preset": plan.options.preset, "sweep.seeds": len(plan.seeds),
            "sweep.knob": plan.knob, "sweep.variants": json.dumps([name for name, _ in plan.variants]),
            "sweep.workers_per_trial": plan.options.workers_per_trial} | {f"base.{k}": v for k, v in plan.base.items()}
