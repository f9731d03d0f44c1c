"""The package as it was at an earlier commit, run beside the current one (tests that pin behaviour to
history: numbers differ across CPU models, so they are compared on the same machine, never stored).

The old ``contralord/`` trees are kept as archives in ``tests/history/`` (``git archive <commit> contralord``,
gzipped), so these tests run the same in a shallow or rewritten clone: they never read this repository's
own history. ``tests/test_history_snapshots.py`` checks each archive against its commit where that commit
is present. To pin another commit: ``git archive --format=tar <commit> contralord | gzip -9n >
tests/history/contralord-<first 12 hex digits>.tar.gz``.
"""

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HISTORY = Path(__file__).resolve().parent / "history"
# the command line's main: contralord/cli/main.py now, contralord/cli.py in the archived commits
RUN = ("import json, sys\ntry:\n    from contralord.cli.main import main\nexcept ImportError:\n"
       "    from contralord.cli import main\nsys.exit(main(json.loads(sys.argv[1])))")
# keys the archived commits do not know (they would refuse them): left out there, so the old code runs as it did;
# each changes no number those tests compare (the best reference draws from its own RNG)
ADDED_SINCE = ("latent.best_reference_steps",)


def snapshot(commit: str) -> Path:
    """The archive of ``contralord/`` as of ``commit``."""
    path = HISTORY / f"contralord-{commit[:12]}.tar.gz"
    if not path.is_file():
        raise FileNotFoundError(f"no snapshot of commit {commit[:12]} in {HISTORY} (see tests/old_code.py)")
    return path


def checkout(commit: str, tmp_path: Path) -> Path:
    """A folder holding ``contralord/`` as of ``commit``, from its archive in ``tests/history/``."""
    old = tmp_path / f"code-{commit[:7]}"
    old.mkdir()
    with tarfile.open(snapshot(commit)) as archive:
        archive.extractall(old, filter="data")
    return old


def train_cli(code: Path, overrides: dict, out: Path) -> tuple[dict, dict]:
    """``contralord train`` of the package in ``code``: (metrics.json, summary.json)."""
    if Path(code).resolve() != ROOT:
        overrides = {k: v for k, v in overrides.items() if k not in ADDED_SINCE}
    args = ["train", *[a for k, v in overrides.items() for a in ("--set", f"{k}={v}")], "--out", str(out)]
    env = os.environ | {"PYTHONPATH": str(code)}
    subprocess.run([sys.executable, "-c", RUN, json.dumps(args)], cwd=code, env=env, check=True,
                   capture_output=True, text=True)
    return json.loads((out / "metrics.json").read_text()), json.loads((out / "summary.json").read_text())
