"""How a sweep closes its trial runs: a trial a scheduler stopped is KILLED and tagged stopped_early (and
the ablation tables count it apart), an errored one FAILED, a finished one untouched."""

from dataclasses import dataclass, field

import pytest
from mlflow import MlflowClient

from ablations.runs import classify, from_experiment
from tune.driver.sweep import _close_trial_runs
from tune.trial import worker
from tune.trial.context import SweepContext
from tune.trial.mlflow_logger import find_or_create_run, get_experiment_id


@dataclass
class FakeResult:  # the two fields of ray.tune.Result that the sweep reads
    metrics: dict = field(default_factory=dict)
    error: Exception | None = None


def _run(client, experiment_id, trial_id, status="RUNNING"):
    run_id = client.create_run(experiment_id, tags={"ray_trial_id": trial_id, "role": "trial"}).info.run_id
    if status != "RUNNING":
        client.set_terminated(run_id, status=status)
    return run_id


def test_close_trial_runs__stopped_failed_and_finished(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = get_experiment_id(client, "contralord-optuna")
    stopped, errored, done = (_run(client, experiment_id, t) for t in ("t1", "t2", "t3"))
    client.set_terminated(done, status="FINISHED")
    results = [FakeResult({"trial_id": "t1", "encoder/train/total": 1.0}),
               FakeResult({"trial_id": "t2"}, error=RuntimeError("lost")),
               FakeResult({"trial_id": "t3", "encoder/final/total": 1.0})]
    _close_trial_runs(results, client, experiment_id, interrupted=True)  # unfinished trials stay for --resume
    assert client.get_run(stopped).info.status == "RUNNING" and client.get_run(errored).info.status == "FAILED"
    _close_trial_runs(results, client, experiment_id, interrupted=False)
    assert client.get_run(stopped).info.status == "KILLED"
    assert client.get_run(stopped).data.tags["stopped_early"] == "true"
    assert client.get_run(errored).info.status == "FAILED" and "stopped_early" not in client.get_run(errored).data.tags
    assert client.get_run(done).info.status == "FINISHED"
    statuses = sorted(r.status for r in from_experiment(client, "contralord-optuna").runs)
    assert statuses == ["early_stopped", "failed", "finished"]


@pytest.mark.parametrize("error, status, early", [(SystemExit(0), "KILLED", "true"),
                                                  (SystemExit(1), "FAILED", None),
                                                  (RuntimeError("boom"), "FAILED", None)])
def test_run_trial__tune_stop_is_not_a_failure(tmp_path, monkeypatch, error, status, early):
    """Tune ends a stopped trial with sys.exit(0) inside report(); any other exception is a failure."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = get_experiment_id(client, "contralord-optuna")
    valid = {"data.size": 64, "data.image_size": 32, "latent.batch_size": 32, "encoder.batch_size": 32,
             "encoder.queue_size": 16, "data.num_labels": 16}  # the worker checks the config against the data
    ctx = SweepContext("optuna", valid, {}, str(tmp_path), str(tmp_path / "cache"), str(tmp_path / "work"),
                       uri, experiment_id, parent_run_id="")

    def train(*args, **kwargs):
        raise error

    monkeypatch.setattr(worker, "train", train)
    with pytest.raises(type(error)):
        worker.run_trial(ctx, {}, "t9", "trial_9", None, runtime=None, is_main=True)
    run = client.search_runs([experiment_id])[0]
    assert run.info.status == status and run.data.tags.get("stopped_early") == early


def test_resumed_trial__is_no_longer_stopped_early(tmp_path):
    """A KILLED + stopped_early run that a resumed sweep continues loses the tag (and finishes)."""
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = get_experiment_id(client, "contralord-negatives")
    run_id = _run(client, experiment_id, "t1", status="KILLED")
    client.set_tag(run_id, "stopped_early", "true")
    assert find_or_create_run(client, experiment_id, {"ray_trial_id": "t1"}, "trial") == run_id
    client.set_terminated(run_id, status="FINISHED")
    assert [r.status for r in from_experiment(client, "contralord-negatives").runs] == ["finished"]
    assert "stopped_early" not in client.get_run(run_id).data.tags


def test_classify__the_tag_alone_does_not_make_a_run_early_stopped():
    assert classify("KILLED", {"stopped_early": "true"}) == "early_stopped"
    assert classify("FINISHED", {"stopped_early": "true"}) == "finished"
    assert classify("KILLED", {}) == "unfinished"
