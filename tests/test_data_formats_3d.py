"""Tests of the Cars3D and SmallNORB loaders on tiny files written in the published layouts: Cars3D
.mat files with key `im` (H, H, 3, 24, 4) via scipy.io.savemat (H = 16 instead of 128), and the
three SmallNORB NORB binary matrix files with the real magic numbers, header and 96x96 pairs."""

import numpy as np
import pytest
import scipy.io
import torch

from contralord.data import DataError, build_dataset

NORB_PREFIX = "smallnorb-5x46789x9x18x6x2x96x96"


def _car(model: int, side: int = 16) -> np.ndarray:
    """im (side, side, 3, 24, 4): R = 40 * model, G = 10 * azimuth, B = 60 * elevation."""
    im = np.zeros((side, side, 3, 24, 4), np.uint8)
    im[:, :, 0] = 40 * model
    im[:, :, 1] = (10 * np.arange(24))[:, None]
    im[:, :, 2] = (60 * np.arange(4))[None, :]
    return im


def _cars_folder(root, models=3):
    root.mkdir()
    for m in range(models):
        scipy.io.savemat(root / f"car_{m + 1:03d}_mesh.mat", {"im": _car(m)})
    (root / "list.txt").write_text("not a mat file\n")
    return root


def test_cars3d__factors_index_the_right_views(tmp_path):
    root = _cars_folder(tmp_path / "cars")
    data = build_dataset("cars3d", str(root), 16, 0, seed=0)
    assert len(data) == 3 * 96 and data.images.shape == (288, 3, 16, 16)
    assert data.factor_names == ("elevation", "azimuth", "model") and data.factor_sizes == (4, 24, 3)
    elevation, azimuth, model = data.factors.T
    pixel = data.images[:, :, 0, 0].long()  # (N, 3)
    torch.testing.assert_close(pixel, torch.stack([40 * model, 10 * azimuth, 60 * elevation], 1))
    torch.testing.assert_close(data.classes, model, rtol=0, atol=0)
    sub = build_dataset("cars3d", str(root), 8, 20, seed=0, factor_filter={"model": [2]})
    assert sub.images.shape == (20, 3, 8, 8) and (sub.classes == 2).all()
    assert (sub.images[:, 0] == 80).all()  # constant images stay constant through the resize


@pytest.mark.parametrize("content, message", [
    ({"img": _car(0)}, r"car_001_mesh\.mat: missing key 'im' \(found: img\)"),
    ({"im": _car(0)[..., :3]}, r"car_001_mesh\.mat: key 'im' must be uint8 \(H, H, 3, 24, 4\)"),
])
def test_cars3d__bad_file_names_file_and_key(tmp_path, content, message):
    scipy.io.savemat(tmp_path / "car_001_mesh.mat", content)
    with pytest.raises(DataError, match=message):
        build_dataset("cars3d", str(tmp_path), 16, 0, seed=0)


def test_cars3d__empty_folder_or_file_path(tmp_path):
    with pytest.raises(DataError, match=r"data\.path: .* holds no \*\.mat files"):
        build_dataset("cars3d", str(tmp_path), 16, 0, seed=0)
    (tmp_path / "x.mat").write_bytes(b"")
    with pytest.raises(DataError, match=r"data\.path: .*x\.mat is not a folder"):
        build_dataset("cars3d", str(tmp_path / "x.mat"), 16, 0, seed=0)


def _norb_file(path, magic, array, truncate=0):
    """NORB binary matrix: int32 magic, ndim, max(3, ndim) dims (1 when unused), data (LE)."""
    dims = list(array.shape) + [1] * (3 - array.ndim)
    header = np.array([magic, array.ndim, *dims], dtype="<i4").tobytes()
    data = array.astype(array.dtype.newbyteorder("<")).tobytes()
    path.write_bytes(header + data[:len(data) - truncate])


def _norb(root, split="training", n=20, info=None, **broken):
    rng = np.random.default_rng(0)
    cat = rng.integers(0, 5, n).astype(np.int32)
    if info is None:
        instances = [4, 6, 7, 8, 9] if split == "training" else [0, 1, 2, 3, 5]
        info = np.stack([rng.choice(instances, n), rng.integers(0, 9, n), 2 * rng.integers(0, 18, n),
                         rng.integers(0, 6, n)], 1).astype(np.int32)
    dat = np.zeros((n, 2, 96, 96), np.uint8)
    dat[:, 0] = np.arange(n)[:, None, None] * 10  # left camera: 10 * row
    dat[:, 1] = 255  # right camera
    for kind, magic, array in (("dat", 0x1E3D4C55, dat), ("cat", 0x1E3D4C54, cat), ("info", 0x1E3D4C54, info)):
        _norb_file(root / f"{NORB_PREFIX}-{split}-{kind}.mat", broken.get(f"{kind}_magic", magic),
                   broken.get(f"{kind}_array", array), broken.get(f"{kind}_truncate", 0))
    return cat, info


@pytest.mark.parametrize("split, file_split", [("train", "training"), ("test", "testing")])
def test_smallnorb__reads_official_binary_files(tmp_path, split, file_split):
    cat, info = _norb(tmp_path, file_split)
    data = build_dataset("smallnorb", str(tmp_path), 96, 0, seed=0, split=split)
    assert data.images.shape == (20, 1, 96, 96)
    np.testing.assert_array_equal(data.images[:, 0, 0, 0].numpy(), np.arange(20) * 10)  # left camera
    expected = np.column_stack([cat, info[:, 0], info[:, 1], info[:, 2] // 2, info[:, 3]])
    np.testing.assert_array_equal(data.factors.numpy(), expected)
    np.testing.assert_array_equal(data.classes.numpy(), cat)
    assert data.factor_sizes == (5, 10, 9, 18, 6) and data.num_classes == 5
    by_instance = build_dataset("smallnorb", str(tmp_path), 32, 5, seed=0, split=split,
                                class_factor="instance")
    assert by_instance.images.shape == (5, 1, 32, 32) and by_instance.num_classes == 10
    torch.testing.assert_close(by_instance.classes, by_instance.factors[:, 1], rtol=0, atol=0)


@pytest.mark.parametrize("broken, message", [
    (dict(dat_magic=0x1E3D4C56), r"training-dat\.mat: not a NORB binary matrix"),
    (dict(cat_magic=0x1E3D4C55, cat_array=np.zeros(20, np.uint8)),
     r"training-cat\.mat: expected int32 \(20,\), found uint8"),
    (dict(info_truncate=4), r"training-info\.mat: size \d+ bytes does not match the header"),
    (dict(info=np.array([[4, 0, 3, 0]] * 20, np.int32)), r"training-info\.mat: azimuth of row 0"),
    (dict(info=np.array([[4, 9, 0, 0]] * 20, np.int32)), r"training-info\.mat: elevation of row 0"),
])
def test_smallnorb__bad_files_name_the_file(tmp_path, broken, message):
    _norb(tmp_path, **broken)
    with pytest.raises(DataError, match=message):
        build_dataset("smallnorb", str(tmp_path), 32, 0, seed=0)


def test_smallnorb__missing_split_file(tmp_path):
    _norb(tmp_path, "training")
    with pytest.raises(DataError, match=r"data\.path: missing SmallNORB file .*testing-dat\.mat"):
        build_dataset("smallnorb", str(tmp_path), 32, 0, seed=0, split="test")
