"""`build_dataset`: one entry point from the data config to an `ImageFactorData`.

ContraLORD (Sec. 4.1) trains and evaluates on synthetic factor datasets (dSprites, Shapes3D, Cars3D,
SmallNORB) and natural images (CIFAR, ImageNet-100, CelebA, AFHQ). Each name below maps to one
loader; `source.select` then applies `class_factor`, `factor_filter`, `size` and `seed` the same
way for all of them. The file formats are specified in `formats.py`, `formats_3d.py` and
`formats_photos.py`; the built-in ones in `builtin.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial

from contralord.data import builtin, formats, formats_3d, formats_photos
from contralord.data.arrays import DEFAULT_MAX_ARRAY_BYTES, array_cap
from contralord.data.core import DataError, ImageFactorData
from contralord.data.source import Source, select

MAX_IMAGE_SIZE = 1024
MIN_IMAGE_SIZE = 8

_LOADERS: dict[str, Callable[[str | None, int, str], Source]] = {
    "dsprites": builtin.dsprites_source,
    "shapes3d": builtin.shapes3d_source,
    "digits": builtin.digits_source,
    "dsprites_npz": formats.dsprites_npz_source,
    "shapes3d_h5": formats.shapes3d_h5_source,
    "cars3d": formats_3d.cars3d_source,
    "smallnorb": formats_3d.smallnorb_source,
    "cifar10": partial(formats_photos.cifar_source, "cifar10"),
    "cifar100": partial(formats_photos.cifar_source, "cifar100"),
    "image_folder": formats_photos.image_folder_source,
    "factors_file": formats.factors_file_source,
}
DATASET_NAMES = tuple(_LOADERS)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_request(name: str, image_size: int, size: int, seed: int) -> None:
    if name not in _LOADERS:
        raise DataError(f"data.name: unknown dataset {name!r}; valid: {', '.join(DATASET_NAMES)}")
    if not _is_int(image_size) or not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE:
        raise DataError(f"data.image_size: expected an int in [{MIN_IMAGE_SIZE}, {MAX_IMAGE_SIZE}], "
                        f"got {image_size!r}")
    if not _is_int(size) or size < 0:
        raise DataError(f"data.size: expected an int >= 0 (0 = all images), got {size!r}")
    if not _is_int(seed) or seed < 0:
        raise DataError(f"run.seed: expected an int >= 0, got {seed!r}")


def build_dataset(name: str, path: str | None, image_size: int, size: int, seed: int,
                  class_factor: str | None = None,
                  factor_filter: Mapping[str, Sequence[int]] | None = None,
                  split: str = "train", exclude=None, at_most: bool = False,
                  max_array_bytes: int = DEFAULT_MAX_ARRAY_BYTES) -> ImageFactorData:
    """Builds a dataset as uint8 images (N, C, S, S), classes (N,) and optional factors (N, F).

    Args:
        name: one of DATASET_NAMES.
        path: file or folder of the real formats; None for the built-in ones.
        image_size: S, the side of the returned square images.
        size: number of images to keep, 0 = all. Drawn after the filter with
            `np.random.default_rng(seed).choice(positions, size, replace=False)`, then sorted.
        seed: seed of that draw.
        class_factor: factor used as the class (name, or index as a string); None = the dataset's
            default (dSprites/Shapes3D: shape, Cars3D: model, SmallNORB: category, factors_file:
            the first). Must be None for datasets without factors.
        factor_filter: factor name -> allowed value indices; images outside are dropped.
        split: "train" or "test" (only CIFAR, SmallNORB and image folders have a test split).
        exclude: source positions to leave out (e.g. ``train.positions`` for a held-out set).
        at_most: when fewer than ``size`` images remain, keep them all instead of raising.
        max_array_bytes: refuse any array a data file declares larger than this, before reading it.

    Returns:
        The kept dataset; `images` is a LazyImages only for large procedural subsets.

    Raises:
        DataError: naming the config key (data.name, data.path, data.image_size, data.size,
            run.seed, data.split, data.class_factor, data.factor_filter) or the file and key.
    """
    _check_request(name, image_size, size, seed)
    with array_cap(max_array_bytes):
        source = _LOADERS[name](path, image_size, split)
        return select(source, name, image_size=image_size, size=size, seed=seed, split=split,
                      class_factor=class_factor, factor_filter=factor_filter, exclude=exclude, at_most=at_most)
