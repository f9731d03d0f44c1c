"""``--dry-run`` (issue 12 item 3): the trials, stage-1 runs, resources, path and a wall-time estimate are
printed and the sweep exits 0 without starting Ray, creating the storage folder or writing to the MLflow
store; the estimate comes from the store's past runs on this machine when it has any. ``--trainer`` is
refused in one line (exit 2)."""

import hashlib
import json
import os
import time

import pytest

ray = pytest.importorskip("ray")
from mlflow import MlflowClient  # noqa: E402

from contralord import labels, machine  # noqa: E402
from contralord.config import ContraLordConfig, parse_set_args  # noqa: E402
from contralord.presets import resolve_presets  # noqa: E402
from contralord.setup import build_data  # noqa: E402
from tune.driver.run import main  # noqa: E402

FAST = ["--set", "data.size=320", "--set", "latent.epochs=1", "--set", "encoder.epochs=2",
        "--set", "eval.num_train=64", "--set", "eval.num_test=32", "--set", "eval.grid_size=2"]


def _args(tmp_path, *extra):
    return ["--preset", "smoke", "--storage", str(tmp_path / "ray"), "--tracking-uri",
            f"sqlite:///{tmp_path}/mlflow.db", *FAST, "--dry-run", *extra]


def _machine_tags(threads: int) -> dict[str, str]:
    here = machine.describe()
    return {"machine.cpu": here.cpu, "machine.gpu": here.gpu, "machine.threads": str(threads)}


def _past_store(path) -> None:
    """A store holding one FINISHED smoke trial per K (time/total 50 s) and one stage-1 run (30 s)."""
    client = MlflowClient(f"sqlite:///{path}")
    trials = client.create_experiment("contralord-negatives")
    base = resolve_presets(["smoke"]) | parse_set_args(FAST[1::2])
    for k in (128, 256):
        cfg = ContraLordConfig.from_overrides(base | {"encoder.queue_size": k, "run.seed": 0})
        run = client.create_run(trials, tags={"role": "trial"} | _machine_tags(1)).info.run_id
        for key, value in labels.resolved(cfg, build_data(cfg)).to_flat_dict().items():
            client.log_param(run, key, str(value))
        client.log_metric(run, "time/total", 50.0)
        client.set_terminated(run, "FINISHED")
    stage1 = client.create_experiment("contralord-stage1")
    now = int(time.time() * 1000)
    run = client.create_run(stage1, start_time=now - 30_000, tags={"role": "stage1"} | _machine_tags(os.cpu_count()))
    for key, value in ContraLordConfig.from_overrides(base).to_flat_dict().items():
        client.log_param(run.info.run_id, key, str(value))
    client.set_terminated(run.info.run_id, "FINISHED", end_time=now)


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_dry_run__estimate_from_past_runs_and_nothing_written(tmp_path, capsys):
    _past_store(tmp_path / "mlflow.db")
    before = _digest(tmp_path / "mlflow.db")
    assert main("negatives", _args(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "Ray not started" in out and out.count("history: 1 past run(s), same config") == 2
    assert "stage 1 to train: 1 (seed 0 ~30 s)" in out and "2 trial(s) at once" in out
    assert "trainer path: tune (auto:" in out and "reuse: " in out
    wall = float(out.split("estimate: ~")[1].split(" s wall")[0])
    assert wall > 30 + 50  # stage 1, then the two trials side by side (each 50 s and its launch)
    assert not ray.is_initialized() and not (tmp_path / "ray").exists()
    assert _digest(tmp_path / "mlflow.db") == before  # read, never written


@pytest.mark.slow
def test_dry_run__row_plans_only_the_named_rows(tmp_path, capsys):
    _past_store(tmp_path / "mlflow.db")
    assert main("negatives", _args(tmp_path, "--row", "K=256", "--seeds", "2")) == 0
    out = capsys.readouterr().out
    assert "2 trial(s)" in out and "K=128" not in out
    assert [line.split()[2] for line in out.splitlines() if line.lstrip().startswith("K=256 ")] == ["0", "1"]


@pytest.mark.slow
def test_dry_run__until_decided_bounds_the_later_rounds(tmp_path, capsys):
    _past_store(tmp_path / "mlflow.db")
    assert main("negatives", _args(tmp_path, "--seeds", "1", "--until-decided", "--max-seeds", "3")) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("until-decided:"))
    assert "at most 2 round(s) (seed 1, 2) and 4 trial(s); if every row stays open: stage 1 ~60 s" in line, line
    assert float(line.split(" s, ~")[1].split(" s more")[0]) > 2 * (30 + 50)  # stage 1 (the store's 30 s), 2 trials


def test_describe_climbs__the_ladders_a_moving_sweep_climbs_through():
    from tune.pricing.cost import describe_climbs

    line = describe_climbs("160,640", 10000)
    assert "climb at most 2 rung(s) (640 -> 2560, 2560 -> 10000 steps)" in line and line.startswith("until-decided:")
    assert "climb at most 0 rung(s)" in describe_climbs("160,640", 640)


@pytest.mark.slow
def test_dry_run__calibrates_without_a_store(tmp_path, capsys):
    assert main("negatives", _args(tmp_path, "--trainer", "train")) == 0
    out = capsys.readouterr().out
    assert out.count("(calibration: train") == 2 and "stage 1 to train: 1" in out
    assert "trainer path: train (--trainer train" in out and "+ a driver (no CPU: 0.01 of a resource of its own" in out
    assert float(out.split("estimate: ~")[1].split(" s wall")[0]) > 0
    assert not ray.is_initialized() and sorted(p.name for p in tmp_path.iterdir()) == []  # no store, no ray/


@pytest.mark.parametrize("extra, needle", [
    (["--trainer", "ray"], "--trainer: expected auto, train or tune, got 'ray'"),
    (["--trainer", "tune", "--workers-per-trial", "2"], "--trainer tune runs one worker inside the Tune trial"),
])
def test_trainer_flag__one_line_exit_2(tmp_path, capsys, extra, needle):
    assert main("negatives", _args(tmp_path, *extra)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sweep: error: ") and needle in err[0], err
    assert not ray.is_initialized() and not (tmp_path / "ray").exists()


@pytest.mark.slow
def test_dry_run__a_second_time_reads_its_calibrations_and_says_what_load_they_saw(tmp_path, capsys, monkeypatch):
    """The first dry run times stage 1, each variant, the evaluation and a launch, on a machine busy with other work
    (load average 6 on this machine's CPUs), and says so beside the idle estimate; the second times nothing."""
    from tune.pricing import calibrate

    monkeypatch.setattr(calibrate.os, "getloadavg", lambda: (6.0 * (os.cpu_count() or 1), 0.0, 0.0))
    assert main("negatives", _args(tmp_path)) == 0
    first = capsys.readouterr().out
    assert "calibration: 5 timing(s), 0 from the cache" in first and "5 timed now" in first, first
    assert "machine busy while timing (load average" in first and "on an idle machine about" in first
    monkeypatch.setattr(calibrate, "step_times", lambda *a: pytest.fail("timed again"))
    monkeypatch.setattr(calibrate.subprocess, "run", lambda *a, **k: pytest.fail("launch timed again"))
    started = time.perf_counter()
    assert main("negatives", _args(tmp_path)) == 0
    second = capsys.readouterr().out
    assert "calibration: 5 timing(s), 5 from the cache" in second and "0 timed now" in second
    part = lambda out, name: out.split(f" {name} ")[1].split(" s")[0]  # noqa: E731
    assert [part(second, p) for p in ("stage1", "trials")] == [part(first, p) for p in ("stage1", "trials")]
    assert "  range: ~" in second
    print(f"second dry run: {time.perf_counter() - started:.1f} s")
    assert main("negatives", _args(tmp_path, "--no-calibrate")) == 0  # the cache prices everything: nothing unpriced
    third = capsys.readouterr().out
    assert "not priced" not in third and [part(third, p) for p in ("stage1", "trials")] == [
        part(first, p) for p in ("stage1", "trials")]


def test_dry_run__no_calibrate_times_nothing_and_says_what_it_left_unpriced(tmp_path, capsys, monkeypatch):
    from tune.pricing import calibrate

    monkeypatch.setenv("CONTRALORD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(calibrate, "step_times", lambda *a: pytest.fail("timed"))
    monkeypatch.setattr(calibrate.subprocess, "run", lambda *a, **k: pytest.fail("launch timed"))
    assert main("negatives", _args(tmp_path, "--no-calibrate")) == 0
    out = capsys.readouterr().out
    assert "calibration: timing" not in out and out.count("not priced: no past run and no cached calibration") == 2
    assert "estimate: at least ~" in out and "not priced: 1 stage-1 run(s) and 2 trial(s) (--no-calibrate" in out
    assert "stage 1 to train: 1 (seed 0 ~? s)" in out
    assert "trainer path: tune (auto, with trials unpriced (--no-calibrate): by worker count" in out
    assert not (tmp_path / "cache").exists() and not ray.is_initialized()


def test_calibration__says_about_how_long_a_timing_took_before(tmp_path, capsys, monkeypatch):
    from tune.pricing import calibrate

    monkeypatch.setenv("CONTRALORD_CACHE", str(tmp_path))
    calibrate.cached("a", lambda: (1.0, 1.0, 1.0), "5 stage-1 steps at 2 thread(s)")
    assert ", about" not in capsys.readouterr().out  # nothing timed like it before
    entry = json.loads((tmp_path / "calibrations.json").read_text())["a"]
    assert entry["what"] == "5 stage-1 steps at 2 thread(s)" and entry["took"] >= 0
    calibrate.checkpoint.write_json_atomic({"a": entry | {"took": 12.0}}, tmp_path / "calibrations.json")
    calibrate.cached("b", lambda: (1.0, 1.0, 1.0), "5 stage-1 steps at 2 thread(s)")  # another config, same timing
    assert "timing 5 stage-1 steps at 2 thread(s) on this machine, about 12 s as before" in capsys.readouterr().out
    with calibrate.cache_only(), pytest.raises(calibrate.NotCalibrated):
        calibrate.cached("c", lambda: pytest.fail("timed"), "5 stage-1 steps at 2 thread(s)")
    assert calibrate.cached("b", lambda: pytest.fail("timed"), "x").cached  # the cache still answers
