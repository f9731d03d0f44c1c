"""Mutual Information Gap (Chen et al., 2018), one of the disentanglement metrics of Sec. 4.2 / Table 2.

A line-by-line port of google-research/disentanglement_lib (``evaluation/metrics/mig.py`` and
``utils.py``), so that our MIG can be compared with published numbers: each code column is
discretised by ``_histogram_discretize`` (``np.histogram`` equal-width edges, then ``np.digitize``
with ``edges[:-1]``: values land in bins 1..num_bins), mutual information and factor entropies come
from ``sklearn.metrics.mutual_info_score`` (natural log), and the score is the mean over factors of
the gap between the two most informative codes, divided by the factor's entropy.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import mutual_info_score

from contralord.metrics.validation import check_labelled, check_min_columns


def histogram_discretize(codes: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """Discretises each code column into ``num_bins`` equal-width bins (disentanglement_lib's rule).

    Edges are computed in the codes' own dtype, as ``np.histogram`` does; a constant column gets
    edges around its value and lands in a single bin (mutual information 0, no error).

    Args:
        codes: ``(N, D)`` real codes.
        num_bins: number of equal-width bins per column.

    Returns:
        ``(N, D)`` int64 bin indices in ``1..num_bins``.
    """
    out = np.zeros(codes.shape, dtype=np.int64)  # (N, D)
    for i in range(codes.shape[1]):
        edges = np.histogram(codes[:, i], num_bins)[1]  # (num_bins + 1,)
        out[:, i] = np.digitize(codes[:, i], edges[:-1])
    return out


def mutual_info_matrix(discrete_codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Mutual information (nats) between every code column and every factor.

    Args:
        discrete_codes: ``(N, D)`` discrete codes.
        factors: ``(N, F)`` class indices.

    Returns:
        ``(D, F)`` matrix ``m[i, j] = I(code_i; factor_j)``.
    """
    d, f = discrete_codes.shape[1], factors.shape[1]
    m = np.zeros((d, f))  # (D, F)
    for i in range(d):
        for j in range(f):
            m[i, j] = mutual_info_score(factors[:, j], discrete_codes[:, i])
    return m


def factor_entropy(factors: np.ndarray) -> np.ndarray:
    """Entropy (nats) of each factor, computed as disentanglement_lib does: ``I(y; y)``.

    Args:
        factors: ``(N, F)`` class indices.

    Returns:
        ``(F,)`` entropies.
    """
    return np.array([mutual_info_score(factors[:, j], factors[:, j]) for j in range(factors.shape[1])])


def compute_mig(codes, factors, num_bins: int = 20) -> dict[str, float]:
    """Mutual Information Gap.

    Args:
        codes: ``(N, D)`` real codes, ``D >= 2``.
        factors: ``(N, F)`` integer class indices; every factor takes at least 2 values.
        num_bins: equal-width histogram bins per code (disentanglement_lib's gin default is 20).

    Returns:
        ``{"mig": mean_j (I_(1)j - I_(2)j) / H(y_j)}`` where ``I_(1)j >= I_(2)j`` are the two largest
        mutual informations of factor ``j`` with a code. In ``[0, 1]``.
    """
    codes, factors = check_labelled(codes, factors, "codes", "factors")
    check_min_columns(codes, "codes", 2, "MIG is the gap between the two most informative codes")
    if int(num_bins) != num_bins or num_bins < 1:
        raise ValueError(f"num_bins must be a positive integer; found {num_bins!r}")
    m = mutual_info_matrix(histogram_discretize(codes, int(num_bins)), factors)  # (D, F)
    entropy = factor_entropy(factors)  # (F,)
    sorted_m = np.sort(m, axis=0)[::-1]  # (D, F), descending over codes
    return {"mig": float(np.mean((sorted_m[0, :] - sorted_m[1, :]) / entropy))}
