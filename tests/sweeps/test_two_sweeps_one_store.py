"""Issue 33 fault e, the rest: two whole sweeps train side by side on one SQLite store, each on its own local Ray
and storage as two users on one machine would run them, while ``make_tables`` reads the store again and again.
No lock error reaches either sweep or the reader, and every run has every point it would have had alone: each
trial one point per epoch of every training metric, none twice, and its evaluation."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")
from mlflow import MlflowClient  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
EPOCHS = 3
FAST = ["--preset", "smoke", "--no-calibrate", "--max-concurrent", "1", "--set", "data.size=320",
        "--set", "latent.epochs=1", "--set", f"encoder.epochs={EPOCHS}", "--set", "eval.num_train=64",
        "--set", "eval.num_test=32", "--set", "eval.grid_size=2"]

# make_tables as a user runs it, in a loop until the sweeps are done: its exit status and error line each time
READER = """
import contextlib, io, json, sys, time
from pathlib import Path
from ablations.make_tables import main
uri, done = sys.argv[1], Path(sys.argv[2])
reads = []
while True:
    last = done.exists()
    for spec in ("table6", "table4"):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(["--tracking-uri", uri, "--spec", spec])
        reads.append([spec, code, err.getvalue().strip()])  # whole: a refusal naming 4 experiments is over 300 chars
    if last:
        break
    time.sleep(1.0)
print(json.dumps(reads))
"""


@pytest.mark.slow
def test_two_sweeps_side_by_side_on_one_store__while_make_tables_reads(own_processes, tmp_path):
    uri, done = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "done"
    sweeps = {}
    for kind in ("negatives", "losses"):
        (tmp_path / kind).mkdir()
        command = [sys.executable, str(REPO / "tune" / f"sweep_{kind}.py"), *FAST, "--tracking-uri", uri,
                   "--storage", str(tmp_path / kind / "ray_results"), "--name", f"side-by-side-{kind}"]
        with open(tmp_path / f"{kind}.log", "w") as log:  # a file, not a pipe: neither sweep waits on a reader
            sweeps[kind] = own_processes.start(command, cwd=tmp_path / kind, stdout=log, stderr=subprocess.STDOUT)
    reader = own_processes.start([sys.executable, "-c", READER, uri, str(done)], cwd=REPO, stdout=-1, stderr=-1,
                                 text=True)
    started = time.monotonic()
    for kind, process in sweeps.items():
        returncode = process.wait(timeout=max(1, 900 - (time.monotonic() - started)))
        output = (tmp_path / f"{kind}.log").read_text()
        assert returncode == 0, f"{kind}: {output[-3000:]}"
        assert "database is locked" not in output, f"{kind}: {output[-3000:]}"
    wall = time.monotonic() - started
    done.touch()
    out, err = reader.communicate(timeout=300)
    assert reader.returncode == 0, err[-3000:]
    reads = json.loads(out.strip().splitlines()[-1])
    # a refusal is make_tables' one line (exit 2): the store or experiment not there yet, or no finished run
    failures = [r for r in reads if r[1] not in (0, 2) or "database is locked" in r[2]
                or (r[1] == 2 and (not r[2].startswith("error: ") or "\n" in r[2]))]
    assert not failures, failures
    print("refusals:", sorted({r[2][:60] for r in reads if r[1] == 2}))
    while_running = [r for r in reads[:-2] if r[1] == 0]
    assert [r[1] for r in reads[-2:]] == [0, 0], reads[-2:]  # after both sweeps, both tables print
    assert while_running, "make_tables printed no table while the sweeps were writing"
    print(f"two sweeps side by side: {wall:.0f} s; make_tables read {len(reads)} times, {len(while_running)} "
          f"tables printed while they wrote, {sum(r[1] == 2 for r in reads)} refusals (no finished run yet)")

    client = MlflowClient(uri)
    for kind in sweeps:
        experiment = client.get_experiment_by_name(f"contralord-{kind}")
        runs = client.search_runs([experiment.experiment_id])
        parents = [r for r in runs if r.data.tags.get("role") == "sweep"]
        trials = [r for r in runs if r.data.tags.get("role") == "trial"]
        assert len(parents) == 1 and parents[0].info.status == "FINISHED"
        assert len(trials) == 2 and all(r.info.status == "FINISHED" for r in trials), kind
        assert len({r.data.tags["ray_trial_id"] for r in trials}) == 2  # no trial logged twice
        for trial in trials:
            train = [key for key in trial.data.metrics if key.startswith("encoder/train/")]
            assert train and "encoder/eval/disentanglement" in trial.data.metrics
            for key in train:  # one point per epoch, none twice: nothing lost to the other sweep's writes
                steps = [m.step for m in client.get_metric_history(trial.info.run_id, key)]
                assert len(steps) == EPOCHS and len(set(steps)) == EPOCHS, (kind, key, steps)
    spans = {role: [(r.info.start_time, r.info.end_time) for kind in sweeps for r in client.search_runs(
        [client.get_experiment_by_name(f"contralord-{kind}").experiment_id]) if r.data.tags.get("role") == role]
        for role in ("sweep", "trial")}
    (a0, a1), (b0, b1) = spans["sweep"]
    assert a0 < b1 and b0 < a1, spans  # the sweeps ran side by side (their trials may or may not have overlapped)
    overlapping = sum(s0 < e1 and t0 < s1 for i, (s0, s1) in enumerate(spans["trial"])
                      for t0, e1 in spans["trial"][i + 1:])
    print(f"trials that trained at the same time as another: {overlapping} pair(s)")
    stage1 = client.search_runs([client.get_experiment_by_name("contralord-stage1").experiment_id])
    assert stage1 and all(r.info.status == "FINISHED" for r in stage1)
