"""Smoothness, Eq. 7 (Sec. 3.4): closed forms and a brute-force pairwise reference."""

import numpy as np
import pytest
from scipy.spatial.distance import pdist

from contralord.metrics import compute_smoothness
from contralord.metrics.smoothness import mean_pair_potential


def _brute_force(x, t):
    return float(np.mean(np.exp(-t * pdist(x, "sqeuclidean"))))  # over pairs i < j


def test_smoothness__three_points_closed_form():
    content = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])  # squared distances 2, 4, 2
    residual = np.array([[0.0, 2.0], [0.0, 3.0]])  # same direction: distance 0 once normalised
    s = compute_smoothness(content, residual, t=2.0)
    expected_content = (2 * np.exp(-4.0) + np.exp(-8.0)) / 3
    assert s["smoothness_content"] == pytest.approx(expected_content, rel=1e-12)
    assert s["smoothness_residual"] == pytest.approx(1.0, rel=1e-12)
    assert s["smoothness"] == pytest.approx(expected_content + 1.0, rel=1e-12)


@pytest.mark.parametrize("n, chunk_size", [(2, 4096), (37, 5), (37, 1), (64, 64), (101, 16)])
@pytest.mark.parametrize("t", [0.5, 2.0])
def test_mean_pair_potential__equals_brute_force(n, chunk_size, t):
    x = np.random.default_rng(n).normal(size=(n, 6)) * 0.4
    assert mean_pair_potential(x, t, chunk_size) == pytest.approx(_brute_force(x, t), rel=1e-12)


def test_smoothness__normalize_switch():
    rng = np.random.default_rng(1)
    content, residual = rng.normal(size=(50, 8)), rng.normal(size=(40, 4))
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)
    on = compute_smoothness(content, residual, chunk_size=7)
    assert on["smoothness_content"] == pytest.approx(_brute_force(unit(content), 2.0), rel=1e-12)
    assert on["smoothness_residual"] == pytest.approx(_brute_force(unit(residual), 2.0), rel=1e-12)
    scaled = compute_smoothness(content * 5.0, residual * 0.1)  # row scale is irrelevant on the sphere
    assert scaled["smoothness"] == pytest.approx(on["smoothness"], rel=1e-12)
    off = compute_smoothness(content, residual, normalize=False)
    assert off["smoothness_content"] == pytest.approx(_brute_force(content, 2.0), rel=1e-12)


def test_smoothness__float32_input_accumulates_in_float64():
    x = np.random.default_rng(2).normal(size=(300, 16)).astype(np.float32)
    s = compute_smoothness(x, x, chunk_size=64)
    ref = _brute_force(x.astype(np.float64) / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True), 2.0)
    assert s["smoothness_content"] == pytest.approx(ref, rel=1e-12)


def test_smoothness__identical_points_give_one_and_bounds():
    s = compute_smoothness(np.ones((5, 3)), np.random.default_rng(3).normal(size=(20, 3)))
    assert s["smoothness_content"] == pytest.approx(1.0)
    assert 0.0 < s["smoothness_residual"] < 1.0


def _circle(n: int, radius: float = 1.0, offset=(0.0, 0.0)) -> np.ndarray:
    angles = 2 * np.pi * np.arange(n) / n
    return np.stack([radius * np.cos(angles) + offset[0], radius * np.sin(angles) + offset[1]], 1)


def test_uniformity__points_spread_evenly_on_a_circle_is_the_closed_form():
    """n points evenly on the unit circle: the mean over pairs of exp(-t (2 - 2 cos(2 pi k / n))), k the gap, which
    tends to exp(-2t) I_0(2t) (Wang & Isola's uniform distribution on S^1)."""
    from scipy.special import i0

    from contralord.metrics import uniformity

    n, t = 400, 2.0
    gaps = np.arange(1, n)
    exact = float(np.sum((n - gaps) * np.exp(-t * (2 - 2 * np.cos(2 * np.pi * gaps / n)))) / (n * (n - 1) / 2))
    assert uniformity(_circle(n), "c", t) == pytest.approx(np.log(exact), abs=1e-12)
    assert uniformity(_circle(4000), "c", t) == pytest.approx(np.log(np.exp(-2 * t) * i0(2 * t)), abs=1e-3)


def test_uniformity__all_points_equal_is_0_the_most_concentrated():
    from contralord.metrics import uniformity

    same = np.tile([[0.3, -1.2, 2.0]], (50, 1))
    assert uniformity(same, "c", centre=False) == pytest.approx(0.0, abs=1e-12)
    assert uniformity(same, "c") == pytest.approx(0.0, abs=1e-12)  # centred: every row 0, still one point
    assert uniformity(_circle(100), "c") < -1.5


def test_centred_smoothness__the_codes_offset_from_the_origin_change_nothing():
    """Eq. 7 read literally depends on where the codes sit: a circle of radius 0.1 far from the origin looks
    collapsed (every row normalises to nearly one point); centred, it is the circle at the origin."""
    far = _circle(200, radius=0.1, offset=(5.0, 5.0))
    literal = compute_smoothness(far, far)["smoothness_content"]
    centred = compute_smoothness(far, far, centre=True)["smoothness_content"]
    at_origin = compute_smoothness(_circle(200), _circle(200))["smoothness_content"]
    assert literal > 0.99 and centred == pytest.approx(at_origin, rel=1e-9)
