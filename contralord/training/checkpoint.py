"""Atomic checkpoint files: write to a temporary file in the same folder, fsync, then rename.

A crash mid-write leaves the previous checkpoint untouched (``os.replace`` is atomic on POSIX); so does a write
that fails (a full disk, a folder that became unwritable), which raises ``CheckpointWriteError``: one line naming
the folder, the temporary file removed.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

from contralord.config import as_it_ran
from contralord.training import distributed


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (disk full, folder unwritable); the one written before at that path, if
    any, is intact."""


def save_atomic(state: dict[str, Any], path: str | Path) -> Path:
    """torch.save ``state`` to ``path`` atomically (rank 0 only; other ranks return at once); CheckpointWriteError
    when the folder cannot take it."""
    path = Path(path)
    if not distributed.is_main():
        return path
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if not isinstance(error, OSError):
            raise
        kept = "the last one written there is intact" if path.is_file() else "none was written there before"
        raise CheckpointWriteError(error.errno, f"cannot write checkpoint {path.name} in {path.parent} "
                                   f"({error.strerror or error}); {kept}") from error
    return path


def write_json_atomic(payload: dict[str, Any], path: str | Path) -> Path:
    """Write ``payload`` as indented JSON to ``path`` atomically (rank 0 only)."""
    path = Path(path)
    if not distributed.is_main():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)
    return path


class CheckpointError(ValueError):
    """A checkpoint or stage-1 artifact that cannot be trusted or read; the message names the file."""


def load(path: str | Path, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Load a checkpoint written by ``save_atomic`` onto the CPU, refusing anything but plain data.

    Everything we save is tensors, dicts, lists and plain values, so the file is read with
    ``weights_only=True``: a pickled object (which could run code while loading) is refused before
    it is built. ``required`` names the top-level keys the caller needs.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        found = next((line for line in lines if "GLOBAL" in line or "Unsupported" in line), type(error).__name__)
        if "GLOBAL" in found:
            raise CheckpointError(f"checkpoint {path}: refused, it holds Python objects other than tensors and "
                                  f"plain values, and loading it could run code (nothing was run): {found}") from None
        raise CheckpointError(f"checkpoint {path}: not a torch checkpoint ({found[:160]})") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError) as error:
        found = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise CheckpointError(f"checkpoint {path}: unreadable, truncated or not a torch checkpoint "
                              f"({found[:160]})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path}: expected a dict of saved state, found {type(state).__name__}")
    missing = [k for k in required if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path}: missing keys {missing} (expected {list(required)}); "
                              "not a checkpoint of this stage")
    return state


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def check_compatible(saved: dict[str, Any], current: dict[str, Any], path: Path, ignore: tuple[str, ...] = ()) -> None:
    """Refuse to resume from a checkpoint of another config; name the differing keys. A key the checkpoint
    predates is read at the value it ran with (``config.KEYS_ADDED_WITH_OLD_BEHAVIOUR``)."""
    saved = as_it_ran(saved)
    keys = sorted(k for k in set(saved) | set(current) if not k.startswith(ignore) and saved.get(k) != current.get(k))
    if keys:
        diffs = ", ".join(f"{k}: {saved.get(k)!r} in checkpoint vs {current.get(k)!r} now" for k in keys[:5])
        raise ValueError(f"checkpoint {path}: incompatible config ({diffs})")
