"""Fault d of issue 33: the disk fills (or the folder becomes unwritable) while a checkpoint is written. The write
is injected to fail where it happens (``torch.save`` inside ``checkpoint.save_atomic``) with ENOSPC: the last good
checkpoint stays loadable, no temporary file is left, the error is one line naming the folder with the resume
command, and a resume once the space is back ends where a straight run ends, bit for bit."""

import errno
import json

import pytest
import torch

from contralord.cli.main import main
from contralord.training import checkpoint

STAGE2_STEPS_PER_EPOCH = 3  # TINY: 96 images, batch 32


def _argv(tiny_overrides, out) -> list[str]:
    overrides = tiny_overrides | {"encoder.epochs": 2, "run.checkpoint_every": 2}
    return ["train", *[a for k, v in overrides.items() for a in ("--set", f"{k}={v}")], "--out", str(out)]


def test_save_atomic__a_failed_write_keeps_the_last_checkpoint_and_names_the_folder(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "encoder.pt"
    checkpoint.save_atomic({"step": 1}, path)

    def full_disk(state, handle):
        handle.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    with pytest.raises(checkpoint.CheckpointWriteError) as raised:
        checkpoint.save_atomic({"step": 2}, path)
    assert raised.value.errno == errno.ENOSPC
    assert str(path.parent) in raised.value.strerror and "No space left on device" in raised.value.strerror
    assert "the last one written there is intact" in raised.value.strerror
    assert sorted(p.name for p in path.parent.iterdir()) == ["encoder.pt"]  # no temporary file left
    monkeypatch.undo()
    assert checkpoint.load(path)["step"] == 1


@pytest.mark.slow
def test_train__disk_full_mid_run_then_resume_equals_a_straight_run(tmp_path, tiny_overrides, monkeypatch, capsys):
    assert main(_argv(tiny_overrides, tmp_path / "straight")) == 0
    real_save, writes = torch.save, []

    def fills_up(state, handle):  # the third stage-2 checkpoint (the one with the online encoder) finds the disk full
        if "online" in state and len(writes) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        if "online" in state:
            writes.append(state["step"])
        real_save(state, handle)

    monkeypatch.setattr(checkpoint.torch, "save", fills_up)
    capsys.readouterr()
    out = tmp_path / "faulted"
    assert main(_argv(tiny_overrides, out)) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and str(out / "checkpoints") in lines[0] and "No space left on device" in lines[0]
    assert lines[0].endswith("--resume") and "contralord train" in lines[0]
    saved = checkpoint.load(out / "checkpoints" / "encoder.pt")
    assert saved["step"] == writes[-1] == 3  # steps 2 and 3 were written; the one at step 4 failed
    assert not any(p.name.endswith(".tmp") for p in (out / "checkpoints").iterdir())
    monkeypatch.undo()  # the space is back
    assert main([*_argv(tiny_overrides, out), "--resume"]) == 0
    straight = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    resumed = json.loads((out / "metrics.json").read_text())
    assert resumed == straight
