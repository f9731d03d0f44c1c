"""The CLI: a smoke run end to end, and one-line errors with exit status 2 before any training."""

import json
import subprocess
import sys

import pytest

from contralord.cli.main import main


def _sets(overrides):
    return [arg for k, v in overrides.items() for arg in ("--set", f"{k}={v}")]


def test_cli_train__smoke_writes_summary(tmp_path, tiny_overrides, capsys):
    assert main(["train", *_sets(tiny_overrides), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "[latent] epoch 1" in out and "[encoder] epoch 1" in out and "summary:" in out
    assert json.loads((tmp_path / "summary.json").read_text())["num_images"] == 96


@pytest.mark.parametrize("args, needle", [
    (["--set", "encoder.queue_sise=5"], "encoder.queue_sise: unknown config key"),
    (["--set", "encoder.queue_size=0"], "encoder.queue_size: expected K > 0"),
    (["--set", "encoder.temperature=-1"], "encoder.temperature: expected tau > 0"),
    (["--set", "encoder.momentum=2"], "encoder.momentum: expected m in [0, 1]"),
    (["--set", "loss.res=-0.5"], "loss.res: expected a weight >= 0"),
    (["--set", "encoder.batch_size=x"], "encoder.batch_size: expected int"),
    (["--preset", "huge"], "unknown preset"),
    (["--set", "data.name=factors_file", "--set", "data.path=/no/such.npz"], "data.path"),
])
def test_cli_train__bad_input_one_line_exit_2(tmp_path, tiny_overrides, args, needle):
    cmd = [sys.executable, "-m", "contralord.cli.main", "train", *_sets(tiny_overrides), *args, "--out", str(tmp_path)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert not (tmp_path / "config.json").exists()
