"""Reading and validating arrays in .npz and .h5 files for the ContraLORD dataset formats.

The benchmarks of Sec. 4.1 ship as numpy archives (dSprites) and HDF5 (Shapes3D); users' own
factor datasets use the same two containers (`formats.py`). Every check here names the file and the
key, so a wrong file fails at load time with one precise line instead of deep inside training.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from contralord.data.core import DataError

READ_BLOCK_BYTES = 64 * 2**20  # HDF5 images are read in blocks of about this size


def open_npz(path: Path) -> Any:
    """Opens an .npz archive (no pickles), or raises a DataError naming data.path."""
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise DataError(f"data.path: {path} is not a readable .npz archive ({e})") from e


@contextmanager
def open_h5(path: Path) -> Iterator[Any]:
    """Opens an HDF5 file read-only, or raises a DataError naming data.path."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise DataError(f"data.path: {path} is not a readable HDF5 file ({e})") from e
    with f:
        yield f


def get_key(container: Any, path: Path, key: str) -> Any:
    """container[key] (an array or h5py dataset), or a DataError naming the file and key."""
    if key not in container:
        found = ", ".join(sorted(container.keys()))
        raise DataError(f"{path}: missing key '{key}' (found: {found or 'nothing'})")
    try:
        return container[key]
    except ValueError as e:  # an object array in an npz would need pickle
        raise DataError(f"{path}: key '{key}' cannot be read without pickle ({e}); store plain "
                        f"numeric or fixed-width string arrays") from e


def check_array(array: Any, path: Path, key: str, ndims: Sequence[int], kinds: str,
                kind_name: str) -> None:
    """Checks ndim and dtype kind of `array` (numpy array or h5py dataset).

    Args:
        array: the array.
        path, key: where it came from, for the message.
        ndims: accepted numbers of dimensions.
        kinds: accepted numpy dtype kinds, e.g. "iu" for integers, "u" plus itemsize 1 for uint8.
        kind_name: readable dtype requirement for the message, e.g. "uint8".
    """
    if len(array.shape) not in ndims:
        raise DataError(f"{path}: key '{key}' must have {' or '.join(map(str, ndims))} dimensions, "
                        f"found shape {tuple(array.shape)}")
    dtype = np.dtype(array.dtype)
    if dtype.kind not in kinds or (kind_name == "uint8" and dtype != np.uint8):
        raise DataError(f"{path}: key '{key}' must be {kind_name}, found {dtype}")


def check_images(array: Any, path: Path, key: str) -> None:
    """uint8 (N, H, W) or channels-last (N, H, W, C) with H == W."""
    check_array(array, path, key, (3, 4), "u", "uint8")
    if array.shape[1] != array.shape[2]:
        raise DataError(f"{path}: key '{key}' must hold square channels-last images (N, H, W[, C]) "
                        f"with H == W, found shape {tuple(array.shape)}")


def check_length(array: Any, n: int, path: Path, key: str, other: str) -> None:
    """len(array) must equal n, the length of `other`."""
    if len(array) != n:
        raise DataError(f"{path}: key '{key}' has {len(array)} rows but '{other}' has {n}")


def read_rows(dataset: Any, positions: np.ndarray) -> np.ndarray:
    """dataset[positions] for sorted positions, read block by block (h5py-friendly, bounded memory).

    Args:
        dataset: an array-like supporting slicing (numpy array or h5py dataset) of shape (N, ...).
        positions: sorted (M,) int64 row indices.

    Returns:
        (M, ...) numpy array.
    """
    out = np.empty((len(positions), *dataset.shape[1:]), dtype=dataset.dtype)
    row_bytes = max(1, int(np.prod(dataset.shape[1:])) * out.itemsize)
    block = max(1, READ_BLOCK_BYTES // row_bytes)
    done = 0
    while done < len(positions):
        start = int(positions[done])
        end = done + int(np.searchsorted(positions[done:], start + block))  # rows of this block
        stop = int(positions[end - 1]) + 1
        out[done:end] = dataset[start:stop][positions[done:end] - start]
        done = end
    return out
