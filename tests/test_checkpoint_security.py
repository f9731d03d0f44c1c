"""Checkpoints and stage-1 artifacts are data, never code: a pickle payload is refused and never runs."""

import json
import os
import subprocess
import sys

import pytest
import torch

from contralord.config import ContraLordConfig
from contralord.latent_result import load_latent
from contralord.training import checkpoint


class _Payload:
    """Unpickling this object runs ``touch <marker>``, as a crafted checkpoint would run any command."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _write_payload(path, marker, **extra):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"online": {"w": torch.zeros(2)}, "evil": _Payload(marker), **extra}, path)
    return path


def test_load__pickle_payload_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = _write_payload(tmp_path / "encoder.pt", marker)
    with pytest.raises(checkpoint.CheckpointError, match="refused") as info:
        checkpoint.load(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert not marker.exists()


def test_load__plain_state_round_trips(tmp_path):
    state = {"online": {"w": torch.arange(3.0)}, "step": 7, "config": {"a.b": 1.5, "c.d": None, "e": "x"},
             "rng": checkpoint.rng_state(), "metrics": [1.0, 2.0]}
    loaded = checkpoint.load(checkpoint.save_atomic(state, tmp_path / "c.pt"), required=("online", "step"))
    torch.testing.assert_close(loaded["online"]["w"], state["online"]["w"])
    assert loaded["step"] == 7 and loaded["config"] == state["config"]


@pytest.mark.parametrize("content, needle", [
    (b"\x00garbage\xff" * 40, "not a torch checkpoint"),
    (b"", "checkpoint"),
])
def test_load__random_or_empty_bytes_one_line(tmp_path, content, needle):
    path = tmp_path / "c.pt"
    path.write_bytes(content)
    with pytest.raises(checkpoint.CheckpointError, match=needle) as info:
        checkpoint.load(path)
    assert "\n" not in str(info.value)


def test_load__truncated_and_keyless(tmp_path):
    path = checkpoint.save_atomic({"online": {"w": torch.zeros(1000)}, "step": 1}, tmp_path / "c.pt")
    full = path.read_bytes()
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(checkpoint.CheckpointError, match="unreadable, truncated"):
        checkpoint.load(path)
    path.write_bytes(full)
    with pytest.raises(checkpoint.CheckpointError, match=r"missing keys \['rng'\]"):
        checkpoint.load(path, required=("online", "rng"))


def test_load_latent__payload_artifact_names_folder_to_remove(tmp_path):
    marker = tmp_path / "pwned"
    path = _write_payload(tmp_path / "cache" / "abc" / "latent.pt", marker)
    with pytest.raises(checkpoint.CheckpointError, match="stage-1 artifact.*remove .*abc") as info:
        load_latent(path)
    assert not marker.exists() and "\n" not in str(info.value)


@pytest.mark.slow
def test_cli_evaluate__payload_one_line_exit_2_nothing_run(tmp_path, tiny_overrides):
    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    _write_payload(run / "checkpoints" / "encoder.pt", marker)
    (run / "config.json").write_text(json.dumps(ContraLordConfig.from_overrides(tiny_overrides).to_flat_dict()))
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    result = subprocess.run([sys.executable, "-m", "contralord.cli.main", "evaluate", "--checkpoint", str(run)],
                            capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "refused" in lines[0] and "encoder.pt" in lines[0], result.stderr
    assert not marker.exists()
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
