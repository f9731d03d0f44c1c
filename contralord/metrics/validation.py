"""Input checks shared by the metrics of Sec. 4.2 (DCI, SAP, MIG, linear probe) and Eq. 7 (smoothness).

Every check raises a ``ValueError`` that names the argument, what was expected and what was found,
so that a bad table entry fails at the call that produced it. Layouts are ours, not
disentanglement_lib's: codes are ``(N, D)`` and factors ``(N, F)`` (one row per sample).
Constant code columns are valid input (a collapsed latent is a legitimate, badly scoring model).
"""

from __future__ import annotations

import numpy as np


def check_codes(codes, name: str, min_rows: int = 1) -> np.ndarray:
    """Checks a real-valued ``(N, D)`` matrix of codes or features.

    Args:
        codes: array-like, ``(N, D)``.
        name: the argument's name, used in error messages.
        min_rows: the smallest allowed ``N``.

    Returns:
        The codes as a numpy array, ``(N, D)``. Floating dtypes are kept (MIG's histogram bin edges
        depend on the dtype, as in disentanglement_lib); integer and bool codes become float64.
    """
    arr = np.asarray(codes)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (N, D); found shape {arr.shape}")
    if arr.dtype.kind in "biu":
        arr = arr.astype(np.float64)
    if arr.dtype.kind != "f":
        raise ValueError(f"{name} must have a real numeric dtype; found {arr.dtype}")
    if arr.shape[0] < min_rows:
        raise ValueError(f"{name} must have at least {min_rows} rows; found shape {arr.shape}")
    if arr.shape[1] < 1:
        raise ValueError(f"{name} must have at least 1 column; found shape {arr.shape}")
    if not np.isfinite(arr).all():
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise ValueError(f"{name} must be finite; found {bad} NaN or inf entries in shape {arr.shape}")
    return arr


def check_factors(factors, name: str, num_rows: int, discrete: bool = True) -> np.ndarray:
    """Checks an ``(N, F)`` matrix of ground-truth factors.

    Args:
        factors: array-like, ``(N, F)``: integer class indices, or real values when
            ``discrete=False`` (continuous SAP).
        name: the argument's name, used in error messages.
        num_rows: the ``N`` of the matching codes.
        discrete: require an integer (or bool) dtype.

    Returns:
        The factors as a numpy array, ``(N, F)``.
    """
    arr = np.asarray(factors)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (N, F); found shape {arr.shape}")
    if arr.shape[0] != num_rows:
        raise ValueError(f"{name} must have one row per code: expected N={num_rows}; found shape {arr.shape}")
    if arr.shape[1] < 1:
        raise ValueError(f"{name} must have at least 1 factor column; found shape {arr.shape}")
    if discrete and arr.dtype.kind not in "biu":
        raise ValueError(
            f"{name} must hold integer class indices (integer dtype); found dtype {arr.dtype} "
            "(map values to classes with np.unique(column, return_inverse=True))"
        )
    if not discrete and (arr.dtype.kind not in "biuf" or not np.isfinite(arr).all()):
        raise ValueError(f"{name} must be finite real numbers; found dtype {arr.dtype} with NaN/inf or non-numbers")
    return arr


def check_labelled(codes, factors, codes_name: str, factors_name: str, discrete: bool = True):
    """Checks one labelled split: codes ``(N, D)`` and factors ``(N, F)`` with every factor varying.

    A factor with a single value has zero entropy (MIG divides by it) and a single class (no
    classifier can be fitted), so it is rejected here.

    Returns:
        ``(codes, factors)`` as numpy arrays.
    """
    codes = check_codes(codes, codes_name)
    factors = check_factors(factors, factors_name, codes.shape[0], discrete)
    for j in range(factors.shape[1]):
        if np.unique(factors[:, j]).size < 2:
            raise ValueError(
                f"{factors_name}[:, {j}] must take at least 2 distinct values (entropy > 0); "
                f"found the single value {factors[0, j]!r}"
            )
    return codes, factors


def check_split(train, test, names: tuple[str, str, str, str], discrete: bool = True):
    """Checks a train/test pair of labelled splits against each other.

    Args:
        train: ``(codes_train (N, D), factors_train (N, F))``.
        test: ``(codes_test (M, D), factors_test (M, F))``.
        names: the four argument names, in the order codes_train, factors_train, codes_test, factors_test.
        discrete: factors are class indices; then the test split needs at least as many samples
            as each factor has classes in the train split.

    Returns:
        ``(codes_train, factors_train, codes_test, factors_test)`` as numpy arrays.
    """
    x_tr, y_tr = check_labelled(*train, names[0], names[1], discrete)
    x_te = check_codes(test[0], names[2])
    y_te = check_factors(test[1], names[3], x_te.shape[0], discrete)
    if x_te.shape[1] != x_tr.shape[1]:
        raise ValueError(f"{names[2]} must have D={x_tr.shape[1]} columns like {names[0]}; found shape {x_te.shape}")
    if y_te.shape[1] != y_tr.shape[1]:
        raise ValueError(f"{names[3]} must have F={y_tr.shape[1]} columns like {names[1]}; found shape {y_te.shape}")
    if discrete:
        num_classes = max(np.unique(y_tr[:, j]).size for j in range(y_tr.shape[1]))
        if x_te.shape[0] < num_classes:
            raise ValueError(
                f"{names[2]} must have at least as many samples as the largest number of classes of a "
                f"factor ({num_classes}); found N={x_te.shape[0]}"
            )
    return x_tr, y_tr, x_te, y_te


def check_min_columns(arr: np.ndarray, name: str, minimum: int, why: str) -> None:
    """Raises unless ``arr`` ``(N, C)`` has at least ``minimum`` columns; ``why`` says which metric needs them."""
    if arr.shape[1] < minimum:
        raise ValueError(f"{name} must have at least {minimum} columns ({why}); found shape {arr.shape}")
