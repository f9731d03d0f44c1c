"""What the MLflow UI reads, written by tune/trial/mlflow_logger.py, checked through MlflowClient without Ray:
the experiment kind, a dataset input, images, system metrics, models that load with
``mlflow.pytorch.load_model``, the sweep table on the parent run, and --register-best.
(The smoke sweep in test_sweep_smoke.py checks the same on real trials.)"""

import json
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from contralord import labels
from contralord.models.build import build_generator
from contralord.setup import Setup, build_data
from contralord.stage2.encoder_stage import build_online
from tune.trial import export
from tune.trial.mlflow_logger import (
    EXPERIMENT_KIND,
    MlflowLogger,
    experiment_artifacts,
    get_experiment_id,
    image_dataset,
    log_sweep_table,
    register_best,
    source_tags,
    ui_link,
)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One store for the module (creating an MLflow database takes seconds); each test makes its own runs."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = get_experiment_id(client, "contralord-test")
    return client, experiment


def _logger(store) -> MlflowLogger:
    client, experiment = store
    return MlflowLogger(client.tracking_uri, client.create_run(experiment).info.run_id)


class _CountingClient:
    """An MlflowClient that counts its calls: against a server, each is one request."""

    def __init__(self, client):
        self.client, self.calls = client, {}

    def __getattr__(self, name):
        method = getattr(self.client, name)
        if not callable(method):
            return method

        def counted(*args, **kwargs):
            self.calls[name] = self.calls.get(name, 0) + 1
            return method(*args, **kwargs)

        return counted


def test_experiment__marked_as_model_training_new_and_old(store):
    client, experiment = store
    assert client.get_experiment(experiment).tags["mlflow.experimentKind"] == "custom_model_development"
    old = client.create_experiment("made-before")  # an experiment from before the mark
    assert get_experiment_id(client, "made-before") == old
    assert client.get_experiment(old).tags | EXPERIMENT_KIND == client.get_experiment(old).tags


def test_experiment__artifacts_beside_the_database_whatever_the_folder(tmp_path, monkeypatch, capsys):
    """A new experiment of a file-based store keeps its artifacts in mlartifacts/ beside the database, also
    when the process runs elsewhere (relative and absolute URIs); an older one keeps its place and says so."""
    (tmp_path / "store").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "store")
    client = MlflowClient("sqlite:///mlflow.db")  # relative: the database in the current folder
    first = get_experiment_id(client, "contralord-negatives")
    monkeypatch.chdir(tmp_path / "elsewhere")
    client = MlflowClient(f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    second = get_experiment_id(client, "contralord-stage1")
    assert client.get_experiment(first).artifact_location == str(tmp_path / "store/mlartifacts/contralord-negatives")
    assert client.get_experiment(second).artifact_location == str(tmp_path / "store/mlartifacts/contralord-stage1")
    assert capsys.readouterr().out == ""
    old = client.create_experiment("made-before", artifact_location=str(tmp_path / "elsewhere" / "mlruns" / "7"))
    assert get_experiment_id(client, "made-before") == old
    assert client.get_experiment(old).artifact_location == str(tmp_path / "elsewhere/mlruns/7")  # not moved
    assert "experiment 'made-before' keeps its artifact location" in capsys.readouterr().out
    assert experiment_artifacts("http://127.0.0.1:5000", "x") is None  # a server decides its own
    assert experiment_artifacts("sqlite:///:memory:", "x") is None


def test_logged_model__in_the_runs_experiment_not_default(tmp_path, monkeypatch):
    """MLflow 3 puts a model logged with ``run_id=`` (no active run) in Default; ours goes to the run's
    experiment (its Models tab), with the run's params, its files under the database's folder."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "db").mkdir()
    client = MlflowClient(f"sqlite:///{tmp_path / 'db' / 'mlflow.db'}")
    experiment = get_experiment_id(client, "contralord-test")
    logger = MlflowLogger(client.tracking_uri, client.create_run(experiment).info.run_id)
    logger.log_params({"encoder.queue_size": 128})
    uri = logger.log_model(torch.nn.Linear(3, 2).eval(), "encoder", torch.zeros(2, 3))
    (model,) = client.search_logged_models(experiment_ids=[experiment])
    assert uri == f"models:/{model.model_id}" and model.name == "encoder" and model.source_run_id == logger.run_id
    assert model.params == {"encoder.queue_size": "128"}
    assert client.search_logged_models(experiment_ids=["0"]) == []
    assert model.artifact_location.startswith(str(tmp_path / "db" / "mlartifacts" / "contralord-test"))
    assert not (tmp_path / "mlruns").exists()


def test_dataset_input__name_digest_source_factors_subsets(store, tiny_cfg):
    data = build_data(tiny_cfg)
    logger = _logger(store)
    logger.log_dataset(image_dataset(Setup.of(tiny_cfg, data)))
    (entry,) = logger.client.get_run(logger.run_id).inputs.dataset_inputs
    assert entry.dataset.digest == data.fingerprint[:36] and entry.dataset.name == "shapes3d-32px-96"
    assert json.loads(entry.dataset.source)["tags"]["dataset"] == "shapes3d"
    profile = json.loads(entry.dataset.profile)
    assert profile["factor_names"] == list(data.factor_names) and profile["num_images"] == 96
    assert profile["subset"]["data.size"] == 96 and profile["labelled"]["data.num_labels"] == 24
    assert profile["labelled"]["data.labelled_factors"] == ["floor_hue", "wall_hue", "object_hue"]
    assert len(profile["labelled"]["labelled_source_positions"]) == 24
    schema = json.loads(entry.dataset.schema)["mlflow_colspec"]
    assert [c["name"] for c in schema] == ["class", *(f"factor.{n}" for n in data.factor_names)]
    assert [t.value for t in entry.tags] == ["train"]


def test_encoder_model__loads_and_matches(store, tiny_cfg, monkeypatch):
    import mlflow

    data = build_data(tiny_cfg)
    module = export.CodeEncoder(build_online(Setup.of(tiny_cfg, data), None)).eval()
    logger = _logger(store)
    logger.log_metrics({"encoder/train/total": 0.5}, step=1)
    logger.log_metrics({"encoder/train/total": 0.25, "system/cpu": 9.0}, step=2)
    logger.log_metrics({"encoder/eval/mig": 0.1, "encoder/eval/disentanglement": 0.2, "system/cpu": 8.0}, step=0)
    histories = []  # any client's, MLflow's own included (its log_model(run_id=) reads one per metric)
    read_history = MlflowClient.get_metric_history
    monkeypatch.setattr(MlflowClient, "get_metric_history",
                        lambda *a, **k: histories.append(a) or read_history(*a, **k))
    uri = logger.log_model(module, "encoder", export.example_images(data))
    assert histories == []
    monkeypatch.undo()
    (output,) = logger.client.get_run(logger.run_id).outputs.model_outputs
    assert uri == f"models:/{output.model_id}" and output.step == 0
    model = logger.client.get_logged_model(output.model_id)
    assert model.source_run_id == logger.run_id and model.experiment_id == store[1]
    # the Models tab's metrics: the run's final evaluation (step 0), not a metric whose last step is later
    assert {(m.key, m.value, m.step) for m in model.metrics} == {("encoder/eval/mig", 0.1, 0),
                                                                 ("encoder/eval/disentanglement", 0.2, 0)}
    with mlflow.tracking._tracking_service.utils._use_tracking_uri(logger.client.tracking_uri):
        loaded = mlflow.pytorch.load_model(uri)
    x = data.images[:5].float().div(255)  # another batch size than the example's
    torch.testing.assert_close(loaded(x), module(x))
    assert x.shape[0] == 5 and module(x).shape == (5, 0 + 3 + 4)  # no class code; 3 labelled hues; residual
    # pt2 holds a graph and weights, no pickled classes: it loads where this package cannot be imported
    blocked = ("import sys; sys.modules.update(contralord=None, tune=None); import mlflow, torch; "
               f"mlflow.set_tracking_uri({logger.client.tracking_uri!r}); "
               f"print(tuple(mlflow.pytorch.load_model({uri!r})(torch.zeros(2, 3, 32, 32)).shape))")
    done = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, timeout=300, cwd="/")
    assert done.stdout.strip().splitlines()[-1] == "(2, 7)", done.stderr[-2000:]


def test_generator_model__codes_to_images(store, tiny_cfg):
    import mlflow

    data = build_data(tiny_cfg)
    generator = build_generator(Setup.of(tiny_cfg, data)).eval()
    module = export.CodeGenerator(generator, labels.layout(tiny_cfg, data).dims)
    logger = _logger(store)
    uri = logger.log_model(module, "generator", torch.randn(2, 7))
    with mlflow.tracking._tracking_service.utils._use_tracking_uri(logger.client.tracking_uri):
        loaded = mlflow.pytorch.load_model(uri)
    codes = torch.randn(3, 7)
    torch.testing.assert_close(loaded(codes), generator(*codes.split([0, 3, 4], dim=1)))


def test_images__one_per_key_and_step(store, tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "reconstructions.png")
    logger = _logger(store)
    logger.log_images(tmp_path, ("reconstructions.png", "missing.png"), step=3)
    logger.log_image(np.ones((4, 4, 3), np.float32), "epoch_reconstructions", 1)
    names = [a.path for a in logger.client.list_artifacts(logger.run_id, "images")]
    assert sum(n.startswith("images/reconstructions+step+3+") and n.endswith(".png") for n in names) == 1
    assert sum(n.startswith("images/epoch_reconstructions+step+1+") and n.endswith(".png") for n in names) == 1


def test_system_metrics__sampled_while_the_block_runs(store, monkeypatch):
    monkeypatch.setattr("tune.trial.mlflow_logger.SYSTEM_METRICS_INTERVAL", 0.2)
    logger = _logger(store)
    history = lambda: logger.client.get_metric_history(logger.run_id, "system/cpu_utilization_percentage")  # noqa
    with logger.system_metrics():  # 5 samples due a second; a busy machine may take longer: wait up to 30 s
        deadline = time.time() + 30
        while time.time() < deadline and len(history()) < 2:
            time.sleep(0.2)
    assert len(history()) >= 2 and "system/system_memory_usage_megabytes" in logger.client.get_run(
        logger.run_id).data.metrics


def test_sweep_table__description_and_metrics(store):
    logger = _logger(store)
    log_sweep_table(logger.client, logger.run_id, "**Table 6**\n\n| K |\n", {"MIG/K128": 0.25, "D/K128": 0.5})
    run = logger.client.get_run(logger.run_id)
    assert run.data.tags["mlflow.note.content"].startswith("**Table 6**")
    assert run.data.metrics == {"MIG/K128": 0.25, "D/K128": 0.5}


def test_trial_logging__one_point_per_step_in_a_few_requests(store):
    """A retried trial (a new logger on a run that has history) skips the steps the run holds and logs the
    rest; what the run holds is read once, and an epoch's metrics or a set of tags is one request, not one
    per key (hundreds of requests per trial to a server that checks a password on each)."""
    client, experiment = store
    run_id = client.create_run(experiment).info.run_id
    for step in range(3):
        client.log_metric(run_id, "encoder/train/total", 1.0 / (step + 1), step=step)
    logger = MlflowLogger(client.tracking_uri, run_id)
    logger.client = counting = _CountingClient(logger.client)
    keys = [f"encoder/eval/m{i}" for i in range(150)]
    for step in (1, 2, 3):  # 1 and 2 were logged before the retry
        logger.log_metrics({"encoder/train/total": 10.0 + step} | {k: float(step) for k in keys}, step=step)
    logger.set_tags({f"tag{i}": i for i in range(120)})
    history = client.get_metric_history(run_id, "encoder/train/total")
    assert [(m.step, m.value) for m in history] == [(0, 1.0), (1, 0.5), (2, 1 / 3), (3, 13.0)]
    assert [m.step for m in client.get_metric_history(run_id, keys[0])] == [1, 2, 3]
    assert client.get_run(run_id).data.tags["tag119"] == "119"
    assert counting.calls == {"get_run": 1, "log_batch": 3 + 2}  # 150 metrics per request; 100 tags per request


def test_source_tags__standard_names_and_empty_left_out():
    tags = source_tags("tune/sweep_negatives.py", "abc123", "git@example.org:contralord.git", "")
    assert tags == {"mlflow.source.name": "tune/sweep_negatives.py", "mlflow.source.type": "LOCAL",
                    "mlflow.project.entryPoint": "tune/sweep_negatives.py", "mlflow.source.git.commit": "abc123",
                    "mlflow.source.git.repoURL": "git@example.org:contralord.git"}


def test_register_best__the_best_runs_encoder(store, tiny_cfg):
    data = build_data(tiny_cfg)
    module = export.CodeEncoder(build_online(Setup.of(tiny_cfg, data), None)).eval()
    client, experiment = store
    for mig in (0.1, 0.3, 0.2):
        logger = _logger(store)
        logger.log_model(module, "encoder", export.example_images(data))
        client.log_metric(logger.run_id, "encoder/eval/mig", mig)
    runs = client.search_runs([experiment], "metrics.`encoder/eval/mig` > 0")
    best = max(runs, key=lambda r: r.data.metrics["encoder/eval/mig"])
    run_id, value, version = register_best(client, runs, "encoder/eval/mig", "max", "contralord-test-encoder")
    assert (run_id, value, int(version)) == (best.info.run_id, 0.3, 1)
    registered = client.get_model_version("contralord-test-encoder", "1")
    assert registered.run_id == best.info.run_id
    assert register_best(client, runs, "encoder/eval/mig", "min", "contralord-test-encoder")[1] == 0.1
    with pytest.raises(ValueError, match="no finished trial has both"):
        register_best(client, runs, "encoder/eval/nope", "max", "contralord-test-encoder")


def test_best_effort__a_failed_extra_is_a_warning_and_a_tag(store):
    logger = _logger(store)

    def untraceable():
        raise RuntimeError("torch.export: data-dependent control flow")

    with pytest.warns(UserWarning, match="encoder_model: not logged to MLflow"):
        logger.best_effort("encoder_model", untraceable)
    tags = logger.client.get_run(logger.run_id).data.tags
    assert tags["encoder_model_error"] == "RuntimeError: torch.export: data-dependent control flow"


def test_ui_link__opens_the_model_training_pages():
    assert ui_link("http://head:5000/", "7") == "http://head:5000/#/experiments/7?workflowType=machine_learning"
    assert ui_link("sqlite:////x/mlflow.db", "7").startswith("mlflow ui --backend-store-uri sqlite:////x/mlflow.db")
