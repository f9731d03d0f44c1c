"""Mixed-radix indexing of a full factor grid, as in dSprites and Shapes3D (Sec. 4.1).

Both datasets enumerate every combination of their factors once, the last factor varying fastest
(C order), so an image's index and its factor values determine each other.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def grid_factors(index: np.ndarray, sizes: Sequence[int]) -> np.ndarray:
    """Factor values of grid indices.

    Args:
        index: (N,) integer grid indices in [0, prod(sizes)).
        sizes: the F factor cardinalities, slowest first.

    Returns:
        int64 (N, F) factor value indices.
    """
    return np.stack(np.unravel_index(np.asarray(index, dtype=np.int64), tuple(sizes)), axis=1)


def grid_index(factors: np.ndarray, sizes: Sequence[int]) -> np.ndarray:
    """Grid indices of factor values: the inverse of `grid_factors`.

    Args:
        factors: (N, F) integer factor value indices.
        sizes: the F factor cardinalities, slowest first.

    Returns:
        int64 (N,) grid indices.
    """
    factors = np.asarray(factors, dtype=np.int64)
    return np.ravel_multi_index(tuple(factors.T), tuple(sizes)).astype(np.int64)
