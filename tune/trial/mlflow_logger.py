"""The one MLflow writer: every experiment, run, param, metric, tag, artifact and model that tune/ writes goes
through this module. Other modules decide what a run records (``tune/driver/records.py`` the sweep's parent run,
``tune/trial/stage1.py`` the stage-1 runs, ``tune/trial/reuse.py`` the copies of reused trials) and write it with the
functions and the ``MlflowLogger`` here; they only read the store themselves. ``tests/sweeps/test_one_mlflow_writer.py``
fails on a write anywhere else, and on an ``MlflowClient`` built anywhere but ``ablations.store.tracking_client``.

A trial's run is found again by its Ray trial id, so a restarted or resumed trial continues its own
run instead of starting a duplicate. Params are the trial's full flat config (``to_flat_dict``).
What the MLflow UI reads is filled in with MLflow's own APIs: the experiment kind (training, not GenAI),
the source and git tags, the data as a dataset input, images, system metrics, and the trained modules
as logged PyTorch models (``docs/MLFLOW.md``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import mlflow
from filelock import FileLock, Timeout
from mlflow import MlflowClient
from mlflow.entities import DatasetInput, InputTag, LoggedModelOutput, Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT
from sqlalchemy.engine import make_url

from ablations.store import DB_SCHEMES, tracking_client, without_password
from contralord.setup import Setup
from tune.checks import SweepError

PARENT_TAG = "mlflow.parentRunId"
STOPPED_EARLY = "stopped_early"  # tag of a trial a scheduler (ASHA) stopped before its evaluation
# The MLflow UI opens an experiment without this tag on its GenAI pages (traces, judges)
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
# Seconds between system-metric samples: ~30 points for a 1-minute trial (MLflow's default, 10 s, gives 6;
# MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL overrides it)
SYSTEM_METRICS_INTERVAL = 2.0
ARTIFACT_FOLDER = "mlartifacts"  # beside a file-based store's database: every experiment's artifacts
STORE_LOCK_TIMEOUT_S = 600.0  # a schema is made in seconds; a holder past this is stuck or gone
BATCH_LIMITS = {"metrics": 1000, "params": 100, "tags": 100}  # MLflow's per-request limits of log_batch


def open_store_for_writing(tracking_uri: str, timeout_s: float = STORE_LOCK_TIMEOUT_S) -> MlflowClient:
    """A client of ``tracking_uri`` whose database holds MLflow's schema. The first client of a new database
    creates the schema, and MLflow's tracking store does so unguarded: two sweeps started at once on a new store
    fail with "table ... already exists" or "duplicate column name" (3 of 4 processes, measured). Here one process
    of this machine at a time opens a database store, under a lock file in the temporary folder keyed by the
    database (the file for SQLite, backend, host, port and database otherwise), as MLflow guards its other stores'
    schemas (``mlflow.store.db.utils._safe_initialize_tables``). Drivers on two machines that open one new
    database server at once are not covered; a tracking server migrates its own store."""
    if urlparse(tracking_uri).scheme.split("+")[0].lower() not in DB_SCHEMES:
        return tracking_client(tracking_uri)
    digest = hashlib.sha256(_database(tracking_uri).encode()).hexdigest()[:16]
    lock = Path(tempfile.gettempdir()) / f"contralord-store-{digest}.lock"
    try:
        with FileLock(lock, timeout=timeout_s):
            return tracking_client(tracking_uri)  # MLflow keeps the store (and its engine) per URI, schema checked
    except Timeout:
        raise SweepError(f"--tracking-uri: another process has held {lock} for {timeout_s:.0f} s while opening "
                         f"{without_password(tracking_uri)}; if none is running, remove the lock file") from None


def _database(tracking_uri: str) -> str:
    """Which database ``tracking_uri`` names, however it is spelt: a SQLite file's resolved path, else backend,
    host, port and database (no driver, user, password or query)."""
    url = make_url(tracking_uri)
    backend = url.get_backend_name().lower()
    if backend == "sqlite":
        memory = url.database in (None, "", ":memory:")
        return "sqlite::memory:" if memory else f"sqlite:{Path(url.database).resolve()}"
    return f"{backend}://{url.host or ''}:{url.port or ''}/{url.database or ''}"


def get_experiment_id(client: MlflowClient, name: str) -> str:
    """The id of experiment ``name``, created if missing, marked as a model-training experiment (an older one gets
    the mark too). Another sweep may create it between our read and our create: its experiment is then ours. In a
    file-based store a new experiment keeps its artifacts beside the database (``experiment_artifacts``); an older
    one keeps its own place, and says so."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        location = experiment_artifacts(client.tracking_uri, name)
        try:
            return client.create_experiment(name, artifact_location=location and str(location),
                                            tags=EXPERIMENT_KIND)
        except MlflowException as error:
            if error.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
                raise
            experiment = client.get_experiment_by_name(name)
    for key, value in EXPERIMENT_KIND.items():
        if experiment.tags.get(key) != value:
            client.set_experiment_tag(experiment.experiment_id, key, value)
    root = store_artifact_root(client.tracking_uri)
    if root is not None and not _is_under(experiment.artifact_location, root):
        print(f"mlflow: experiment {name!r} keeps its artifact location {experiment.artifact_location} (it was "
              f"made before artifacts lived beside the database, in {root}; nothing is moved)", flush=True)
    return experiment.experiment_id


def store_artifact_root(tracking_uri: str) -> Path | None:
    """Where the artifacts of a file-based store (``sqlite:///<file>``) live: ``mlartifacts/`` beside the
    database file, whatever folder the process runs in, so that the folder holds the whole store (to copy,
    hand on or open from anywhere). None for a server (``http(s)://``: the server decides) or another
    database (its artifacts stay where MLflow puts them; docs/MLFLOW.md)."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    database = tracking_uri[len("sqlite:///"):].split("?", 1)[0]
    if database in ("", ":memory:"):
        return None
    return Path(database).resolve().parent / ARTIFACT_FOLDER


def experiment_artifacts(tracking_uri: str, name: str) -> Path | None:
    """The artifact location of a new experiment ``name`` (``store_artifact_root``/<name>), or None where
    MLflow's own choice stands. The name, not the id: MLflow assigns the id only after the location."""
    root = store_artifact_root(tracking_uri)
    return None if root is None else root / re.sub(r"[^A-Za-z0-9._-]", "_", name)


def _is_under(location: str, root: Path) -> bool:
    path = location[len("file://"):] if location.startswith("file://") else location
    return "://" not in path and Path(path).resolve().is_relative_to(root)


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
        return create_run(client, experiment_id, run_name, key_tags | (tags or {}))
    set_running(client, run_id)
    if STOPPED_EARLY in client.get_run(run_id).data.tags:  # continued after all: no longer stopped early
        client.delete_tag(run_id, STOPPED_EARLY)
    log_batch(client, run_id, tags=tags or {})
    return run_id


def create_experiment(client: MlflowClient, name: str) -> str:
    """A new plain experiment ``name`` (a sweep's own come from ``get_experiment_id``); returns its id."""
    return client.create_experiment(name)


def create_run(client: MlflowClient, experiment_id: str, run_name: str | None = None,
               tags: dict[str, str] | None = None) -> str:
    """A new RUNNING run in the experiment; returns its id."""
    return client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id


def set_running(client: MlflowClient, run_id: str) -> None:
    """An existing run continued: RUNNING again."""
    client.update_run(run_id, status="RUNNING")


def end_run(client: MlflowClient, run_id: str, status: str = "FINISHED") -> None:
    """The run's end: FINISHED, FAILED or KILLED."""
    client.set_terminated(run_id, status=status)


def set_tag(client: MlflowClient, run_id: str, key: str, value: str) -> None:
    client.set_tag(run_id, key, value)


def delete_tag(client: MlflowClient, run_id: str, key: str) -> None:
    client.delete_tag(run_id, key)


def log_metric(client: MlflowClient, run_id: str, key: str, value: float) -> None:
    client.log_metric(run_id, key, value)


def log_artifact(client: MlflowClient, run_id: str, path: Path, artifact_path: str | None = None) -> None:
    """The file at ``path`` into the run's artifacts (under ``artifact_path``)."""
    client.log_artifact(run_id, str(path), artifact_path)


def log_dict(client: MlflowClient, run_id: str, dictionary: dict, artifact_file: str) -> None:
    """``dictionary`` as the run's artifact ``artifact_file`` (JSON or YAML by its suffix)."""
    client.log_dict(run_id, dictionary, artifact_file)


def log_outputs(client: MlflowClient, run_id: str, model_outputs: list) -> None:
    """Logged models (``LoggedModelOutput``) as the run's outputs."""
    client.log_outputs(run_id, model_outputs)


def log_batch(client: MlflowClient, run_id: str, metrics: dict[str, float] | None = None, step: int = 0,
              params: dict[str, object] | None = None, tags: dict[str, object] | None = None) -> None:
    """Metrics (at ``step``), params and tags in as few requests as MLflow's ``log_batch`` limits allow: one
    for a trial's epoch or its tags, where one call per key cost a remote server (with logins, a password
    check per request) hundreds of requests per trial."""
    stamp = mlflow.utils.time.get_current_time_millis()
    send_batches(client, run_id, "metrics", [Metric(k, float(v), stamp, step) for k, v in (metrics or {}).items()])
    send_batches(client, run_id, "params", [Param(k, str(v)) for k, v in (params or {}).items()])
    send_batches(client, run_id, "tags", [RunTag(k, str(v)) for k, v in (tags or {}).items()])


def send_batches(client: MlflowClient, run_id: str, kind: str, items: list) -> None:
    """MLflow entities of one ``kind`` (``metrics``, ``params`` or ``tags``) in requests of at most
    ``BATCH_LIMITS[kind]``; none for no items."""
    size = BATCH_LIMITS[kind]
    for start in range(0, len(items), size):
        client.log_batch(run_id, **{kind: items[start:start + size]})


def latest_metrics(client: MlflowClient, run_id: str) -> list:
    """The run's latest value of each metric, with its step and time (one request): MLflow keeps, per metric,
    the point of the highest step (then time)."""
    return list(client.get_run(run_id).data.to_proto().metrics)


def last_steps(client: MlflowClient, run_id: str) -> dict[str, int]:
    """Each metric's highest logged step in the run (``latest_metrics``)."""
    return {metric.key: metric.step for metric in latest_metrics(client, run_id)}


DATASET_TRIES = 3  # log_dataset: a lost race on a new dataset's row is retried (each try is one whole transaction)


def is_dataset_race(error: MlflowException) -> bool:
    """``error`` is the datasets table's unique key refusing a row another run inserted first (SQLite's or
    PostgreSQL's wording, directly or through a tracking server), not another failure."""
    text = str(error)
    return "datasets" in text and ("UNIQUE constraint failed" in text or "duplicate key value" in text)


class MlflowLogger:
    """``contralord.training.tracking.MetricsLogger`` onto one MLflow run (use it on rank 0 only)."""

    def __init__(self, tracking_uri: str, run_id: str):
        self.client, self.run_id = tracking_client(tracking_uri), run_id
        self._last_step: dict[str, int] | None = None  # per metric: the last step already in the run

    def _already_logged(self, key: str, step: int) -> bool:
        """A retried trial re-runs the epochs after its last checkpoint: keep one point per step. What the
        run already holds is read once, at the first metric logged (``last_steps``)."""
        if self._last_step is None:
            self._last_step = last_steps(self.client, self.run_id)
        return step <= self._last_step.get(key, -1)

    def log_params(self, params: dict[str, Any]) -> None:
        existing = self.client.get_run(self.run_id).data.params
        log_batch(self.client, self.run_id, params={k: v for k, v in params.items() if k not in existing})

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        fresh = {k: v for k, v in metrics.items() if not self._already_logged(k, step)}
        log_batch(self.client, self.run_id, metrics=fresh, step=step)
        self._last_step |= {k: step for k in fresh}

    def log_artifacts(self, folder: Path, names: tuple[str, ...], artifact_path: str | None = None) -> None:
        for name in names:
            if (Path(folder) / name).is_file():
                self.log_artifact(Path(folder) / name, artifact_path)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        log_artifact(self.client, self.run_id, path, artifact_path)

    def set_tags(self, tags: dict[str, str]) -> None:
        log_batch(self.client, self.run_id, tags=tags)

    def log_dataset(self, dataset: mlflow.data.dataset.Dataset, context: str = "train") -> None:
        """The run's data as an MLflow dataset input (the UI's Dataset column).

        MLflow's SQL store looks the dataset up in the experiment, then inserts it when missing, in one transaction:
        two runs logging the same new dataset at once (two trials starting together, or two sweeps' stage 1s) both
        miss it, and the second insert fails on the table's unique key. Nothing of that transaction was written, and
        a second try finds the dataset the other run wrote, so the race is retried rather than failing the run."""
        tags = [InputTag(MLFLOW_DATASET_CONTEXT, context)]
        inputs = [DatasetInput(dataset._to_mlflow_entity(), tags)]
        for attempt in range(DATASET_TRIES):
            try:
                self.client.log_inputs(self.run_id, datasets=inputs)
                return
            except MlflowException as error:
                if attempt == DATASET_TRIES - 1 or not is_dataset_race(error):
                    raise

    def log_images(self, folder: Path, names: tuple[str, ...], step: int) -> None:
        """PNG files as MLflow images (key = file stem, one per step), which the UI compares across runs."""
        from PIL import Image

        for name in names:
            path = Path(folder) / name
            if path.is_file():
                with Image.open(path) as image:
                    self.client.log_image(self.run_id, image.convert("RGB"), key=path.stem, step=step)

    def log_image(self, image, key: str, step: int) -> None:
        """An image array (H, W, C) uint8 or float in [0, 1]."""
        self.client.log_image(self.run_id, image, key=key, step=step)

    def log_model(self, module, name: str, example) -> str:
        """``module`` with MLflow's PyTorch flavour ("pt2": ``torch.export``, no pickled classes), its signature
        inferred from ``example`` (one input tensor -> one output tensor); returns the model URI."""
        import torch
        from mlflow.models import infer_signature

        with torch.no_grad():
            output = module(example)
        signature = infer_signature(example.numpy(), output.numpy())
        requirements = [f"torch=={torch.__version__.split('+')[0]}"]
        model_id = self._new_logged_model(name)
        with _tracking_uri(self.client.tracking_uri), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.export's notes on its own internals
            info = mlflow.pytorch.log_model(module, name=name, signature=signature, input_example=example.numpy(),
                                            pip_requirements=requirements, model_id=model_id,
                                            serialization_format="pt2")
        self._link_model(model_id)
        return info.model_uri

    def _link_model(self, model_id: str, step: int = 0) -> None:
        """The model as the run's output at ``step``, with the run's metrics of that step (the Models tab's
        metric columns). What ``log_model(run_id=...)`` does, in two requests instead of one per metric of
        the run (MLflow reads each metric's whole history): the metrics are the run's latest values whose
        step is ``step``, i.e. the final evaluation, without the system metrics' first sample."""
        self.client.log_outputs(self.run_id, [LoggedModelOutput(model_id, step=step)])
        metrics = [Metric(m.key, m.value, m.timestamp, m.step, model_id=model_id, run_id=self.run_id)
                   for m in latest_metrics(self.client, self.run_id) if m.step == step]
        send_batches(self.client, self.run_id, "metrics", metrics)

    def _new_logged_model(self, name: str) -> str:
        """A LoggedModel in the run's own experiment (its Models tab), with the run's params. Left to
        ``log_model``, MLflow 3 puts it in the *active* experiment, which with ``run_id=`` and no active run
        is Default (``mlflow.tracking.fluent._create_logged_model``)."""
        run = self.client.get_run(self.run_id)
        model = self.client.create_logged_model(run.info.experiment_id, name=name, source_run_id=self.run_id,
                                                params=dict(run.data.params))
        return model.model_id

    @contextlib.contextmanager
    def system_metrics(self) -> Iterator[None]:
        """MLflow's system-metrics monitor (``system/...``: CPU, memory, disk, network, GPU with pynvml)
        on this run while the block runs; without psutil, a warning and nothing else."""
        try:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            monitor = SystemMetricsMonitor(self.run_id, sampling_interval=SYSTEM_METRICS_INTERVAL,
                                           resume_logging=True, tracking_uri=self.client.tracking_uri)
        except ImportError as error:  # psutil (a dependency of this package) missing
            warnings.warn(f"no system metrics: {error}", stacklevel=2)
            yield
            return
        monitor.start()
        try:
            yield
        finally:
            monitor.finish()

    def best_effort(self, what: str, fn, *args) -> None:
        """Run ``fn(*args)``; if it fails, warn and tag ``<what>_error`` instead of failing the trained run
        (a model that torch.export cannot trace, an image that cannot be rendered)."""
        try:
            fn(*args)
        except Exception as error:  # reported as a warning and a tag, never silently
            message = f"{type(error).__name__}: {error}"
            warnings.warn(f"{what}: not logged to MLflow ({message})", stacklevel=2)
            self.client.set_tag(self.run_id, f"{what}_error", message[:5000])

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


@contextlib.contextmanager
def _tracking_uri(uri: str) -> Iterator[None]:
    """Model logging reads the process-wide tracking URI: point it at ``uri`` for the block."""
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    with _use_tracking_uri(uri):
        yield


def image_dataset(setup: Setup) -> mlflow.data.dataset.Dataset:
    """The training data as an MLflow dataset: name, digest = our data fingerprint (its first 36 hex digits,
    MLflow's limit), source (the embedded generator or the file), schema = class and factor columns,
    profile = size, image shape, factor names and sizes, the kept subset and the labelled subset."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.types import ColSpec, Schema

    cfg, data = setup.cfg, setup.data
    d, e = cfg.data, cfg.eval
    source = {"dataset": d.name, "path": d.path or "embedded (procedural, contralord.data)", "split": d.split}
    columns = [ColSpec("long", "class")] + [ColSpec("long", f"factor.{n}") for n in data.factor_names]
    labelled: dict[str, object] = {"eval.protocol": e.protocol}
    if e.protocol == "partial-labels" and data.factors is not None:  # the images whose labels training saw
        found = setup.labelled
        where = data.positions[found.labelled] if data.positions is not None else found.labelled
        labelled |= {"data.labelled_factors": list(found.names), "data.num_labels": len(found.labelled),
                     "labelled_source_positions": where.tolist()}
    profile = {"num_images": len(data), "image_shape": list(data.images.shape[1:]), "num_classes": data.num_classes,
               "factor_names": list(data.factor_names), "factor_sizes": list(data.factor_sizes),
               "subset": {"data.size": d.size, "data.factor_filter": d.factor_filter, "data.class_factor":
                          d.class_factor, "run.seed": cfg.run.seed},
               "labelled": labelled,
               "fingerprint": data.fingerprint}

    class _ImageFactorDataset(MetaDataset):
        @property
        def profile(self) -> str:
            return json.dumps(profile)

        def to_dict(self) -> dict[str, str]:
            return super().to_dict() | {"profile": self.profile}

    return _ImageFactorDataset(CodeDatasetSource(source), name=f"{d.name}-{d.image_size}px-{len(data)}",
                               digest=data.fingerprint[:36], schema=Schema(columns))


def log_sweep_table(client: MlflowClient, run_id: str, markdown: str, means: dict[str, float]) -> None:
    """The sweep's table on its parent run: the Markdown as the run's description (the Overview tab) and
    ``<column>/<variant>`` means as metrics (the chart view)."""
    log_batch(client, run_id, metrics=means, tags={"mlflow.note.content": markdown})


def ui_link(tracking_uri: str, experiment_id: str) -> str:
    """Where an experiment's runs table is. MLflow 3.17's UI shows GenAI or model-training pages by a
    per-browser toggle (GenAI by default) that the URL's ``workflowType`` overrides; older 3.x UIs read
    the experiment kind tag instead."""
    page = f"#/experiments/{experiment_id}?workflowType=machine_learning"
    tracking_uri = without_password(tracking_uri)  # printed: never a login's password
    if tracking_uri.startswith(("http://", "https://")):
        return f"{tracking_uri.rstrip('/')}/{page}"
    return f"mlflow ui --backend-store-uri {tracking_uri}, then http://127.0.0.1:5000/{page}"


def source_tags(entry_point: str, commit: str, repo_url: str, branch: str) -> dict[str, str]:
    """MLflow's standard source and git tags (the UI's Source column)."""
    from mlflow.utils import mlflow_tags as t

    tags = {t.MLFLOW_SOURCE_NAME: entry_point, t.MLFLOW_SOURCE_TYPE: "LOCAL", t.MLFLOW_PROJECT_ENTRY_POINT: entry_point,
            t.MLFLOW_GIT_COMMIT: commit, t.MLFLOW_GIT_REPO_URL: repo_url, t.MLFLOW_GIT_BRANCH: branch}
    return {k: v for k, v in tags.items() if v}


def register_best(client: MlflowClient, runs: list, metric: str, mode: str, name: str) -> tuple[str, float, str]:
    """Register the logged encoder of the run with the best ``metric`` as a new version of model ``name``;
    return (run id, its value, the version). The encoder is first loaded the checked way (``check_logged_model``):
    a worker wrote it, and the registry is where others will load it from."""
    scored = [r for r in runs if metric in r.data.metrics and r.outputs and r.outputs.model_outputs]
    if not scored:
        raise ValueError(f"--register-best: no finished trial has both the metric {metric!r} and a logged model")
    best = (max if mode == "max" else min)(scored, key=lambda r: r.data.metrics[metric])
    model_ids = [o.model_id for o in best.outputs.model_outputs]
    encoder = next((m for m in model_ids if client.get_logged_model(m).name == "encoder"), model_ids[0])
    check_logged_model(client, f"models:/{encoder}", best.info.run_id)
    with _tracking_uri(client.tracking_uri), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        version = mlflow.register_model(f"models:/{encoder}", name, tags={"metric": metric, "mode": mode})
    client.set_registered_model_tag(name, "selected_by", f"{mode} {metric}")
    return best.info.run_id, best.data.metrics[metric], version.version


def check_logged_model(client: MlflowClient, model_uri: str, run_id: str) -> None:
    """The logged model is our pt2 layout and loads as a graph with no code run
    (``tune.trial.export.load_logged_model``); else a ValueError naming the run, so nothing is registered."""
    from contralord.cli.model_folder import ModelFolderError
    from tune.trial.export import load_logged_model

    try:
        load_logged_model(client.tracking_uri, model_uri)
    except ModelFolderError as error:
        raise ValueError(f"--register-best: the encoder of run {run_id} ({model_uri}) is refused, nothing was "
                         f"registered: {error}") from None
