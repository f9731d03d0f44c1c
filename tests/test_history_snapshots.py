"""The archives of old code in ``tests/history/`` (``tests/old_code.py``) hold exactly ``contralord/`` of the
commit they are named after. Checked against this clone's history where it has the commit; a shallow clone
skips this check only: the tests that use the archives run from the archives alone."""

import subprocess
import tarfile

import pytest
from old_code import HISTORY, ROOT


def _files(archive: tarfile.TarFile) -> dict[str, bytes]:
    return {m.name: archive.extractfile(m).read() for m in archive.getmembers() if m.isfile()}


@pytest.mark.parametrize("path", sorted(HISTORY.glob("contralord-*.tar.gz")), ids=lambda p: p.name)
def test_snapshot__equals_git_archive_of_its_commit(path, tmp_path):
    prefix = path.name.removeprefix("contralord-").removesuffix(".tar.gz")
    found = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", "--quiet", f"{prefix}^{{commit}}"],
                           capture_output=True, text=True)
    if found.returncode != 0:
        pytest.skip(f"this clone's history lacks {prefix}; the archive is used as it is")
    fresh = tmp_path / "fresh.tar"
    fresh.write_bytes(subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", found.stdout.strip(),
                                      "contralord"], capture_output=True, check=True).stdout)
    with tarfile.open(path) as stored, tarfile.open(fresh) as expected:
        stored_files = _files(stored)
        assert stored_files == _files(expected)
    assert "contralord/cli.py" in stored_files and len(stored_files) > 20  # the layout of those commits
