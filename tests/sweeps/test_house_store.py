"""Issue 20 items 1-2: the quickstart sweep and a second sweep (``--name``) started from another folder on
the same database, read back through an ``mlflow server`` on 127.0.0.1 with the REST calls the UI's Models
tab makes: each experiment lists its own logged models (an encoder per trial, the generator of stage 1),
Default holds nothing of ours, and every artifact lies beside the database; no ``mlruns/`` anywhere."""

import sys
from pathlib import Path

import pytest

pytest.importorskip("ray")
from mlflow import MlflowClient  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
FAST = ["--set", "data.size=320", "--set", "latent.epochs=1", "--set", "encoder.epochs=2",
        "--set", "eval.num_train=64", "--set", "eval.num_test=32", "--set", "eval.grid_size=2"]


def _sweep(own_processes, folder: Path, *extra: str) -> None:
    command = [sys.executable, str(REPO / "tune" / "sweep_negatives.py"), "--preset", "smoke", *FAST, *extra]
    done = own_processes.run(command, timeout=900, cwd=folder)
    assert done.returncode == 0, done.stderr[-3000:]


def _runs(client: MlflowClient, experiment: str, role: str) -> list:
    found = client.get_experiment_by_name(experiment)
    return [r for r in client.search_runs([found.experiment_id]) if r.data.tags.get("role") == role]


def _models(client: MlflowClient, experiment: str) -> list:
    return client.search_logged_models(experiment_ids=[client.get_experiment_by_name(experiment).experiment_id])


@pytest.mark.slow
def test_two_sweeps_two_folders__models_in_their_experiments_artifacts_beside_the_database(
        tmp_path, own_processes, mlflow_server):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    _sweep(own_processes, first)  # the quickstart: ./mlflow.db and ./ray_results of its folder
    database = first / "mlflow.db"
    # another stage 2 (new trials), the same stage 1 (found in the first sweep's cache), from another folder
    _sweep(own_processes, second, "--set", "encoder.epochs=1", "--name", "second-sweep",
           "--tracking-uri", f"sqlite:///{database}", "--storage", str(first / "ray_results"))
    client = MlflowClient(mlflow_server(f"sqlite:///{database}"))

    trials = _runs(client, "contralord-negatives", "trial")
    assert len(trials) == 4 and all(t.info.status == "FINISHED" for t in trials)
    encoders = _models(client, "contralord-negatives")
    assert sorted(m.source_run_id for m in encoders) == sorted(t.info.run_id for t in trials)
    assert {m.name for m in encoders} == {"encoder"}
    (stage1,) = _runs(client, "contralord-stage1", "stage1")
    (generator,) = _models(client, "contralord-stage1")
    assert generator.name == "generator" and generator.source_run_id == stage1.info.run_id

    assert client.search_runs(["0"]) == [] and client.search_logged_models(experiment_ids=["0"]) == []
    assert not (first / "mlruns").exists() and list(second.iterdir()) == []  # nothing in the second folder
    store = first / "mlartifacts"
    runs = [*trials, stage1, *_runs(client, "contralord-negatives", "sweep")]
    for run in runs:
        assert Path(run.info.artifact_uri).is_relative_to(store), run.info.artifact_uri
        assert client.list_artifacts(run.info.run_id), run.info.run_name
    for model in [*encoders, generator]:
        assert Path(model.artifact_location).is_relative_to(store), model.artifact_location
        assert (Path(model.artifact_location) / "MLmodel").is_file()
