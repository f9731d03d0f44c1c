"""A copy of the cluster's MLflow store (SQLite on the head) that outlives the cluster.

    python tune/store/store_backup.py backup  --db ~/mlflow/mlflow.db --to DEST   # one consistent copy now
    python tune/store/store_backup.py watch   --db ~/mlflow/mlflow.db --to DEST   # on the head, for its lifetime
    python tune/store/store_backup.py restore --db ~/mlflow/mlflow.db --from DEST # before the MLflow server starts

DEST is a folder where the artifacts live and the cluster does not: ``s3://bucket/prefix`` on AWS, a shared path
on-premise (any URI pyarrow.fs opens). The copy is ``DEST/mlflow.db``, made with SQLite's online backup (a
consistent snapshot while the server writes, never a file copy under writes), checked (SQLite's integrity check,
MLflow's tables at this MLflow's schema revision, no trigger MLflow does not make) and only then put in place of
the previous copy, so DEST holds the last good copy at every moment.

``watch`` backs up whenever a run has finished since the last copy (so a sweep's end reaches DEST within
``--poll`` seconds) and otherwise every ``--every`` seconds while the store changes; SIGTERM or Ctrl-C makes a
last copy. ``restore`` never replaces a store that exists: it fills a missing one from DEST (the cluster's first
``ray up`` after a ``ray down``), after the same checks, or leaves it missing when DEST has no copy. The MLflow
login database (basic_auth.db) is not copied: each cluster makes its logins anew (docs/SECURITY.md).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, when run as a script

from ablations.store import _first_line, sqlite_store_problem  # noqa: E402

COPY_NAME = "mlflow.db"
# MLflow 3.17's schema makes this one trigger and no view: (name, table, SQL with its whitespace collapsed).
# tests/sweeps/test_store_backup.py checks that a store MLflow makes has exactly these.
MLFLOW_TRIGGERS = {("prevent_secrets_aad_mutation", "secrets",
                    "CREATE TRIGGER prevent_secrets_aad_mutation BEFORE UPDATE ON secrets FOR EACH ROW WHEN "
                    "OLD.secret_id != NEW.secret_id OR OLD.secret_name != NEW.secret_name BEGIN SELECT RAISE(ABORT, "
                    "'secret_id and secret_name are immutable (used as AAD in encryption)'); END")}
EVERY_S = 300.0
POLL_S = 10.0


class StoreBackupError(ValueError):
    """A store or a copy that cannot be used, or a DEST that cannot be reached: one line naming it (exit 2)."""


def _destination(dest: str):
    """(pyarrow FileSystem, path of the copy inside it) for a URI or a local path."""
    import pyarrow.fs

    uri = dest if "://" in dest else str(Path(dest).expanduser().resolve())
    try:
        fs, base = pyarrow.fs.FileSystem.from_uri(uri)
    except (pyarrow.ArrowInvalid, OSError, ValueError) as error:
        raise StoreBackupError(f"--to/--from: cannot open {dest!r} ({_first_line(error)})") from None
    return fs, f"{base.rstrip('/')}/{COPY_NAME}"


def copy_problem(path: Path) -> str:
    """'' when ``path`` is a whole MLflow SQLite store this MLflow can serve, else why not (one line). Read-only:
    a copy from DEST is untrusted until it passes."""
    problem = sqlite_store_problem(path)
    if problem:
        return problem
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            integrity = [row[0] for row in db.execute("PRAGMA integrity_check")]
            code = db.execute("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE type IN ('trigger', 'view')")
            foreign = sorted(f"{kind} {name}" for kind, name, table, sql in code
                             if kind != "trigger" or (name, table, " ".join(sql.split())) not in MLFLOW_TRIGGERS)
    except sqlite3.Error as error:
        return f"cannot read the SQLite database {path} ({error})"
    if integrity != ["ok"]:
        return f"{path} fails SQLite's integrity check ({integrity[0]})"
    if foreign:  # a trigger or view would run SQL of the copy's author whenever the server writes or reads
        return f"{path} has SQL MLflow does not make: {', '.join(foreign)}"
    return ""


@dataclass(frozen=True)
class StoreState:
    """What says the store changed: the (mtime, size) of the database and its journals, and the newest run end."""
    files: tuple
    last_end: int


def store_state(db: Path) -> StoreState:
    files = []
    for path in (db, Path(f"{db}-wal"), Path(f"{db}-journal")):  # a journal comes and goes with every write
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            continue
        files.append((path.name, stat.st_mtime_ns, stat.st_size))
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            last_end = conn.execute("SELECT MAX(end_time) FROM runs").fetchone()[0] or 0
    except sqlite3.Error:  # busy, or not (yet) an MLflow store: the file times still say whether it changed
        last_end = 0
    return StoreState(tuple(files), last_end)


def backup_due(now: StoreState, copied: StoreState | None, seconds_since_copy: float, every_s: float) -> bool:
    """A copy is due when the store changed since the last one and either a run finished since (a trial's or a
    sweep's end) or ``every_s`` seconds have passed."""
    if copied is not None and now.files == copied.files:
        return False
    if copied is None or now.last_end > copied.last_end:
        return True
    return seconds_since_copy >= every_s


def _runs(path: Path) -> int:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]


def _runs_in_copy(fs, target: str) -> int | None:
    """Runs the copy at ``target`` holds (its sidecar ``.runs``, written with it), None when there is no copy."""
    import pyarrow.fs

    if fs.get_file_info(target + ".runs").type == pyarrow.fs.FileType.NotFound:
        return None
    with fs.open_input_stream(target + ".runs") as src:
        text = src.read(64).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


def _put(fs, local: Path, target: str) -> None:
    """Write ``local`` to ``target`` whole or not at all: a uniquely named partial object, then a move."""
    partial = f"{target}.partial-{os.getpid()}-{time.monotonic_ns()}"
    try:
        with open(local, "rb") as src, fs.open_output_stream(partial) as out:
            shutil.copyfileobj(src, out, 1 << 20)
        fs.move(partial, target)
    except BaseException:
        try:
            fs.delete_file(partial)
        except OSError:
            pass
        raise


def _check_local_dest(dest: str) -> None:
    """A path DEST's parent must exist: an unmounted shared folder is an error, not an empty place to start."""
    if "://" not in dest and not Path(dest).expanduser().resolve().parent.is_dir():
        raise StoreBackupError(f"--to/--from: {Path(dest).expanduser().parent} does not exist (the shared folder "
                               f"not mounted?); nothing done")


def backup(db: Path, dest: str, force: bool = False) -> str:
    """Copy ``db`` to ``DEST/mlflow.db`` consistently; returns what was copied, for the log. A snapshot with fewer
    runs than the copy it would replace is refused unless ``force`` (an empty store started beside an unmounted
    share, or another cluster's store, must not replace the runs kept there)."""
    if not db.is_file():
        raise StoreBackupError(f"--db: {db} is not a file")
    _check_local_dest(dest)
    fs, target = _destination(dest)
    with tempfile.TemporaryDirectory(prefix=".store-backup-", dir=db.parent) as tmp:  # beside the store: its disk
        snapshot = Path(tmp) / COPY_NAME
        try:
            source, copy = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30), sqlite3.connect(snapshot)
            try:
                source.backup(copy)  # SQLite's online backup: one consistent state of the store
            finally:
                source.close()
                copy.close()
        except sqlite3.Error as error:
            raise StoreBackupError(f"--db: cannot read {db} ({error})") from None
        problem = copy_problem(snapshot)
        if problem:
            raise StoreBackupError(f"--db: not copied, the store's snapshot is not whole: {problem}")
        runs = _runs(snapshot)
        try:
            parent = target.rpartition("/")[0]
            if parent:
                fs.create_dir(parent, recursive=True)
            kept = _runs_in_copy(fs, target)
            if kept is not None and runs < kept and not force:
                raise StoreBackupError(f"--db: not copied, {db} holds {runs} runs and the copy at {dest} {kept}: "
                                       f"another store, or one that lost runs (--force replaces the copy)")
            _put(fs, snapshot, target)
            counted = Path(tmp) / "runs"
            counted.write_text(f"{runs}\n")
            _put(fs, counted, target + ".runs")
        except OSError as error:
            raise StoreBackupError(f"--to: cannot write {dest} ({_first_line(error)})") from None
    return f"{runs} runs, {db.stat().st_size / 2**20:.1f} MiB -> {dest.rstrip('/')}/{COPY_NAME}"


def restore(dest: str, db: Path) -> str:
    """Fill a missing ``db`` from ``DEST/mlflow.db``; returns what was done, for the log. An existing store is
    never replaced; a copy that fails the checks is refused and nothing is written."""
    import pyarrow.fs

    if db.is_file():
        return f"kept the existing store {db} (nothing restored)"
    if os.path.lexists(db):
        raise StoreBackupError(f"--db: {db} exists but is not a file (a link or a folder); nothing restored")
    stale = [name for name in (f"{db}-journal", f"{db}-wal") if os.path.lexists(name)]
    if stale:  # SQLite would apply them to the restored store
        raise StoreBackupError(f"--db: {', '.join(stale)} left from an earlier store; remove it first, "
                               f"nothing restored")
    if not db.parent.is_dir():
        raise StoreBackupError(f"--db: the folder {db.parent} does not exist")
    _check_local_dest(dest)
    fs, source = _destination(dest)
    try:
        info = fs.get_file_info(source)
    except OSError as error:
        raise StoreBackupError(f"--from: cannot read {dest} ({_first_line(error)})") from None
    if info.type == pyarrow.fs.FileType.NotFound:
        return f"no copy at {dest}; the server starts a new store at {db}"
    fd, partial = tempfile.mkstemp(prefix=f".{db.name}.restore-", dir=db.parent)  # 0600, like the store's folder
    try:
        with os.fdopen(fd, "wb") as out, fs.open_input_stream(source) as src:
            shutil.copyfileobj(src, out, 1 << 20)
        problem = copy_problem(Path(partial))
        if problem:
            raise StoreBackupError(f"--from: the copy at {dest} is refused, nothing restored: {problem}")
        os.link(partial, db)  # fails, rather than replaces, if a store appeared meanwhile
    except FileExistsError:
        return f"kept the store {db} that appeared while restoring (nothing restored)"
    except OSError as error:
        raise StoreBackupError(f"--from: cannot restore {dest} into {db} ({_first_line(error)})") from None
    finally:
        os.remove(partial)
    return f"restored {db} from {dest.rstrip('/')}/{COPY_NAME} ({_runs(db)} runs)"


def watch(db: Path, dest: str, every_s: float = EVERY_S, poll_s: float = POLL_S) -> None:
    """Back up for as long as the process lives (see the module's text); a failed copy is logged and tried again
    when the next copy is due, never fatal: the server must not lose its watcher to a network blip."""
    _destination(dest)  # a DEST that cannot be opened at all is bad input, before the loop
    stop = {"now": False}

    def _stop(signum, _frame):
        stop["now"] = True
        signal.signal(signum, signal.SIG_DFL)  # a second signal ends a copy that hangs
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    copied, copied_at = None, time.monotonic()
    _log(f"watching {db}: a copy to {dest} after each finished run, else every {every_s:g} s while it changes")
    while True:
        last = stop["now"]
        try:
            if db.is_file():
                now = store_state(db)
                if backup_due(now, copied, time.monotonic() - copied_at, every_s if not last else 0.0):
                    copied, copied_at = now, time.monotonic()  # a failed copy is tried again when next due
                    _log("backup: " + backup(db, dest))
        except Exception as error:  # noqa: BLE001  (logged, never fatal)
            _log(f"backup failed (tried again at the next finished run, or in {every_s:g} s): {_first_line(error)}")
        if last:
            _log("stopped")
            return
        deadline = time.monotonic() + poll_s
        while not stop["now"] and time.monotonic() < deadline:
            time.sleep(min(0.2, poll_s))


def _log(line: str) -> None:
    print(time.strftime("%Y-%m-%d %H:%M:%S ") + line, flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, flag in (("backup", "--to"), ("watch", "--to"), ("restore", "--from")):
        sub = commands.add_parser(name)
        sub.add_argument("--db", required=True, type=lambda p: Path(p).expanduser(), help="the SQLite store")
        sub.add_argument(flag, required=True, dest="dest", help="folder of the copy: s3://bucket/prefix or a path")
        if name == "backup":
            sub.add_argument("--force", action="store_true", help="replace a copy that holds more runs")
        if name == "watch":
            sub.add_argument("--every", type=float, default=EVERY_S, help="seconds between copies of a changing store")
            sub.add_argument("--poll", type=float, default=POLL_S, help="seconds between looks at the store")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    os.umask(0o077)  # the copies hold every run: readable by this user only (a shared folder's default is wider)
    try:
        if args.command == "watch":
            if not (args.every > 0 and args.poll > 0):
                raise StoreBackupError("--every and --poll: expected seconds > 0")
            watch(args.db, args.dest, args.every, args.poll)
        elif args.command == "backup":
            _log("backup: " + backup(args.db, args.dest, force=args.force))
        else:
            _log("restore: " + restore(args.dest, args.db))
    except StoreBackupError as error:
        print(f"store_backup: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
