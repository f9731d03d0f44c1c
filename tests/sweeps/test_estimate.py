"""The cost model of a sweep (tune/pricing/estimate.py): trials at once, the schedule of trials on slots, and the
execution path ``--trainer auto`` takes for given predicted trial durations. Pure functions, no Ray."""

import pytest

from tune.checks import SweepError
from tune.pricing.estimate import (
    TABLE_S,
    WORKER_GROUP_S,
    TrialCost,
    choose_trainer,
    combine,
    concurrency,
    later_rounds,
    schedule,
)


@pytest.mark.parametrize("mode, workers, predicted, gpu, path", [
    ("auto", 1, 98.0, False, "tune"),  # a cpu-preset trial: start-up 39% of it
    ("auto", 1, 20 * WORKER_GROUP_S + 1, False, "train"),  # start-up just under 5%
    ("auto", 1, 20 * WORKER_GROUP_S - 1, False, "tune"),  # just over 5%
    ("auto", 1, 36 * 3600.0, False, "train"),  # the paper preset
    ("auto", 1, 4 * 3600.0, True, "train"),  # a GPU trial
    ("auto", 2, 30.0, False, "train"),  # several workers: DDP needs Ray Train, however short
    ("train", 1, 30.0, False, "train"),
    ("tune", 1, 36 * 3600.0, False, "tune"),
])
def test_choose_trainer__path_for_predicted_duration(mode, workers, predicted, gpu, path):
    chosen, why = choose_trainer(mode, workers, predicted, gpu)
    assert chosen == path
    assert f"{predicted:.0f} s" in why and "\n" not in why  # one line with the numbers


def test_choose_trainer__no_trial_priced_says_so_not_an_infinite_share():
    _, why = choose_trainer("tune", 1, 0.0, False)  # --no-calibrate, nothing known: the trials are unpriced
    assert "no trial to run is priced" in why and "inf" not in why


@pytest.mark.parametrize("mode, workers, needle", [
    ("bogus", 1, "--trainer: expected auto, train or tune, got 'bogus'"),
    ("tune", 2, "--trainer tune runs one worker inside the Tune trial, but --workers-per-trial is 2"),
])
def test_choose_trainer__refuses_bad_modes(mode, workers, needle):
    with pytest.raises(SweepError, match=needle):
        choose_trainer(mode, workers, 100.0, False)


@pytest.mark.parametrize("cpus, per_trial, gpus, gpus_per_trial, limit, slots", [
    (2, 1.0, 0, 0.0, 0, 2), (2, 1.0, 0, 0.0, 1, 1), (2, 0.5, 0, 0.0, 0, 4), (16, 1.0, 1, 0.5, 0, 2),
    (2, 4.0, 0, 0.0, 0, 1),  # a trial larger than the node still runs (Ray would wait; the estimate does not)
])
def test_concurrency__cpus_gpus_and_cap(cpus, per_trial, gpus, gpus_per_trial, limit, slots):
    assert concurrency(cpus, per_trial, gpus, gpus_per_trial, limit) == slots


@pytest.mark.parametrize("durations, slots, wall", [
    ([10, 10, 10, 10], 2, 20), ([10, 10, 10], 2, 20), ([30, 10, 10, 10], 2, 30), ([5, 7], 1, 12), ([], 3, 0),
])
def test_schedule__trials_start_when_a_slot_frees(durations, slots, wall):
    assert schedule(durations, slots) == wall


def test_combine__stage1_first_reused_trials_free_and_path_cost():
    trials = [TrialCost("a", 0, 100.0, "calibration"), TrialCost("b", 0, 100.0, "calibration"),
              TrialCost("c", 0, 100.0, "calibration", reused="run123")]
    est = combine(trials, {0: 300.0}, [], slots=1, mode="auto", workers=1, use_gpu=False)
    assert est.path == "tune" and est.parts["stage1"] == 300 and est.parts["trials"] == 200
    forced = combine(trials, {0: 300.0}, [], slots=1, mode="train", workers=1, use_gpu=False)
    assert forced.parts["trials"] == 200 + 2 * WORKER_GROUP_S  # the worker group starts in every trial
    assert est.wall_s == sum(est.parts.values()) > 0


def test_later_rounds__one_round_per_new_seed_every_row_open():
    trials = [TrialCost(v, s, seconds, "history") for s in (0, 1) for v, seconds in (("a", 100.0), ("b", 60.0),
                                                                                       ("c", 40.0))]
    later = later_rounds(trials, {2: 500.0, 3: 0.0}, slots=2, extra_s=0.0)
    assert later.seeds == [2, 3] and later.trials == 6 and later.stage1_s == 500
    assert later.wall_s == (500 + 100 + TABLE_S) + (0 + 100 + TABLE_S)  # a | b then c on two slots: 100 s
    path_cost = later_rounds(trials, {2: 0.0}, slots=3, extra_s=WORKER_GROUP_S)
    assert path_cost.wall_s == 100 + WORKER_GROUP_S + TABLE_S
    assert later_rounds(trials, {}, slots=1, extra_s=0.0).wall_s == 0


@pytest.mark.parametrize("name", ["dsprites", "shapes3d"])
def test_eval_sized__every_held_out_split_holds_a_factors_values(name):
    """The calibration's small evaluations must pass the metrics' own checks: dSprites' 32 positions need
    32 held-out images under both protocols (a warm-up at 150 images once failed with 'found N=30')."""
    from contralord.config import ContraLordConfig
    from contralord.setup import Setup, build_data
    from tune.pricing.calibrate import _eval_sized

    cfg = ContraLordConfig.from_overrides({"data.name": name, "data.size": 256})
    data = build_data(cfg)
    for fraction in (0.0, 0.25):
        small = _eval_sized(Setup.of(cfg, data), fraction).cfg
        biggest = max(data.factor_sizes)
        assert small.eval.num_test >= biggest
        assert 0.2 * (small.eval.num_train + small.eval.num_test) >= biggest


def test_log_cost__a_failed_estimate_is_one_line_and_the_sweep_goes_on(monkeypatch, capsys, tmp_path):
    """An estimate is advice: if it fails, the sweep says so in one line, tags the parent run and runs on
    the path --trainer forces (or the worker count's), instead of dying after Ray started."""
    import dataclasses
    import types

    from mlflow import MlflowClient

    from tune.driver import sweep
    from tune.options import SweepOptions
    from tune.pricing import cost

    def broken(*args, **kwargs):
        raise ValueError("codes_test too small\nsecond line")

    monkeypatch.setattr(cost, "estimate_sweep", broken)
    monkeypatch.setattr(cost, "reused_runs", lambda plan: None)
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    parent = client.create_run(client.create_experiment("x")).info.run_id
    plan = types.SimpleNamespace(options=SweepOptions(trainer="train", workers_per_trial=1), estimate=None)
    sweep._log_cost(plan, client, parent)
    out = capsys.readouterr().out
    assert "estimate: not made (ValueError: codes_test too small); the sweep goes on, trainer path train" in out
    assert client.get_run(parent).data.tags["estimate_error"] == "ValueError: codes_test too small"
    assert plan.estimate is None
    plan.options = dataclasses.replace(plan.options, trainer="auto")
    assert sweep._path_without_estimate(plan) == "tune"


def test_trial_costs__a_launch_is_timed_only_when_a_trial_process_starts(monkeypatch, tmp_path):
    """``calibrate.launch_seconds`` starts a Python that imports what a trial imports (~6 CPU-s): a sweep
    whose every trial is reused starts no trial process and pays none; one trial to train pays it once."""
    from tune.driver.run import parse_options, plan_sweep
    from tune.pricing import calibrate, cost, history

    args = ["--preset", "smoke", "--storage", str(tmp_path / "ray"), "--tracking-uri", f"sqlite:///{tmp_path}/m.db"]
    plan = plan_sweep("negatives", parse_options("negatives", args))
    launches = []
    monkeypatch.setattr(calibrate, "launch_seconds",
                        lambda: launches.append(1) or calibrate.Timing(7.0, 7.0, 7.0, 0.0, 2, "now"))
    monkeypatch.setattr(history, "trial_seconds", lambda runs, flat: (50.0, "history: 1 runs"))
    every = {trial: f"run-{i}" for i, trial in enumerate(cost.trial_list(plan))}
    assert len(every) == 2
    costs = cost._trial_costs(plan, None, {}, every)
    assert launches == [] and [c.seconds for c in costs] == [50.0, 50.0] and all(c.reused for c in costs)
    one_left = dict(list(every.items())[1:])
    costs = cost._trial_costs(plan, None, {}, one_left)
    assert launches == [1] and [c.seconds for c in costs] == [57.0, 57.0] and [bool(c.reused) for c in costs] == [
        False, True]


def test_stage1_calibration__counts_the_references_steps(tiny_overrides, monkeypatch, tmp_path):
    """Stage 1's estimate adds the classifier steps its references train after it: the matched one's (as many as
    stage 1's) and the best one's four searches and its refits (one per labelled factor, at most one per recipe)."""
    from contralord.config import ContraLordConfig
    from contralord.setup import Setup, build_data
    from tune.pricing import calibrate

    cfg = ContraLordConfig.from_overrides(tiny_overrides | {"latent.epochs": 2, "latent.best_reference_steps": 10})
    data = build_data(cfg)
    assert calibrate.reference_steps(Setup.of(cfg, data)) == 2 * 3 + 10 * (4 + 3)  # 96 images, batch 32: 3 an epoch
    off = ContraLordConfig.from_overrides(tiny_overrides | {"latent.epochs": 2, "latent.best_reference_steps": 0,
                                                            "latent.reference_classifier": False})
    assert calibrate.reference_steps(Setup.of(off, data)) == 0
    monkeypatch.setenv("CONTRALORD_CACHE", str(tmp_path))
    stage1 = {"stage-1": (1.0, 1.0, 1.0), "reference": (0.5, 0.5, 0.5)}
    monkeypatch.setattr(calibrate, "cached", lambda key, measure, what, *threads: calibrate.Timing(
        *stage1[what.split()[1]], 0.0, 2, "now"))
    timing, _ = calibrate.stage1_seconds(cfg, Setup.of(cfg, data), 1)
    assert timing.seconds == pytest.approx(6 * 1.0 + calibrate.STAGE1_FIXED_S + 0.5 * (6 + 70))
    unreferenced = calibrate.stage1_seconds(off, Setup.of(off, data), 1)[0]
    assert unreferenced.seconds == pytest.approx(6 * 1.0 + calibrate.STAGE1_FIXED_S)


def test_unpriced__left_out_of_the_sums_and_named_as_lower_bounds():
    """--no-calibrate: a trial or stage 1 without a price is nan; the sums leave it out, the path falls back to the
    worker count, and the later rounds say their figures are lower bounds."""
    import math

    from tune.pricing.estimate import TrialCost, combine, later_rounds

    trials = [TrialCost("a", 0, 100.0, "history"), TrialCost("b", 0, math.nan, "not priced")]
    est = combine(trials, {0: math.nan}, [], 2, "auto", 1, False)
    assert est.parts["stage1"] == 0 and est.parts["trials"] == 100.0 and est.path == "tune"
    assert est.unpriced == "1 stage-1 run(s) and 1 trial(s)" and "unpriced (--no-calibrate)" in est.why
    later = later_rounds(trials, {1: math.nan}, 2, 0.0)
    assert later.unpriced and later.stage1_s == 0 and math.isfinite(later.wall_s)
    priced = combine(trials[:1], {0: 30.0}, [], 2, "auto", 1, False)
    assert priced.unpriced == "" and not later_rounds(trials[:1], {1: 30.0}, 2, 0.0).unpriced
