"""Issue 33 fault e: sweeps that start at once on one store. MLflow's tracking store creates a new database's
schema without a guard, so processes opening a new SQLite store together fail ("table ... already exists",
"duplicate column name"), and two drivers that both miss an experiment both create it. ``open_store_for_writing`` and
``get_experiment_id`` (tune/trial/mlflow_logger.py) make both safe: every process here opens, creates, logs and
finishes, while a reader (what ``make_tables`` does: ``check_readable``, then MLflow's reads) reads the store throughout
and never writes, fails or waits on a lock."""

import json
import sys
import time
from pathlib import Path

import pytest
from filelock import Timeout
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from tune.checks import SweepError
from tune.trial import mlflow_logger
from tune.trial.mlflow_logger import _database, get_experiment_id, open_store_for_writing

PROCESSES = 4
POINTS = 20

# each process: import, wait for the go file (so all open the store within milliseconds), then do what a sweep's
# driver does first (open the store, find or create the experiments) and log a run
SCRIPT = """
import sys, time
from pathlib import Path
from mlflow.entities import Metric
from tune.trial.mlflow_logger import get_experiment_id, open_store_for_writing
uri, go, kind, index = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4]
Path(str(go) + "." + index).touch()
while not go.exists():
    time.sleep(0.001)
client = open_store_for_writing(uri)
get_experiment_id(client, "contralord-stage1")
run = client.create_run(get_experiment_id(client, "contralord-" + kind))
client.log_batch(run.info.run_id, metrics=[Metric("loss", float(i), 0, i) for i in range({points})])
client.set_terminated(run.info.run_id)
""".replace("{points}", str(POINTS))


# a reader: make_tables' check, then every run and metric history, again and again until the writers are done;
# a store that is not (yet) a whole MLflow store is refused by the check and read again later
READER = """
import json, sys, time
from pathlib import Path
import pytest
from filelock import Timeout
from mlflow import MlflowClient
from ablations.runs import AblationError, check_readable
uri, go, done = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
Path(str(go) + ".reader").touch()
refused = reads = 0
while not go.exists():
    time.sleep(0.001)
while True:
    last = done.exists()
    try:
        check_readable(uri)
    except AblationError:
        refused += 1
        time.sleep(0.05)
        continue
    client = MlflowClient(uri)
    for experiment in client.search_experiments():
        for run in client.search_runs([experiment.experiment_id]):
            client.get_metric_history(run.info.run_id, "loss")
    reads += 1
    if last:
        break
print(json.dumps({"refused": refused, "reads": reads}))
"""


@pytest.mark.slow
def test_sweeps_starting_together__on_a_new_store_all_open_create_and_log(own_processes, tmp_path):
    uri, go = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "go"
    kinds = ["negatives", "losses"] * (PROCESSES // 2)
    started = [own_processes.start([sys.executable, "-c", SCRIPT, uri, str(go), kind, str(index)],
                                   cwd=Path(__file__).resolve().parents[2], stdout=-1, stderr=-1, text=True)
               for index, kind in enumerate(kinds)]
    done = tmp_path / "done"
    reader = own_processes.start([sys.executable, "-c", READER, uri, str(go), str(done)],
                                 cwd=Path(__file__).resolve().parents[2], stdout=-1, stderr=-1, text=True)
    deadline = time.monotonic() + 120
    ready = [Path(f"{go}.{i}") for i in range(len(kinds))] + [Path(f"{go}.reader")]
    while not all(path.exists() for path in ready) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # every process past its imports, polling for the go file
    go.touch()
    for process in started:
        _, err = process.communicate(timeout=180)
        assert process.returncode == 0, err[-2000:]
    done.touch()
    out, err = reader.communicate(timeout=180)
    assert reader.returncode == 0 and "locked" not in err, err[-2000:]
    counts = json.loads(out.strip().splitlines()[-1])
    print(f"reader: {counts}")
    assert counts["reads"] >= 1

    client = MlflowClient(uri)
    names = sorted(e.name for e in client.search_experiments())
    assert names == ["Default", "contralord-losses", "contralord-negatives", "contralord-stage1"]
    for kind in set(kinds):
        experiment = client.get_experiment_by_name(f"contralord-{kind}")
        runs = client.search_runs([experiment.experiment_id])
        assert len(runs) == PROCESSES // 2 and all(r.info.status == "FINISHED" for r in runs)
        for run in runs:
            history = client.get_metric_history(run.info.run_id, "loss")
            assert sorted(m.step for m in history) == list(range(POINTS))  # no point lost or written twice


def test_experiment_created_by_another_sweep_between_read_and_create__is_ours(tmp_path, monkeypatch):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    other = client.create_experiment("contralord-negatives")
    monkeypatch.setattr(client, "get_experiment_by_name", _missing_once(client.get_experiment_by_name))
    assert get_experiment_id(client, "contralord-negatives") == other
    assert len([e for e in client.search_experiments() if e.name == "contralord-negatives"]) == 1


def _missing_once(read):
    """``read`` that answers None the first time: the other sweep creates the experiment just after our read."""
    calls = []

    def reading(name):
        calls.append(name)
        return None if len(calls) == 1 else read(name)

    return reading


def test_lock__one_per_database_however_its_uri_is_spelt(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _database("sqlite:///mlflow.db") == _database(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert _database("sqlite:///mlflow.db") != _database("sqlite:///other.db")
    spellings = ["postgresql://u:one@db.example:5432/mlflow", "postgresql+psycopg://v:two@db.example:5432/mlflow",
                 "postgresql+psycopg://u:one@db.example:5432/mlflow?sslmode=require"]
    assert len({_database(uri) for uri in spellings}) == 1
    assert _database(spellings[0]) != _database("postgresql://u:one@db.example:5432/other")


def test_lock__held_past_its_timeout_is_one_line_naming_the_flag_and_the_file(tmp_path, monkeypatch):
    class Held:
        def __init__(self, path, timeout):
            self.path = path

        def __enter__(self):
            raise Timeout(str(self.path))

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(mlflow_logger, "FileLock", Held)
    with pytest.raises(SweepError, match=r"--tracking-uri: another process has held .*contralord-store-\w+\.lock "
                                         r"for 5 s while opening sqlite:///"):
        open_store_for_writing(f"sqlite:///{tmp_path / 'mlflow.db'}", timeout_s=5)
    assert not (tmp_path / "mlflow.db").exists()  # nothing opened, nothing created


# each process: a run of its own in one experiment, then the same new dataset logged to it at the same moment, as two
# trials of one sweep (or two sweeps' stage 1s) do when they start together
DATASET_SCRIPT = """
import sys, time
from pathlib import Path
from mlflow import MlflowClient
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.data.meta_dataset import MetaDataset
from tune.trial.mlflow_logger import MlflowLogger
uri, go, experiment_id, index = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4]
client = MlflowClient(uri)
run = client.create_run(experiment_id)
dataset = MetaDataset(CodeDatasetSource({"dataset": "shapes3d"}), name="shapes3d", digest="0123456789abcdef")
Path(str(go) + "." + index).touch()
while not go.exists():
    time.sleep(0.0005)
MlflowLogger(uri, run.info.run_id).log_dataset(dataset)
client.set_terminated(run.info.run_id)
"""


@pytest.mark.slow
def test_runs_logging_one_new_dataset_at_once__all_link_it_and_it_is_stored_once(own_processes, tmp_path):
    uri, go = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "go"
    experiment_id = get_experiment_id(open_store_for_writing(uri), "contralord-stage1")
    started = [own_processes.start([sys.executable, "-c", DATASET_SCRIPT, uri, str(go), experiment_id, str(index)],
                                   cwd=Path(__file__).resolve().parents[2], stdout=-1, stderr=-1, text=True)
               for index in range(2 * PROCESSES)]
    deadline = time.monotonic() + 120
    while not all(Path(f"{go}.{i}").exists() for i in range(len(started))) and time.monotonic() < deadline:
        time.sleep(0.05)
    go.touch()
    for process in started:
        _, err = process.communicate(timeout=180)
        assert process.returncode == 0, err[-2000:]  # before the retry: "UNIQUE constraint failed: datasets..."
    client = MlflowClient(uri)
    runs = client.search_runs([experiment_id])
    assert len(runs) == len(started) and all(r.info.status == "FINISHED" for r in runs)
    assert all([d.dataset.digest for d in r.inputs.dataset_inputs] == ["0123456789abcdef"] for r in runs)
    assert len({d.dataset.name for r in runs for d in r.inputs.dataset_inputs}) == 1


def test_is_dataset_race__only_the_datasets_unique_key():
    sqlite = "(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.experiment_id, datasets.name, datasets.digest"
    postgres = 'duplicate key value violates unique constraint "dataset_pk" ... INSERT INTO datasets'
    assert mlflow_logger.is_dataset_race(MlflowException(sqlite))
    assert mlflow_logger.is_dataset_race(MlflowException(postgres))
    assert not mlflow_logger.is_dataset_race(MlflowException("UNIQUE constraint failed: experiments.name"))
    assert not mlflow_logger.is_dataset_race(MlflowException("Run 'abc' not found"))
