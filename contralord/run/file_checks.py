"""Checks on the paths and files a user hands a run, before anything reads or writes them: output folders, names, a
run's config.json, the header of a weights file. Each failure is one ``ConfigError`` line naming the key or flag,
the expected and the found value (docs/BAD_INPUT.md). They need no torch, so ``ablations/`` and ``tune/`` use them
too."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from contralord.config import ConfigError

# torch.save writes a zip (PK..); the legacy format starts with a pickle protocol byte (0x80).
TORCH_MAGIC = (b"PK\x03\x04", b"\x80")


def check_out(out_dir: str | Path, resume: bool) -> Path:
    """``--out`` as the real folder the run will write (symlinks resolved first, so a link cannot point the
    run at someone else's folder): new or empty, or holding one of our runs (``config.json``) with --resume.
    A non-empty folder that is not a run of ours is refused: its files would be overwritten."""
    if not str(out_dir).strip():
        raise ConfigError("--out: expected a folder path, got ''")
    given = Path(out_dir)
    check_name_lengths(given, "--out")
    out = given.resolve()
    shown = f"{given} (-> {out})" if out != given.absolute() else str(given)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out: {shown} is a file, expected a folder (new, or a run's folder with --resume)")
    check_creatable(out, "--out")
    ours = (out / "config.json").is_file()
    if ours and not resume:
        raise FileExistsError(f"--out: {shown} already holds a run (config.json); pass --resume to continue it, "
                              f"or another --out (nothing was changed)")
    if not ours and out.is_dir() and any(out.iterdir()):
        raise ConfigError(f"--out: {shown} is a non-empty folder that holds no contralord run (no config.json); "
                          f"expected a new or empty folder (nothing was changed)")
    link = next((p for p in out.rglob("*") if p.is_symlink()), None) if ours else None
    if link is not None:  # checkpoints, caches and grids would be written wherever it points
        raise ConfigError(f"--out: {link} in the run folder is a symbolic link (to {os.readlink(link)}); a run "
                          f"folder holds only its own files (nothing was changed)")
    return out


NAME_MAX = 255  # bytes in one name of a path (Linux, macOS); a longer one is ENAMETOOLONG wherever it is touched


def check_name_lengths(path: Path, key: str) -> None:
    """Every name in ``path`` fits in ``NAME_MAX`` bytes (checked before the path is touched: even ``exists()``
    raises on a longer one)."""
    long = next((part for part in Path(path).parts if len(os.fsencode(part)) > NAME_MAX), None)
    if long is not None:
        raise ConfigError(f"{key}: the name {long[:40]}... is {len(os.fsencode(long))} bytes long, expected at most "
                          f"{NAME_MAX} (the file system's limit for one name in a path)")


def check_creatable(folder: Path, key: str) -> None:
    """``folder`` exists as a folder, or can be created: its nearest existing ancestor is a writable folder and
    every name on the way fits the file system (a 300-character name used to end in an OS errno)."""
    check_name_lengths(folder, key)
    existing = next(p for p in (folder, *folder.absolute().parents) if p.exists())
    if existing == folder and not folder.is_dir():
        raise ConfigError(f"{key}: {folder} is a file, expected a folder")
    if not existing.is_dir():
        raise ConfigError(f"{key}: {existing} is a file, so the folder {folder} cannot be created in it")
    problem = unwritable_reason(existing)
    if problem:
        raise ConfigError(f"{key}: cannot write in {existing} ({problem})")


def unwritable_reason(folder: Path) -> str:
    """'' when ``folder`` may be written, else why not. ``os.access`` alone says yes to root everywhere, so a
    folder on a read-only mount, or with no write bit at all (someone marked it read-only), is refused for
    root too: root could write there, but the folder's owner said not to."""
    if os.statvfs(folder).f_flag & os.ST_RDONLY:
        return "a read-only file system"
    if not os.access(folder, os.W_OK | os.X_OK):
        return "permission denied for this user"
    mode = folder.stat().st_mode
    if os.geteuid() == 0 and not mode & 0o222:
        return f"mode {mode & 0o777:04o}: no one may write there, and root is not let past that"
    return ""


def read_run_config(path: Path) -> dict[str, Any]:
    """A run's config.json as flat keys, or a ConfigError naming the file."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path}: expected a JSON object written by contralord train, cannot read it "
                          f"({type(error).__name__})") from None
    if not isinstance(saved, dict):
        raise ConfigError(f"{path}: expected a JSON object written by contralord train, found {type(saved).__name__}")
    return saved


def check_weight_file(key: str, path: str) -> None:
    """A user-supplied weights file exists and starts like a torch checkpoint (a cheap header check)."""
    if not Path(path).is_file():
        raise ConfigError(f"{key}: file {path!r} does not exist")
    with open(path, "rb") as f:
        head = f.read(4)
    if not head.startswith(TORCH_MAGIC):
        raise ConfigError(f"{key}: {path!r} is not a torch weights file (expected torch.save's zip format, "
                          f"found {Path(path).stat().st_size} bytes starting {head!r})")
