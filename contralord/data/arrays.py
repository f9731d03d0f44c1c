"""Reading and validating arrays in .npz and .h5 files for the ContraLORD dataset formats.

The benchmarks of Sec. 4.1 ship as numpy archives (dSprites) and HDF5 (Shapes3D); users' own
factor datasets use the same two containers (`formats.py`). Every check here names the file and the
key, so a wrong file fails at load time with one precise line instead of deep inside training.
"""

from __future__ import annotations

import contextvars
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from contralord.data.core import DataError

READ_BLOCK_BYTES = 64 * 2**20  # HDF5 images are read in blocks of about this size
# The most bytes one array of a data file may declare (data.max_array_gib); checked on the header,
# before anything is allocated, so a deflate bomb or a forged shape fails with the numbers.
DEFAULT_MAX_ARRAY_BYTES = 16 * 2**30
_max_array_bytes = contextvars.ContextVar("max_array_bytes", default=DEFAULT_MAX_ARRAY_BYTES)
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with members, an empty zip


@contextmanager
def array_cap(max_bytes: int) -> Iterator[None]:
    """Within the block, arrays declaring more than ``max_bytes`` are refused (see check_declared)."""
    token = _max_array_bytes.set(max_bytes)
    try:
        yield
    finally:
        _max_array_bytes.reset(token)


def check_declared(shape: Sequence[int], dtype: Any, path: Path, key: str) -> None:
    """Refuse an array whose declared shape x itemsize exceeds the cap, before it is allocated."""
    cap = _max_array_bytes.get()
    nbytes = int(np.prod([int(d) for d in shape], dtype=object)) * np.dtype(dtype).itemsize
    if nbytes > cap:
        raise DataError(f"{path}: key '{key}' declares shape {tuple(int(d) for d in shape)} of {np.dtype(dtype)} "
                        f"= {nbytes / 2**30:.3g} GiB, over the cap data.max_array_gib={cap / 2**30:.3g} "
                        f"(raise it if the file is genuine)")


def _first_bytes(path: Path, n: int = 8) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def open_npz(path: Path) -> Any:
    """Opens an .npz archive (no pickles), or raises a DataError naming data.path."""
    try:
        head = _first_bytes(path)
        if not head.startswith(ZIP_MAGIC):
            raise DataError(f"data.path: {path} is not a readable .npz archive: expected a zip file (starting "
                            f"'PK'), found {path.stat().st_size} bytes starting {head!r}")
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"data.path: {path} is not a readable .npz archive ({type(e).__name__}: {e})") from None


@contextmanager
def open_h5(path: Path) -> Iterator[Any]:
    """Opens an HDF5 file read-only whose every dataset lives in the file itself (``check_h5_self_contained``),
    or raises a DataError naming data.path."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise DataError(f"data.path: {path} is not a readable HDF5 file ({e})") from e
    with f:
        check_h5_self_contained(f, path)
        yield f


def check_h5_self_contained(f: Any, path: Path) -> None:
    """No external link, no dataset with external storage and no virtual dataset: each of them reads another
    file (any file this user can read, into ``images`` and from there into grids and MLflow artifacts), and
    the data fingerprint hashes only this file, so cached stage 1 and reused trials would go stale. Asked
    through h5py's own API (``visititems_links``, ``Dataset.is_virtual``, ``Dataset.external``); nothing
    outside the file is opened."""
    import h5py

    found: list[str] = []

    def visit(name: str, link: Any) -> None:
        if found:
            return
        if isinstance(link, h5py.ExternalLink):
            found.append(f"'{name}' is an external link to {link.filename}:{link.path}")
            return
        obj = f.get(name)
        if isinstance(obj, h5py.Dataset) and obj.is_virtual:
            found.append(f"dataset '{name}' is virtual (its data comes from other files)")
        elif isinstance(obj, h5py.Dataset) and obj.external:
            found.append(f"dataset '{name}' keeps its data in external file(s) {obj.external[0][0]!r}")

    f.visititems_links(visit)
    if found:
        raise DataError(f"data.path: {path}: {found[0]}; only self-contained HDF5 files are read (nothing was read "
                        f"from outside the file)")


def get_key(container: Any, path: Path, key: str, by_rows: bool = False) -> Any:
    """container[key] (an array or h5py dataset), or a DataError naming the file and key.

    The declared size is checked against the cap first: an npz member is always read whole; an
    HDF5 dataset is read whole unless ``by_rows`` (then ``read_rows`` checks what it reads).
    """
    if key not in container:
        found = ", ".join(sorted(container.keys()))
        raise DataError(f"{path}: missing key '{key}' (found: {found or 'nothing'})")
    if isinstance(container, np.lib.npyio.NpzFile):
        _check_npz_member(container, path, key)
    elif not by_rows and hasattr(container[key], "dtype"):
        check_declared(container[key].shape, container[key].dtype, path, key)
    try:
        return container[key]
    except ValueError:  # an object array in an npz would need pickle
        raise DataError(f"{path}: key '{key}' holds Python objects, which are never unpickled; store plain "
                        f"numeric or fixed-width string arrays") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: key '{key}' is damaged ({type(e).__name__}: {e})") from None


def _check_npz_member(npz: Any, path: Path, key: str) -> None:
    """Reads only the .npy header of member ``key``: its declared shape and dtype."""
    try:
        with npz.zip.open(f"{key}.npy") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(f)
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: key '{key}' is not a readable .npy member ({type(e).__name__}: {e})") from None
    if dtype.hasobject:
        raise DataError(f"{path}: key '{key}' holds Python objects, which are never unpickled; store plain "
                        f"numeric or fixed-width string arrays")
    check_declared(shape, dtype, path, key)


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


IMAGE_CHANNELS = (1, 3)  # grayscale or RGB: what the grids, LPIPS and FID (and PNG) take
ALPHA_CHANNELS = {2: "LA", 4: "RGBA"}  # grayscale or RGB with alpha, as PNG-derived grids are often saved


def check_images(array: Any, path: Path, key: str) -> None:
    """uint8 (N, H, W) or channels-last (N, H, W, C) with H == W >= 1 and C = 1 or 3 (checked on the declared
    shape, before training: a 0 x 0 or 5-channel image used to fail only in the evaluation after it). C = 2 (LA)
    or 4 (RGBA) is taken with a warning naming the file and key: the loaders drop the alpha channel
    (``core.nhwc_to_tensor``)."""
    check_array(array, path, key, (3, 4), "u", "uint8")
    if array.shape[0] == 0:
        raise DataError(f"{path}: key '{key}' holds 0 images, expected at least 1 (shape {tuple(array.shape)})")
    if array.shape[1] != array.shape[2] or array.shape[1] == 0:
        raise DataError(f"{path}: key '{key}' must hold square channels-last images (N, H, W[, C]) "
                        f"with H == W >= 1, found shape {tuple(array.shape)}")
    if array.ndim == 4 and array.shape[3] in ALPHA_CHANNELS:
        warnings.warn(f"{path}: key '{key}' holds {ALPHA_CHANNELS[array.shape[3]]} images "
                      f"({array.shape[3]} channels): the alpha channel is dropped", stacklevel=2)
    elif array.ndim == 4 and array.shape[3] not in IMAGE_CHANNELS:
        raise DataError(f"{path}: key '{key}' has {array.shape[3]} channels, expected 1 (grayscale) or 3 (RGB), "
                        f"or 2 / 4 with alpha (dropped); found shape {tuple(array.shape)}")


def check_length(array: Any, n: int, path: Path, key: str, other: str) -> None:
    """len(array) must equal n, the length of `other`."""
    if len(array) != n:
        raise DataError(f"{path}: key '{key}' has {len(array)} rows but '{other}' has {n}")


def read_rows(dataset: Any, positions: np.ndarray, path: Path = Path("data.path"), key: str = "images") -> np.ndarray:
    """dataset[positions] for sorted positions, read block by block (h5py-friendly, bounded memory).

    Args:
        dataset: an array-like supporting slicing (numpy array or h5py dataset) of shape (N, ...).
        positions: sorted (M,) int64 row indices.
        path, key: where it came from, for the message when (M, ...) is over the cap.

    Returns:
        (M, ...) numpy array.
    """
    check_declared((len(positions), *dataset.shape[1:]), dataset.dtype, path, key)
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
