"""Two real sweeps, each started as a user starts one (``tune/sweep_<kind>.py`` in a process with its own
local Ray), read back with MlflowClient and through an ``mlflow server``: params, metrics, artifacts, nesting,
one stage-1 run reused by the second sweep; and what the MLflow UI reads (docs/MLFLOW.md): the experiment kind,
the parent's table as description and metrics, each trial's dataset input, source/git and machine tags,
images, system metrics, a logged encoder that loads, the best trial's encoder in the Model Registry
(--register-best), and (issue 20) logged models in their sweep's own experiment with every artifact beside the
database, whatever folder a sweep was started from.

The first sweep is the quickstart (``./mlflow.db`` and ``./ray_results`` of its folder); the second, a Table 4
sweep under ``--name``, starts from another folder on the same database and storage. (One pair of sweeps serves
every test here: it was two modules, each with its own pair, until CI time mattered.)"""

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import torch

pytest.importorskip("ray")
from conftest import SERVER_ENV, OwnProcesses, free_port, wait_http  # noqa: E402
from mlflow import MlflowClient  # noqa: E402

from ablations.make_tables import main as make_tables  # noqa: E402
from tune.driver.run import main  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
FAST = ["--set", "data.size=320", "--set", "latent.epochs=1", "--set", "encoder.epochs=2",
        "--set", "eval.num_train=64", "--set", "eval.num_test=32", "--set", "eval.grid_size=2"]


# system metrics every 0.5 s (MLflow's variable; ours is 2 s): a smoke trial trains for a few seconds, and the
# UI test below wants more than one sample of it on a busy machine too
SAMPLING = {"MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "0.5"}


def _sweep(processes: OwnProcesses, folder: Path, kind: str, *extra: str) -> None:
    command = [sys.executable, str(REPO / "tune" / f"sweep_{kind}.py"), "--preset", "smoke", *FAST, *extra]
    done = processes.run(command, timeout=900, cwd=folder, env=os.environ | SAMPLING)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """(first, second): the folders the two sweeps were started from; the store is first's."""
    root = tmp_path_factory.mktemp("sweep")
    first, second = root / "first", root / "second"
    first.mkdir()
    second.mkdir()
    processes = OwnProcesses()
    try:
        _sweep(processes, first, "negatives", "--register-best", "encoder/eval/mig")
        # another stage 2 (another kind, new trials), the same stage 1 (in the first sweep's cache)
        _sweep(processes, second, "losses", "--name", "second-sweep", "--tracking-uri",
               f"sqlite:///{first / 'mlflow.db'}", "--storage", str(first / "ray_results"))
    finally:
        processes.end_all()
    return first, second


@pytest.fixture(scope="module")
def swept(folders):
    return MlflowClient(f"sqlite:///{folders[0] / 'mlflow.db'}")


def _experiment_runs(client, name):
    experiment = client.get_experiment_by_name(name)
    return client.search_runs([experiment.experiment_id])


@pytest.mark.slow
def test_sweep__parent_and_nested_trial_runs(swept):
    runs = _experiment_runs(swept, "contralord-negatives")
    parents = [r for r in runs if r.data.tags.get("role") == "sweep"]
    trials = [r for r in runs if r.data.tags.get("role") == "trial"]
    assert len(parents) == 1 and len(trials) == 2
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.data.params["sweep.knob"] == "encoder.queue_size"
    tables = {"table.md", "table.csv", "table.tex", "table.png"}
    assert {a.path for a in swept.list_artifacts(parent.info.run_id)} == tables
    assert sorted(int(t.data.params["encoder.queue_size"]) for t in trials) == [128, 256]
    for trial in trials:
        assert trial.info.status == "FINISHED"
        assert trial.data.tags["mlflow.parentRunId"] == parent.info.run_id
        for tag in ("git_commit", "config_hash", "data_fingerprint", "seed", "stage1_run_id", "ray_trial_id"):
            assert trial.data.tags.get(tag), tag
        assert trial.data.params["loss.con"] == "0.1" and len(trial.data.params) > 50  # the full flat config
        for key in ("encoder/train/total", "encoder/train/nce_content", "encoder/eval/mig", "encoder/eval/smoothness"):
            assert key in trial.data.metrics, key
        history = swept.get_metric_history(trial.info.run_id, "encoder/train/total")
        assert len(history) == 2  # one point per epoch, no gap, no duplicate
        names = {a.path for a in swept.list_artifacts(trial.info.run_id)}
        assert {"metrics.json", "config.json", "reconstructions.png", "translation.png"} <= names


@pytest.mark.slow
def test_sweep__time_breakdown_and_estimate_logged(swept):
    """Issue 12 items 3, 4 and 6: each trial's time/* parts; the parent's estimate beside its actual wall
    time, and the execution path it took (a smoke trial is far too short for a worker group: in-trial)."""
    runs = _experiment_runs(swept, "contralord-negatives")
    parent = next(r for r in runs if r.data.tags.get("role") == "sweep")
    assert parent.data.metrics["estimate/wall_s"] > 0 and parent.data.metrics["actual/wall_s"] > 0
    assert parent.data.tags["trainer_path"] == parent.data.params["sweep.trainer"] == "tune"
    assert "auto: worker-group start-up 38 s" in parent.data.tags["trainer_why"]
    for trial in (r for r in runs if r.data.tags.get("role") == "trial"):
        times = {k: v for k, v in trial.data.metrics.items() if k.startswith("time/")}
        assert {"time/start", "time/stage1_fetch", "time/data", "time/train", "time/log", "time/total"} <= set(times)
        assert all(v >= 0 for v in times.values()) and times["time/train"] > 0
        parts = sum(v for k, v in times.items() if k in ("time/start", "time/stage1_fetch", "time/data", "time/log"))
        assert parts + times["time/train"] <= times["time/total"] + 1e-6


@pytest.mark.slow
def test_sweep__trials_tag_the_key_a_later_dry_run_finds(swept, tmp_path, capsys):
    """Issue 12 item 1: each finished trial tags its own reuse key (tune/trial/worker.py); a dry run of the same
    sweep under another name plans the same keys, so it would link both trials and train nothing."""
    trials = [r for r in _experiment_runs(swept, "contralord-negatives") if r.data.tags.get("role") == "trial"]
    assert all(t.data.tags.get("reuse_key") and t.data.tags.get("code_version") for t in trials)
    argv = ["--preset", "smoke", "--storage", str(tmp_path / "ray"), "--tracking-uri", swept.tracking_uri, *FAST,
            "--name", "same-sweep-again", "--dry-run"]
    assert main("negatives", argv) == 0
    out = capsys.readouterr().out
    assert "reuse: 2 of 2 trial(s) reuse earlier runs" in out and "stage 1 to train: 0" in out
    assert all(f"reuses {t.info.run_id}" in out for t in trials)


@pytest.mark.slow
def test_sweep__one_stage1_run_shared_by_both_sweeps(swept):
    stage1 = _experiment_runs(swept, "contralord-stage1")
    assert len(stage1) == 1 and stage1[0].info.status == "FINISHED"
    trials = [r for kind in ("negatives", "losses") for r in _experiment_runs(swept, f"contralord-{kind}")
              if r.data.tags.get("role") == "trial"]
    assert len(trials) == 4
    assert {t.data.tags["stage1_run_id"] for t in trials} == {stage1[0].info.run_id}
    # what stage 1 learnt from its labels lies on its own run (step 0) and its generator model, as in each trial
    final = {k: v for k, v in stage1[0].data.metrics.items() if k.startswith("latent/final/")}
    assert "latent/final/codes/disentanglement" in final
    assert any(k.startswith("latent/final/classifier_acc/") for k in final)
    assert all({k: t.data.metrics[k] for k in final} == final for t in trials)
    assert {h.step for k in final for h in swept.get_metric_history(stage1[0].info.run_id, k)} == {0}
    (generator,) = stage1[0].outputs.model_outputs
    model = swept.get_logged_model(generator.model_id)  # (a lone system-metrics sample is at step 0 too)
    assert {m.key: m.value for m in model.metrics if m.key.startswith("latent/")} == final


@pytest.mark.slow
def test_sweep__table_lists_every_variant(swept):
    runs = _experiment_runs(swept, "contralord-losses")
    parent = next(r for r in runs if r.data.tags.get("role") == "sweep")
    path = swept.download_artifacts(parent.info.run_id, "table.md")
    table = open(path).read()
    # rec+sup; all four (a mark shows its weight where it is not 1: the defaults 1, 0.1, 0.2)
    assert "| ✓ | ✓ |  |  | 1 |" in table and "| ✓ | ✓ | ✓ (0.1) | ✓ (0.2) | 1 |" in table
    assert json.loads(parent.data.params["sweep.variants"]) == ["rec+sup", "rec+sup+con+res"]


@pytest.mark.slow
def test_sweep__parent_table_is_what_make_tables_prints(swept, capsys):
    """The sweep and ablations/make_tables.py build the table with the same code from the same runs."""
    parent = next(r for r in _experiment_runs(swept, "contralord-losses") if r.data.tags.get("role") == "sweep")
    capsys.readouterr()
    assert make_tables(["--tracking-uri", swept.tracking_uri, "--sweep-run", parent.info.run_id, "--paper"]) == 0
    printed = capsys.readouterr().out
    assert printed == open(swept.download_artifacts(parent.info.run_id, "table.md")).read() + "\n"


@pytest.mark.slow
def test_sweep__what_the_mlflow_ui_reads(swept):
    import mlflow

    for name in ("contralord-negatives", "contralord-losses", "contralord-stage1"):
        assert swept.get_experiment_by_name(name).tags["mlflow.experimentKind"] == "custom_model_development"
    runs = _experiment_runs(swept, "contralord-negatives")
    parent = next(r for r in runs if r.data.tags.get("role") == "sweep")
    table = open(swept.download_artifacts(parent.info.run_id, "table.md")).read()
    assert parent.data.tags["mlflow.note.content"] == table
    assert {"MIG/K128", "MIG/K256", "D/K128", "Smoothness/K256"} <= set(parent.data.metrics)
    assert parent.data.tags["mlflow.source.name"] == "tune/sweep_negatives.py"
    trials = [r for r in runs if r.data.tags.get("role") == "trial"]
    for trial in trials:
        tags = trial.data.tags
        assert tags["mlflow.source.git.commit"] == tags["git_commit"] and tags["mlflow.source.git.repoURL"]
        assert tags["mlflow.source.name"] == tags["mlflow.project.entryPoint"] == "tune/sweep_negatives.py"
        assert tags["machine"] and tags["machine.threads"] == "1" and tags["machine.gpu"] == "none"
        (data,) = trial.inputs.dataset_inputs
        assert data.dataset.digest == tags["data_fingerprint"][:36] and "factor_names" in data.dataset.profile
        images = {a.path.split("+")[0] for a in swept.list_artifacts(trial.info.run_id, "images")}
        assert {"images/reconstructions", "images/translation", "images/epoch_reconstructions"} <= images
        assert len(swept.get_metric_history(trial.info.run_id, "system/cpu_utilization_percentage")) >= 2
        (model,) = trial.outputs.model_outputs
        with mlflow.tracking._tracking_service.utils._use_tracking_uri(swept.tracking_uri):
            encoder = mlflow.pytorch.load_model(f"models:/{model.model_id}")
        # [h_d, h_c, h_r]: no class code, one code per labelled hue, the smoke preset's 8 residual dims
        assert encoder(torch.rand(3, 3, 32, 32)).shape == (3, 0 + 3 + 8)
    best = max(trials, key=lambda r: r.data.metrics["encoder/eval/mig"])
    (version,) = swept.search_model_versions("name = 'contralord-negatives-encoder'")
    assert version.run_id == best.info.run_id
    (stage1,) = _experiment_runs(swept, "contralord-stage1")
    assert stage1.data.tags["machine"] and stage1.inputs.dataset_inputs
    (generator,) = stage1.outputs.model_outputs
    assert swept.get_logged_model(generator.model_id).name == "generator"


def _get(url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def server(swept, tmp_path_factory):
    """``mlflow server`` on the sweeps' store, as a user opens it, on a free local port, started from a folder
    of its own; its process group ends with the module."""
    folder = tmp_path_factory.mktemp("server")
    processes, port = OwnProcesses(), free_port()
    try:
        with open(folder / "server.log", "w") as log:
            processes.start([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", swept.tracking_uri,
                             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"], cwd=folder, stdout=log,
                            stderr=subprocess.STDOUT, env=os.environ | SERVER_ENV)
        wait_http(f"http://127.0.0.1:{port}/health")
        yield f"http://127.0.0.1:{port}"
    finally:
        processes.end_all()


@pytest.fixture(scope="module")
def rest_api(server):
    return f"{server}/api/2.0/mlflow"


@pytest.mark.slow
def test_sweep__the_rest_api_shows_the_ui_fields(rest_api):
    """The issue's check, over HTTP as the UI reads it: kind tag, parent table, trial inputs/outputs/tags."""
    experiment = _get(f"{rest_api}/experiments/get-by-name?experiment_name=contralord-negatives")["experiment"]
    assert {"key": "mlflow.experimentKind", "value": "custom_model_development"} in experiment["tags"]
    runs = _get(f"{rest_api}/runs/search", {"experiment_ids": [experiment["experiment_id"]]})["runs"]
    tags = [{t["key"]: t["value"] for t in run["data"]["tags"]} for run in runs]
    (parent,) = [run for run, t in zip(runs, tags, strict=True) if t["role"] == "sweep"]
    assert any(m["key"] == "MIG/K128" for m in parent["data"]["metrics"])
    assert "**Table 6" in next(t["mlflow.note.content"] for t in tags if t["role"] == "sweep")
    trials = [(run, t) for run, t in zip(runs, tags, strict=True) if t["role"] == "trial"]
    assert len(trials) == 2
    for run, t in trials:
        assert run["inputs"]["dataset_inputs"][0]["dataset"]["digest"] == t["data_fingerprint"][:36]
        assert run["outputs"]["model_outputs"] and t["mlflow.source.git.commit"] and t["machine.cpu"]
        assert any(m["key"] == "system/cpu_utilization_percentage" for m in run["data"]["metrics"])
        files = _get(f"{rest_api}/artifacts/list?run_id={run['info']['run_id']}&path=images")["files"]
        assert any(f["path"].startswith("images/reconstructions+") for f in files)


def _runs(client: MlflowClient, experiment: str, role: str) -> list:
    found = client.get_experiment_by_name(experiment)
    return [r for r in client.search_runs([found.experiment_id]) if r.data.tags.get("role") == role]


def _models(client: MlflowClient, experiment: str) -> list:
    return client.search_logged_models(experiment_ids=[client.get_experiment_by_name(experiment).experiment_id])


@pytest.mark.slow
def test_two_sweeps_two_folders__models_in_their_experiments_artifacts_beside_the_database(server, folders):
    """Issue 20 items 1-2, through the REST calls the UI's Models tab makes: each experiment lists its own
    logged models (an encoder per trial, the generator of stage 1), Default holds nothing of ours, and every
    artifact lies beside the database; no ``mlruns/`` anywhere."""
    first, second = folders
    client = MlflowClient(server)
    runs, encoders = [], []
    for kind in ("negatives", "losses"):
        trials = _runs(client, f"contralord-{kind}", "trial")
        assert len(trials) == 2 and all(t.info.status == "FINISHED" for t in trials)
        trained = [t for t in trials if "reused_from" not in t.data.tags]
        listed = _models(client, f"contralord-{kind}")
        assert trained and sorted(m.source_run_id for m in listed) == sorted(t.info.run_id for t in trained)
        assert {m.name for m in listed} == {"encoder"}
        for trial in trials:  # a reused trial (losses' all-four row is negatives' K=256 run) shows its original's
            (output,) = trial.outputs.model_outputs
            source = trial.data.tags.get("reused_from", trial.info.run_id)
            assert client.get_logged_model(output.model_id).source_run_id == source
        runs += [*trials, *_runs(client, f"contralord-{kind}", "sweep")]
        encoders += listed
    (stage1,) = _runs(client, "contralord-stage1", "stage1")
    (generator,) = _models(client, "contralord-stage1")
    assert generator.name == "generator" and generator.source_run_id == stage1.info.run_id

    assert client.search_runs(["0"]) == [] and client.search_logged_models(experiment_ids=["0"]) == []
    assert not (first / "mlruns").exists() and list(second.iterdir()) == []  # nothing in the second folder
    store = first / "mlartifacts"
    for run in [*runs, stage1]:
        assert Path(run.info.artifact_uri).is_relative_to(store), run.info.artifact_uri
        assert client.list_artifacts(run.info.run_id) or "reused_from" in run.data.tags, run.info.run_name
    for model in [*encoders, generator]:
        assert Path(model.artifact_location).is_relative_to(store), model.artifact_location
        assert (Path(model.artifact_location) / "MLmodel").is_file()


# --- a golden copy of what the two sweeps record (issue 31: a restructuring must not change it) -------------------
GOLDEN = REPO / "tests" / "golden" / "smoke_sweeps.json"
UPDATE = os.environ.get("CONTRALORD_UPDATE_GOLDEN", "")  # "1": replace the file; "add": add this machine's values
VOLATILE = ("time/", "system/", "estimate/", "actual/", "cost/", "round/")  # clocks, load, the machine's timings
VOLATILE_WORDS = ("seconds", "images_per_s", "wall", "_s/")
VOLATILE_TAGS = ("mlflow.", "git_", "machine", "sweep_path", "stage1_run_ids", "latent_run_id", "stage1_run_id",
                 "ray_trial_id", "trial_", "registered_model", "estimate_error", "reused_from")


def _run_name(client, run, params: dict) -> str:
    """A name for ``run`` that another sweep of the same commands gives it too: its experiment, role, seed and what
    its knobs were set to (the loss weights and K, which tell the variants of these sweeps apart)."""
    experiment = client.get_experiment(run.info.experiment_id).name
    knobs = ",".join(f"{k}={params.get(k, '')}" for k in ("encoder.queue_size", "loss.con", "loss.res"))
    return f"{experiment}/{run.data.tags.get('role', '?')}/seed{params.get('run.seed', '')}/{knobs}"


def _steady(name: str) -> bool:
    return not name.startswith(VOLATILE) and not any(word in name for word in VOLATILE_WORDS)


def _recorded(client, folders) -> dict:
    """Per run: its params (folders of this test written as <first>/<second>), its tag names and metric names, and
    the last value of each metric, times and system samples left out."""
    text = lambda value: value.replace(str(folders[0]), "<first>").replace(str(folders[1]), "<second>")  # noqa: E731
    runs = {}
    for experiment in client.search_experiments():
        for run in client.search_runs([experiment.experiment_id]):
            params = {k: text(v) for k, v in run.data.params.items() if _steady(k)}
            name = _run_name(client, run, params)
            assert name not in runs, f"two runs named {name}"
            runs[name] = {"params": params,
                          "tags": sorted(k for k in run.data.tags if not k.startswith(VOLATILE_TAGS)),
                          "metrics": {k: v for k, v in run.data.metrics.items() if _steady(k)}}
    return runs


def _same(a: float, b: float) -> bool:
    return a == b or (a != a and b != b)  # NaN equal to NaN


def _numerics() -> str:
    import numpy
    import scipy
    import sklearn

    from contralord import machine

    generation = machine.describe().as_dict().get("cpu_generation", "")
    return (f"{machine.describe().id}/{generation}/{torch.backends.cpu.get_cpu_capability()}/{numpy.__version__}/"
            f"{scipy.__version__}/{sklearn.__version__}")


@pytest.mark.slow
def test_sweep__params_tags_and_metrics_as_stored(swept, folders):
    """Both sweeps' runs record the params, tag names and metric names of the stored copy, on every machine; on a
    machine the copy has values for (``_numerics``: CPU, torch build, threads, numeric libraries), every metric's
    last value bit for bit. ``CONTRALORD_UPDATE_GOLDEN=1`` re-records it after a deliberate change."""
    now, key = _recorded(swept, folders), _numerics()
    if UPDATE:
        stored = json.loads(GOLDEN.read_text()) if GOLDEN.exists() and UPDATE == "add" else {"values": {}}
        stored["runs"] = {name: {k: run[k] for k in ("params", "tags")} | {"metrics": sorted(run["metrics"])}
                          for name, run in now.items()}
        stored["values"][key] = {name: run["metrics"] for name, run in now.items()}
        GOLDEN.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")
        pytest.fail(f"wrote {GOLDEN} for {key}; commit it and run again without CONTRALORD_UPDATE_GOLDEN")
    golden = json.loads(GOLDEN.read_text())
    assert sorted(now) == sorted(golden["runs"]), sorted(set(now) ^ set(golden["runs"]))
    for name, run in golden["runs"].items():
        assert now[name]["params"] == run["params"], (name, {k: (run["params"].get(k), now[name]["params"].get(k))
                                                             for k in run["params"].keys() | now[name]["params"].keys()
                                                             if run["params"].get(k) != now[name]["params"].get(k)})
        assert now[name]["tags"] == run["tags"], (name, sorted(set(run["tags"]) ^ set(now[name]["tags"])))
        names = sorted(now[name]["metrics"])
        assert names == run["metrics"], (name, sorted(set(run["metrics"]) ^ set(names)))
    if key in golden["values"]:
        differ = {(name, k): (v, now[name]["metrics"][k]) for name, values in golden["values"][key].items()
                  for k, v in values.items() if not _same(now[name]["metrics"][k], v)}
        assert not differ, f"on {key} these metrics changed (stored, now): {differ}"
