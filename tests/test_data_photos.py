"""Tests of the CIFAR and image-folder loaders on tiny files in torchvision's layouts.

torchvision's CIFAR10/CIFAR100 verify the md5 sum of every file even with download=False, so files
written here are refused: `test_cifar__unofficial_files_are_refused` checks that refusal becomes a
DataError. To test our loading path on the same pickle layout,
`test_cifar__loads_pickle_layout` replaces only torchvision's `check_integrity` (file present, md5
not compared); torchvision's own reading code runs unchanged.
"""

import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from contralord.data import DataError, build_dataset

CIFAR_LAYOUT = {  # name: (folder, train files, test files, meta file, meta key, label key)
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"],
                "batches.meta", "label_names", "labels"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "meta", "fine_label_names", "fine_labels"),
}


def _cifar(root, name, per_file=4):
    folder, train, test, meta, meta_key, label_key = CIFAR_LAYOUT[name]
    (root / folder).mkdir(parents=True)
    num_classes = 10 if name == "cifar10" else 100
    for i, file in enumerate(train + test):
        data = np.full((per_file, 3072), i, np.uint8)
        data[:, 1024:2048] = np.arange(per_file)[:, None]  # green plane = row within the file
        entry = {"batch_label": file, "data": data, label_key: [(i + k) % num_classes for k in range(per_file)]}
        (root / folder / file).write_bytes(pickle.dumps(entry))
    names = {meta_key: [f"class{k}" for k in range(num_classes)]}
    (root / folder / meta).write_bytes(pickle.dumps(names))
    return num_classes


@pytest.mark.parametrize("name", list(CIFAR_LAYOUT))
def test_cifar__unofficial_files_are_refused(tmp_path, name):
    _cifar(tmp_path, name)
    with pytest.raises(DataError, match=rf"data\.path: no intact {name} files .*md5"):
        build_dataset(name, str(tmp_path), 32, 0, seed=0)


@pytest.mark.parametrize("name", list(CIFAR_LAYOUT))
def test_cifar__loads_pickle_layout(tmp_path, monkeypatch, name):
    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tv_cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))
    num_classes = _cifar(tmp_path, name)
    train_files = len(CIFAR_LAYOUT[name][1])
    data = build_dataset(name, str(tmp_path), 32, 0, seed=0)
    assert data.images.shape == (4 * train_files, 3, 32, 32) and data.factors is None
    assert data.num_classes == num_classes and data.images.dtype == torch.uint8
    np.testing.assert_array_equal(data.images[:, 0, 0, 0].numpy(), np.repeat(np.arange(train_files), 4))
    np.testing.assert_array_equal(data.images[:, 1, 0, 0].numpy(), np.tile(np.arange(4), train_files))
    assert data.classes[:4].tolist() == [0, 1, 2, 3]
    test = build_dataset(name, str(tmp_path), 16, 2, seed=0, split="test")
    assert test.images.shape == (2, 3, 16, 16) and (test.images[:, 0] == train_files).all()
    assert test.fingerprint != data.fingerprint


def test_cifar__missing_folder(tmp_path):
    with pytest.raises(DataError, match=r"data\.path: .*nowhere does not exist"):
        build_dataset("cifar10", str(tmp_path / "nowhere"), 32, 0, seed=0)


def _png(path, size=(30, 20)):
    """RGB image, width 30 x height 20: 5 red columns, 20 green, 5 blue."""
    x = np.zeros((size[1], size[0], 3), np.uint8)
    x[:, :5, 0], x[:, 5:25, 1], x[:, 25:, 2] = 255, 255, 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(x).save(path)


def test_image_folder__crops_resizes_and_labels(tmp_path):
    for cls, count in (("cat", 3), ("dog", 2)):
        for i in range(count):
            _png(tmp_path / "train" / cls / f"{i}.png")
    _png(tmp_path / "test" / "cat" / "0.png")
    data = build_dataset("image_folder", str(tmp_path), 8, 0, seed=0)
    assert data.images.shape == (5, 3, 8, 8) and data.factors is None and data.num_classes == 2
    assert data.classes.tolist() == [0, 0, 0, 1, 1]
    green = torch.tensor([0, 255, 0], dtype=torch.uint8)[:, None, None].expand(3, 8, 8)
    assert all(torch.equal(image, green) for image in data.images)  # centre crop drops red/blue
    test = build_dataset("image_folder", str(tmp_path), 8, 0, seed=0, split="test")
    assert len(test) == 1 and test.num_classes == 1
    _png(tmp_path / "train" / "dog" / "1.png", size=(20, 30))  # new content of a kept file
    assert build_dataset("image_folder", str(tmp_path), 8, 0, seed=0).fingerprint != data.fingerprint


def test_image_folder__without_split_folders(tmp_path):
    _png(tmp_path / "a" / "0.png")
    _png(tmp_path / "b" / "0.jpg")
    data = build_dataset("image_folder", str(tmp_path), 16, 1, seed=3)
    assert data.images.shape == (1, 3, 16, 16)
    with pytest.raises(DataError, match=r"data\.split: .*test is not a folder"):
        build_dataset("image_folder", str(tmp_path), 16, 0, seed=0, split="test")


def test_image_folder__bad_inputs(tmp_path):
    with pytest.raises(DataError, match=r"data\.path: .* is not an image folder with class subfolders"):
        build_dataset("image_folder", str(tmp_path), 16, 0, seed=0)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"broken\.png: not a readable image"):
        build_dataset("image_folder", str(tmp_path), 16, 0, seed=0)
    with pytest.raises(DataError, match=r"data\.split: 'image_folder' has splits 'train' and 'test'"):
        build_dataset("image_folder", str(tmp_path), 16, 0, seed=0, split="val")
