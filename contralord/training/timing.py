"""Step timing for the benchmark and the sweep's cost model: seconds per call of a training step, after a warm-up."""

from __future__ import annotations

import statistics
import time


def step_times(step_fn, steps: int) -> list[float]:
    """Seconds of each of ``steps`` calls of ``step_fn(i)``, after one warm-up call."""
    step_fn(0)
    times = []
    for i in range(1, steps + 1):
        started = time.perf_counter()
        step_fn(i)
        times.append(time.perf_counter() - started)
    return times


def time_steps(step_fn, steps: int) -> float:
    """Median seconds of ``step_fn(i)`` over ``steps`` calls, after one warm-up call."""
    return statistics.median(step_times(step_fn, steps))
