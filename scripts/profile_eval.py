"""Seconds per part of the end of a run (the summary's head agreement, then ``evaluate``) on a trained
run folder, for the current package and for an earlier commit, alternately, in the same conditions.

    OMP_NUM_THREADS=1 python scripts/profile_eval.py RUN_DIR --latent-cache DIR --threads 1 --before 78214e1

Each repeat runs the earlier code, then the current code, each in a fresh process (so DCI's joblib
workers start in both), prints wall seconds per part (exclusive of the parts inside it) and CPU
seconds of the process, and checks that both wrote the same metrics.json and head agreement. A sweep
trial runs with OMP_NUM_THREADS=1 (Ray sets it to the trial's CPUs) and torch at cpus_per_worker
threads: set both to profile that case.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARTS = {  # part -> (module, attribute): wrapped where the evaluation looks them up
    "encode": [("contralord.evaluation", "encode"), ("contralord.encoding", "encode")],
    "heldout_build": [("contralord.evaluation", "heldout_dataset")],
    "smoothness": [("contralord.metrics", "compute_smoothness")],
    "mig": [("contralord.metrics", "compute_mig")],
    "sap": [("contralord.metrics", "compute_sap")],
    "dci": [("contralord.metrics", "compute_dci")],
    "logistic_regressions": [("contralord.metrics", "compute_linear_probe")],
    "grids": [("contralord.evaluation", "render_grids")],
    "head_agreement": [("contralord.trainer", "_head_agreement")],
}


def _wrap_parts(seconds: dict[str, float]) -> None:
    import importlib

    stack: list[float] = []  # time spent in nested parts, per open part

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            stack.append(0.0)
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - started
                inner = stack.pop()
                seconds[name] = seconds.get(name, 0.0) + elapsed - inner
                if stack:
                    stack[-1] += elapsed
        return wrapper

    for name, places in PARTS.items():
        for module_name, attribute in places:
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                continue
            if hasattr(module, attribute):
                setattr(module, attribute, timed(name, getattr(module, attribute)))


def worker(run: Path, latent_cache: str, threads: int) -> dict:
    """One end of run in this process: {"seconds": {part: s}, "cpu_s", "metrics", "agreement"}."""
    from types import SimpleNamespace

    import torch

    torch.set_num_threads(threads)
    from contralord import checkpoint, trainer
    from contralord.config import ContraLordConfig
    from contralord.encoder_stage import build_online
    from contralord.evaluation import evaluate
    from contralord.latent_stage import train_latent
    from contralord.preflight import read_run_config

    cfg = ContraLordConfig.from_saved(read_run_config(run / "config.json"), {})
    data = trainer.build_data(cfg)
    latent = train_latent(cfg, data, latent_cache)
    if not latent.reused:
        raise SystemExit(f"{latent_cache}: holds no stage 1 of this run (key {latent.key})")
    online = build_online(cfg, data, latent=None)
    online.load_state_dict(checkpoint.load(run / "checkpoints" / "encoder.pt", required=("online",))["online"])
    seconds: dict[str, float] = {}
    _wrap_parts(seconds)
    cpu, started = time.process_time(), time.perf_counter()
    cpu_device = torch.device("cpu")
    trained = SimpleNamespace(online=online, device=cpu_device, history=None)
    try:  # as trainer.train does: one cache of the training images' codes for the summary and evaluate
        from contralord.encoding import CodeCache
        shared = (CodeCache(online, data.images, cpu_device),)
    except ImportError:  # the earlier code: each part encodes its own images
        shared = ()
    agreement = trainer.summarize(cfg, data, latent, trained, *shared)
    with tempfile.TemporaryDirectory() as out:
        metrics = evaluate(cfg, online, data, out, cpu_device, *shared)
    seconds["total"] = time.perf_counter() - started
    seconds["other"] = seconds["total"] - sum(v for k, v in seconds.items() if k != "total")
    return {"seconds": seconds, "cpu_s": time.process_time() - cpu + _worker_processes_cpu(), "metrics": metrics,
            "agreement": agreement}


def _worker_processes_cpu() -> float:
    """CPU seconds of DCI's joblib worker processes (stopped here, so that they count as reaped children)."""
    import resource

    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _checkout(commit: str, folder: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "contralord"], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def _run(code: Path, args) -> dict:
    env = os.environ | {"PYTHONPATH": str(code)}
    cmd = [sys.executable, __file__, str(args.run), "--latent-cache", args.latent_cache,
           "--threads", str(args.threads), "--worker"]
    out = subprocess.run(cmd, env=env, cwd=code, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _table(results: dict[str, list[dict]]) -> str:
    names = list(PARTS) + ["other", "total"]
    labels = list(results)
    lines = ["| part | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for name in names:
        cells = [" / ".join(f"{r['seconds'].get(name, 0.0):.2f}" for r in runs) for runs in results.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    cells = [" / ".join(f"{r['cpu_s']:.2f}" for r in runs) for runs in results.values()]
    lines.append("| CPU s (process + DCI workers) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a run folder written by contralord train")
    parser.add_argument("--latent-cache", required=True, help="the folder holding that run's stage 1")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--before", default="78214e1397f2b4ceba686a2f4fa9cd78d95157cb", help="the earlier commit")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.run, args.latent_cache, args.threads)))
        return
    with tempfile.TemporaryDirectory() as folder:
        old = _checkout(args.before, Path(folder))
        results: dict[str, list[dict]] = {f"before ({args.before[:7]})": [], "after (this tree)": []}
        for _ in range(args.repeats):
            for label, code in zip(results, (old, ROOT), strict=True):
                results[label].append(_run(code, args))
    before, after = results.values()
    same = all(b["metrics"] == a["metrics"] and b["agreement"] == a["agreement"]
               for b, a in zip(before, after, strict=True))
    print(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, torch threads {args.threads}; "
          f"wall seconds per repeat (exclusive of nested parts)")
    print(_table(results))
    print(f"metrics.json and head agreement identical before/after: {same}")


if __name__ == "__main__":
    main()
