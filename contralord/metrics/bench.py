"""Wall-clock and memory benchmark of the Sec. 4.2 / Eq. 7 metrics at the paper's evaluation size.

``run_metrics_bench()`` times every disentanglement metric on synthetic codes at disentanglement_lib's
sizes (10000 train / 5000 test samples), DCI sequentially and in parallel (and checks that both give
identical scores), the opt-in fast DCI, and smoothness at N=50000 with its peak traced memory
(``tracemalloc`` sees numpy's buffers), which shows the tiled computation never holds an N x N matrix
(that would be 20 GB in float64). Run: ``python -m contralord.metrics.bench``.
"""

from __future__ import annotations

import time
import tracemalloc

import numpy as np

from contralord.metrics.dci import compute_dci
from contralord.metrics.dci_fast import compute_dci_fast
from contralord.metrics.mig import compute_mig
from contralord.metrics.sap import compute_sap
from contralord.metrics.smoothness import compute_smoothness

_CARDINALITIES = (3, 4, 6, 8, 10)  # classes per factor, cycled


def make_synthetic(n: int, d: int, f: int, rng: np.random.Generator):
    """Codes ``(n, d)`` whose first ``min(d, f)`` columns are noisy factors, and factors ``(n, f)``."""
    cards = np.array([_CARDINALITIES[j % len(_CARDINALITIES)] for j in range(f)])  # (F,)
    factors = (rng.random((n, f)) * cards).astype(np.int64)  # (n, F)
    codes = rng.normal(size=(n, d))  # (n, D)
    k = min(d, f)
    codes[:, :k] = factors[:, :k] / cards[:k] + 0.05 * codes[:, :k]
    return codes, factors


def _timed(fn, *args, **kwargs):
    started = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - started


def _bench_disentanglement(train, test, seed: int) -> dict[str, float]:
    res = {}
    _, res["seconds/mig"] = _timed(compute_mig, *train)
    _, res["seconds/sap"] = _timed(compute_sap, *train, *test)
    seq, res["seconds/dci_sequential"] = _timed(compute_dci, *train, *test, random_state=seed, n_jobs=1)
    par, res["seconds/dci_parallel"] = _timed(compute_dci, *train, *test, random_state=seed)
    res["dci_parallel_equals_sequential"] = float(seq == par)
    fast, res["seconds/dci_fast"] = _timed(compute_dci_fast, *train, *test, random_state=seed)
    res.update({f"score/{k}": v for k, v in {**seq, **fast}.items()})
    return res


def _bench_smoothness(n: int, dim: int, rng: np.random.Generator) -> dict[str, float]:
    content = rng.normal(size=(n, dim)).astype(np.float32)  # (n, dim), like encoder outputs
    residual = rng.normal(size=(n, dim)).astype(np.float32)
    tracemalloc.start()
    tracemalloc.reset_peak()
    _, seconds = _timed(compute_smoothness, content, residual)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {f"seconds/smoothness_{n}": seconds, f"peak_mb/smoothness_{n}": peak / 2**20}


def run_metrics_bench(
    n_train: int = 10000, n_test: int = 5000, d: int = 10, f: int = 5, seed: int = 0,
    smoothness_n: int = 50000, smoothness_dim: int = 64,
) -> dict[str, float]:
    """Times each metric once and prints one line per number.

    Args:
        n_train: train samples (disentanglement_lib: 10000).
        n_test: test samples (disentanglement_lib: 5000).
        d: code dimensions D.
        f: factors F (cardinalities cycle through 3, 4, 6, 8, 10).
        seed: data and model seed.
        smoothness_n: N for the smoothness timing and peak-memory measurement.
        smoothness_dim: width of each of the content and residual halves.

    Returns:
        Flat dict: ``seconds/<metric>``, ``peak_mb/smoothness_<N>``, ``dci_parallel_equals_sequential``
        (1.0 when identical) and the ``score/<key>`` values.
    """
    rng = np.random.default_rng(seed)
    train = make_synthetic(n_train, d, f, rng)
    test = make_synthetic(n_test, d, f, rng)
    res = {**_bench_disentanglement(train, test, seed), **_bench_smoothness(smoothness_n, smoothness_dim, rng)}
    for key, value in res.items():
        print(f"{key}: {value:.4g}")
    return res


if __name__ == "__main__":
    run_metrics_bench()
