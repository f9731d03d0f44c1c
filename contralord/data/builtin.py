"""Datasets that need no files: procedural dSprites and Shapes3D grids, and scikit-learn's digits.

They let every part of ContraLORD (Secs. 3-4) run and be tested offline. `dsprites` and `shapes3d`
hold the factor grids of Sec. 4.1 (see `dsprites.py` and `shapes3d.py` for the rendering); `digits`
is scikit-learn's bundled `load_digits` (1797 real 8x8 handwritten digits, values 0..16, class =
digit, no factors), scaled to 0..255 and bilinearly resized to the requested size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import partial

import numpy as np
import torch

from contralord.data.core import DataError, LazyImages, materialise_if_small, resize_images
from contralord.data.dsprites import DSPRITES_FACTOR_NAMES, DSPRITES_FACTOR_SIZES, render_dsprites
from contralord.data.grid import grid_factors
from contralord.data.shapes3d import SHAPES3D_FACTOR_NAMES, SHAPES3D_FACTOR_SIZES, render_shapes3d
from contralord.data.source import Source, require_single_split

MIN_RENDER_SIZE = 16  # below this the procedural objects cover only a handful of pixels
RENDER_VERSION = 1  # bump when a renderer's pixels change, so old fingerprints stop matching
_FILE_FORMATS = {"dsprites": "dsprites_npz", "shapes3d": "shapes3d_h5"}


def _check_builtin(name: str, path: str | None, split: str) -> None:
    if path:
        hint = f"; for the official file use '{_FILE_FORMATS[name]}'" if name in _FILE_FORMATS else ""
        raise DataError(f"data.path: dataset '{name}' is built in and reads no file; got {path!r}{hint}")
    require_single_split(name, split)


def _load_grid(positions: np.ndarray, render: Callable[[np.ndarray], torch.Tensor], channels: int,
               image_size: int) -> torch.Tensor | LazyImages:
    """Kept grid images: rendered now when small (core.MATERIALISE_BYTES), else lazily."""
    return materialise_if_small(LazyImages(render, positions, channels, image_size))


def _grid_source(name: str, render: Callable[..., torch.Tensor], names: tuple[str, ...],
                 sizes: tuple[int, ...], channels: int, image_size: int) -> Source:
    if image_size < MIN_RENDER_SIZE:
        raise DataError(f"data.image_size: the procedural '{name}' renders at >= {MIN_RENDER_SIZE} "
                        f"pixels; got {image_size}")
    render = partial(render, image_size=image_size)
    return Source(
        load=partial(_load_grid, render=render, channels=channels, image_size=image_size),
        factors=grid_factors(np.arange(int(np.prod(sizes))), sizes), factor_names=names,
        factor_sizes=sizes, default_class="shape",
        meta={"renderer": render.func.__name__, "version": RENDER_VERSION})


def dsprites_source(path: str | None, image_size: int, split: str) -> Source:
    """The 737280-image dSprites grid, rendered procedurally (1 channel, 0/255; class = shape)."""
    _check_builtin("dsprites", path, split)
    return _grid_source("dsprites", render_dsprites, DSPRITES_FACTOR_NAMES, DSPRITES_FACTOR_SIZES,
                        1, image_size)


def shapes3d_source(path: str | None, image_size: int, split: str) -> Source:
    """The 480000-image Shapes3D grid, rendered procedurally (RGB stand-in; class = shape)."""
    _check_builtin("shapes3d", path, split)
    return _grid_source("shapes3d", render_shapes3d, SHAPES3D_FACTOR_NAMES, SHAPES3D_FACTOR_SIZES,
                        3, image_size)


def digits_source(path: str | None, image_size: int, split: str) -> Source:
    """scikit-learn's bundled 8x8 digits as uint8 (N, 1, S, S); class = digit, no factors."""
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

    _check_builtin("digits", path, split)
    bunch = load_digits()
    pixels = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)  # (1797, 8, 8)
    images = torch.from_numpy(pixels)[:, None]  # (1797, 1, 8, 8)
    return Source(
        load=lambda positions: resize_images(images[torch.from_numpy(positions)], image_size),
        labels=bunch.target.astype(np.int64), num_labels=10,
        meta={"pixels_sha256": hashlib.sha256(pixels.tobytes()).hexdigest()})
