"""A sweep stopped with Ctrl-C says it was interrupted (and exits non-zero) instead of taking its unstarted trials'
errors for a finished sweep: Ray Tune's own signal handling tells which happened."""

import os
import signal

from ray.tune.tune import _setup_signal_catching

from tune.driver.sweep import _tune_caught_a_stop_signal


def test_stop_signal__seen_through_tunes_handler():
    original = signal.getsignal(signal.SIGINT)
    try:
        before = signal.getsignal(signal.SIGINT)
        stopped = _setup_signal_catching()  # what tune.driver.run does when a Tuner starts
        assert not _tune_caught_a_stop_signal(before)  # a run that ends by itself leaves Tune's handler in place
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: Tune's handler records it and puts ours back
        assert stopped.is_set() and _tune_caught_a_stop_signal(before)
    finally:
        signal.signal(signal.SIGINT, original)
