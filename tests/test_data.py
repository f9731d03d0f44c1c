"""Tests of the built-in datasets (procedural dSprites/Shapes3D, digits) and of build_dataset."""

import pickle
import time

import numpy as np
import pytest
import torch

from contralord.data import DATASET_NAMES, DataError, ImageFactorData, LazyImages, build_dataset
from contralord.data.dsprites import DSPRITES_FACTOR_SIZES, render_dsprites
from contralord.data.grid import grid_factors, grid_index
from contralord.data.shapes3d import SHAPES3D_FACTOR_SIZES, render_shapes3d

GRIDS = {"dsprites": (render_dsprites, DSPRITES_FACTOR_SIZES),
         "shapes3d": (render_shapes3d, SHAPES3D_FACTOR_SIZES)}


def _render(name: str, factors: np.ndarray, image_size: int) -> torch.Tensor:
    render, sizes = GRIDS[name]
    return render(grid_index(np.asarray(factors), sizes), image_size)


@pytest.mark.parametrize("name", list(GRIDS))
def test_grid_index__round_trips(name):
    sizes = GRIDS[name][1]
    n = int(np.prod(sizes))
    index = np.concatenate([[0, 1, n - 1], np.random.default_rng(0).integers(0, n, 500)])
    factors = grid_factors(index, sizes)  # (M, F)
    np.testing.assert_array_equal(grid_index(factors, sizes), index)
    assert (factors >= 0).all() and (factors < np.array(sizes)).all()
    np.testing.assert_array_equal(grid_factors([n - 1], sizes)[0], np.array(sizes) - 1)


@pytest.mark.parametrize("name", list(GRIDS))
def test_build_dataset__seed_fixes_subset_and_pixels(name):
    a = build_dataset(name, None, 32, 50, seed=3)
    b = build_dataset(name, None, 32, 50, seed=3)
    c = build_dataset(name, None, 32, 50, seed=4)
    torch.testing.assert_close(a.factors, b.factors, rtol=0, atol=0)
    torch.testing.assert_close(a.images, b.images, rtol=0, atol=0)
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert not torch.equal(a.factors, c.factors)
    # the images show the factors they are labelled with, in the real datasets' index order
    torch.testing.assert_close(a.images, _render(name, a.factors.numpy(), 32), rtol=0, atol=0)
    sizes = GRIDS[name][1]
    ids = grid_index(a.factors.numpy(), sizes)
    assert (np.diff(ids) > 0).all()  # sorted, without repeats


def _changed(name: str, f: int, value: int, image_size: int) -> int:
    """Another value of factor f: the next one at 64 px; a far one at 32 px for dSprites, where a
    one-step change can be sub-pixel (about 1% of dSprites pairs at 32 px; none at 64 px)."""
    size = GRIDS[name][1][f]
    if name == "dsprites" and image_size < 64:
        step = 3 if f == 2 else max(1, size // 2)  # orientation: +27 deg, off every symmetry
        return (value + step) % size
    return (value + 1) % size


@pytest.mark.parametrize("image_size", [32, 64])
@pytest.mark.parametrize("name", list(GRIDS))
def test_render__each_factor_changes_pixels(name, image_size):
    sizes = GRIDS[name][1]
    rng = np.random.default_rng(image_size)
    base = np.stack([rng.integers(0, s, 6) for s in sizes], 1)  # (6, F) random base points
    variants = [base]
    for f in range(len(sizes)):
        other = base.copy()
        other[:, f] = [_changed(name, f, v, image_size) for v in base[:, f]]
        variants.append(other)
    images = _render(name, np.concatenate(variants), image_size).view(len(variants), len(base), -1)
    for f in range(len(sizes)):
        differs = (images[f + 1] != images[0]).any(-1)  # (6,)
        assert differs.all(), f"factor {f} left the pixels unchanged at {base[~differs.numpy()]}"
    again = _render(name, base[::-1], image_size).view(len(base), -1).flip(0)  # other batch order
    torch.testing.assert_close(again, images[0], rtol=0, atol=0)


def _counts(factors: list[tuple[int, ...]]) -> list[int]:
    return (_render("dsprites", np.array(factors), 64) > 0).sum((1, 2, 3)).tolist()


def test_dsprites__shapes_differ_and_scale_grows_area():
    images = _render("dsprites", np.array([(0, 5, 0, 16, 16)]), 64)
    assert set(images.unique().tolist()) == {0, 255}
    square, ellipse, heart = _counts([(k, 3, 7, 16, 16) for k in range(3)])
    assert len({square, ellipse, heart}) == 3 and min(square, ellipse, heart) > 0
    rng = np.random.default_rng(1)
    for shape, orient, x, y in zip(range(3), rng.integers(0, 40, 3), rng.integers(0, 32, 3),
                                   rng.integers(0, 32, 3), strict=True):
        areas = _counts([(shape, s, orient, x, y) for s in range(6)])
        assert (np.diff(areas) > 0).all(), areas


def test_dsprites__orientation_repeats_with_shape_symmetry():
    """As in the real dataset: the square repeats after 90 degrees, the ellipse after 180."""
    a, b = _render("dsprites", np.array([(0, 4, 3, 10, 20), (0, 4, 13, 10, 20)]), 64)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    a, b, c = _render("dsprites", np.array([(1, 4, 3, 10, 20), (1, 4, 23, 10, 20), (1, 4, 13, 10, 20)]), 64)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)


def test_build_dataset__full_grid_stays_lazy():
    start = time.perf_counter()
    data = build_dataset("dsprites", None, 64, 0, seed=0)
    assert time.perf_counter() - start < 5.0
    assert isinstance(data.images, LazyImages) and len(data) == 737280
    assert data.images.shape == (737280, 1, 64, 64) and data.channels == 1 and data.image_size == 64
    idx = torch.tensor([0, 737279, 5])
    batch = data.images[idx]
    assert batch.dtype == torch.uint8 and batch.shape == (3, 1, 64, 64)
    torch.testing.assert_close(batch, _render("dsprites", data.factors[idx].numpy(), 64), rtol=0, atol=0)
    torch.testing.assert_close(data.images[5], batch[2], rtol=0, atol=0)
    torch.testing.assert_close(data.images[0:2], data.images[torch.tensor([0, 1])], rtol=0, atol=0)
    copy = pickle.loads(pickle.dumps(data.images))  # DataLoader workers receive a pickled copy
    torch.testing.assert_close(copy[idx], batch, rtol=0, atol=0)
    subset = build_dataset("dsprites", None, 64, 5000, seed=0)
    assert isinstance(subset.images, torch.Tensor) and subset.images.shape == (5000, 1, 64, 64)
    large = build_dataset("shapes3d", None, 64, 30000, seed=0)  # 368 MB > core.MATERIALISE_BYTES
    assert isinstance(large.images, LazyImages) and large.images.shape == (30000, 3, 64, 64)


def test_build_dataset__factor_filter_then_size():
    keep = {"shape": [2], "posX": [0, 1, 2, 3]}
    full = build_dataset("dsprites", None, 32, 0, seed=0, factor_filter=keep)
    assert len(full) == 1 * 6 * 40 * 4 * 32
    data = build_dataset("dsprites", None, 32, 100, seed=5, factor_filter=keep)
    assert len(data) == 100 and (data.factors[:, 0] == 2).all() and (data.factors[:, 3] < 4).all()
    torch.testing.assert_close(data.classes, data.factors[:, 0], rtol=0, atol=0)
    assert data.num_classes == 3 and data.factor_sizes == DSPRITES_FACTOR_SIZES
    by_scale = build_dataset("shapes3d", None, 16, 20, seed=0, class_factor="scale")
    torch.testing.assert_close(by_scale.classes, by_scale.factors[:, 3], rtol=0, atol=0)
    assert by_scale.num_classes == 8 and by_scale.images.shape == (20, 3, 16, 16)
    by_index = build_dataset("shapes3d", None, 16, 20, seed=0, class_factor="3")
    assert torch.equal(by_index.classes, by_scale.classes)


def test_build_dataset__fingerprint_tracks_content_and_subset():
    base = dict(name="shapes3d", path=None, image_size=16, size=10, seed=0)
    prints = {build_dataset(**base).fingerprint,
              build_dataset(**{**base, "image_size": 32}).fingerprint,
              build_dataset(**{**base, "size": 11}).fingerprint,
              build_dataset(**base, factor_filter={"shape": [0]}).fingerprint,
              build_dataset(**base, class_factor="scale").fingerprint,
              build_dataset(**{**base, "name": "dsprites"}).fingerprint}
    assert len(prints) == 6 and all(len(p) == 64 for p in prints)
    assert build_dataset(**base).fingerprint in prints


def test_digits__real_bundled_images():
    from sklearn.datasets import load_digits

    data = build_dataset("digits", None, 8, 0, seed=0)
    bunch = load_digits()
    assert data.images.shape == (1797, 1, 8, 8) and data.factors is None and data.factor_names == ()
    np.testing.assert_array_equal(data.images[:, 0].numpy(), np.rint(bunch.images * 255 / 16))
    np.testing.assert_array_equal(data.classes.numpy(), bunch.target)
    small = build_dataset("digits", None, 32, 64, seed=1)
    assert small.images.shape == (64, 1, 32, 32) and small.num_classes == 10
    assert small.images.dtype == torch.uint8 and int(small.images.max()) > 200


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="mnist"), r"data\.name: unknown dataset 'mnist'; valid: dsprites, shapes3d"),
    (dict(path="/data/dsprites.npz"), r"data\.path: .*built in.*use 'dsprites_npz'"),
    (dict(size=737281), r"data\.size: 737281 images requested but only 737280 remain"),
    (dict(size=-1), r"data\.size: expected an int >= 0"),
    (dict(image_size=12), r"data\.image_size: the procedural 'dsprites' renders at >= 16"),
    (dict(image_size=4), r"data\.image_size: expected an int in \[8, 1024\]"),
    (dict(class_factor="colour"), r"data\.class_factor: unknown factor 'colour'.*valid: shape"),
    (dict(class_factor="7"), r"data\.class_factor: unknown factor '7'"),
    (dict(factor_filter={"colour": [0]}), r"data\.factor_filter: unknown factor 'colour'"),
    (dict(factor_filter={"shape": [3]}), r"data\.factor_filter: values \[3\] of factor 'shape'"),
    (dict(factor_filter={"shape": []}), r"data\.factor_filter: .* leaves 0 of 737280 images"),
    (dict(split="test"), r"data\.split: dataset 'dsprites' has a single split"),
    (dict(name="digits", class_factor="shape"), r"data\.class_factor: dataset 'digits' has no factors"),
    (dict(name="digits", factor_filter={"shape": [0]}), r"data\.factor_filter: dataset 'digits' has no"),
    (dict(name="dsprites_npz"), r"data\.path: dataset 'dsprites_npz' needs a path"),
    (dict(name="shapes3d_h5", path="/nonexistent/3dshapes.h5"),
     r"data\.path: /nonexistent/3dshapes\.h5 does not exist"),
])
def test_build_dataset__bad_request_raises(kwargs, message):
    args = dict(name="dsprites", path=None, image_size=32, size=0, seed=0)
    with pytest.raises(DataError, match=message):
        build_dataset(**{**args, **kwargs})


def test_image_factor_data__checks_fields():
    images = torch.zeros((4, 1, 8, 8), dtype=torch.uint8)
    classes = torch.tensor([0, 1, 0, 1])
    factors = torch.tensor([[0, 1], [1, 0], [0, 0], [1, 1]])
    data = ImageFactorData("toy", images, classes, factors, ("a", "b"), 2, "0" * 64)
    assert data.factor_sizes == (2, 2) and len(data) == 4 and data.channels == 1
    with pytest.raises(DataError, match="factor_names: expected 2 names, found 1"):
        ImageFactorData("toy", images, classes, factors, ("a",), 2, "0" * 64)
    with pytest.raises(DataError, match=r"classes: values must lie in \[0, num_classes=1\)"):
        ImageFactorData("toy", images, classes, None, (), 1, "0" * 64)
    assert set(DATASET_NAMES) >= {"dsprites", "factors_file", "cifar100"} and len(DATASET_NAMES) == 11
