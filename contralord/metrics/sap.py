"""SAP score (Kumar et al., 2018, Sec. 3), one of the disentanglement metrics of Sec. 4.2 / Table 2.

A port of google-research/disentanglement_lib's ``evaluation/metrics/sap_score.py``. The score matrix
``S`` is ``(D, F)``: for discrete factors ``S[i, j]`` is the test accuracy of a
``LinearSVC(C=0.01, class_weight="balanced")`` fitted on the single code column ``i`` of the train
split; for continuous factors it is the squared correlation of code ``i`` and factor ``j`` on the
train split (0 when the code's variance is at most 1e-12, so a constant code scores 0, exactly as
disentanglement_lib). SAP is the mean over factors of the gap between the two best codes.

One pinned detail: disentanglement_lib ran on scikit-learn < 1.3, whose ``LinearSVC`` default was
``dual=True``; scikit-learn >= 1.5 defaults to ``dual="auto"`` (the primal solver here). Both solve the
same strictly convex problem, but we pin ``dual=True`` to run the same solver, and pass a fixed
``random_state`` (liblinear's dual coordinate descent shuffles) so that a score is reproducible.
"""

from __future__ import annotations

import numpy as np
from sklearn.svm import LinearSVC

from contralord.metrics.validation import check_min_columns, check_split


def _discrete_score(code_train, y_train, code_test, y_test, random_state) -> float:
    """Test accuracy of a linear SVM on one code column (``(N,)`` and ``(M,)``)."""
    classifier = LinearSVC(C=0.01, class_weight="balanced", dual=True, random_state=random_state)
    classifier.fit(code_train[:, None], y_train)  # (N, 1)
    return float(np.mean(classifier.predict(code_test[:, None]) == y_test))


def _continuous_score(code: np.ndarray, y: np.ndarray) -> float:
    """Squared correlation ``cov^2 / (var_code * var_y)`` (ddof=1), 0 for a (near-)constant code."""
    cov = np.cov(code, y, ddof=1)  # (2, 2)
    if cov[0, 0] > 1e-12:
        return float(cov[0, 1] ** 2 / (cov[0, 0] * cov[1, 1]))
    return 0.0


def sap_score_matrix(
    codes_train, factors_train, codes_test, factors_test, continuous_factors: bool = False, random_state: int = 0
) -> np.ndarray:
    """The ``(D, F)`` predictability matrix of SAP (inputs already validated).

    Args:
        codes_train: ``(N, D)``.
        factors_train: ``(N, F)``.
        codes_test: ``(M, D)`` (unused when ``continuous_factors``, as in disentanglement_lib).
        factors_test: ``(M, F)`` (idem).
        continuous_factors: score by squared correlation instead of SVM accuracy.
        random_state: seed of each ``LinearSVC``.

    Returns:
        ``(D, F)`` scores.
    """
    d, f = codes_train.shape[1], factors_train.shape[1]
    score = np.zeros((d, f))  # (D, F)
    for i in range(d):
        for j in range(f):
            if continuous_factors:
                score[i, j] = _continuous_score(codes_train[:, i], factors_train[:, j])
            else:
                score[i, j] = _discrete_score(
                    codes_train[:, i], factors_train[:, j], codes_test[:, i], factors_test[:, j], random_state
                )
    return score


def compute_sap(
    codes_train,
    factors_train,
    codes_test,
    factors_test,
    continuous_factors: bool = False,
    *,
    random_state: int = 0,
) -> dict[str, float]:
    """Separated Attribute Predictability.

    Args:
        codes_train: ``(N, D)`` real codes, ``D >= 2``.
        factors_train: ``(N, F)`` integer class indices (or real values if ``continuous_factors``).
        codes_test: ``(M, D)``.
        factors_test: ``(M, F)``.
        continuous_factors: treat factors as continuous (squared correlation on the train split).
        random_state: seed of liblinear's coordinate descent (ours; disentanglement_lib left it unset).

    Returns:
        ``{"sap": mean_j (S_(1)j - S_(2)j)}``, the mean gap between the two best codes per factor.
    """
    names = ("codes_train", "factors_train", "codes_test", "factors_test")
    x_tr, y_tr, x_te, y_te = check_split(
        (codes_train, factors_train), (codes_test, factors_test), names, discrete=not continuous_factors
    )
    check_min_columns(x_tr, "codes_train", 2, "SAP is the gap between the two most predictive codes")
    score = sap_score_matrix(x_tr, y_tr, x_te, y_te, continuous_factors, random_state)  # (D, F)
    sorted_score = np.sort(score, axis=0)  # ascending over codes
    return {"sap": float(np.mean(sorted_score[-1, :] - sorted_score[-2, :]))}
