"""Opt-in fast DCI: histogram gradient boosting with permutation importances (Sec. 4.2, not the paper's).

``GradientBoostingClassifier`` builds one tree per class per stage, which is slow for factors with many
classes (dSprites' 40 orientations). This variant fits ``HistGradientBoostingClassifier`` (default
settings, seeded) per factor instead. HGB has no ``feature_importances_``, so the importance of code
``i`` for factor ``j`` is its permutation importance: the mean drop in train-split accuracy over
``n_repeats`` shuffles of column ``i`` (``sklearn.inspection.permutation_importance``), clipped at 0
(a negative drop is noise, and taking ``abs`` as disentanglement_lib does for impurity importances
would reward it). The entropy-based scores are then computed as in ``dci.py``.

The numbers are NOT comparable with disentanglement_lib's DCI: the keys carry a ``dci_fast_`` prefix
so that they can never be confused with ``compute_dci``'s.
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.inspection import permutation_importance

from contralord.metrics.dci import dci_scores


def _fit_factor_fast(x_train, y_train, x_test, y_test, random_state, n_repeats: int = 5):
    """One factor's HGB: ``(permutation importances (D,), train accuracy, test accuracy)``."""
    model = HistGradientBoostingClassifier(random_state=random_state)
    model.fit(x_train, y_train)
    perm = permutation_importance(model, x_train, y_train, n_repeats=n_repeats, random_state=random_state)
    importance = np.clip(perm.importances_mean, 0.0, None)  # (D,)
    return importance, np.mean(model.predict(x_train) == y_train), np.mean(model.predict(x_test) == y_test)


def compute_dci_fast(
    codes_train, factors_train, codes_test, factors_test, random_state: int | None = 0, n_jobs: int | None = None
) -> dict[str, float]:
    """DCI from ``HistGradientBoostingClassifier`` + permutation importances (fast, non-standard).

    Args:
        codes_train: ``(N, D)`` real codes, ``D >= 2``.
        factors_train: ``(N, F)`` integer class indices, ``F >= 2``.
        codes_test: ``(M, D)``.
        factors_test: ``(M, F)``.
        random_state: int seed of every factor's model and permutations (default 0: reproducible).
        n_jobs: parallel fits; None means ``min(F, os.cpu_count())``.

    Returns:
        ``{"dci_fast_disentanglement", "dci_fast_completeness", "dci_fast_informativeness_train",
        "dci_fast_informativeness_test"}``.
    """
    return dci_scores(_fit_factor_fast, codes_train, factors_train, codes_test, factors_test, random_state, n_jobs,
                      prefix="dci_fast_")
