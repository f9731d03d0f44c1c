"""The package as it was at an earlier commit, run beside the current one (tests that pin behaviour to
history: numbers differ across CPU models, so they are compared on the same machine, never stored)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN = "import json, sys; from contralord.cli import main; sys.exit(main(json.loads(sys.argv[1])))"


def checkout(commit: str, tmp_path: Path) -> Path:
    """A folder holding ``contralord/`` as of ``commit``; skips the test without that history."""
    found = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{commit}^{{commit}}"], capture_output=True)
    if found.returncode != 0:
        pytest.skip(f"git history without commit {commit[:7]} (a shallow clone?)")
    old = tmp_path / f"code-{commit[:7]}"
    old.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "contralord"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
    return old


def train_cli(code: Path, overrides: dict, out: Path) -> tuple[dict, dict]:
    """``contralord train`` of the package in ``code``: (metrics.json, summary.json)."""
    args = ["train", *[a for k, v in overrides.items() for a in ("--set", f"{k}={v}")], "--out", str(out)]
    env = os.environ | {"PYTHONPATH": str(code)}
    subprocess.run([sys.executable, "-c", RUN, json.dumps(args)], cwd=code, env=env, check=True,
                   capture_output=True, text=True)
    return json.loads((out / "metrics.json").read_text()), json.loads((out / "summary.json").read_text())
