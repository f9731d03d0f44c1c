"""Benchmark the sweep service against plain Python, side by side in one run (not a test).

    python tune/pricing/bench_sweep.py --preset cpu [--kind negatives]

Measures (1) the sweep script end to end (fresh storage and MLflow store, local Ray), (2) the same
work in one plain Python process: stage 1 once, then the same stage-2 trials one after another, and
prints: sweep / plain wall time, the Ray path's overhead per trial, what stage-1 reuse saves
against a naive sweep that reruns stage 1 in every trial (plain stage 1 x trials + plain trials), and
where a trial's time goes: the mean of each ``time/*`` part over the sweep's trials (read from its MLflow
store) and its share of ``time/total``.
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ablations.store import tracking_client  # noqa: E402
from contralord.config import ContraLordConfig  # noqa: E402
from contralord.presets import resolve_presets  # noqa: E402
from contralord.run.trainer import train  # noqa: E402
from tune import spaces  # noqa: E402


def plain(kind: str, preset: str, root: Path) -> dict[str, float]:
    """Stage 1 once, then every variant's stage 2, in this process (2 torch threads)."""
    _, variants = spaces.variants(kind, preset)
    base = resolve_presets([preset]) | {"run.latent_cache": str(root / "cache")}
    times = {}
    for i, (name, overrides) in enumerate(variants):
        started = time.perf_counter()
        cfg = ContraLordConfig.from_overrides(base | overrides)
        train(cfg, root / name)
        times[name] = time.perf_counter() - started
        if i == 0:  # the first run trained stage 1: time it alone by timing a stage-2-only rerun
            started = time.perf_counter()
            train(cfg, root / f"{name}-again")
            times["stage2_first"] = time.perf_counter() - started
    return times


PARTS = ("time/start", "time/stage1_fetch", "time/data", "time/stage1", "time/train", "time/eval", "time/log")


def time_breakdown(tracking_uri: str, kind: str) -> dict[str, float]:
    """Mean seconds of each ``time/*`` part over the FINISHED trials of ``contralord-<kind>``, plus ``other``
    (``time/total`` less the parts: what no part names)."""
    client = tracking_client(tracking_uri)
    experiment = client.get_experiment_by_name(f"contralord-{kind}")
    runs = client.search_runs([experiment.experiment_id], "tags.role = 'trial' and attributes.status = 'FINISHED'")
    runs = [r for r in runs if "time/total" in r.data.metrics]
    if not runs:
        return {}
    mean = lambda key: sum(r.data.metrics.get(key, 0.0) for r in runs) / len(runs)  # noqa: E731
    parts = {key: mean(key) for key in PARTS if any(key in r.data.metrics for r in runs)}
    total = mean("time/total")
    return parts | {"other": max(0.0, total - sum(parts.values())), "time/total": total}


def print_breakdown(parts: dict[str, float]) -> None:
    total = parts.get("time/total", 0.0)
    if not total:
        print("no trial logged time/total: no breakdown")
        return
    print(f"where a trial's time goes (mean over trials; time/total {total:.1f} s):")
    for key, seconds in parts.items():
        if key != "time/total":
            print(f"  {key.removeprefix('time/'):<13} {seconds:7.1f} s  {seconds / total:6.1%}")
    if "time/eval" not in parts:
        print("  (the core logged no time/eval: train is the whole train() call, stage 1 and evaluation included)")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--kind", default="negatives")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="contralord-bench-"))
    started = time.perf_counter()
    script = Path(__file__).resolve().parents[1] / f"sweep_{args.kind}.py"
    uri = f"sqlite:///{root}/mlflow.db"
    subprocess.run([sys.executable, str(script), "--preset", args.preset, "--storage", str(root / "ray"),
                    "--tracking-uri", uri], cwd=root, check=True)
    sweep = time.perf_counter() - started
    breakdown = time_breakdown(uri, args.kind)
    times = plain(args.kind, args.preset, root / "plain")
    names = [n for n, _ in spaces.variants(args.kind, args.preset)[1]]
    stage2 = [times["stage2_first"]] + [times[n] for n in names[1:]]
    stage1 = times[names[0]] - times["stage2_first"]
    plain_total = stage1 + sum(stage2)
    naive = len(names) * stage1 + sum(stage2)
    print(f"\n{args.kind} sweep at preset {args.preset}: {len(names)} trials, 1 seed")
    print(f"sweep script (local Ray, MLflow, evaluation): {sweep:7.1f} s")
    print(f"plain Python, stage 1 once + trials in turn:  {plain_total:7.1f} s  (stage 1 {stage1:.1f} s, "
          f"stage 2 mean {sum(stage2) / len(stage2):.1f} s)")
    overhead = (sweep - plain_total) / len(names)
    print(f"sweep / plain: {sweep / plain_total:.2f}; Ray overhead per trial: {overhead:.1f} s")
    print(f"naive sweep rerunning stage 1 per trial (plain): {naive:.1f} s; stage-1 reuse saves "
          f"{naive - plain_total:.1f} s ({1 - plain_total / naive:.0%})")
    print_breakdown(breakdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
