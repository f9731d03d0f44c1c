"""What a sweep will cost before it runs (issue 12, item 3), and which path a trial takes (item 6).

A sweep's wall time is modelled as Ray's start, then the stage-1 runs it still needs one after another
(each takes every core of the node, ``sweep._stage1_resources``), then its trials on ``slots`` parallel
slots in Tune's order (each trial starts when a slot frees), then the table. A trial's own seconds
come from the store's past FINISHED runs of the same config on the same machine (``tune/pricing/history.py``)
when there are any, else from a short calibration on this machine (``tune/pricing/calibrate.py``).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

from tune.checks import check_trainer

# Measured on the 2-core box (RAY_MLFLOW.md §1.3; README, "Measured"); all are wall seconds.
RAY_START_S = 20.0  # ray.init and the parent MLflow run (smoke sweep under load: 21 s)
TABLE_S = 8.0  # the sweep's table, plots and artifacts onto the parent run
WORKER_GROUP_S = 38.0  # a Ray Train TorchTrainer's worker-group start-up, per trial
AUTO_SHARE = 0.05  # --trainer auto: TorchTrainer when its start-up is under this share of a trial


@dataclass(frozen=True)
class TrialCost:
    variant: str
    seed: int
    seconds: float  # the trial's own wall time on the in-trial path (no worker-group start-up)
    source: str  # "history: N runs" | "calibration"
    reused: str = ""  # the earlier run that answers this trial (then it costs nothing)


@dataclass(frozen=True)
class SweepEstimate:
    trials: list[TrialCost]
    stage1: dict[int, float]  # seed -> seconds, the stage-1 runs still to train
    stage1_cached: list[int]  # seeds whose stage 1 is in the cache and the store already
    slots: int  # trials at once
    path: str  # "train" (TorchTrainer) | "tune" (in the trial)
    why: str  # one line with the numbers
    parts: dict[str, float] = field(default_factory=dict)  # ray_start, stage1, trials, table
    later: LaterRounds | None = None  # --until-decided: the rounds after the first, at their most
    calibrations: tuple = ()  # the tune/pricing/calibrate.py Timings the estimate used (cached or timed now)
    unpriced_logged: str = ""  # a resumed sweep's first estimate: what that one left unpriced (its parent's tag)

    @property
    def wall_s(self) -> float:
        return sum(self.parts.values())

    @property
    def unpriced(self) -> str:
        """What the estimate leaves out (``--no-calibrate``: no past run, no cached timing), "" when nothing."""
        stage1 = sum(math.isnan(s) for s in self.stage1.values())
        trials = sum(math.isnan(t.seconds) for t in self.trials if not t.reused)
        parts = [f"{stage1} stage-1 run(s)"] * bool(stage1) + [f"{trials} trial(s)"] * bool(trials)
        return " and ".join(parts) or self.unpriced_logged


@dataclass(frozen=True)
class LaterRounds:
    """``--until-decided``: what the rounds after the first cost at most, every row staying open until
    ``--max-seeds`` (the rounds stop sooner as rows are decided, and reuse can answer some trials)."""
    seeds: list[int]  # one round per seed
    trials: int
    stage1_s: float  # stage-1 runs of the new seeds (0 for a seed already cached)
    wall_s: float  # stage 1, the round's trials and its table, round after round
    unpriced: bool = False  # --no-calibrate left some of it out: the figures are lower bounds


def later_rounds(trials: list[TrialCost], stage1: dict[int, float], slots: int, extra_s: float) -> LaterRounds:
    """The bound of ``LaterRounds`` from the first round's per-variant trial estimates and each new seed's
    stage-1 seconds (``stage1``: seed -> seconds, one round per seed)."""
    per_variant = {t.variant: t.seconds + extra_s for t in trials if not math.isnan(t.seconds)}  # unpriced: left out
    known = {seed: seconds for seed, seconds in stage1.items() if not math.isnan(seconds)}
    walls = [known.get(seed, 0.0) + schedule(list(per_variant.values()), slots) + TABLE_S for seed in stage1]
    unpriced = len(known) < len(stage1) or len(per_variant) < len({t.variant for t in trials})
    return LaterRounds(sorted(stage1), len({t.variant for t in trials}) * len(stage1), sum(known.values()),
                       sum(walls), unpriced)


def concurrency(cpus: float, cpus_per_trial: float, gpus: float = 0.0, gpus_per_trial: float = 0.0,
                max_concurrent: int = 0) -> int:
    """Trials at once: what the node's CPUs (and GPUs) allow, capped by ``--max-concurrent``."""
    slots = math.floor(cpus / cpus_per_trial + 1e-9) if cpus_per_trial > 0 else 1
    if gpus_per_trial > 0:
        slots = min(slots, math.floor(gpus / gpus_per_trial + 1e-9))
    if max_concurrent > 0:
        slots = min(slots, max_concurrent)
    return max(1, slots)


def schedule(durations: list[float], slots: int) -> float:
    """Wall seconds of ``durations`` run in order on ``slots`` slots, each starting when one frees."""
    free = [0.0] * max(1, slots)  # min-heap of the times the slots free up
    for seconds in durations:
        heapq.heappush(free, heapq.heappop(free) + seconds)
    return max(free)


def choose_trainer(mode: str, workers: int, predicted_s: float, use_gpu: bool,
                   startup_s: float = WORKER_GROUP_S) -> tuple[str, str]:
    """(path, why): ``train`` (Ray Train's TorchTrainer) or ``tune`` (the trainer in the Tune trial).

    ``auto`` takes TorchTrainer whenever a trial has more than one worker, or when the worker group's
    start-up is under ``AUTO_SHARE`` of the trial's predicted duration (the paper preset, any GPU trial
    worth the GPU); else the in-trial path. ``tune`` refuses more than one worker."""
    check_trainer(mode, workers)
    share = startup_s / predicted_s if predicted_s > 0 else math.inf
    numbers = (f"worker-group start-up {startup_s:.0f} s = {share:.1%} of a predicted {predicted_s:.0f} s trial"
               if predicted_s > 0 else f"worker-group start-up {startup_s:.0f} s; no trial to run is priced")
    if mode != "auto":
        return mode, f"--trainer {mode} ({numbers}; {workers} worker(s) per trial)"
    if workers > 1:
        return "train", f"auto: {workers} workers per trial need Ray Train's TorchTrainer (DDP); {numbers}"
    gpu = ", GPU trial" if use_gpu else ""
    if share < AUTO_SHARE:
        return "train", f"auto: {numbers} < {AUTO_SHARE:.0%}{gpu}: TorchTrainer"
    return "tune", f"auto: {numbers} >= {AUTO_SHARE:.0%}{gpu}: in the Tune trial (1 worker)"


def combine(trials: list[TrialCost], stage1: dict[int, float], cached: list[int], slots: int, mode: str,
            workers: int, use_gpu: bool) -> SweepEstimate:
    """The sweep's estimate from its parts; the path follows from the longest trial still to run."""
    todo = [t.seconds for t in trials if not t.reused and not math.isnan(t.seconds)]  # unpriced: not counted
    predicted = max(todo, default=0.0)
    path, why = choose_trainer(mode, workers, predicted, use_gpu)
    if mode == "auto" and any(math.isnan(t.seconds) for t in trials if not t.reused):
        path = "tune" if workers == 1 else "train"  # no trial's length known for certain: by worker count
        why = f"auto, with trials unpriced (--no-calibrate): by worker count, {workers} worker(s) per trial"
    extra = WORKER_GROUP_S if path == "train" else 0.0
    parts = {"ray_start": RAY_START_S, "stage1": sum(v for v in stage1.values() if not math.isnan(v)),
             "trials": schedule([s + extra for s in todo], slots), "table": TABLE_S}
    return SweepEstimate(trials, stage1, cached, slots, path, why, parts)
