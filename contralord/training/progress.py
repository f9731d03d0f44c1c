"""Progress of a long loop on the console (``LocalRuntime.progress``): where stderr is a terminal, tqdm's bar
updated in place; elsewhere (a log, CI, a Ray task whose output the driver forwards line by line) one line on
stdout each time another 5 % of the steps is done, in tqdm's own format with the time left."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm

EVERY = 0.05  # a non-terminal prints at most one line per this share of the steps
LINE = "{desc} {percentage:3.0f}% {n_fmt}/{total_fmt} steps{postfix} [{elapsed} elapsed, {remaining} left]"


class Lines:
    """One tqdm-formatted line per ``EVERY`` of ``total`` steps, and at the end, on ``stream``."""

    def __init__(self, total: int, initial: int, desc: str, stream):
        self.total, self.n, self.desc, self.stream = total, initial, desc, stream
        self.first, self.started = initial, time.perf_counter()
        self.next = self._next_mark(initial)

    def _next_mark(self, n: int) -> int:
        step = max(1, round(EVERY * self.total))
        return min(self.total, (n // step + 1) * step)

    def update(self, n: int = 1, postfix: str = "") -> None:
        self.n += n
        if self.n >= self.next:
            elapsed = time.perf_counter() - self.started
            rate = (self.n - self.first) / elapsed if elapsed > 0 else None  # this process's steps only
            line = tqdm.format_meter(self.n, self.total, elapsed, prefix=self.desc, rate=rate, unit="step",
                                     postfix=postfix, bar_format=LINE)
            print(line, file=self.stream, flush=True)
            self.next = self._next_mark(self.n)

    def close(self) -> None:
        pass


class Bar:
    """tqdm's bar, in place on a terminal."""

    def __init__(self, total: int, initial: int, desc: str, stream):
        self.bar = tqdm(total=total, initial=initial, desc=desc, unit="step", file=stream, leave=True,
                        dynamic_ncols=True)

    def update(self, n: int = 1, postfix: str = "") -> None:
        self.bar.set_postfix_str(postfix, refresh=False)
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


def console(total: int, initial: int, desc: str, stream=None):
    """A bar on stderr where it is a terminal; else lines on stdout, beside the epoch lines (stderr stays for
    errors: a refusal is one line there); nothing on a rank other than 0. ``stream`` forces one (tests)."""
    from contralord.training import distributed

    if not distributed.is_main():
        return Silent()
    if stream is not None:
        return (Bar if stream.isatty() else Lines)(total, initial, desc, stream)
    return Bar(total, initial, desc, sys.stderr) if sys.stderr.isatty() else Lines(total, initial, desc, sys.stdout)


class Silent:
    """No progress shown (a sweep's trials: Tune's status table and the epoch lines cover them)."""

    def __init__(self, *args, **kwargs):
        pass

    def update(self, n: int = 1, postfix: str = "") -> None:
        pass

    def close(self) -> None:
        pass


class Bounded:
    """Progress over at most ``total`` steps (``make``: ``LocalRuntime.progress``): ``tick()`` per step done;
    ``finish()`` counts the steps that turned out not to be needed as done, and closes it. Nothing for 0 steps."""

    def __init__(self, make, total: int, desc: str):
        self.bar, self.total, self.done = (make(total, 0, desc) if total else Silent()), total, 0

    def tick(self) -> None:
        self.done += 1
        self.bar.update(1)

    def finish(self) -> None:
        if self.total > self.done:
            self.bar.update(self.total - self.done)
        self.bar.close()
