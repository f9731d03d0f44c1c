"""Load on a tracking server (issue 33 fault f): N trial loggers write to one ``mlflow server`` at once.

For each store and each N, the benchmark starts ``mlflow server`` on loopback (as the cluster's head runs it:
default workers, no job execution) on that store, lets N loggers each open a run and log a batch of metrics per
request for ``--seconds``, ends the server by its process group, then reads every run back from the store itself.
It reports requests per second, latency, failed requests and points lost (acknowledged by the server but not in
the store). Bounded: every logger stops at its deadline, the server is ended in any case, and a new SQLite store
lives in a temporary folder that is removed.

    python tune/store/bench_store.py --store sqlite --loggers 8,32,64 --seconds 20
    python tune/store/bench_store.py --store postgresql+psycopg://user:pass@127.0.0.1:5432/throwaway  # writes there

A PostgreSQL store gets an experiment per N (``bench-store-<time>-<N>``): point it at a throwaway database.
Loggers are threads, spread over up to ``--processes`` processes (a real trial is one process; a few thousand
threads' worth of processes would measure this machine, not the server). Each request retries at most
``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` = 2 times (MLflow's default, 7, hides a failing server for minutes).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import queue
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, when run as a script

from ablations.store import DB_SCHEMES, tracking_client, without_password  # noqa: E402

METRICS_PER_REQUEST = 10  # one epoch of a trial's training metrics, as MlflowLogger sends them in one log_batch
SERVER_READY_S = 120
RETRIES = "2"


class BenchError(RuntimeError):
    """The benchmark could not run (a server that does not start, loggers that never get ready): one line, exit 1."""


@dataclass
class Outcome:
    store: str
    loggers: int
    seconds: float
    interval: float
    requests: int
    failed: int
    points_acknowledged: int
    points_stored: int
    points_lost: int
    requests_per_s: float
    latency_p50_ms: float
    latency_p95_ms: float
    errors: dict[str, int]  # the failed requests by exception and first line of its message


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_server(store: str, folder: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    log_path = folder / f"server-{port}.log"
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store, "--host", "127.0.0.1",
               "--port", str(port), "--artifacts-destination", str(folder / "artifacts")]
    with open(log_path, "w") as log:  # the child keeps its own descriptor
        server = subprocess.Popen(command, cwd=folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                  env=os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + SERVER_READY_S
    while time.monotonic() < deadline and server.poll() is None:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            return server, url
        except OSError:
            time.sleep(0.5)
    code = server.poll()
    _stop_server(server)
    tail = " | ".join(log_path.read_text(errors="replace").strip().splitlines()[-2:])[-300:]
    what = f"exited with code {code}" if code is not None else f"did not answer in {SERVER_READY_S} s"
    password = urlparse(store).password
    tail = tail.replace(password, "***") if password else tail
    raise BenchError(f"mlflow server on {without_password(store)} {what}; its log ends: {tail or '(empty)'}")


def _stop_server(server: subprocess.Popen) -> None:
    """End the server's whole process group (its workers too): SIGTERM, then SIGKILL to whatever is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            break
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            continue
    try:  # a worker may outlive the group's leader
        os.killpg(server.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while (left := group_running(server.pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    if left:  # its temporary store must not be removed under a live server
        raise BenchError(f"mlflow server (process group {server.pid}): processes {left} outlived SIGKILL for 10 s")


def group_running(pgid: int) -> list[int]:
    """PIDs of process group ``pgid`` that still run. A killed worker whose leader died first waits as a zombie
    until the machine's init reaps it (some containers' init never does): it no longer runs, but ``killpg(pgid,
    0)`` still finds it, so this reads each process's state."""
    import psutil

    running = []
    for process in psutil.process_iter(["status"]):
        try:
            if os.getpgid(process.pid) == pgid and process.info["status"] != psutil.STATUS_ZOMBIE:
                running.append(process.pid)
        except (ProcessLookupError, psutil.Error):
            continue  # ended while we looked
    return running


def _log_until(url: str, run_id: str, deadline: float, interval: float, out: list) -> None:
    """One logger: a batch of metrics per request to ``run_id`` until ``deadline`` (``time.time``), a request every
    ``interval`` seconds from a random offset (0: each as soon as the last is answered); appends its record to
    ``out``."""
    from mlflow.entities import Metric

    from tune.trial.mlflow_logger import send_batches

    client, latencies, failed, acknowledged, step, errors = tracking_client(url), [], 0, 0, 0, {}
    time.sleep(random.uniform(0, interval))
    while time.time() < deadline:
        metrics = [Metric(f"m{j}", float(step), int(time.time() * 1000), step) for j in range(METRICS_PER_REQUEST)]
        started = time.monotonic()
        try:
            send_batches(client, run_id, "metrics", metrics)
            acknowledged += len(metrics)
        except Exception as error:  # a failed request is counted, never retried here beyond MLflow's own retries
            failed += 1
            kind = f"{type(error).__name__}: {str(error).splitlines()[0][:120] if str(error) else ''}"
            errors[kind] = errors.get(kind, 0) + 1
        latencies.append(time.monotonic() - started)
        step += 1
        time.sleep(max(0.0, min(interval - latencies[-1], deadline - time.time())))
    out.append({"run_id": run_id, "latencies": latencies, "failed": failed, "acknowledged": acknowledged,
                "errors": errors})


def _worker(url: str, experiment_id: str, threads: int, interval: float, ready, go, deadline, results) -> None:
    """A process of ``threads`` loggers: their runs are made first, then all start when the parent says go (so
    that N loggers write for the whole time, not the ones that finished importing first)."""
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = RETRIES  # this logger process only
    from tune.trial.mlflow_logger import create_run

    client = tracking_client(url)
    runs = [create_run(client, experiment_id) for _ in range(threads)]
    ready.put(len(runs))
    go.wait(timeout=SERVER_READY_S)
    out: list = []
    workers = [threading.Thread(target=_log_until, args=(url, run_id, deadline.value, interval, out))
               for run_id in runs]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=max(deadline.value - time.time(), 0) + 120)
    results.put(out)


def _wait_ready(ready, started: list) -> None:
    """Every logger process has made its runs; one that died first (exit code set) is named, not waited for."""
    waiting, deadline = len(started), time.monotonic() + SERVER_READY_S
    while waiting:
        try:
            ready.get(timeout=1.0)
            waiting -= 1
        except queue.Empty:
            dead = [p.exitcode for p in started if p.exitcode not in (None, 0)]
            if dead or time.monotonic() > deadline:
                for process in started:
                    process.kill()
                raise BenchError(f"{waiting} of {len(started)} logger processes never got ready (exit codes "
                                   f"{dead or 'none'}: they could not reach the server or make their runs)") from None


def _stored_points(store: str, run_ids: list[str]) -> int:
    client = tracking_client(store)
    return sum(len(client.get_metric_history(run_id, f"m{j}")) for run_id in run_ids
               for j in range(METRICS_PER_REQUEST))


def measure(store: str, loggers: int, seconds: float, processes: int, folder: Path, interval: float = 0.0
            ) -> Outcome:
    """N = ``loggers`` writers against a fresh server on ``store`` for ``seconds``, each sending a request every
    ``interval`` seconds (0: as fast as the server answers)."""
    from tune.trial.mlflow_logger import create_experiment

    server, url = _start_server(store, folder)
    started = []
    try:
        experiment_id = create_experiment(tracking_client(url), f"bench-store-{int(time.time())}-{loggers}")
        context = multiprocessing.get_context("spawn")
        ready, results, go, deadline = context.Queue(), context.Queue(), context.Event(), context.Value("d", 0.0)
        count = min(processes, loggers)
        shares = [loggers // count + (i < loggers % count) for i in range(count)]
        started = [context.Process(target=_worker, args=(url, experiment_id, n, interval, ready, go, deadline,
                                                         results), daemon=True) for n in shares]
        for process in started:
            process.start()
        _wait_ready(ready, started)
        deadline.value = time.time() + seconds
        go.set()
        try:
            records = [r for _ in started for r in results.get(timeout=seconds + 300)]
        except queue.Empty:
            raise BenchError(f"the loggers sent no result within {seconds + 300:.0f} s of their deadline") from None
        for process in started:
            process.join(timeout=30)
    finally:
        for process in started:
            if process.is_alive():
                process.kill()
        _stop_server(server)
    latencies = sorted(t for r in records for t in r["latencies"])
    acknowledged = sum(r["acknowledged"] for r in records)
    stored = _stored_points(store, [r["run_id"] for r in records])
    failed = sum(r["failed"] for r in records)
    return Outcome(without_password(store), loggers, seconds, interval, len(latencies), failed, acknowledged, stored,
                   acknowledged - stored, round(len(latencies) / seconds, 1),
                   round(1000 * statistics.median(latencies), 1) if latencies else float("nan"),
                   round(1000 * latencies[int(0.95 * (len(latencies) - 1))], 1) if latencies else float("nan"),
                   _merged([r["errors"] for r in records]))


def _merged(counts: list[dict[str, int]]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for count in counts:
        for kind, n in count.items():
            merged[kind] = merged.get(kind, 0) + n
    return dict(sorted(merged.items(), key=lambda item: -item[1]))


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", action="append", default=[],
                        help="sqlite (a new store in a temporary folder, per N) or a database URI; repeatable")
    parser.add_argument("--loggers", default="8,32,64", help="comma-separated N (default 8,32,64)")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the loggers write, per N")
    parser.add_argument("--interval", type=float, default=0.0,
                        help="seconds between a logger's requests (a trial sends its system metrics every 2 s); "
                             "0, the default: each as soon as the last is answered (the server's capacity)")
    parser.add_argument("--processes", type=int, default=8, help="the loggers' threads are spread over these")
    parser.add_argument("--out", default="", help="also write the outcomes to this JSON file")
    args = parser.parse_args(argv)
    try:
        args.loggers = [int(n) for n in args.loggers.split(",")]
    except ValueError:
        parser.exit(2, f"--loggers: expected comma-separated positive ints, got {args.loggers!r}\n")
    if not all(0 < n <= 1024 for n in args.loggers):
        parser.exit(2, f"--loggers: expected each N in [1, 1024], got {args.loggers}\n")
    if not 0 < args.seconds <= 600 or not 0 < args.processes <= 64 or not 0 <= args.interval <= 60:
        parser.exit(2, "--seconds: expected (0, 600], --processes [1, 64] and --interval [0, 60]\n")
    for store in args.store:
        if store != "sqlite" and urlparse(store).scheme.split("+")[0] not in DB_SCHEMES:
            parser.exit(2, f"--store: expected sqlite (a new store) or a database URI ({', '.join(DB_SCHEMES)}), "
                           f"got {without_password(store)!r}\n")
    if args.out and not Path(args.out).resolve().parent.is_dir():
        parser.exit(2, f"--out: the folder of {args.out} does not exist\n")
    args.store = args.store or ["sqlite"]
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        for store in args.store:
            for n in args.loggers:
                folder = Path(tmp) / f"{len(outcomes)}"
                folder.mkdir()
                uri = f"sqlite:///{folder / 'mlflow.db'}" if store == "sqlite" else store
                try:
                    outcome = measure(uri, n, args.seconds, args.processes, folder, args.interval)
                except BenchError as error:
                    print(f"error: {error}", file=sys.stderr)
                    return 1
                outcome.store = "sqlite" if store == "sqlite" else outcome.store
                outcomes.append(outcome)
                pace = f"every {args.interval} s" if args.interval else "closed loop"
                print(f"{outcome.store}  N={n:<4} {pace}  {outcome.requests_per_s:8.1f} req/s  p50 "
                      f"{outcome.latency_p50_ms} ms  p95 {outcome.latency_p95_ms} ms  failed "
                      f"{outcome.failed}/{outcome.requests}  points lost {outcome.points_lost} of "
                      f"{outcome.points_acknowledged}", flush=True)
                for kind, count in list(outcome.errors.items())[:3]:
                    print(f"    {count} x {kind}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps([asdict(o) for o in outcomes], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
