"""Natural-image datasets without factors: CIFAR-10/100 and image folders.

ContraLORD evaluates linear classification on CIFAR-10, CIFAR-100 and ImageNet-100 and shows
disentanglement on CelebA, AFHQ and CelebA-HQ (Sec. 4.1, Tables 1 and 3). These have labels but no
ground-truth factors (factors = None); the label is the class.

`cifar10` / `cifar100`: torchvision's python layout under `path` (`cifar-10-batches-py/` or
`cifar-100-python/`), read by `torchvision.datasets.CIFAR10/100(root=path, download=False)`. Even
with download=False, torchvision checks every file against the official md5 sums and refuses other
files; that refusal becomes a DataError naming data.path. CIFAR-100 uses the 100 fine labels.

`image_folder`: torchvision's `ImageFolder` layout, one subfolder per class (sorted names = class
ids), for ImageNet-100, AFHQ, CelebA. If `path/<split>` is a folder (e.g. `path/train`), it is
used, else `path` itself (train only). The kept images are decoded, converted to RGB, centre-
cropped to a square, resized (PIL bilinear, antialiased) to `image_size` and stored as one uint8
tensor: use `size` to keep a subset of a large folder (20000 images at 128 px are 0.98 GB).
"""

from __future__ import annotations

import pickle
from functools import partial
from pathlib import Path

import numpy as np
import torch

from contralord.data.arrays import check_declared
from contralord.data.core import DataError, nhwc_to_tensor, resize_images
from contralord.data.source import Source, require_path, require_train_or_test


def cifar_source(name: str, path: str | None, image_size: int, split: str) -> Source:
    """CIFAR-10 or CIFAR-100 via torchvision (see module docstring); class = label."""
    from torchvision.datasets import CIFAR10, CIFAR100

    cls = CIFAR10 if name == "cifar10" else CIFAR100
    root = require_path(name, path, "dir", f"the folder holding {cls.base_folder}/")
    require_train_or_test(name, split)
    try:
        ds = cls(root=str(root), train=split == "train", download=False)
    except (RuntimeError, OSError, EOFError, KeyError, pickle.UnpicklingError) as e:
        raise DataError(f"data.path: no intact {name} files under {root / cls.base_folder} "
                        f"(torchvision checks the official md5 sums): {e}") from e
    images = nhwc_to_tensor(np.asarray(ds.data))  # (N, 3, 32, 32)
    listed = [f for f, _ in (ds.train_list if ds.train else ds.test_list)] + [ds.meta["filename"]]
    folder = root / cls.base_folder
    return Source(
        load=lambda positions: resize_images(images[torch.from_numpy(positions)], image_size),
        labels=np.asarray(ds.targets, dtype=np.int64), num_labels=len(ds.classes),
        files=lambda positions: [(f, folder / f) for f in listed])


def _decode(path: str, image_size: int) -> np.ndarray:
    """One image file -> uint8 (S, S, 3): RGB, centre-cropped square, bilinear resize."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:  # reads the header only: the size is known before decoding
            check_declared((im.size[1], im.size[0], 3), np.uint8, Path(path), "image")
            im = im.convert("RGB")
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: not a readable image ({type(e).__name__}: {e})") from None
    side = min(im.size)
    left, top = (im.size[0] - side) // 2, (im.size[1] - side) // 2
    im = im.crop((left, top, left + side, top + side))
    return np.asarray(im.resize((image_size, image_size), Image.BILINEAR), dtype=np.uint8)


def _load_folder(samples: list[tuple[str, int]], image_size: int, positions: np.ndarray) -> torch.Tensor:
    out = np.empty((len(positions), image_size, image_size, 3), dtype=np.uint8)
    for i, p in enumerate(positions.tolist()):
        out[i] = _decode(samples[p][0], image_size)
    return nhwc_to_tensor(out)


def image_folder_source(path: str | None, image_size: int, split: str) -> Source:
    """A class-per-subfolder image tree (see module docstring); class = subfolder."""
    from torchvision.datasets import ImageFolder

    root = require_path("image_folder", path, "dir", "a folder with one subfolder per class")
    require_train_or_test("image_folder", split)
    if (root / split).is_dir():
        root = root / split
    elif split != "train":
        raise DataError(f"data.split: {root / split} is not a folder (dataset 'image_folder')")
    try:
        folder = ImageFolder(str(root))
    except (FileNotFoundError, OSError) as e:
        raise DataError(f"data.path: {root} is not an image folder with class subfolders ({e})") from e
    samples = folder.samples  # [(file, class id)]

    def files(positions: np.ndarray) -> list[tuple[str, Path]]:
        return [(Path(samples[p][0]).relative_to(root).as_posix(), Path(samples[p][0]))
                for p in positions.tolist()]

    return Source(load=partial(_load_folder, samples, image_size),
                  labels=np.asarray(folder.targets, dtype=np.int64), num_labels=len(folder.classes),
                  files=files, meta={"classes": list(folder.classes)})
