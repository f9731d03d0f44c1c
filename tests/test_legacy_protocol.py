"""``--preset all-factors`` reproduces the first protocol's numbers bit for bit.

The code of the last commit before the paper's protocol existed is taken from git history and run
beside the current code on the same machine (floats differ across CPU models, so no number is pinned
here); every metric both write must be identical.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from contralord.presets import PROTOCOL_PRESETS

ROOT = Path(__file__).resolve().parents[1]
BEFORE_PROTOCOL = "c6a95ccc615c47eb945bf9e4a9d9961ab095c699"
RUN = "import json, sys; from contralord.cli import main; sys.exit(main(json.loads(sys.argv[1])))"


def _old_code(tmp_path: Path) -> Path:
    found = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{BEFORE_PROTOCOL}^{{commit}}"],
                           capture_output=True)
    if found.returncode != 0:
        pytest.skip(f"git history without commit {BEFORE_PROTOCOL[:7]} (a shallow clone?)")
    old = tmp_path / "old"
    old.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", BEFORE_PROTOCOL, "contralord"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
    return old


def _train(code: Path, overrides: dict, out: Path) -> dict:
    args = ["train", *[a for k, v in overrides.items() for a in ("--set", f"{k}={v}")], "--out", str(out)]
    env = os.environ | {"PYTHONPATH": str(code)}
    subprocess.run([sys.executable, "-c", RUN, json.dumps(args)], cwd=code, env=env, check=True,
                   capture_output=True, text=True)
    return json.loads((out / "metrics.json").read_text()) | json.loads((out / "summary.json").read_text())


@pytest.mark.slow
def test_all_factors_preset__reproduces_the_first_protocol(tmp_path, tiny_overrides):
    old_code = _old_code(tmp_path)
    base = {k: v for k, v in tiny_overrides.items() if k != "data.num_labels"}
    before = _train(old_code, base, tmp_path / "before")
    after = _train(ROOT, base | PROTOCOL_PRESETS["all-factors"], tmp_path / "after")
    shared = sorted(k for k, v in before.items() if isinstance(v, float) and k in after and "images_per_s" not in k
                    and "wall" not in k)
    assert len(shared) > 20 and "disentanglement" in shared and "encoder/final/nce_content" in shared
    assert {k: before[k] for k in shared} == {k: after[k] for k in shared}
