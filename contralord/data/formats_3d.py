"""File formats of the object-pose benchmarks: Cars3D and SmallNORB.

ContraLORD reports disentanglement on both (Sec. 4.1, Table 2); the files are read in the layouts
their publishers ship, as google-research/disentanglement_lib reads them.

`cars3d`: a folder of `*.mat` files (Reed et al., 2015), one per car model; sorted by file name, the
k-th file is model k (the class). Each holds key `im`, uint8 (H, H, 3, 24, 4) = (height, width, RGB,
azimuth, elevation), H = 128 in the release. Factors: elevation (4), azimuth (24), model (number of
files, 183 in the release). Images are resized (bilinear, antialiased) to `image_size`.

`smallnorb`: the uncompressed official files `smallnorb-5x46789x9x18x6x2x96x96-{training,testing}-
{dat,cat,info}.mat` (LeCun et al., 2004; `split` "train" -> training, "test" -> testing). Each is a
NORB binary matrix: little-endian int32 magic (0x1E3D4C55 = uint8 data, 0x1E3D4C54 = int32 data),
int32 ndim, max(3, ndim) int32 dims (unused ones = 1), then the data. `dat` is (N, 2, 96, 96) stereo
pairs (the left camera, index 0, is used), `cat` (N,) categories, `info` (N, 4) = (instance,
elevation, azimuth 0..34 step 2, lighting). Factors: category (5), instance (10), elevation (9),
azimuth (18, raw / 2), lighting (6). Instance ids are the official per-category ids 0..9 (training
holds 4, 6, 7, 8, 9 and testing 0, 1, 2, 3, 5), so sizes agree across splits; a toy is the pair
(category, instance), and class_factor="instance" pools the same instance id of all 5 categories.
Class = category by default.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch

from contralord.data.arrays import check_declared
from contralord.data.core import DataError, nhwc_to_tensor, resize_images
from contralord.data.source import Source, require_path, require_single_split, require_train_or_test

CARS_VIEWS = (24, 4)  # (azimuth, elevation) per model file
MAX_CAR_SIDE = 1024  # H of a model file's renders: 128 in the release; 1024 is 288 MiB a file (5000 was 6.7 GiB)
NORB_MAGIC = {0x1E3D4C55: np.uint8, 0x1E3D4C54: np.int32}
NORB_PREFIX = "smallnorb-5x46789x9x18x6x2x96x96"
NORB_FACTORS = ("category", "instance", "elevation", "azimuth", "lighting")
NORB_SIZES = (5, 10, 9, 18, 6)


def check_car_file(path: Path) -> None:
    """A Cars3D model file is a MATLAB v5/v7 .mat whose variables' declared sizes fit data.max_array_gib and
    whose 'im' has the Cars3D shape, read from the headers only (``scipy.io.whosmat``): a small compressed
    file can declare gigabytes, and a v7.3 file (HDF5) is not what Cars3D ships."""
    from scipy.io import whosmat
    from scipy.io.matlab import matfile_version

    try:
        with open(path, "rb") as f:
            version = matfile_version(f)
        variables = whosmat(path) if version[0] < 2 else []
    except (OSError, ValueError, TypeError, NotImplementedError) as e:
        raise DataError(f"{path}: not a readable .mat file ({type(e).__name__}: {e})") from None
    if version[0] >= 2:
        raise DataError(f"data.path: {path} is a MATLAB v7.3 (HDF5) file; expected the v5 .mat files Cars3D ships "
                        f"(re-save with -v7)")
    shapes = {name: (shape, kind) for name, shape, kind in variables}
    for name, (shape, kind) in shapes.items():
        check_declared(shape, np.uint8 if kind == "uint8" else np.float64, path, name)
    if "im" not in shapes:
        raise DataError(f"{path}: missing key 'im' (found: {', '.join(shapes) or 'nothing'})")
    shape, kind = shapes["im"]
    if kind != "uint8" or len(shape) != 5 or tuple(shape[2:]) != (3, *CARS_VIEWS) or shape[0] != shape[1]:
        raise DataError(f"{path}: key 'im' must be uint8 (H, H, 3, 24, 4), found {kind} {tuple(shape)}")
    if shape[0] > MAX_CAR_SIDE:  # under data.max_array_gib's 16 GiB, a 32 MB file could still inflate to 7 GiB
        raise DataError(f"data.path: {path}: key 'im' declares renders of side {shape[0]}, expected at most "
                        f"{MAX_CAR_SIDE} (the release's are 128; this file would inflate to "
                        f"{np.prod(shape) / 2**30:.3g} GiB, a size data.max_array_gib would let through)")


def _read_car(path: Path) -> np.ndarray:
    """One model file (checked by ``check_car_file``) -> uint8 (96, H, H, 3), row = azimuth * 4 + elevation."""
    from scipy.io import loadmat

    try:
        mat = loadmat(path, variable_names=["im"])
    except (OSError, ValueError, TypeError, NotImplementedError) as e:
        raise DataError(f"{path}: not a readable .mat file ({e})") from e
    if "im" not in mat:
        raise DataError(f"{path}: missing key 'im' (found: {', '.join(k for k in mat if not k.startswith('__'))})")
    im = mat["im"]
    if im.dtype != np.uint8 or im.ndim != 5 or im.shape[2:] != (3, *CARS_VIEWS) or im.shape[0] != im.shape[1]:
        raise DataError(f"{path}: key 'im' must be uint8 (H, H, 3, 24, 4), found {im.dtype} {im.shape}")
    return np.ascontiguousarray(im.transpose(3, 4, 0, 1, 2)).reshape(-1, *im.shape[:3])


def _load_cars(files: list[Path], image_size: int, positions: np.ndarray) -> torch.Tensor:
    """Kept Cars3D images (M, 3, S, S); reads only the model files that hold kept positions."""
    per_model = CARS_VIEWS[0] * CARS_VIEWS[1]
    parts = []
    for model in np.unique(positions // per_model):
        views = positions[positions // per_model == model] % per_model
        parts.append(resize_images(nhwc_to_tensor(_read_car(files[model])[views]), image_size))
    return torch.cat(parts)


def cars3d_source(path: str | None, image_size: int, split: str) -> Source:
    """Cars3D folder of .mat files (see module docstring); class = model."""
    require_single_split("cars3d", split)
    root = require_path("cars3d", path, "dir", "a folder of Cars3D *.mat files")
    files = sorted(p for p in root.iterdir() if p.suffix == ".mat" and p.is_file())
    if not files:
        raise DataError(f"data.path: {root} holds no *.mat files (dataset 'cars3d')")
    for file in files:
        check_car_file(file)
    azimuth, elevation = np.divmod(np.arange(CARS_VIEWS[0] * CARS_VIEWS[1]), CARS_VIEWS[1])
    model = np.repeat(np.arange(len(files)), len(azimuth))
    factors = np.stack([np.tile(elevation, len(files)), np.tile(azimuth, len(files)), model], 1)
    return Source(load=partial(_load_cars, files, image_size), factors=factors.astype(np.int64),
                  factor_names=("elevation", "azimuth", "model"),
                  factor_sizes=(CARS_VIEWS[1], CARS_VIEWS[0], len(files)), default_class="model",
                  files=lambda positions: [(p.name, p) for p in files])


def read_norb(path: Path) -> np.ndarray:
    """A NORB binary matrix file as a read-only memmap of its declared dtype and dims."""
    if not path.is_file():
        raise DataError(f"data.path: missing SmallNORB file {path} (gunzip the official .mat.gz)")
    header = np.fromfile(path, dtype="<i4", count=5)
    if len(header) < 5 or int(header[0]) not in NORB_MAGIC or not 1 <= header[1] <= 8:
        raise DataError(f"{path}: not a NORB binary matrix (magic {header[:1]}, ndim {header[1:2]})")
    ndim = int(header[1])
    dims = np.fromfile(path, dtype="<i4", count=max(3, ndim), offset=8)[:ndim]
    dtype = np.dtype(NORB_MAGIC[int(header[0])]).newbyteorder("<")
    offset = 8 + 4 * max(3, ndim)
    if path.stat().st_size != offset + int(np.prod(dims)) * dtype.itemsize:
        raise DataError(f"{path}: size {path.stat().st_size} bytes does not match the header "
                        f"(dims {dims.tolist()}, {dtype})")
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=tuple(int(d) for d in dims))


def _check_norb(dat: np.ndarray, cat: np.ndarray, info: np.ndarray, paths: dict[str, Path]) -> None:
    n = len(dat)
    checks = {"dat": (dat.dtype == np.uint8 and dat.ndim == 4 and dat.shape[1] == 2
                      and dat.shape[2] == dat.shape[3], "uint8 (N, 2, H, H)"),
              "cat": (cat.dtype == np.int32 and cat.shape == (n,), f"int32 ({n},)"),
              "info": (info.dtype == np.int32 and info.shape == (n, 4), f"int32 ({n}, 4)")}
    for kind, (ok, expected) in checks.items():
        if not ok:
            array = {"dat": dat, "cat": cat, "info": info}[kind]
            raise DataError(f"{paths[kind]}: expected {expected}, found {array.dtype} {array.shape}")


def _norb_factors(cat: np.ndarray, info: np.ndarray, path: Path) -> np.ndarray:
    """(N, 5) int64 factors from `cat` (N,) and `info` (N, 4); raw azimuth 0..34 step 2 -> /2."""
    factors = np.column_stack([cat, info[:, 0], info[:, 1], info[:, 2] // 2, info[:, 3]]).astype(np.int64)
    bad = (factors < 0) | (factors >= np.array(NORB_SIZES))  # (N, 5)
    bad[:, 3] |= info[:, 2] % 2 != 0  # raw azimuths are even
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataError(f"{path}: {NORB_FACTORS[col]} of row {row} is out of range "
                        f"(category 0..4, instance 0..9, elevation 0..8, azimuth 0..34 even, lighting 0..5)")
    return factors


def _load_norb(dat_path: Path, image_size: int, positions: np.ndarray) -> torch.Tensor:
    dat = read_norb(dat_path)  # (N, 2, H, H) memmap
    return resize_images(nhwc_to_tensor(np.asarray(dat[positions, 0])), image_size)


def smallnorb_source(path: str | None, image_size: int, split: str) -> Source:
    """SmallNORB official binary files (see module docstring); class = category."""
    root = require_path("smallnorb", path, "dir", "the folder of the official SmallNORB .mat files")
    require_train_or_test("smallnorb", split)
    name = "training" if split == "train" else "testing"
    paths = {kind: root / f"{NORB_PREFIX}-{name}-{kind}.mat" for kind in ("dat", "cat", "info")}
    dat, cat, info = (read_norb(paths[kind]) for kind in ("dat", "cat", "info"))
    _check_norb(dat, cat, info, paths)
    return Source(load=partial(_load_norb, paths["dat"], image_size),
                  factors=_norb_factors(np.asarray(cat), np.asarray(info), paths["info"]),
                  factor_names=NORB_FACTORS, factor_sizes=NORB_SIZES, default_class="category",
                  files=lambda positions: [(p.name, p) for p in paths.values()])
