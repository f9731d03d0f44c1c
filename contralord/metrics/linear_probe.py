"""Linear classification on frozen features: the top-1 / top-5 protocol of Sec. 4.2 and Table 1.

Protocol (fixed, so that numbers are comparable between runs): features are standardised with a
``StandardScaler`` fitted on the train split only; a multinomial ``LogisticRegression`` (lbfgs,
``C=1.0``, ``max_iter=1000``, no tuning) is fitted on the standardised train features; top-k accuracy
on the test split ranks ``predict_proba`` columns, with ``k = min(5, number of train classes)`` (with
fewer than 5 classes "top-5" would otherwise be trivially 1). A test label unseen in training counts
as wrong at every k.

Why not MoCo's protocol (an SGD-trained linear layer on augmented images for 100 epochs)? That needs
the images and the backbone; this function sees only frozen features, for which an L2-regularised
convex fit is deterministic and converges to a unique optimum. ``C`` is a fixed documented value
rather than cross-validated, so that the probe cannot be tuned per table.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from contralord.metrics.validation import check_codes, check_factors


def _check_labels(labels, name: str, num_rows: int) -> np.ndarray:
    """Checks ``(N,)`` integer labels and returns them as a 1-D array."""
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array (N,); found shape {arr.shape}")
    return check_factors(arr[:, None], name, num_rows)[:, 0]


def topk_accuracy(proba: np.ndarray, classes: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows whose label is among the ``k`` most probable classes.

    Args:
        proba: ``(M, K)`` class probabilities, columns ordered as ``classes``.
        classes: ``(K,)`` class labels.
        labels: ``(M,)`` true labels.
        k: how many top classes count, ``1 <= k <= K``.

    Returns:
        The top-k accuracy.
    """
    top = classes[np.argsort(-proba, axis=1, kind="stable")[:, :k]]  # (M, k)
    return float(np.mean(np.any(top == labels[:, None], axis=1)))


def compute_linear_probe(
    train_features,
    train_labels,
    test_features,
    test_labels,
    *,
    C: float = 1.0,
    max_iter: int = 1000,
) -> dict[str, float]:
    """Top-1 / top-5 accuracy of a linear classifier on frozen features.

    Args:
        train_features: ``(N, D)`` frozen features.
        train_labels: ``(N,)`` integer labels with at least 2 classes.
        test_features: ``(M, D)``.
        test_labels: ``(M,)``.
        C: inverse L2 strength of the logistic regression (fixed by the protocol: 1.0).
        max_iter: lbfgs iterations.

    Returns:
        ``{"top1", "top5"}``; "top5" is top-``min(5, K)`` for ``K`` train classes.
    """
    x_tr = check_codes(train_features, "train_features")
    y_tr = _check_labels(train_labels, "train_labels", x_tr.shape[0])
    x_te = check_codes(test_features, "test_features")
    y_te = _check_labels(test_labels, "test_labels", x_te.shape[0])
    if x_te.shape[1] != x_tr.shape[1]:
        raise ValueError(f"test_features must have D={x_tr.shape[1]} columns; found shape {x_te.shape}")
    if np.unique(y_tr).size < 2:
        raise ValueError(f"train_labels must have at least 2 classes; found only {y_tr[0]!r}")
    scaler = StandardScaler().fit(x_tr)
    model = LogisticRegression(C=C, max_iter=max_iter, solver="lbfgs").fit(scaler.transform(x_tr), y_tr)
    proba = model.predict_proba(scaler.transform(x_te))  # (M, K)
    k = min(5, model.classes_.size)
    return {
        "top1": topk_accuracy(proba, model.classes_, y_te, 1),
        "top5": topk_accuracy(proba, model.classes_, y_te, k),
    }
