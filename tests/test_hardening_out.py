"""``contralord train --out``: a folder that is not one of our runs is never written into (issue 18, class 4).

A non-empty folder without ``config.json`` is refused (its ``summary.json``/``metrics.json`` would be
replaced), a symlink is resolved before deciding, and a folder nobody may write is refused even for root.
Every refusal is one line, exit 2, and leaves the files byte-identical.
"""

import json
import os
from pathlib import Path

import pytest
from test_bad_inputs import _sets, hashes, refused  # the CLI's one-line refusal and the files it must not touch

from contralord.config import ConfigError
from contralord.run.file_checks import check_out, unwritable_reason


@pytest.fixture
def users_folder(tmp_path) -> Path:
    """A user's folder that happens to hold files with our output names."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "summary.json").write_text('{"my": "numbers"}')
    (folder / "metrics.json").write_text('{"my": "metrics"}')
    return folder


@pytest.mark.parametrize("resume", [False, True])
def test_out__non_empty_folder_without_a_run_is_refused(users_folder, tiny_overrides, capsys, resume):
    before = hashes(users_folder.parent)
    argv = ["train", *_sets(tiny_overrides), "--out", str(users_folder)] + (["--resume"] if resume else [])
    line = refused(capsys, argv)
    assert "--out" in line and "non-empty folder that holds no contralord run" in line
    assert hashes(users_folder.parent) == before


def test_out__symlink_is_resolved_before_deciding(users_folder, tmp_path, tiny_overrides, capsys):
    link = tmp_path / "link"
    link.symlink_to(users_folder)
    before = hashes(tmp_path)
    line = refused(capsys, ["train", *_sets(tiny_overrides), "--out", str(link)])
    assert f"-> {users_folder}" in line and "non-empty folder" in line
    nested = tmp_path / "nested-link"  # a link to a new folder inside the user's folder is decided there too
    nested.symlink_to(users_folder / "new")
    assert check_out(nested, resume=False) == users_folder / "new"
    assert hashes(tmp_path) == before and not (users_folder / "new").exists()


def test_out__empty_or_new_folder_is_accepted_as_its_real_path(tmp_path):
    (tmp_path / "empty").mkdir()
    assert check_out(tmp_path / "empty", resume=False) == (tmp_path / "empty").resolve()
    assert check_out(tmp_path / "new" / "run", resume=False) == (tmp_path / "new" / "run").resolve()
    assert not (tmp_path / "new").exists()


def test_out__folder_nobody_may_write_is_refused_even_for_root(tmp_path, tiny_overrides, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        line = refused(capsys, ["train", *_sets(tiny_overrides), "--out", str(locked / "run")])
        assert f"--out: cannot write in {locked}" in line
        assert not (locked / "run").exists()
        assert unwritable_reason(tmp_path) == ""
    finally:
        locked.chmod(0o755)


def test_out__root_check_is_the_mode_not_os_access(tmp_path, monkeypatch):
    """As root, os.access says yes to a 0555 folder: the mode bits decide."""
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(os, "access", lambda *a, **k: True)
    tmp_path.chmod(0o555)
    try:
        assert "0555" in unwritable_reason(tmp_path)
        with pytest.raises(ConfigError, match="cannot write in"):
            check_out(tmp_path / "run", resume=False)
    finally:
        tmp_path.chmod(0o755)


def test_out__a_run_folder_with_a_link_inside_is_not_resumed(tmp_path, tiny_overrides, capsys):
    """A resumed run writes checkpoints/ and latent_cache/ inside --out: a link there would send them elsewhere."""
    from contralord.config import ContraLordConfig

    run, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    run.mkdir()
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("mine")
    (run / "config.json").write_text(json.dumps(ContraLordConfig.from_overrides(tiny_overrides).to_flat_dict()))
    (run / "checkpoints").symlink_to(elsewhere)
    before = hashes(tmp_path)
    line = refused(capsys, ["train", *_sets(tiny_overrides), "--out", str(run), "--resume"])
    assert "checkpoints in the run folder is a symbolic link" in line
    assert hashes(tmp_path) == before and sorted(p.name for p in elsewhere.iterdir()) == ["keep.txt"]
