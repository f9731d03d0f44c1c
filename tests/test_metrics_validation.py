"""Every bad input raises a ValueError naming the argument; constant code columns are valid (Sec. 4.2)."""

import numpy as np
import pytest
import torch

from contralord.metrics import (
    compute_dci,
    compute_dci_fast,
    compute_fid,
    compute_linear_probe,
    compute_lpips,
    compute_mig,
    compute_sap,
    compute_smoothness,
    frechet_distance,
)

RNG = np.random.default_rng(0)
Y = np.stack([np.arange(40) % 2, np.arange(40) % 4], axis=1)  # (40, 2) factors with 2 and 4 classes
X = Y + 0.1 * RNG.normal(size=(40, 2))  # (40, 2) codes
X3 = np.hstack([X, RNG.normal(size=(40, 1))])


def _with(arr, index, value):
    out = np.array(arr, dtype=float)
    out[index] = value
    return out


SPLIT_METRICS = [compute_sap, compute_dci, compute_dci_fast]

BAD_SPLITS = [  # (codes_train, factors_train, codes_test, factors_test, message)
    (X[:30], Y, X, Y, "factors_train must have one row per code: expected N=30"),
    (_with(X, (3, 1), np.nan), Y, X, Y, "codes_train must be finite; found 1 NaN or inf"),
    (X, Y, _with(X, (0, 0), np.inf), Y, "codes_test must be finite"),
    (X, Y.astype(float), X, Y, "factors_train must hold integer class indices .* found dtype float64"),
    (X, np.stack([Y[:, 0], np.zeros(40, int)], 1), X, Y, r"factors_train\[:, 1\] must take at least 2 distinct"),
    (X, Y, X[:3], Y[:3], "codes_test must have at least as many samples as .* classes of a factor \\(4\\); found N=3"),
    (X, Y, X3, Y, "codes_test must have D=2 columns like codes_train; found shape \\(40, 3\\)"),
    (X, Y, X, Y[:, :1], "factors_test must have F=2 columns"),
    (X[:, 0], Y, X, Y, r"codes_train must be a 2-D array \(N, D\); found shape \(40,\)"),
    (X.astype(complex), Y, X, Y, "codes_train must have a real numeric dtype; found complex128"),
]


@pytest.mark.parametrize("metric", SPLIT_METRICS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("args", BAD_SPLITS, ids=lambda a: a[-1][:30])
def test_split_metrics__bad_input_raises_with_argument_name(metric, args):
    *arrays, message = args
    with pytest.raises(ValueError, match=message):
        metric(*arrays)


@pytest.mark.parametrize(
    "codes, factors, message",
    [
        (X[:, :1], Y, r"codes must have at least 2 columns \(MIG is the gap"),
        (X[:39], Y, "factors must have one row per code: expected N=39"),
        (_with(X, (0, 0), -np.inf), Y, "codes must be finite"),
        (X, Y + 0.5, "factors must hold integer class indices"),
        (X, np.ones((40, 2), int), r"factors\[:, 0\] must take at least 2 distinct values"),
    ],
)
def test_mig__bad_input(codes, factors, message):
    with pytest.raises(ValueError, match=message):
        compute_mig(codes, factors)


def test_sap_and_dci__too_few_columns():
    with pytest.raises(ValueError, match=r"codes_train must have at least 2 columns \(SAP"):
        compute_sap(X[:, :1], Y, X[:, :1], Y)
    with pytest.raises(ValueError, match=r"factors_train must have at least 2 columns \(disentanglement"):
        compute_dci(X, Y[:, :1], X, Y[:, :1])
    with pytest.raises(ValueError, match="n_jobs must be a positive integer"):
        compute_dci(X, Y, X, Y, n_jobs=0)
    with pytest.raises(ValueError, match="random_state must be an int or None"):
        compute_dci(X, Y, X, Y, random_state=np.random.RandomState(0))


def test_sap__continuous_factors_accept_floats_but_not_nan():
    assert 0.0 <= compute_sap(X, Y + 0.5, X, Y + 0.5, continuous_factors=True)["sap"] <= 1.0
    with pytest.raises(ValueError, match="factors_train must be finite real numbers"):
        compute_sap(X, _with(Y, (0, 0), np.nan), X, Y, continuous_factors=True)


def test_constant_code_columns_are_valid_everywhere():
    codes = np.hstack([X, np.full((40, 1), 3.0)])
    assert 0.0 <= compute_mig(codes, Y)["mig"] <= 1.0
    assert 0.0 <= compute_sap(codes, Y, codes, Y)["sap"] <= 1.0
    assert 0.0 <= compute_sap(codes, Y, codes, Y, continuous_factors=True)["sap"] <= 1.0
    assert 0.0 <= compute_dci(codes, Y, codes, Y, random_state=0, n_jobs=1)["completeness"] <= 1.0
    assert compute_mig(np.zeros((40, 2)), Y)["mig"] == 0.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"content": X[:1]}, r"content must have at least 2 rows; found shape \(1, 2\)"),
        ({"residual": _with(X, (1, 1), np.nan)}, "residual must be finite"),
        ({"t": 0.0}, "t must be a positive finite number; found 0.0"),
        ({"chunk_size": 0}, "chunk_size must be a positive integer; found 0"),
    ],
)
def test_smoothness__bad_input(kwargs, message):
    args = {"content": X, "residual": X, **kwargs}
    with pytest.raises(ValueError, match=message):
        compute_smoothness(**args)


def test_linear_probe_fid_lpips__bad_input():
    labels = Y[:, 1]
    with pytest.raises(ValueError, match=r"train_labels must be a 1-D array \(N,\); found shape \(40, 2\)"):
        compute_linear_probe(X, Y, X, labels)
    with pytest.raises(ValueError, match="test_features must have D=2 columns"):
        compute_linear_probe(X, labels, X3, labels)
    with pytest.raises(ValueError, match="train_labels must have at least 2 classes"):
        compute_linear_probe(X, np.zeros(40, int), X, labels)
    with pytest.raises(ValueError, match="features_b must have K=2 columns like features_a"):
        compute_fid(X, X3)
    with pytest.raises(ValueError, match="features_a must have at least 2 rows"):
        compute_fid(X[:1], X)
    with pytest.raises(ValueError, match=r"sigma2 must have shape \(2, 2\)"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.eye(3))
    img = torch.rand(2, 3, 16, 16)
    with pytest.raises(ValueError, match=r"images_b must have the shape of images_a"):
        compute_lpips(img, img[:1], random_backbone=True)
    with pytest.raises(ValueError, match=r"images_a must lie in \[0, 1\]"):
        compute_lpips(img * 2, img, random_backbone=True)
    with pytest.raises(ValueError, match=r"images_a must have shape \(N, C, H, W\) with C in \{1, 3\}"):
        compute_lpips(img[:, :2], img[:, :2], random_backbone=True)
    with pytest.raises(ValueError, match="net must be one of"):
        compute_lpips(img, img, net="resnet", random_backbone=True)
