"""A calibration on a busy machine (tune/pricing/calibrate.py, issue 32): a timing whose threads outnumber the cores
other work left free is timed again on those cores, which bounds the idle machine's time; a cached busy timing is timed
again once the machine is idle; the dry run's last lines give the idle machine's range. Fake clocks and loads, no
Ray: what is checked is the arithmetic and which timings run, not how fast anything is."""

import dataclasses
import json

import pytest

from tune.pricing import calibrate
from tune.pricing.cost import describe_calibrations
from tune.pricing.estimate import SweepEstimate

WHAT = "5 stage-1 steps at 2 thread(s)"


@pytest.fixture
def machine(monkeypatch, tmp_path):
    """A 2-CPU machine whose 1-minute load average the test sets (``machine["load"]``)."""
    state = {"load": 0.0}
    monkeypatch.setenv("CONTRALORD_CACHE", str(tmp_path))
    monkeypatch.setattr(calibrate.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(calibrate.os, "getloadavg", lambda: (state["load"], 0.0, 0.0))
    return state


@pytest.mark.parametrize("load, cpus, free", [
    (0.0, 2, 2), (1.0, 2, 2), (1.2, 2, 2), (1.6, 2, 1), (2.0, 2, 1), (3.2, 2, 1), (9.0, 2, 1), (2.5, 8, 6),
    (1.9, 16, 15)])
def test_free_cores__load_less_this_process_and_at_least_one(load, cpus, free):
    assert calibrate.free_cores(load, cpus) == free


def test_busy_timing__threads_beyond_the_free_cores_are_timed_again_on_them(machine):
    """Measured on the 2-core box: 2 threads beside a 1-thread trial took 3.35 s a stage-1 step, 1 thread 0.60 s.
    The idle machine's 2-thread step then lies between 0.60 / 2 / (load / CPUs) and 0.60."""
    machine["load"], calls = 3.0, []
    timing = calibrate.cached("k", lambda: (3.35, 3.2, 3.5), WHAT, 2, lambda n: calls.append(n) or (0.6, 0.6, 0.6))
    assert calls == [1] and timing.busy and timing.seconds == 3.35  # the estimate for the load as it is
    assert timing.idle() == pytest.approx((0.6 / 2 / 1.5, 0.6))
    assert timing.retimed == "5 stage-1 steps at 2 thread(s): 3.35 s on 1 free core(s), 0.60 s at 1 thread(s)"
    again = calibrate.cached("k", lambda: pytest.fail("timed again while still busy"), WHAT, 2,
                             lambda n: pytest.fail("timed again while still busy"))
    assert again.cached and again.idle() == pytest.approx(timing.idle()) and again.retimed == timing.retimed
    scaled = again.scaled(1920, 15.0)
    assert scaled.seconds == pytest.approx(3.35 * 1920 + 15) and scaled.idle() == pytest.approx(
        (0.2 * 1920 + 15, 0.6 * 1920 + 15))


def test_busy_timing__the_idle_bound_is_never_slower_than_the_busy_timing(machine):
    """Under load the timings are noisy: 2 threads once took 0.35 s a step where 1 thread took 0.47 s."""
    machine["load"] = 3.0
    timing = calibrate.cached("k", lambda: (0.35, 0.3, 0.4), WHAT, 2, lambda n: (0.47, 0.47, 0.47))
    assert timing.idle() == pytest.approx((0.47 / 2 / 1.5, 0.35))


def test_busy_timing__threads_that_fit_are_not_timed_again_and_idle_divides_by_the_load(machine):
    machine["load"] = 1.4  # busy on 2 CPUs, but 1 thread fits beside this process's own load
    timing = calibrate.cached("k", lambda: (1.0, 1.0, 1.0), "x", 1, lambda n: pytest.fail("timed again"))
    assert timing.busy and timing.retimed == "" and timing.idle() == (1.0, 1.0)  # load / CPUs below 1
    machine["load"] = 5.0
    timing = calibrate.cached("j", lambda: (2.5, 2.5, 2.5), "x", 1, lambda n: pytest.fail("timed again"))
    assert timing.idle() == pytest.approx((1.0, 1.0))  # time-sliced: 2.5 / (5 / 2)


def test_cached_busy_timing__timed_again_once_the_machine_is_idle(machine, tmp_path, capsys):
    machine["load"], calls = 3.0, []
    calibrate.cached("k", lambda: (3.35, 3.35, 3.35), WHAT, 2, lambda n: calls.append(n) or (0.6, 0.6, 0.6))
    assert calls == [1] and json.loads((tmp_path / "calibrations.json").read_text())["k"]["retimed"]
    with calibrate.cache_only():  # --no-calibrate never times, busy or not
        machine["load"] = 0.2
        assert calibrate.cached("k", lambda: pytest.fail("timed"), WHAT).cached
    capsys.readouterr()
    fresh = calibrate.cached("k", lambda: (0.45, 0.44, 0.47), WHAT, 2, lambda n: pytest.fail("idle: no retime"))
    out = capsys.readouterr().out
    assert ("timing 5 stage-1 steps at 2 thread(s) again (the cached timing ran on a busy machine: load average "
            "3.0 on 2 CPUs, ") in out and "; it is idle now) on this machine" in out
    assert not fresh.cached and not fresh.busy and fresh.idle() == (0.45, 0.45) and fresh.retimed == ""
    entry = json.loads((tmp_path / "calibrations.json").read_text())["k"]
    assert entry["seconds"] == 0.45 and "retimed" not in entry and "idle_low" not in entry
    assert calibrate.cached("k", lambda: pytest.fail("an idle timing is kept"), WHAT).seconds == 0.45


def test_cached_busy_timing__kept_when_the_machine_is_only_a_little_less_busy(machine):
    """A timing this process's own load made look busy (1.4 on 2 CPUs) is not timed again at load 1.0: only a
    core's worth less other work counts as idle since, so a second dry run does not time everything again."""
    machine["load"] = 1.4
    calibrate.cached("k", lambda: (0.5, 0.5, 0.5), WHAT, 2, lambda n: pytest.fail("2 threads fit 2 free cores"))
    machine["load"] = 1.0
    assert calibrate.cached("k", lambda: pytest.fail("timed again"), WHAT).cached
    machine["load"] = 0.3
    assert not calibrate.cached("k", lambda: (0.4, 0.4, 0.4), WHAT).cached


@pytest.mark.parametrize("change", [
    {"load": "3.0"}, {"cpus": "2"}, {"cpus": 0}, {"cpus": True}, {"seconds": float("nan")}, {"seconds": -1.0},
    {"idle_low": "0.2"}, {"idle_high": None}, {"retimed": 7}, {"when": None}, {"seconds": True}])
def test_cached_entry_that_is_not_a_timing__timed_again(machine, tmp_path, change):
    """calibrations.json is read back from disk: an entry of the wrong types or values is timed again, never a
    crash later in the estimate's arithmetic."""
    good = {"seconds": 0.5, "low": 0.4, "high": 0.6, "load": 3.0, "cpus": 2, "when": "then", "idle_low": 0.2,
            "idle_high": 0.6, "retimed": "x", "what": WHAT, "took": 3.0}
    assert calibrate._timing_from_entry(good) is not None
    entry = {k: v for k, v in (good | change).items() if v is not None}
    calibrate.checkpoint.write_json_atomic({"k": entry}, tmp_path / "calibrations.json")
    timing = calibrate.cached("k", lambda: (0.7, 0.7, 0.7), WHAT)
    assert not timing.cached and timing.seconds == 0.7 and timing.idle() == (0.7, 0.7)


def test_plus__a_retimed_stage1_and_its_references_keep_their_bounds():
    stage1 = calibrate.Timing(3.0, 3.0, 3.0, 3.0, 2, "now", idle_low=0.2, idle_high=0.6, retimed="a")
    references = calibrate.Timing(1.0, 1.0, 1.0, 3.0, 2, "now")  # not retimed: idle = 1.0 / 1.5
    both = stage1.plus(references)
    assert both.seconds == 4.0 and both.idle() == pytest.approx((0.2 + 1 / 1.5, 0.6 + 1 / 1.5))
    assert both.retimed == "a" and references.plus(references).idle_low is None


def test_describe_calibrations__the_idle_range_and_how_it_was_found():
    stage1 = calibrate.Timing(1000.0, 900.0, 1100.0, 3.0, 2, "2026-12-06 21:41", idle_low=100.0, idle_high=300.0,
                              retimed="5 stage-1 steps at 2 thread(s): 3.35 s on 1 free core(s), 0.60 s at 1 thread(s)")
    trial = calibrate.Timing(300.0, 300.0, 300.0, 3.0, 2, "2026-12-06 21:41")  # 1 thread: 300 / 1.5 idle
    stage1, trial = (dataclasses.replace(stage1, part="stage1"), dataclasses.replace(trial, part="trials"))
    est = SweepEstimate([], {0: 1000.0, 1: 1000.0, 2: 1000.0}, [], 1, "tune", "",  # 3 seeds, 20 trials
                        parts={"stage1": 3000.0, "trials": 6000.0, "table": 8.0}, calibrations=(stage1, trial))
    busy = describe_calibrations(est)[-1]
    low, high = 8 + 3000 * 0.1 + 6000 / 1.5, 8 + 3000 * 0.3 + 6000 / 1.5  # each part by its own timings' share
    assert f"on an idle machine about {low:.0f}-{high:.0f} s" in busy
    assert "timed again on them: 5 stage-1 steps at 2 thread(s): 3.35 s on 1 free core(s), 0.60 s at 1" in busy
    plain = describe_calibrations(SweepEstimate([], {0: 600.0}, [], 1, "tune", "",
                                                parts={"stage1": 600.0, "trials": 300.0}, calibrations=(trial,)))[-1]
    assert "on an idle machine about 600 s (stage 1 and trials divided by load / CPUs = 1.5)" in plain
