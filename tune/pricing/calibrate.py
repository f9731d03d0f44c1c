"""A short calibration on this machine, for sweeps the store has no past runs of: a few training steps of
stage 1 and of each variant's stage 2 with the trial's config and thread count, and the evaluation on a
sample of its images, each scaled up to the full run (``tune/pricing/estimate.py`` adds the rest).

Codes and generator are random, as in ``contralord bench``: a step's time does not depend on their
values. Every timing is cached per machine (CPU model, torch build, GPU), thread count, code version and
cost-shaping config in ``$CONTRALORD_CACHE/calibrations.json`` (default ``~/.cache/contralord``), with the
spread of its timed steps and the load average while it ran, so a second dry run times nothing (``Timing``).
The evaluation is timed at ``EVAL_FRACTION`` of its images, after a warm-up at a tiny size (the
first call pays imports and first-call set-up), and scaled linearly: measured at the cpu preset on the
loaded 2-core box, 0.25 of the images took 14.3 s and all of them 58.0 s (4.06x).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from contralord import machine
from contralord.config import ContraLordConfig
from contralord.setup import Setup
from contralord.training import checkpoint, sampling
from contralord.training.runtime import LocalRuntime
from contralord.training.timing import step_times

_CACHE_ONLY = contextvars.ContextVar("cache_only", default=False)  # --no-calibrate: time nothing
CACHE_ENV = "CONTRALORD_CACHE"  # the folder of calibrations.json (default ~/.cache/contralord)
STEPS = 5  # timed steps per stage (after one warm-up step)
EVAL_FRACTION = 0.25  # of eval.num_train / eval.num_test timed (after a tiny warm-up), then scaled
LOG_S = 6.0  # a finished trial's publishing (artifacts, images, the encoder model): time/log on the loaded 2-core box
STAGE1_FIXED_S = 15.0  # per stage-1 run besides its steps: the task's start, MLflow logging, the generator model


@dataclass(frozen=True)
class Timing:
    """One calibration: seconds (the median of the timed steps, or the whole timed call), the fastest and slowest
    step scaled alike, the 1-minute load average and CPU count of this machine while it ran, when, and whether it
    was read from the cache. ``idle_low``/``idle_high`` bound the seconds on an idle machine where the timing's
    threads did not fit the cores other work left free and it was timed again on those (``retimed`` says how);
    None: the busy timing divided by load / CPUs (``idle``)."""

    seconds: float
    low: float
    high: float
    load: float
    cpus: int
    when: str
    cached: bool = False
    idle_low: float | None = None
    idle_high: float | None = None
    retimed: str = ""
    part: str = ""  # the estimate's part it prices: "stage1" or "trials" (tune/pricing/cost.py)

    def scaled(self, factor: float, plus: float = 0.0) -> Timing:
        idle = [None if v is None else v * factor + plus for v in (self.idle_low, self.idle_high)]
        return replace(self, seconds=self.seconds * factor + plus, low=self.low * factor + plus,
                       high=self.high * factor + plus, idle_low=idle[0], idle_high=idle[1])

    def plus(self, other: Timing) -> Timing:
        """Both timings' seconds added (the higher load of the two, this one's date, cached if both were)."""
        lows, highs = zip(self.idle(), other.idle(), strict=True)
        bounded = self.idle_low is not None or other.idle_low is not None
        return Timing(self.seconds + other.seconds, self.low + other.low, self.high + other.high,
                      max(self.load, other.load), self.cpus, self.when, self.cached and other.cached,
                      sum(lows) if bounded else None, sum(highs) if bounded else None,
                      "; ".join(filter(None, (self.retimed, other.retimed))))

    @property
    def busy(self) -> bool:
        """Other work ran beside the timing (``is_busy``)."""
        return is_busy(self.load, self.cpus)

    def idle(self) -> tuple[float, float]:
        """(low, high) seconds on an idle machine: the bounds of a timing retimed on the free cores, else the
        busy timing divided by load / CPUs (time-slicing), else the timing itself."""
        if self.idle_low is not None and self.idle_high is not None:
            return self.idle_low, self.idle_high
        seconds = self.seconds / max(1.0, self.load / self.cpus) if self.busy else self.seconds
        return seconds, seconds


def is_busy(load: float, cpus: int) -> bool:
    """A load average above half the machine's CPUs: other work runs beside this one."""
    return load > 0.5 * cpus


def cache_file() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "contralord") / "calibrations.json"


def _cache_key(kind: str, **depends) -> str:
    """sha256 of what a timing depends on: its kind, this machine's CPU and torch build, the core's code, and
    ``depends`` (a stage's thread count, GPU and cost-shaping config sections)."""
    from tune.trial.reuse import code_version

    here = machine.describe()
    key = {"kind": kind, "cpu": here.cpu, "torch": here.torch, "code": code_version()} | depends
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]


def _step_key(kind: str, cfg: ContraLordConfig, sections: tuple[str, ...], threads: int, gpu: bool) -> str:
    """A stage's timing: its config's cost-shaping sections (the seed picks images, not cost), threads, GPU."""
    gpu_name = machine.describe().gpu if gpu else "none"
    return _cache_key(kind, gpu=gpu_name, threads=threads, config=cfg.section_hash(*sections))


def _read_cache() -> dict:
    """The cached timings; {} when there are none or the file is not ours (it is rewritten whole)."""
    try:
        found = json.loads(cache_file().read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


class NotCalibrated(Exception):
    """``--no-calibrate``: a timing the cache does not hold (its part of the estimate is left unpriced)."""


@contextlib.contextmanager
def cache_only():
    """Inside, ``cached`` times nothing: a timing the cache lacks raises ``NotCalibrated`` (``--no-calibrate``)."""
    token = _CACHE_ONLY.set(True)
    try:
        yield
    finally:
        _CACHE_ONLY.reset(token)


def cached(key: str, measure: Callable[[], tuple[float, float, float]], what: str, threads: int = 1,
           measure_at: Callable[[int], tuple[float, float, float]] | None = None) -> Timing:
    """The cached timing under ``key``, else ``measure()`` -> (seconds, low, high) timed now (saying so: ``what``
    it times, and about how long that takes where an earlier timing of the same ``what`` ran on this machine) and
    cached (a cache that cannot be written is left alone: the timing is still returned). A cached timing that ran
    on a busy machine is timed again when this machine is idle now. ``measure_at(n)`` times the same at ``n``
    threads: a ``threads``-thread timing on a busy machine whose free cores are fewer is timed again on them,
    which bounds the idle machine's seconds (``_retime_on_free_cores``)."""
    found = _read_cache()
    timing = _timing_from_entry(found.get(key))
    if timing is not None and (_CACHE_ONLY.get() or not timing.busy or not _idle_since(timing)):
        return timing
    if _CACHE_ONLY.get():
        raise NotCalibrated(what)
    took = sorted(e["took"] for e in found.values() if isinstance(e, dict) and e.get("what") == what
                  and isinstance(e.get("took"), int | float))
    about = f", about {took[len(took) // 2]:.0f} s as before" if took else ""
    again = (f" again (the cached timing ran on a busy machine: load average {timing.load:.1f} on {timing.cpus} "
             f"CPUs, {timing.when}; it is idle now)" if timing else "")
    print(f"calibration: timing {what}{again} on this machine{about} (cached for the next run in {cache_file()}; "
          f"--no-calibrate times nothing)", flush=True)
    load, cpus, started = os.getloadavg()[0], os.cpu_count() or 1, time.perf_counter()
    seconds, low, high = measure()
    timing = Timing(seconds, low, high, max(load, os.getloadavg()[0]), cpus, time.strftime("%Y-%m-%d %H:%M"))
    if measure_at is not None and timing.busy:
        timing = _retime_on_free_cores(timing, threads, load, measure_at, what)
    record = {k: v for k, v in asdict(timing).items() if k != "cached" and v not in (None, "")} | {
        "what": what, "took": round(time.perf_counter() - started, 1)}
    try:
        checkpoint.write_json_atomic(_read_cache() | {key: record}, cache_file())
    except OSError:
        pass
    return timing


def _timing_from_entry(entry) -> Timing | None:
    """A cached timing, or None (time it again) for an entry that is not one: numbers that are finite and not
    negative, a CPU count of at least 1, text where text belongs, both idle bounds or neither."""
    if not isinstance(entry, dict):
        return None
    numbers = [entry.get(k) for k in ("seconds", "low", "high", "load")] + [
        entry[k] for k in ("idle_low", "idle_high") if k in entry]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
               for v in numbers):
        return None
    cpus, when, retimed = entry.get("cpus"), entry.get("when"), entry.get("retimed", "")
    if (not isinstance(cpus, int) or isinstance(cpus, bool) or cpus < 1 or not isinstance(when, str)
            or not isinstance(retimed, str) or ("idle_low" in entry) != ("idle_high" in entry)):
        return None
    return Timing(*(float(entry[k]) for k in ("seconds", "low", "high", "load")), cpus, when, True,
                  entry.get("idle_low"), entry.get("idle_high"), retimed)


def _idle_since(timing: Timing) -> bool:
    """The machine is idle now, and less loaded than when ``timing`` ran by at least a core's worth of other
    work (so a timing this process's own load made look busy is not timed again on every dry run)."""
    now = os.getloadavg()[0]
    return not is_busy(now, os.cpu_count() or 1) and now <= timing.load - 1.0


def free_cores(load_before: float, cpus: int) -> int:
    """Cores other work left free as a timing started: the load average less this process's own one (it was
    building the data and the networks), rounded, at least one."""
    return max(1, round(cpus - max(0.0, load_before - 1.0)))


def _retime_on_free_cores(timing: Timing, threads: int, load_before: float,
                          measure_at: Callable[[int], tuple[float, float, float]], what: str) -> Timing:
    """``threads`` torch threads on fewer free cores wait on each other far beyond load / CPUs (measured: 5
    stage-1 steps at 2 threads beside a 1-thread trial on 2 cores took 3.35 s a step, at 1 thread 0.61 s), so
    dividing by the load would not give the idle machine's time. Timed again on the ``free`` cores, the idle
    machine's seconds lie between perfect scaling from ``free`` to ``threads`` threads (that time divided by
    load / CPUs for time-slicing too) and none (that time, or the busy timing where that was quicker)."""
    free = free_cores(load_before, timing.cpus)
    if threads <= free:
        return timing
    at_free, _, _ = measure_at(free)
    slicing = max(1.0, timing.load / timing.cpus)
    high = min(at_free, timing.seconds)  # an idle machine is no slower than the busy one was
    return replace(timing, idle_low=min(high, at_free * free / threads / slicing), idle_high=high,
                   retimed=f"{what}: {timing.seconds:.2f} s on {free} free core(s), {at_free:.2f} s at {free} "
                           "thread(s)")


def _spread(times: list[float]) -> tuple[float, float, float]:
    ordered = sorted(times)
    return ordered[len(ordered) // 2], ordered[0], ordered[-1]


@contextlib.contextmanager
def _threads(threads: int):
    """Run the timing at the trial's torch thread count, then restore this process's."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _runtime(gpu: bool) -> LocalRuntime:
    """The trial's device: a GPU trial calibrates on this machine's GPU (``tune/trial/worker.py`` does the same)."""
    return LocalRuntime(device=torch.device("cuda" if gpu and torch.cuda.is_available() else "cpu"))


def stage1_seconds(sweep_cfg: ContraLordConfig, setup: Setup, threads: int,
                   gpu: bool = False) -> tuple[Timing, Callable[[], object]]:
    """Predicted stage 1, cached per shape (``sweep_cfg``: the config as the sweep gives it, ``latent.structure``
    unresolved, as the cached timings were keyed), and a function building its untrained trainer once, for a stage-2
    calibration that needs it."""
    from contralord.stage1.latent_stage import build_trainer

    data, lat = setup.data, setup.cfg.latent

    @functools.cache
    def trainer():
        with _threads(threads):
            return build_trainer(setup, _runtime(gpu))

    def measure_at(n: int) -> tuple[float, float, float]:
        built, spe = trainer(), sampling.steps_per_epoch(len(data), lat.batch_size)
        with _threads(n):
            return _spread(step_times(lambda i: built.step(0, i % spe, i), STEPS))

    per_step = cached(_step_key("stage1", sweep_cfg, ("data", "latent"), threads, gpu), lambda: measure_at(threads),
                      f"{STEPS} stage-1 steps at {threads} thread(s)", threads, None if gpu else measure_at)
    steps = sampling.steps_per_epoch(len(data), lat.batch_size) * lat.epochs
    stage1 = per_step.scaled(steps, STAGE1_FIXED_S)
    references = reference_steps(setup)
    if not references:
        return stage1, trainer
    step = cached(_step_key("reference", sweep_cfg, ("data", "latent"), threads, gpu),
                  lambda: _reference_step(setup, threads, gpu), f"{STEPS} reference steps at {threads} thread(s)",
                  threads, None if gpu else lambda n: _reference_step(setup, n, gpu))
    return stage1.plus(step.scaled(references)), trainer


def reference_steps(setup: Setup) -> int:
    """The classifier steps stage 1's supervised-only references train after it (labelled factors only): the matched
    one's, and the best one's search and refits (a refit per labelled factor at most, one per recipe)."""
    from contralord.stage1.best_reference import best_reference_steps
    from contralord.stage1.latent_factors import matched_reference_steps

    if setup.structure != "factors":
        return 0
    lat = setup.cfg.latent
    return (matched_reference_steps(lat, sampling.steps_per_epoch(len(setup.data), lat.batch_size))
            + best_reference_steps(lat, len(setup.labelled_names)))


def _reference_step(setup: Setup, threads: int, gpu: bool) -> tuple[float, ...]:
    """Seconds of one reference step: the best reference's recipe trained for a warm-up step, then for ``STEPS``
    more, the difference divided (the networks' build and the first call's set-up cancel)."""
    import dataclasses

    from contralord.stage1.best_reference import train_recipe

    cfg, data, found = setup.cfg, setup.data, setup.labelled
    runtime = _runtime(gpu)

    def run(steps: int) -> float:
        sized = dataclasses.replace(cfg, latent=dataclasses.replace(cfg.latent, best_reference_steps=steps))
        started = time.perf_counter()
        matched = (cfg.latent.classifier_beta1, cfg.latent.lr_classifier)
        train_recipe(sized, data, found, runtime.device, matched, found.labelled)
        return time.perf_counter() - started

    with _threads(threads):
        one = run(1)
        per_step = max(run(1 + STEPS) - one, 0.0) / STEPS
    return per_step, per_step, per_step


def trial_seconds(setup: Setup, stage1: Callable[[], object] | None, threads: int,
                  with_eval: bool = True, gpu: bool = False) -> dict[str, Timing]:
    """Predicted ``train`` and ``eval`` of one trial at ``threads`` torch threads (each cached); ``stage1``
    builds the untrained stage-1 trainer its random codes come from (None: the trial needs no stage 1)."""
    from contralord.latent_result import scored_factor_model, untrained_result
    from contralord.stage2.encoder_stage import EncoderTrainer

    cfg, data = setup.cfg, setup.data
    runtime = _runtime(gpu)

    @functools.cache
    def built():
        latent = untrained_result(setup, stage1()) if stage1 is not None else None
        return latent, EncoderTrainer(setup, latent, runtime)

    def measure_steps_at(n: int) -> tuple[float, float, float]:
        with _threads(n):
            trainer, spe = built()[1], sampling.steps_per_epoch(len(data), cfg.encoder.batch_size)
            return _spread(step_times(lambda i: trainer.step(0, i % spe, i), STEPS))

    def measure_eval() -> tuple[float, float, float]:
        with _threads(threads):
            latent, trainer = built()
            factor_codes = scored_factor_model(setup, latent, runtime.device)  # scored_code=classifier
            seconds = eval_seconds(setup, trainer.online, runtime.device, factor_codes)
            return seconds, seconds, seconds

    sections = ("data", "latent", "encoder", "loss")
    per_step = cached(_step_key("stage2", cfg, sections, threads, gpu), lambda: measure_steps_at(threads),
                      f"{STEPS} stage-2 steps at {threads} thread(s)", threads, None if gpu else measure_steps_at)
    parts = {"train": per_step.scaled(sampling.encoder_steps(cfg, len(data))[0])}
    if with_eval and cfg.eval.enabled:
        parts["eval"] = cached(_step_key("eval", cfg, (*sections, "eval"), threads, gpu), measure_eval,
                               f"the evaluation at {EVAL_FRACTION:.0%} of its images")
    return parts


def launch_seconds() -> Timing:
    """A trial's launch before it trains: a fresh Python importing what a trial process imports (torch,
    the core, MLflow, Ray Tune), timed once per machine and code (cached), with the load it ran under."""
    def measure() -> tuple[float, float, float]:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import ray.tune, tune.trial.worker"], check=False, capture_output=True,
                       timeout=300, env=_env())
        seconds = time.perf_counter() - started
        return seconds, seconds, seconds

    return cached(_cache_key("launch"), measure, "a trial process's start (its imports)")


def data_seconds(cfg: ContraLordConfig) -> Timing:
    """Building the trial's dataset (``time/data``), cached per data section as every other timing: a second dry run
    prices the trials exactly as the first (it once timed the build again, and its estimate moved with the load)."""
    from contralord.setup import build_data

    def measure() -> tuple[float, float, float]:
        started = time.perf_counter()
        build_data(cfg)
        seconds = time.perf_counter() - started
        return seconds, seconds, seconds

    return cached(_step_key("data", cfg, ("data",), 1, False), measure, "building the training data")


def _env() -> dict[str, str]:
    import os
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[2])
    return os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH", "")]))}


def _eval_sized(setup: Setup, fraction: float) -> Setup:
    """The evaluation at ``fraction`` of its sizes, never below what the metrics accept: every held-out
    split (``all-factors``: num_test; ``partial-labels``: 20% of the scored images) holds at least as many
    images as the largest factor has values (dSprites' positions: 32)."""
    cfg, values = setup.cfg, max(setup.data.factor_sizes, default=1)
    return setup.with_eval(num_train=max(100, 4 * values, round(cfg.eval.num_train * fraction)),
                           num_test=max(50, 2 * values, round(cfg.eval.num_test * fraction)))


def eval_seconds(setup: Setup, online, device: torch.device, factor_codes: torch.nn.Module | None = None) -> float:
    """The evaluation at ``EVAL_FRACTION`` of its sizes, timed and scaled back to the full sizes
    (``factor_codes``: stage 1's classifiers, which ``eval.scored_code=classifier`` scores)."""
    from contralord.evaluation import evaluate

    cfg, small = setup.cfg, _eval_sized(setup, EVAL_FRACTION)
    scale = (cfg.eval.num_train + cfg.eval.num_test) / (small.cfg.eval.num_train + small.cfg.eval.num_test)
    with tempfile.TemporaryDirectory() as folder:
        evaluate(_eval_sized(setup, 0.0), online, folder, device, factor_codes=factor_codes)  # warm-up
        started = time.perf_counter()
        evaluate(small, online, folder, device, factor_codes=factor_codes)
        return (time.perf_counter() - started) * scale
