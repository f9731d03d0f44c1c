"""An HDF5 factors file reads nothing from outside itself (issue 18, class 5): external storage, a virtual
dataset or an external link in place of ``images`` would copy another local file into the images (and so
into grids and MLflow artifacts), and the fingerprint would not see that file. Each is refused in one line,
exit 2, before any training, with every file byte-identical and nothing written."""

import hashlib
from pathlib import Path

import h5py
import numpy as np
import pytest

from contralord.cli.main import main
from contralord.data import DataError, build_dataset

N, SIDE = 12, 16


def _sets(overrides):
    return [arg for k, v in overrides.items() for arg in ("--set", f"{k}={v}")]


def hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


def _factors() -> np.ndarray:
    return np.stack([np.arange(N) % 3, np.arange(N) % 4], 1).astype(np.int16)


@pytest.fixture
def secret(tmp_path) -> Path:
    """Someone's private file, exactly the size of the images so that HDF5 would read it as them."""
    path = tmp_path / "private" / "key.bin"
    path.parent.mkdir()
    path.write_bytes(np.random.default_rng(0).integers(0, 256, N * SIDE * SIDE * 3).astype(np.uint8).tobytes())
    return path


def _external_storage(path: Path, secret: Path) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset("images", shape=(N, SIDE, SIDE, 3), dtype=np.uint8,
                         external=[(str(secret), 0, secret.stat().st_size)])
        f.create_dataset("factors", data=_factors())


def _virtual(path: Path, secret: Path) -> None:
    other = secret.parent / "images.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("images", data=np.frombuffer(secret.read_bytes(), np.uint8).reshape(N, SIDE, SIDE, 3))
    layout = h5py.VirtualLayout(shape=(N, SIDE, SIDE, 3), dtype=np.uint8)
    layout[:] = h5py.VirtualSource(str(other), "images", shape=(N, SIDE, SIDE, 3))
    with h5py.File(path, "w") as f:
        f.create_virtual_dataset("images", layout)
        f.create_dataset("factors", data=_factors())


def _external_link(path: Path, secret: Path) -> None:
    _virtual(path.with_name("unused.h5"), secret)  # makes private/images.h5
    with h5py.File(path, "w") as f:
        f["images"] = h5py.ExternalLink(str(secret.parent / "images.h5"), "images")
        f.create_dataset("factors", data=_factors())


@pytest.mark.parametrize("make, needle", [(_external_storage, "keeps its data in external file"),
                                          (_virtual, "is virtual"),
                                          (_external_link, "is an external link")])
def test_h5_reading_other_files__refused_before_training(tmp_path, secret, tiny_overrides, capsys, make, needle):
    path = tmp_path / "mine.h5"
    make(path, secret)
    with h5py.File(path, "r") as f:  # the file really does deliver the private bytes to a plain reader
        assert f["images"][()].tobytes() == secret.read_bytes()
    before = hashes(tmp_path)
    data = {"data.name": "factors_file", "data.path": str(path), "data.image_size": SIDE, "data.size": 0}
    assert main(["train", *_sets(tiny_overrides | data), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0] and "data.path" in err[0] and str(path) in err[0], err
    assert hashes(tmp_path) == before and not (tmp_path / "run").exists()
    with pytest.raises(DataError, match=needle):
        build_dataset("factors_file", str(path), SIDE, 0, seed=0)


def test_h5_self_contained__still_loads(tmp_path):
    path = tmp_path / "mine.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=np.zeros((N, SIDE, SIDE, 3), np.uint8))
        f.create_dataset("factors", data=_factors())
        f["alias"] = h5py.SoftLink("/images")  # a link inside the file is fine
    assert build_dataset("factors_file", str(path), SIDE, 0, seed=0).images.shape == (N, 3, SIDE, SIDE)
