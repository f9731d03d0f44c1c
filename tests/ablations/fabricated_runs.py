"""A temporary MLflow store with fabricated trial runs whose metrics are known exactly. (Not a conftest.py:
a second conftest module would shadow ``from conftest import ...`` in tests/.)"""

import time

import pytest
from mlflow import MlflowClient

BASE = {"data.name": "shapes3d", "data.size": "2048", "encoder.queue_size": "128", "encoder.temperature": "0.07",
        "loss.rec": "1.0", "loss.sup": "1.0",
        "loss.con": "1.0", "loss.res": "1.0", "run.latent_cache": "/somewhere/latent_cache"}


class Store:
    def __init__(self, uri: str):
        self.uri, self.client = uri, MlflowClient(uri)

    def experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        return found.experiment_id if found else self.client.create_experiment(name)

    def parent(self, experiment: str, kind: str) -> str:
        run = self.client.create_run(self.experiment(experiment), tags={"role": "sweep"})
        self.client.log_param(run.info.run_id, "sweep.kind", kind)
        return run.info.run_id

    def trial(self, experiment: str, params: dict, metrics: dict, seed: int, status: str = "FINISHED",
              parent: str = "", tags: dict | None = None) -> str:
        """One trial run: BASE config overridden by ``params``, final metric values, a status."""
        all_tags = {"role": "trial", "seed": str(seed), "git_commit": "0123456789abcdef",
                    "data_fingerprint": "f00d"} | ({"mlflow.parentRunId": parent} if parent else {})
        run = self.client.create_run(self.experiment(experiment), tags=all_tags | (tags or {}),
                                     start_time=int(time.time() * 1000) + len(self.client.search_runs(
                                         [self.experiment(experiment)])))
        run_id = run.info.run_id
        for key, value in (BASE | params | {"run.seed": str(seed)}).items():
            self.client.log_param(run_id, key, value)
        for key, value in metrics.items():
            self.client.log_metric(run_id, f"encoder/eval/{key}", value)
        self.client.set_terminated(run_id, status=status)
        return run_id


@pytest.fixture(name="store")
def mlflow_store(tmp_path):
    return Store(f"sqlite:///{tmp_path / 'mlflow.db'}")
