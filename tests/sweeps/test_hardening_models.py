"""Loading a logged model runs no code from it (issue 18, class 1): ``contralord.cli.model_folder`` refuses a
pickle-format folder, a pt2 folder whose sample inputs were swapped for a pickle payload, a pickled weight
and a ``code/`` module, and loads our pt2 layout as a graph. Marker files prove the payloads are live (MLflow's
loader or torch.export.load runs them, in a subprocess) and that ours runs none; --register-best refuses a
tampered encoder before registering anything."""

import io
import json
import shutil
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import mlflow
import pytest
import torch
from mlflow import MlflowClient
from mlflow.models import infer_signature
from packaging.version import Version

from contralord.cli.model_folder import ModelFolderError, load_model_folder
from tune.trial.mlflow_logger import MlflowLogger, get_experiment_id, register_best


class Payload:
    """Unpickling it creates ``marker`` (builtins.open): proof that a loader ran code from the file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def _module() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU()).eval()


@pytest.fixture(scope="module")
def good_folder(tmp_path_factory) -> Path:
    """A model folder as our sweeps log it: MLflow's PyTorch flavour, serialization_format='pt2'."""
    path = tmp_path_factory.mktemp("models") / "good"
    x = torch.randn(2, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlflow.pytorch.save_model(_module(), str(path), signature=infer_signature(x.numpy(), x[:, :2].numpy()),
                                  input_example=x.numpy(), serialization_format="pt2")
    return path


def _copy(good: Path, tmp_path: Path, name: str) -> Path:
    return Path(shutil.copytree(good, tmp_path / name))


def _rewrite_archive(folder: Path, replace: dict[str, bytes]) -> None:
    """Replace records of data/model.pt2 (matched by name suffix), keeping every other record."""
    path = folder / "data" / "model.pt2"
    old = zipfile.ZipFile(io.BytesIO(path.read_bytes()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as new:
        for info in old.infolist():
            suffix = next((k for k in replace if info.filename.endswith(k)), None)
            new.writestr(info.filename, replace[suffix] if suffix else old.read(info))
    path.write_bytes(out.getvalue())


def _pickle_folder(good: Path, tmp_path: Path, marker: Path, name: str = "pickled") -> Path:
    """A pickle-format folder: data/model.pth is a pickle payload, data/pickle_module_info.txt names pickle."""
    folder = _copy(good, tmp_path, name)
    (folder / "data" / "model.pt2").unlink()
    buffer = io.BytesIO()
    torch.save(Payload(marker), buffer)
    (folder / "data" / "model.pth").write_bytes(buffer.getvalue())
    (folder / "data" / "pickle_module_info.txt").write_text("pickle")
    return folder


def _code_folder(good: Path, tmp_path: Path, marker: Path, name: str = "with-code",
                 module: str = "evil_pickle") -> Path:
    """A folder whose MLmodel names code/ and whose pickle_module_info.txt names a module in it (``module``: a
    process imports a module once, so two such folders loaded in one process need two names)."""
    folder = _pickle_folder(good, tmp_path, tmp_path / "unused", name)
    (folder / "code").mkdir()
    (folder / "code" / f"{module}.py").write_text(f"open({str(marker)!r}, 'w').close()\nfrom pickle import *\n")
    (folder / "data" / "pickle_module_info.txt").write_text(module)
    text = (folder / "MLmodel").read_text().replace("code: null", "code: code")
    (folder / "MLmodel").write_text(text)
    return folder


def _swapped_inputs_folder(good: Path, tmp_path: Path, marker: Path) -> Path:
    folder = _copy(good, tmp_path, "swapped")
    buffer = io.BytesIO()
    torch.save(Payload(marker), buffer)
    _rewrite_archive(folder, {"data/sample_inputs/model.pt": buffer.getvalue()})
    return folder


def test_good_folder__loads_as_a_graph_that_matches(good_folder):
    loaded = load_model_folder(good_folder)
    x = torch.randn(5, 3)
    assert isinstance(loaded, torch.fx.GraphModule) and loaded(x).shape == (5, 2)


def test_payload_folders__refused_and_nothing_runs(good_folder, tmp_path):
    cases = {"pickle": (_pickle_folder, "not part of a pt2 model folder"),
             "code": (_code_folder, "not part of a pt2 model folder"),
             "inputs": (_swapped_inputs_folder, "holds Python objects other than tensors")}
    for name, (make, expected) in cases.items():
        marker = tmp_path / f"ran-{name}"
        folder = make(good_folder, tmp_path, marker)
        with pytest.raises(ModelFolderError, match=expected) as refused:
            load_model_folder(folder)
        assert len(str(refused.value).splitlines()) == 1 and not marker.exists(), name


@pytest.mark.slow
def test_payload_folders__are_live_for_mlflow_and_torch(good_folder, tmp_path):
    """The payloads above do run in the loaders we replace: MLflow's with pickle allowed (its default) for a
    pickle-format folder and a code/ module, and torch.export.load on the swapped archive. With pickle disallowed,
    MLflow up to 3.17 still imported the code/ module (docs/SECURITY.md); 3.18 refuses the folder first."""
    names = ("pickle", "code", "code, pickle disallowed", "inputs")
    markers = {name: tmp_path / f"live-{index}" for index, name in enumerate(names)}
    folders = {"pickle": _pickle_folder(good_folder, tmp_path, markers["pickle"]),
               "code": _code_folder(good_folder, tmp_path, markers["code"]),
               "code, pickle disallowed": _code_folder(good_folder, tmp_path, markers["code, pickle disallowed"],
                                                       "with-code-disallowed", "evil_pickle_disallowed"),
               "inputs": _swapped_inputs_folder(good_folder, tmp_path, markers["inputs"])}
    script = ("import os, sys, torch, mlflow\n"
              "def attempt(f):\n    try: f()\n    except Exception: pass\n"
              f"attempt(lambda: mlflow.pytorch.load_model({str(folders['pickle'])!r}))\n"
              f"attempt(lambda: mlflow.pytorch.load_model({str(folders['code'])!r}))\n"
              "os.environ['MLFLOW_ALLOW_PICKLE_DESERIALIZATION'] = 'false'\n"
              f"attempt(lambda: mlflow.pytorch.load_model({str(folders['code, pickle disallowed'])!r}))\n"
              f"attempt(lambda: torch.export.load({str(folders['inputs'] / 'data' / 'model.pt2')!r}))\n")
    subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=300, cwd=tmp_path)
    before_fix = Version(mlflow.__version__) < Version("3.18")  # scripts/repro_mlflow_code_import.py tells
    expected = dict.fromkeys(markers, True) | {"code, pickle disallowed": before_fix}
    assert {name: path.exists() for name, path in markers.items()} == expected


def test_pickled_weight_or_extra_record__refused(good_folder, tmp_path):
    folder = _copy(good_folder, tmp_path, "pickled-weight")
    archive = zipfile.ZipFile(folder / "data" / "model.pt2")
    name = next(n for n in archive.namelist() if n.endswith("_weights_config.json"))
    config = json.loads(archive.read(name))
    next(iter(config["config"].values()))["use_pickle"] = True
    _rewrite_archive(folder, {name: json.dumps(config).encode()})
    with pytest.raises(ModelFolderError, match="stored as a pickle"):
        load_model_folder(folder)
    folder = _copy(good_folder, tmp_path, "namesake")  # a second sample_inputs record after the checked one
    payload = io.BytesIO()
    torch.save(Payload(tmp_path / "ran"), payload)
    with warnings.catch_warnings(), zipfile.ZipFile(folder / "data" / "model.pt2", "a") as grown:
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
        grown.writestr("model/data/sample_inputs/model.pt", payload.getvalue())
    with pytest.raises(ModelFolderError, match="two records share a name"):
        load_model_folder(folder)
    assert not (tmp_path / "ran").exists()
    folder = _copy(good_folder, tmp_path, "extra")
    with zipfile.ZipFile(folder / "data" / "model.pt2", "a") as grown:
        grown.writestr("model/data/aotinductor/model/model.so", b"\x7fELF")
    with pytest.raises(ModelFolderError, match="not part of a plain pt2 graph"):
        load_model_folder(folder)


@pytest.mark.slow
def test_register_best__refuses_a_tampered_encoder(tmp_path, good_folder):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = get_experiment_id(client, "contralord-test")
    logger = MlflowLogger(client.tracking_uri, client.create_run(experiment).info.run_id)
    logger.log_model(_module(), "encoder", torch.randn(2, 3))
    client.log_metric(logger.run_id, "encoder/eval/mig", 0.5)
    run = client.get_run(logger.run_id)
    stored = Path(client.get_logged_model(run.outputs.model_outputs[0].model_id).artifact_location.removeprefix(
        "file://"))
    marker = tmp_path / "ran"
    _swapped_inputs_folder(stored, tmp_path, marker)  # build the tampered archive, then put it in the store
    shutil.copy(tmp_path / "swapped" / "data" / "model.pt2", stored / "data" / "model.pt2")
    with pytest.raises(ValueError, match=f"--register-best: the encoder of run {run.info.run_id}.*refused"):
        register_best(client, [run], "encoder/eval/mig", "max", "contralord-test-encoder")
    assert not marker.exists() and client.search_registered_models() == []
