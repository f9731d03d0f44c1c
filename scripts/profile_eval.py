"""Seconds per part of the end of a run (the summary's head agreement, then ``evaluate``) on a trained
run folder, for the current package and for an earlier commit, alternately, in the same conditions.

    OMP_NUM_THREADS=1 python scripts/profile_eval.py RUN_DIR --latent-cache DIR --threads 1 --before 78214e1

Each repeat runs the earlier code, then the current code, each in a fresh process (so DCI's joblib
workers start in both). It prints wall and CPU seconds per part, exclusive of the parts inside it
(CPU counts DCI's worker processes, which a loaded machine's wall clock hides), and checks that both
wrote the same metrics.json and head agreement. A sweep trial runs with OMP_NUM_THREADS=1 (Ray sets
it to the trial's CPUs) and torch at cpus_per_worker threads: set both to profile that case.
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
    "head_agreement": [("contralord.run.summary", "_head_agreement"), ("contralord.trainer", "_head_agreement")],
}


def _wrap_parts(seconds: dict[str, list[float]]) -> None:
    """Wrap each part so that ``seconds[part]`` sums its [wall, CPU] seconds, exclusive of nested parts."""
    import importlib

    stack: list[list[float]] = []  # [wall, CPU] spent in nested parts, per open part

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            stack.append([0.0, 0.0])
            started = (time.perf_counter(), time.process_time())
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = (time.perf_counter() - started[0], time.process_time() - started[1])
                inner = stack.pop()
                total = seconds.setdefault(name, [0.0, 0.0])
                for i in (0, 1):
                    total[i] += elapsed[i] - inner[i]
                    if stack:
                        stack[-1][i] += elapsed[i]
        return wrapper

    for name, places in PARTS.items():
        for module_name, attribute in places:
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                continue
            if hasattr(module, attribute):
                setattr(module, attribute, timed(name, getattr(module, attribute)))


def _package_api():
    """(new_layout, {name: function}) of the package this process imports: this layout (a ``Setup`` per run, modules
    in folders) or an earlier commit's (``(cfg, data)`` and flat modules), so that ``--before`` profiles either."""
    import importlib

    import contralord

    if (Path(contralord.__file__).parent / "setup.py").is_file():  # not an import: an editable install would find it
        places = {"read_run_config": "contralord.run.file_checks", "build_data": "contralord.setup",
                  "train_latent": "contralord.stage1.latent_stage", "build_online": "contralord.stage2.encoder_stage",
                  "summarize": "contralord.run.summary", "load": "contralord.training.checkpoint"}
        new = True
    else:
        places = {"read_run_config": "contralord.preflight", "build_data": "contralord.trainer",
                  "train_latent": "contralord.latent_stage", "build_online": "contralord.encoder_stage",
                  "summarize": "contralord.trainer", "load": "contralord.checkpoint"}
        new = False
    return new, {name: getattr(importlib.import_module(module), name) for name, module in places.items()}


def worker(run: Path, latent_cache: str, threads: int) -> dict:
    """One end of run in this process: {"seconds": {part: s}, "cpu_s", "metrics", "agreement"}."""
    from types import SimpleNamespace

    import torch

    torch.set_num_threads(threads)
    from contralord.config import ContraLordConfig
    from contralord.evaluation import evaluate

    new, api = _package_api()
    cfg = ContraLordConfig.from_saved(api["read_run_config"](run / "config.json"), {})
    data = api["build_data"](cfg)
    if new:
        from contralord.setup import Setup

        inputs = (Setup.of(cfg, data),)
    else:
        inputs = (cfg, data)
    latent = api["train_latent"](*inputs, latent_cache)
    if not latent.reused:
        raise SystemExit(f"{latent_cache}: holds no stage 1 of this run (key {latent.key})")
    online = api["build_online"](*inputs, latent=None)
    online.load_state_dict(api["load"](run / "checkpoints" / "encoder.pt", required=("online",))["online"])
    seconds: dict[str, list[float]] = {}
    _wrap_parts(seconds)
    cpu, started = time.process_time(), time.perf_counter()
    cpu_device = torch.device("cpu")
    trained = SimpleNamespace(online=online, device=cpu_device, history=None)
    try:  # as the trainer does: one cache of the training images' codes for the summary and evaluate
        from contralord.encoding import CodeCache
        shared = (CodeCache(online, data.images, cpu_device),)
    except ImportError:  # the earlier code: each part encodes its own images
        shared = ()
    agreement = api["summarize"](*inputs, latent, trained, *shared)
    with tempfile.TemporaryDirectory() as out:
        arguments = (inputs[0], online, out) if new else (cfg, online, data, out)
        metrics = evaluate(*arguments, cpu_device, *shared)
    workers = _worker_processes_cpu()
    seconds["total"] = [time.perf_counter() - started, time.process_time() - cpu + workers]
    seconds.setdefault("dci", [0.0, 0.0])[1] += workers
    seconds["other"] = [seconds["total"][i] - sum(v[i] for k, v in seconds.items() if k != "total") for i in (0, 1)]
    return {"seconds": seconds, "metrics": metrics, "agreement": agreement}


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
    """Markdown: one row per part, one column per code, cells ``wall / CPU`` seconds per repeat."""
    names = list(PARTS) + ["other", "total"]
    lines = ["| part | " + " | ".join(results) + " |", "|---|" + "---|" * len(results)]
    for name in names:
        cells = ["; ".join("{:.2f} / {:.2f}".format(*r["seconds"].get(name, [0.0, 0.0])) for r in runs)
                 for runs in results.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
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
          f"wall / CPU seconds per repeat, exclusive of nested parts (DCI's CPU includes its worker processes)")
    print(_table(results))
    print(f"metrics.json and head agreement identical before/after: {same}")


if __name__ == "__main__":
    main()
