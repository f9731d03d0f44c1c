"""Atomic checkpoint files: write to a temporary file in the same folder, fsync, then rename.

A crash mid-write leaves the previous checkpoint untouched (``os.replace`` is atomic on POSIX).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from contralord import distributed


def save_atomic(state: dict[str, Any], path: str | Path) -> Path:
    """torch.save ``state`` to ``path`` atomically (rank 0 only; other ranks return at once)."""
    path = Path(path)
    if not distributed.is_main():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
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


def load(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by ``save_atomic`` onto the CPU."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path}: no such file")
    return torch.load(path, map_location="cpu", weights_only=False)


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
    """Refuse to resume from a checkpoint of another config; name the differing keys."""
    keys = sorted(k for k in set(saved) | set(current) if not k.startswith(ignore) and saved.get(k) != current.get(k))
    if keys:
        diffs = ", ".join(f"{k}: {saved.get(k)!r} in checkpoint vs {current.get(k)!r} now" for k in keys[:5])
        raise ValueError(f"checkpoint {path}: incompatible config ({diffs})")
