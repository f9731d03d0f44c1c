"""Load a logged model folder (MLflow's PyTorch flavour, ``pt2`` format) as a graph, running no code from it.

``mlflow.pytorch.load_model`` trusts the folder it is given: a ``pickle``-format folder is unpickled, a
``code/`` folder goes onto ``sys.path`` and ``pickle_module_info.txt`` names a module it imports, and even
a ``pt2`` archive is read by ``torch.export.load``, which unpickles its sample inputs, any weight or constant
saved with ``use_pickle`` and any custom object (``weights_only=False``). A worker, or anyone who can write
to the artifact store, can therefore run code in whoever loads the model.

``load_model_folder`` accepts only the layout our sweeps log (``tune/trial/export.py``): an ``MLmodel`` without
code, ``data/model.pt2`` and MLflow's plain-text side files. Before ``torch.export.load`` sees the archive,
every record in it is checked: text and JSON records, raw tensor bytes (``use_pickle: false``), and sample
inputs that torch's restricted unpickler (``weights_only=True``) accepts. Anything else is one line naming
the file (``ModelFolderError``). The archive is read into memory once, so what was checked is what loads.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import torch
from torch.export.pt2_archive import constants as pt2

from contralord.data.arrays import DEFAULT_MAX_ARRAY_BYTES

# What MLflow 3 writes beside the model (text only; none of it is read here but MLmodel)
SIDE_FILES = {"MLmodel", "conda.yaml", "python_env.yaml", "requirements.txt", "input_example.json",
              "serving_input_example.json", "registered_model_meta"}
ARCHIVE = "data/model.pt2"
TEXT_RECORDS = {pt2.ARCHIVE_FORMAT_PATH, pt2.ARCHIVE_VERSION_PATH, "byteorder", ".data/version",
                ".data/serialization_id"}
RAW_PREFIXES = (pt2.WEIGHT_FILENAME_PREFIX, pt2.TENSOR_CONSTANT_FILENAME_PREFIX)


class ModelFolderError(ValueError):
    """A model folder that is not our pt2 layout, or whose archive could run code; one line naming the file."""


def load_model_folder(folder: str | Path, max_bytes: int = DEFAULT_MAX_ARRAY_BYTES) -> torch.nn.Module:
    """The graph module of a logged pt2 model folder, on the CPU, after ``check_layout`` and
    ``check_archive``; nothing from the folder is imported or unpickled outside torch's restricted loader."""
    archive = check_layout(Path(folder))
    size = archive.stat().st_size
    if size > max_bytes:
        raise ModelFolderError(f"{archive}: {size / 2**30:.3g} GiB, over the {max_bytes / 2**30:g} GiB cap")
    payload = archive.read_bytes()
    check_archive(payload, archive, max_bytes)
    try:
        return torch.export.load(io.BytesIO(payload)).module()
    except Exception as error:  # a checked archive torch still cannot read: a corrupt or foreign graph
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ModelFolderError(f"{archive}: not a torch.export graph torch can load ({first[:160]})") from None


def check_layout(folder: Path) -> Path:
    """``folder`` holds exactly MLflow's side files, an ``MLmodel`` whose pytorch flavour names no code,
    and ``data/model.pt2``; returns the archive's path."""
    if not folder.is_dir():
        raise ModelFolderError(f"{folder}: expected a logged model folder (MLmodel, data/model.pt2), found "
                               f"{'a file' if folder.exists() else 'nothing'}")
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir()}
    links = [p for p in folder.rglob("*") if p.is_symlink()]
    if links:
        raise ModelFolderError(f"{links[0]}: a symbolic link in a model folder; expected plain files only")
    foreign = sorted(files - SIDE_FILES - {ARCHIVE})
    if foreign:
        raise ModelFolderError(f"{folder / foreign[0]}: not part of a pt2 model folder (expected only MLmodel, "
                               f"{ARCHIVE} and MLflow's text files; pickle-format models and code/ are refused)")
    if ARCHIVE not in files or "MLmodel" not in files:
        missing = ARCHIVE if ARCHIVE not in files else "MLmodel"
        raise ModelFolderError(f"{folder}: no {missing}; expected a model logged with serialization_format='pt2'")
    _check_mlmodel(folder / "MLmodel")
    return folder / ARCHIVE


def _check_mlmodel(path: Path) -> None:
    """MLmodel is YAML (read with the safe loader) with a pytorch flavour whose model is ``data``, no code."""
    import yaml

    try:
        spec = yaml.safe_load(path.read_text())
        flavor = spec["flavors"]["pytorch"]
    except (OSError, UnicodeDecodeError, yaml.YAMLError, TypeError, KeyError):
        raise ModelFolderError(f"{path}: expected MLflow's MLmodel YAML with a pytorch flavour") from None
    if not isinstance(flavor, dict) or flavor.get("code") or flavor.get("model_data") != "data":
        raise ModelFolderError(f"{path}: the pytorch flavour must have model_data: data and no code, found "
                               f"{json.dumps(flavor, default=str)[:160]}")


def check_archive(payload: bytes, where: Path, max_bytes: int) -> None:
    """Every record of the pt2 zip is plain text, JSON, raw tensor bytes named by a ``use_pickle: false``
    config entry, or sample inputs torch's ``weights_only`` unpickler accepts; the records inflate to at
    most ``max_bytes``."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(payload))
        infos = [i for i in archive.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError):
        raise ModelFolderError(f"{where}: not a zip archive, expected torch.export's pt2 format") from None
    inflated = sum(i.file_size for i in infos)
    if inflated > max_bytes:
        raise ModelFolderError(f"{where}: inflates to {inflated / 2**30:.3g} GiB, over the "
                               f"{max_bytes / 2**30:g} GiB cap")
    records = {_inside(i.filename, where): i for i in infos}
    if len(records) != len(infos):  # torch's reader and zipfile need not pick the same one of two namesakes
        raise ModelFolderError(f"{where}: two records share a name; nothing was loaded")
    raw = _raw_tensor_records(archive, records, where)
    for name, info in records.items():
        if name not in raw:
            _check_record(name, archive.read(info), where)


def _inside(name: str, where: Path) -> str:
    """A record's name below the archive's one root folder (torch writes ``<root>/...``)."""
    root, sep, rest = name.partition("/")
    if not sep or not root or ".." in rest.split("/"):
        raise ModelFolderError(f"{where}: record {name!r} is outside the archive's root folder")
    return rest


def _raw_tensor_records(archive: zipfile.ZipFile, records: dict, where: Path) -> set[str]:
    """The weight and constant records torch reads as raw bytes: every entry of every payload config must
    be one (``use_pickle: false``, a ``weight_``/``tensor_`` name); a pickled one refuses the archive."""
    raw = set()
    for name, info in records.items():
        folder = next((d for d in (pt2.WEIGHTS_DIR, pt2.CONSTANTS_DIR) if name.startswith(d)), None)
        if folder is None or not name.endswith("_config.json"):
            continue
        try:
            entries = json.loads(archive.read(info))["config"]
            pairs = [(e["path_name"], e["use_pickle"]) for e in entries.values()]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ModelFolderError(f"{where}: record {name} is not a pt2 payload config") from None
        for path_name, pickled in pairs:
            if pickled is not False or not str(path_name).startswith(RAW_PREFIXES) or "/" in str(path_name):
                raise ModelFolderError(f"{where}: {folder}{path_name} is stored as a pickle, which loading would "
                                       f"run (only raw tensors are accepted); nothing was loaded")
            raw.add(folder + path_name)
    return raw


def _check_record(name: str, content: bytes, where: Path) -> None:
    """A record that is not raw tensor bytes: known text, JSON, or sample inputs of plain tensors."""
    if name in TEXT_RECORDS and len(content) <= 64 and content.decode("ascii", "replace").strip().isprintable():
        return
    if name.endswith(".json") and (name.startswith((pt2.MODELS_DIR, pt2.WEIGHTS_DIR, pt2.CONSTANTS_DIR))):
        try:
            json.loads(content)
            return
        except ValueError:
            raise ModelFolderError(f"{where}: record {name} is not JSON") from None
    if name.startswith(pt2.SAMPLE_INPUTS_DIR) and name.endswith(".pt"):
        try:
            torch.load(io.BytesIO(content), map_location="cpu", weights_only=True)
            return
        except Exception:  # the restricted unpickler refused it: it holds more than tensors and plain values
            raise ModelFolderError(f"{where}: {name} holds Python objects other than tensors, which loading "
                                   f"would unpickle and could run code; nothing was loaded") from None
    raise ModelFolderError(f"{where}: record {name} is not part of a plain pt2 graph (no compiled code, "
                           f"custom objects or extra files are accepted); nothing was loaded")
