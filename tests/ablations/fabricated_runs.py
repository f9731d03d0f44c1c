"""A temporary MLflow store with fabricated trial runs whose metrics are known exactly. (Not a conftest.py:
a second conftest module would shadow ``from conftest import ...`` in tests/.)

A trial is four store calls (create, one ``log_batch`` of its params and metrics, terminate, and the count of
the experiment's runs for its start time) instead of one per param and metric: on 2 busy cores each SQLite
commit costs tens of milliseconds, and the ablation tests fabricate hundreds of runs."""

import time

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from tune.trial.mlflow_logger import experiment_artifacts

BASE = {"data.name": "shapes3d", "data.size": "2048", "encoder.queue_size": "128", "encoder.temperature": "0.07",
        "loss.rec": "1.0", "loss.sup": "1.0",
        "loss.con": "1.0", "loss.res": "1.0", "run.latent_cache": "/somewhere/latent_cache"}


class Store:
    def __init__(self, uri: str):
        self.uri, self.client = uri, MlflowClient(uri)
        self._experiments: dict[str, str] = {}  # name -> id (fabricated stores never delete or rename one)

    def experiment(self, name: str) -> str:
        if name not in self._experiments:
            found = self.client.get_experiment_by_name(name)
            # artifacts beside the database, as our sweeps make them (MLflow's default is ./mlruns of the cwd)
            location = experiment_artifacts(self.uri, name)
            self._experiments[name] = found.experiment_id if found else self.client.create_experiment(
                name, artifact_location=location and str(location))
        return self._experiments[name]

    def parent(self, experiment: str, kind: str) -> str:
        run = self.client.create_run(self.experiment(experiment), tags={"role": "sweep"})
        self.client.log_param(run.info.run_id, "sweep.kind", kind)
        return run.info.run_id

    def trial(self, experiment: str, params: dict, metrics: dict, seed: int, status: str = "FINISHED",
              parent: str = "", tags: dict | None = None) -> str:
        """One trial run: BASE config overridden by ``params``, final metric values, a status. Its start time
        is now plus the number of runs already in the experiment, so that a later trial always starts later."""
        all_tags = {"role": "trial", "seed": str(seed), "git_commit": "0123456789abcdef",
                    "data_fingerprint": "f00d"} | ({"mlflow.parentRunId": parent} if parent else {})
        experiment_id = self.experiment(experiment)
        earlier = len(self.client.search_runs([experiment_id]))
        run = self.client.create_run(experiment_id, tags=all_tags | (tags or {}),
                                     start_time=int(time.time() * 1000) + earlier)
        run_id, now = run.info.run_id, int(time.time() * 1000)
        config = BASE | params | {"run.seed": str(seed)}
        self.client.log_batch(run_id, params=[Param(key, str(value)) for key, value in config.items()],
                              metrics=[Metric(f"encoder/eval/{key}", value, now, 0) for key, value in metrics.items()])
        self.client.set_terminated(run_id, status=status)
        return run_id


@pytest.fixture(name="store")
def mlflow_store(tmp_path):
    return Store(f"sqlite:///{tmp_path / 'mlflow.db'}")
