"""Tests of the array-file formats on tiny files written in the real layouts: the official dSprites
npz and 3dshapes.h5 (same keys and dtypes, fewer rows) and the generic factors file."""

import h5py
import numpy as np
import pytest
import torch

from contralord.data import DataError, arrays, build_dataset
from contralord.data.dsprites import DSPRITES_FACTOR_SIZES, render_dsprites


def _dsprites_npz(path, n=48, **overrides):
    """Official keys: imgs (N, 64, 64) uint8 0/1, latents_classes/values (N, 6), pickled metadata."""
    ids = np.sort(np.random.default_rng(0).choice(int(np.prod(DSPRITES_FACTOR_SIZES)), n, replace=False))
    imgs = (render_dsprites(ids, 64)[:, 0] // 255).numpy()
    classes = np.column_stack([np.zeros(n, np.int64), np.stack(np.unravel_index(ids, DSPRITES_FACTOR_SIZES), 1)])
    arrays_ = dict(imgs=imgs, latents_classes=classes, latents_values=classes.astype(np.float64),
                   metadata=np.array({"date": "April 2017"}, dtype=object))
    arrays_.update(overrides)
    np.savez_compressed(path, **{k: v for k, v in arrays_.items() if v is not None})
    return imgs, classes


def test_dsprites_npz__loads_official_layout(tmp_path):
    path = tmp_path / "dsprites.npz"
    imgs, classes = _dsprites_npz(path)
    data = build_dataset("dsprites_npz", str(path), 64, 0, seed=0)
    assert data.images.shape == (48, 1, 64, 64) and data.images.dtype == torch.uint8
    np.testing.assert_array_equal(data.images[:, 0].numpy(), imgs * 255)
    np.testing.assert_array_equal(data.factors.numpy(), classes[:, 1:])
    np.testing.assert_array_equal(data.classes.numpy(), classes[:, 1])
    assert data.factor_names == ("shape", "scale", "orientation", "posX", "posY")
    kept = np.sort(np.random.default_rng(1).choice(48, 10, replace=False))  # the documented draw
    sub = build_dataset("dsprites_npz", str(path), 64, 10, seed=1)
    np.testing.assert_array_equal(sub.factors.numpy(), classes[kept, 1:])
    np.testing.assert_array_equal(sub.images[:, 0].numpy(), imgs[kept] * 255)
    assert build_dataset("dsprites_npz", str(path), 32, 10, seed=1).images.shape == (10, 1, 32, 32)


@pytest.mark.parametrize("overrides, message", [
    (dict(imgs=None), r"dsprites\.npz: missing key 'imgs'"),
    (dict(imgs=np.zeros((48, 64, 64), np.float32)), r"key 'imgs' must be uint8, found float32"),
    (dict(imgs=np.full((48, 64, 64), 255, np.uint8)), r"key 'imgs' must hold 0/1 pixels"),
    (dict(latents_classes=np.zeros((48, 5), np.int64)), r"key 'latents_classes' must have 6 columns"),
    (dict(latents_classes=np.zeros((47, 6), np.int64)), r"'latents_classes' has 47 rows but 'imgs' has 48"),
])
def test_dsprites_npz__bad_file_names_file_and_key(tmp_path, overrides, message):
    path = tmp_path / "dsprites.npz"
    _dsprites_npz(path, **overrides)
    with pytest.raises(DataError, match=message):
        build_dataset("dsprites_npz", str(path), 64, 0, seed=0)


@pytest.mark.parametrize("name, file, message", [
    ("dsprites_npz", "dsprites.npz", r"dsprites\.npz is not a readable \.npz archive"),
    ("shapes3d_h5", "3dshapes.h5", r"3dshapes\.h5 is not a readable HDF5 file"),
    ("factors_file", "mine.hdf5", r"mine\.hdf5 is not a readable HDF5 file"),
])
def test_containers__unreadable_file_names_data_path(tmp_path, name, file, message):
    (tmp_path / file).write_bytes(b"neither zip nor HDF5")
    with pytest.raises(DataError, match=rf"data\.path: .*{message}"):
        build_dataset(name, str(tmp_path / file), 64, 0, seed=0)


def _shapes3d_h5(path, n=60, images_dtype=np.uint8, labels_dtype=np.float64, drop=None):
    """Official keys: images (N, 64, 64, 3) uint8, labels (N, 6) float64 with the real values."""
    values = [np.linspace(0, 0.9, 10), np.linspace(0, 0.9, 10), np.linspace(0, 0.9, 10),
              np.linspace(0.75, 1.25, 8), np.arange(4.0), np.linspace(-30, 30, 15)]
    rng = np.random.default_rng(0)
    index = np.stack([rng.permutation(np.arange(n) % len(v)) for v in values], 1)  # (N, 6), all values
    labels = np.stack([v[index[:, j]] for j, v in enumerate(values)], 1)
    images = rng.integers(0, 256, (n, 64, 64, 3)).astype(images_dtype)
    with h5py.File(path, "w") as f:
        for key, value in (("images", images), ("labels", labels.astype(labels_dtype))):
            if key != drop:
                f.create_dataset(key, data=value)
    return images, index


def test_shapes3d_h5__maps_float_labels_to_indices(tmp_path):
    path = tmp_path / "3dshapes.h5"
    images, index = _shapes3d_h5(path)
    data = build_dataset("shapes3d_h5", str(path), 64, 0, seed=0)
    np.testing.assert_array_equal(data.factors.numpy(), index)
    np.testing.assert_array_equal(data.classes.numpy(), index[:, 4])
    np.testing.assert_array_equal(data.images.permute(0, 2, 3, 1).numpy(), images)
    assert data.factor_sizes == (10, 10, 10, 8, 4, 15) and data.num_classes == 4
    sub = build_dataset("shapes3d_h5", str(path), 32, 7, seed=2, factor_filter={"shape": [1, 3]})
    assert sub.images.shape == (7, 3, 32, 32) and set(sub.classes.tolist()) <= {1, 3}


@pytest.mark.parametrize("kwargs, message", [
    (dict(drop="labels"), r"3dshapes\.h5: missing key 'labels' \(found: images\)"),
    (dict(images_dtype=np.float32), r"3dshapes\.h5: key 'images' must be uint8, found float32"),
    (dict(labels_dtype=np.int64), r"key 'labels' must be a float array, found int64"),
])
def test_shapes3d_h5__bad_file_names_file_and_key(tmp_path, kwargs, message):
    path = tmp_path / "3dshapes.h5"
    _shapes3d_h5(path, n=8, **kwargs)
    with pytest.raises(DataError, match=message):
        build_dataset("shapes3d_h5", str(path), 64, 0, seed=0)


def test_read_rows__blocks_equal_fancy_indexing(tmp_path, monkeypatch):
    monkeypatch.setattr(arrays, "READ_BLOCK_BYTES", 3 * 4 * 4)  # three rows of 4x4 uint8 per block
    table = np.arange(40 * 16, dtype=np.uint8).reshape(40, 4, 4)
    positions = np.array([0, 1, 2, 5, 6, 20, 21, 22, 23, 39])
    with h5py.File(tmp_path / "t.h5", "w") as f:
        f.create_dataset("x", data=table)
        np.testing.assert_array_equal(arrays.read_rows(f["x"], positions), table[positions])
    np.testing.assert_array_equal(arrays.read_rows(table, np.arange(40)), table)


def _factors_file(path, images, factors, names=None):
    content = dict(images=images, factors=factors)
    if names is not None:
        content["factor_names"] = names
    if path.suffix == ".npz":
        np.savez(path, **content)
        return
    with h5py.File(path, "w") as f:
        for key, value in content.items():
            f.create_dataset(key, data=value if key != "factor_names" else value.astype("S"))


@pytest.mark.parametrize("suffix", [".npz", ".h5"])
def test_factors_file__loads_and_resizes(tmp_path, suffix):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 16, 16, 3)).astype(np.uint8)
    factors = np.stack([np.arange(12) % 3, np.arange(12) % 4], 1).astype(np.int16)
    path = tmp_path / f"mine{suffix}"
    _factors_file(path, images, factors, np.array(["hue", "pose"]))
    data = build_dataset("factors_file", str(path), 16, 0, seed=0)
    np.testing.assert_array_equal(data.images.permute(0, 2, 3, 1).numpy(), images)
    assert data.factors.dtype == torch.int64 and data.factor_names == ("hue", "pose")
    np.testing.assert_array_equal(data.classes.numpy(), factors[:, 0])  # default: first factor
    by_name = build_dataset("factors_file", str(path), 32, 5, seed=0, class_factor="pose")
    by_index = build_dataset("factors_file", str(path), 32, 5, seed=0, class_factor="1")
    assert by_name.images.shape == (5, 3, 32, 32) and by_name.num_classes == 4
    torch.testing.assert_close(by_name.classes, by_index.classes, rtol=0, atol=0)
    images[0, 0, 0, 0] ^= 1  # one bit of content changes the fingerprint
    _factors_file(path, images, factors, np.array(["hue", "pose"]))
    assert build_dataset("factors_file", str(path), 16, 0, seed=0).fingerprint != data.fingerprint


def test_factors_file__grayscale_and_default_names(tmp_path):
    path = tmp_path / "gray.npz"
    _factors_file(path, np.zeros((4, 8, 8), np.uint8), np.array([[0], [1], [2], [1]]))
    data = build_dataset("factors_file", str(path), 8, 0, seed=0)
    assert data.images.shape == (4, 1, 8, 8) and data.factor_names == ("factor_0",)
    assert data.num_classes == 3


GOOD_IMAGES, GOOD_FACTORS = np.zeros((4, 8, 8), np.uint8), np.zeros((4, 2), np.int64)


@pytest.mark.parametrize("suffix", [".npz", ".h5"])
@pytest.mark.parametrize("images, factors, names, message", [
    (None, GOOD_FACTORS, None, r"missing key 'images'"),
    (GOOD_IMAGES, None, None, r"missing key 'factors'"),
    (GOOD_IMAGES.astype(np.float32), GOOD_FACTORS, None, r"key 'images' must be uint8, found float32"),
    (GOOD_IMAGES, GOOD_FACTORS.astype(np.float64), None, r"key 'factors' must be an integer array"),
    (GOOD_IMAGES[0], GOOD_FACTORS, None, r"key 'images' must have 3 or 4 dimensions"),
    (GOOD_IMAGES, GOOD_FACTORS[:, 0], None, r"key 'factors' must have 2 dimensions"),
    (GOOD_IMAGES, GOOD_FACTORS[:3], None, r"key 'factors' has 3 rows but 'images' has 4"),
    (np.zeros((4, 3, 8, 8), np.uint8), GOOD_FACTORS, None, r"key 'images' must hold square channels-last"),
    (GOOD_IMAGES, GOOD_FACTORS, np.array(["a"]), r"key 'factor_names' must hold 2 unique names"),
    (GOOD_IMAGES, GOOD_FACTORS, np.array(["a", "a"]), r"key 'factor_names' must hold 2 unique names"),
    (GOOD_IMAGES, -1 - GOOD_FACTORS, None, r"key 'factors' needs >= 1 column of values >= 0"),
])
def test_factors_file__bad_file_names_file_and_key(tmp_path, suffix, images, factors, names, message):
    path = tmp_path / f"bad{suffix}"
    content = {k: v for k, v in (("images", images), ("factors", factors)) if v is not None}
    if names is not None:
        content["factor_names"] = names
    if suffix == ".npz":
        np.savez(path, **content)
    else:
        with h5py.File(path, "w") as f:
            for key, value in content.items():
                f.create_dataset(key, data=value.astype("S") if key == "factor_names" else value)
    with pytest.raises(DataError, match=rf"bad{suffix}: {message}"):
        build_dataset("factors_file", str(path), 8, 0, seed=0)


def test_factors_file__wrong_suffix_and_unknown_class(tmp_path):
    path = tmp_path / "mine.pt"
    path.write_bytes(b"x")
    with pytest.raises(DataError, match=r"data\.path: .*mine\.pt must end in \.npz, \.h5 or \.hdf5"):
        build_dataset("factors_file", str(path), 8, 0, seed=0)
    good = tmp_path / "good.npz"
    _factors_file(good, GOOD_IMAGES, GOOD_FACTORS)
    with pytest.raises(DataError, match=r"data\.class_factor: unknown factor 'pose'.*factor_0, factor_1"):
        build_dataset("factors_file", str(good), 8, 0, seed=0, class_factor="pose")


def test_factors_file__factor_names_not_utf8_named_by_file_and_key(tmp_path):
    path = tmp_path / "latin.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=GOOD_IMAGES)
        f.create_dataset("factors", data=GOOD_FACTORS)
        f.create_dataset("factor_names", data=np.array([b"hue", b"gr\xfcn"], dtype="S4"))
    with pytest.raises(DataError, match=rf"{path}: key 'factor_names' must hold UTF-8 text, found bytes that are not "
                                        r"\(invalid start byte at byte 2\)"):
        build_dataset("factors_file", str(path), 8, 0, seed=0)


def test_factors_file__an_absurd_factor_value_named_by_file_key_and_column(tmp_path):
    path = tmp_path / "absurd.npz"
    factors = np.stack([np.arange(4) % 2, np.array([0, 1, 2, 10**12])], 1)
    _factors_file(path, GOOD_IMAGES, factors)
    with pytest.raises(DataError, match=rf"{path}: key 'factors' column 1 holds the value 1000000000000; values "
                                        r"index a factor's classes, expected below 1,000,000"):
        build_dataset("factors_file", str(path), 8, 0, seed=0)
