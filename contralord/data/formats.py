"""File formats of factor datasets: official dSprites and Shapes3D, and the generic factors file.

ContraLORD's disentanglement results (Sec. 4.1, Table 2) use dSprites and Shapes3D in their
published files; the generic `factors_file` lets users bring their own factor datasets. Images are
kept uint8; a kept subset is read and stored, not the whole file.

`dsprites_npz`: DeepMind's `dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz` with `imgs` uint8
(N, 64, 64) holding 0/1 and `latents_classes` integer (N, 6) = (color, shape, scale, orientation,
posX, posY). The constant color column is dropped; pixels become 0/255; class = shape.

`shapes3d_h5`: DeepMind's `3dshapes.h5` with `images` uint8 (N, 64, 64, 3) and `labels` float
(N, 6) = (floor_hue, wall_hue, object_hue, scale, shape, orientation). Each label column is mapped
to value indices with `np.unique(..., return_inverse=True)`; class = shape.

`factors_file` (the generic format; .npz or .h5/.hdf5, chosen by the file suffix):
    images        uint8, (N, H, W) grayscale or channels-last (N, H, W, C); H == W required.
    factors       any integer dtype, (N, F), F >= 1: the value index of each factor, >= 0.
                  A factor's cardinality is taken as its largest value + 1.
    factor_names  optional, (F,) strings (fixed-width or HDF5 variable-length; no pickled objects),
                  unique. Default: "factor_0", ..., "factor_{F-1}".
    The class is the factor named by `class_factor` (a name, or its index as a string), by default
    the first. Images whose side differs from `image_size` are resized bilinearly (antialiased when
    shrinking), never rejected.
Every violation raises a DataError that names the file and the key.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from contralord.data.arrays import check_array, check_images, check_length, get_key, open_h5, open_npz, read_rows
from contralord.data.core import DataError, nhwc_to_tensor, resize_images
from contralord.data.dsprites import DSPRITES_FACTOR_NAMES
from contralord.data.shapes3d import SHAPES3D_FACTOR_NAMES
from contralord.data.source import Source, require_path, require_single_split


def _kept(array: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """array[positions] for sorted unique positions, without a copy when all rows are kept."""
    return array if len(positions) == len(array) else array[positions]


def _load_array(images: np.ndarray, image_size: int, positions: np.ndarray) -> torch.Tensor:
    return resize_images(nhwc_to_tensor(_kept(images, positions)), image_size)


def _load_h5(path: Path, key: str, image_size: int, positions: np.ndarray) -> torch.Tensor:
    with open_h5(path) as f:
        return resize_images(nhwc_to_tensor(read_rows(f[key], positions, path, key)), image_size)


def _load_binary(imgs: np.ndarray, path: Path, image_size: int, positions: np.ndarray) -> torch.Tensor:
    """dSprites 0/1 pixels -> 0/255, in place on the (already private) kept array."""
    x = _kept(imgs, positions)  # (M, 64, 64)
    if x.size and x.max() > 1:
        raise DataError(f"{path}: key 'imgs' must hold 0/1 pixels as in official dSprites, "
                        f"found max {x.max()}")
    np.multiply(x, 255, out=x)
    return resize_images(nhwc_to_tensor(x), image_size)


MAX_FACTOR_VALUES = 1_000_000  # a factor's values index its classes (code-table rows, one-hot columns)


def _check_factor_matrix(factors: Any, path: Path, key: str, images: tuple[str, int],
                         width: int | None) -> np.ndarray:
    """Integer (N, F) factor values >= 0, N = images[1] rows of key images[0], F == width if given."""
    check_array(factors, path, key, (2,), "iu", "an integer array")
    check_length(factors, images[1], path, key, images[0])
    if width is not None and factors.shape[1] != width:
        raise DataError(f"{path}: key '{key}' must have {width} columns, found {factors.shape[1]}")
    factors = np.asarray(factors[()], dtype=np.int64)
    if factors.shape[1] == 0 or (factors.size and factors.min() < 0):
        raise DataError(f"{path}: key '{key}' needs >= 1 column of values >= 0, found shape "
                        f"{factors.shape} with min {factors.min() if factors.size else None}")
    if factors.size and factors.max() >= MAX_FACTOR_VALUES:  # a value is a row of the factor's code table
        column = int(np.argmax(factors.max(0)))
        raise DataError(f"{path}: key '{key}' column {column} holds the value {int(factors[:, column].max())}; "
                        f"values index a factor's classes, expected below {MAX_FACTOR_VALUES:,} (renumber them "
                        f"0, 1, 2, ...)")
    return factors


def _sizes(factors: np.ndarray) -> tuple[int, ...]:
    return tuple(int(v) + 1 for v in factors.max(0)) if len(factors) else (0,) * factors.shape[1]


def dsprites_npz_source(path: str | None, image_size: int, split: str) -> Source:
    """Official dSprites npz (see module docstring); class = shape."""
    require_single_split("dsprites_npz", split)
    p = require_path("dsprites_npz", path, "file", "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz")
    npz = open_npz(p)
    imgs = get_key(npz, p, "imgs")  # (N, 64, 64) 0/1
    check_array(imgs, p, "imgs", (3,), "u", "uint8")
    check_images(imgs, p, "imgs")
    latents = _check_factor_matrix(get_key(npz, p, "latents_classes"), p, "latents_classes",
                                   ("imgs", len(imgs)), 6)
    factors = latents[:, 1:]  # drop the constant color column: (N, 5)
    return Source(load=partial(_load_binary, imgs, p, image_size), factors=factors,
                  factor_names=DSPRITES_FACTOR_NAMES, factor_sizes=_sizes(factors),
                  default_class="shape", files=lambda positions: [(p.name, p)])


def shapes3d_h5_source(path: str | None, image_size: int, split: str) -> Source:
    """Official 3dshapes.h5 (see module docstring); class = shape."""
    require_single_split("shapes3d_h5", split)
    p = require_path("shapes3d_h5", path, "file", "3dshapes.h5")
    with open_h5(p) as f:
        images = get_key(f, p, "images", by_rows=True)
        check_array(images, p, "images", (4,), "u", "uint8")
        check_images(images, p, "images")
        labels = get_key(f, p, "labels")
        check_array(labels, p, "labels", (2,), "f", "a float array")
        check_length(labels, len(images), p, "labels", "images")
        if labels.shape[1] != 6:
            raise DataError(f"{p}: key 'labels' must have 6 columns, found {labels.shape[1]}")
        labels = labels[()]  # (N, 6)
    columns = [np.unique(labels[:, j], return_inverse=True) for j in range(6)]
    return Source(load=partial(_load_h5, p, "images", image_size),
                  factors=np.stack([inv.reshape(-1) for _, inv in columns], 1).astype(np.int64),
                  factor_names=SHAPES3D_FACTOR_NAMES,
                  factor_sizes=tuple(len(values) for values, _ in columns),
                  default_class="shape", files=lambda positions: [(p.name, p)])


def _factor_names(container: Any, path: Path, num_factors: int) -> tuple[str, ...]:
    if "factor_names" not in container:
        return tuple(f"factor_{j}" for j in range(num_factors))
    raw = get_key(container, path, "factor_names")
    check_array(raw, path, "factor_names", (1,), "SUO", "an array of strings")
    try:
        names = tuple(v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(raw[()]).tolist())
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: key 'factor_names' must hold UTF-8 text, found bytes that are not "
                        f"({error.reason} at byte {error.start})") from None
    if len(names) != num_factors or len(set(names)) != num_factors:
        raise DataError(f"{path}: key 'factor_names' must hold {num_factors} unique names (one per "
                        f"column of 'factors'), found {list(names)}")
    return names


def _factor_table(container: Any, path: Path) -> tuple[Any, np.ndarray, tuple[str, ...]]:
    """Validated (images, factors (N, F) int64, factor names) of a factors file."""
    images = get_key(container, path, "images", by_rows=True)
    check_images(images, path, "images")
    factors = _check_factor_matrix(get_key(container, path, "factors"), path, "factors",
                                   ("images", len(images)), None)
    return images, factors, _factor_names(container, path, factors.shape[1])


def factors_file_source(path: str | None, image_size: int, split: str) -> Source:
    """The generic factors file (.npz or .h5, see module docstring); class = chosen factor."""
    require_single_split("factors_file", split)
    p = require_path("factors_file", path, "file", "a .npz or .h5 factors file")
    suffix = p.suffix.lower()
    if suffix == ".npz":
        images, factors, names = _factor_table(open_npz(p), p)
        load = partial(_load_array, images, image_size)
    elif suffix in (".h5", ".hdf5"):
        with open_h5(p) as f:
            _, factors, names = _factor_table(f, p)
        load = partial(_load_h5, p, "images", image_size)
    else:
        raise DataError(f"data.path: {p} must end in .npz, .h5 or .hdf5 for 'factors_file'")
    return Source(load=load, factors=factors, factor_names=names, factor_sizes=_sizes(factors),
                  default_class=names[0], files=lambda positions: [(p.name, p)])
