"""Seeds until decided (tune/rounds.py): which rows get a seed, the flags refused before Ray."""

import dataclasses

import pytest

from ablations import stats
from ablations.specs import SPECS
from ablations.tables import Row, Table
from tune import rounds
from tune.checks import SweepError
from tune.options import SweepOptions


def _table(cells: dict[int, list[float]]) -> Table:
    """A Table 6 with one row per queue size and its D values over seeds."""
    rows = [Row((k,), [str(i) for i in range(len(v))], {"D": stats.summarize(v)},
                values={"D": {str(i): x for i, x in enumerate(v)}}) for k, v in cells.items()]
    return Table(SPECS["table6"], rows, ["D"], {}, "test")


VARIANTS = {(128,): "K128", (256,): "K256", (512,): "K512"}


def test_open_variants__only_rows_overlapping_the_best():
    table = _table({128: [0.2, 0.21, 0.19], 256: [0.8, 0.82, 0.81], 512: [0.79, 0.83, 0.80]})
    why = rounds.open_variants(table, VARIANTS, ["D"])
    assert set(why) == {"K256", "K512"} and why["K512"].startswith("D: ")


def test_open_variants__paired_rule_decides_rows_that_move_together_by_seed():
    # every seed's stage 1 shifts both rows: the unpaired intervals overlap, the per-seed differences do not
    table = _table({128: [0.2, 0.5, 0.8], 256: [0.25, 0.56, 0.87]})
    assert set(rounds.open_variants(table, VARIANTS, ["D"])) == {"K128", "K256", "K512"}
    assert rounds.open_variants(table, VARIANTS, ["D"], "paired") == {"K512": "no row in the table"}


def test_open_variants__rows_of_two_data_sets_are_decided_each_among_their_own():
    # Table 2 over two data sets: Shapes3D's best clears its rival, dSprites' two rows tie. Pooled, both dSprites
    # rows would count as decided, far below Shapes3D's best, with which they share neither images nor stage 1
    values = {("shapes3d", "contralord"): [0.80, 0.82, 0.81], ("shapes3d", "gabbay"): [0.70, 0.71, 0.72],
              ("dsprites", "contralord"): [0.30, 0.33, 0.31], ("dsprites", "gabbay"): [0.31, 0.32, 0.30]}
    rows = [Row(key, ["0", "1", "2"], {"D": stats.summarize(v)}, values={"D": {str(i): x for i, x in enumerate(v)}})
            for key, v in values.items()]
    table = Table(SPECS["table2"], rows, ["D"], {}, "test")
    variants = {key: f"{key[0]}:{key[1]}" for key in values}
    for rule in rounds.RULES:
        assert set(rounds.open_variants(table, variants, ["D"], rule)) == {"dsprites:contralord", "dsprites:gabbay"}


def test_open_variants__reasons_name_the_best_row_by_its_variant_in_its_own_group():
    # dSprites is the second group: its best row is its group's row 0 but the table's row 2; name it, not an index
    values = {("shapes3d", "contralord"): [0.80], ("shapes3d", "gabbay"): [0.70],
              ("dsprites", "contralord"): [0.33], ("dsprites", "gabbay"): [0.31, 0.32]}
    rows = [Row(key, [str(i) for i in range(len(v))], {"D": stats.summarize(v)},
                values={"D": {str(i): x for i, x in enumerate(v)}}) for key, v in values.items()]
    table = Table(SPECS["table2"], rows, ["D"], {}, "test")
    variants = {key: f"{key[0]}:{key[1]}" for key in values}
    paired = rounds.open_variants(table, variants, ["D"], "paired")
    assert "shared with the best row (dsprites:contralord)" in paired["dsprites:gabbay"], paired
    assert "shared with the best row (shapes3d:contralord)" in paired["shapes3d:gabbay"], paired
    unpaired = rounds.open_variants(table, variants, ["D"])
    assert "the best mean (dsprites:contralord) has no interval" in unpaired["dsprites:gabbay"], unpaired


def test_check_flags__decide_rule():
    rounds.check_flags("negatives", _options(decide_rule="paired"))
    assert rounds.decide_rule(_options()) == "unpaired"
    with pytest.raises(SweepError, match="--decide-rule: expected one of unpaired, paired"):
        rounds.check_flags("negatives", _options(decide_rule="sign"))
    with pytest.raises(SweepError, match="--decide-rule: only with --until-decided"):
        rounds.check_flags("negatives", _options(until_decided=False, max_seeds=0, decide_rule="paired"))


def test_open_variants__a_variant_missing_from_the_table_is_open():
    table = _table({128: [0.2, 0.21, 0.19], 256: [0.8, 0.82, 0.81]})
    assert rounds.open_variants(table, VARIANTS, ["D"]) == {"K512": "no row in the table"}


def test_plan_round__next_seed_for_open_rows_below_max_seeds():
    decisions = rounds.plan_round({"K256": "overlaps", "K512": "overlaps"}, {"K128": 3, "K256": 3, "K512": 5}, 5)
    added = {d.variant: d.added_seed for d in decisions}
    assert added == {"K128": None, "K256": 3, "K512": None}
    assert [d.verdict.split(" ")[0] for d in decisions] == ["decided", "open", "open"]
    line = rounds.describe_round(1, decisions)
    assert "1 open row(s) get a seed (K256+seed3); 1 of 3 decided, 1 still open at --max-seeds" in line


def test_cost_summary__trials_against_max_seeds_everywhere():
    cost = rounds.cost_summary({"a": 3, "b": 5, "c": 3}, trained=8, max_seeds=5)
    assert cost == {"until_decided/trials": 11, "until_decided/trials_trained": 8,
                    "until_decided/trials_fixed_seeds": 15, "until_decided/trials_saved": 4}


def _options(**kw) -> SweepOptions:
    return SweepOptions(**({"until_decided": True, "seeds": 3, "max_seeds": 5} | kw))


@pytest.mark.parametrize("kind, kw, needle", [
    ("negatives", {"max_seeds": 3}, "--until-decided: needs --max-seeds greater than --seeds (3), got 3"),
    ("negatives", {"max_seeds": 0}, "needs --max-seeds greater than --seeds"),
    ("optuna", {}, "--until-decided: an Optuna sweep has no fixed rows"),
    ("negatives", {"decide_metric": "E"}, "--decide-metric: expected table columns among D, C"),
    ("negatives", {"until_decided": False}, "--max-seeds/--decide-metric/--max-rung: only with --until-decided"),
])
def test_check_flags__refused_in_one_line(kind, kw, needle):
    with pytest.raises(SweepError) as error:
        rounds.check_flags(kind, _options(**kw))
    assert needle in str(error.value) and "\n" not in str(error.value)


def test_check_flags__accepts_several_columns():
    rounds.check_flags("negatives", _options(decide_metric="D,MIG"))
    assert rounds.decide_columns(_options(decide_metric="D, MIG")) == ["D", "MIG"]
    assert rounds.decide_columns(_options()) == ["D"]


def test_main__bad_round_flags_exit_2_before_ray(tmp_path, capsys):
    ray = pytest.importorskip("ray")
    from tune.driver.run import main

    base = ["--preset", "smoke", "--storage", str(tmp_path / "ray"), "--tracking-uri", f"sqlite:///{tmp_path}/m.db"]
    assert main("negatives", [*base, "--until-decided", "--seeds", "2", "--max-seeds", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["sweep: error: --until-decided: needs --max-seeds greater than --seeds (2), got 2"]
    assert not ray.is_initialized() and not (tmp_path / "m.db").exists()


def test_search__exactly_the_rounds_pairs_under_the_concurrency_limit():
    """A round's Tuner gets its (variant, seed) pairs as points, not a grid (which would run their product),
    and --max-concurrent reaches the generator (Tune's max_concurrent_trials limits only a Searcher)."""
    pytest.importorskip("ray")
    from types import SimpleNamespace

    from tune.driver.sweep import _search

    plan = SimpleNamespace(kind="negatives", options=SweepOptions(max_concurrent=1))
    config, space = _search(plan, [("K=128", 1), ("K=512", 2)])
    generator = config.search_alg
    assert config.num_samples == 2 and generator.max_concurrent == 1
    assert generator._points_to_evaluate == [{"variant": "K=128", "run.seed": 1}, {"variant": "K=512", "run.seed": 2}]
    assert set(space) == {"variant", "run.seed"}


@pytest.mark.parametrize("rungs, max_rung, expected", [
    ("160,640", 10000, "160,640,2560"), ("160,640", 2000, "160,640,2000"), ("160,640", 640, ""),
    ("40", 1000, "40,160"), ("10,20", 40, "10,20,40"),
])
def test_next_ladder__the_ratio_of_the_last_two_rungs_up_to_max_rung(rungs, max_rung, expected):
    assert rounds.next_ladder(rungs, max_rung) == expected


@pytest.mark.parametrize("ladders, max_rung, needle", [
    (["160,640", "160,640"], 640, "--max-rung: expected more steps than the ladder's top rung 640, got 640"),
    (["160,640", ""], 2560, "--max-rung: needs every trial on one budget ladder"),
    (["", ""], 2560, "--max-rung: needs every trial on one budget ladder"),
])
def test_check_ladder__refused_in_one_line(ladders, max_rung, needle):
    from types import SimpleNamespace

    configs = [SimpleNamespace(encoder=SimpleNamespace(rungs=r)) for r in ladders]
    with pytest.raises(SweepError) as error:
        rounds.check_ladder(_options(max_rung=max_rung), configs)
    assert needle in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(SweepError, match="only with --until-decided"):
        rounds.check_flags("negatives", _options(until_decided=False, max_seeds=0, max_rung=2560))


class _Records:
    def __init__(self):
        self.logs = []

    def log_rounds(self, log, artifact, rounds_run):
        self.logs.append((rounds_run, [dict(r) for r in log["rounds"]]))


def test_until_decided__a_moving_open_row_climbs_a_rung_before_it_gets_seeds():
    """Round 1: K128 is open and still moves at the top rung, so every row climbs (no seed); round 2: nothing open
    moves any more, so the open rows get a seed; round 3: all at --max-seeds, the sweep stops."""
    table = _table({128: [0.10, 0.50, 0.30], 256: [0.20, 0.25, 0.30]})  # overlapping intervals: both open
    seeds, calls = {"K128": 3, "K256": 3}, []
    moving = iter([{"K128": "moved 0.050 > 0.02 from the rung before 640"}, {}, {}])

    class Climber:
        def moving(self, open_variants):
            return next(moving)

        def next_rungs(self):
            return "160,640,2560"

        def climb(self, ladder, k):
            calls.append(("climb", ladder, k))
            return 0, 6

    def run_round(pairs, k):
        calls.append(("seeds", k, sorted(pairs)))
        for variant, _ in pairs:
            seeds[variant] += 1
        return 0, len(pairs)

    records = _Records()
    rounds.until_decided(records, _options(max_seeds=4), seeds, {(128,): "K128", (256,): "K256"}, lambda: table,
                         run_round, Climber())
    assert calls == [("climb", "160,640,2560", 1), ("seeds", 2, [("K128", 3), ("K256", 3)])]
    first = records.logs[0][1][0]
    assert first["action"] == "rung" and first["rungs"] == "160,640,2560" and first["trained"] == 6
    assert all(row["added_seed"] is None and row["verdict"].startswith("climbs to rungs 160,640,2560")
               for row in first["rows"])
    assert "moving: moved 0.050" in next(r for r in first["rows"] if r["variant"] == "K128")["verdict"]


def test_until_decided__at_max_rung_a_moving_row_gets_a_seed():
    table = _table({128: [0.10, 0.50, 0.30], 256: [0.20, 0.25, 0.30]})
    seeds, calls = {"K128": 3, "K256": 3}, []

    class AtMaxRung:
        def moving(self, open_variants):
            return {"K128": "moved"}

        def next_rungs(self):
            return ""

        def climb(self, ladder, k):
            raise AssertionError("no rung above --max-rung")

    def run_round(pairs, k):
        calls.append(k)
        for variant, _ in pairs:
            seeds[variant] += 1
        return 0, len(pairs)

    rounds.until_decided(_Records(), _options(max_seeds=4), seeds, {(128,): "K128", (256,): "K256"}, lambda: table,
                         run_round, AtMaxRung())
    assert calls == [1] and seeds == {"K128": 4, "K256": 4}


def test_search__a_climbed_ladder_is_every_point_s_encoder_rungs():
    pytest.importorskip("ray")
    from types import SimpleNamespace

    from tune.driver.sweep import _search

    plan = SimpleNamespace(kind="negatives", options=SweepOptions(max_concurrent=0, trainer="tune"))
    config, space = _search(plan, [("K=128", 0)], "10,20,40")
    assert config.search_alg._points_to_evaluate == [{"variant": "K=128", "run.seed": 0, "encoder.rungs": "10,20,40"}]
    assert set(space) == {"variant", "run.seed", "encoder.rungs"}


@pytest.mark.parametrize("address, path, expected", [(None, "train", 2), ("auto", "train", 0), (None, "tune", 0)])
def test_search__the_train_path_on_this_machine_is_limited_to_the_trials_its_cpus_hold(monkeypatch, address, path,
                                                                                       expected):
    """A ``train``-path trial's driver takes a tiny placement; unlimited, Tune would start every driver at once, each
    waiting for its workers (and with 0.01 CPU per driver their fractions left a worker a CPU short). On this machine
    the limit is what the CPUs hold (5 CPUs, 2 workers of 1 CPU: 2 trials); on a cluster (--address) and on the
    ``tune`` path Tune's own placement decides."""
    pytest.importorskip("ray")
    from types import SimpleNamespace

    import tune.driver.sweep as sweep

    monkeypatch.setattr(sweep.ray, "cluster_resources", lambda: {"CPU": 5.0})
    options = SweepOptions(max_concurrent=0, address=address, workers_per_trial=2, cpus_per_worker=1.0,
                           gpus_per_worker=0.0, trainer=path)
    plan = SimpleNamespace(kind="negatives", options=options, estimate=None)
    config, _ = sweep._search(plan, [("K=128", 0), ("K=256", 0), ("K=512", 0)])
    assert config.search_alg.max_concurrent == expected


def test_train_path_drivers__hold_no_cpu_on_a_ray_the_sweep_started(tmp_path, monkeypatch):
    """A local Ray started by the sweep has a resource of its own for the train path's drivers, so two one-CPU
    trials fit two CPUs (with 0.01 CPU per driver they needed 2.02); --driver-resource names a cluster's; a Ray
    someone else started has neither, and the driver takes 0.01 CPU as before. A Ray already running on this
    machine (here $RAY_ADDRESS names one; `ray start` leaves a file Ray reads alike) is not joined without --address:
    before, ray.init joined it and refused the sweep's resources with a ValueError traceback."""
    ray = pytest.importorskip("ray")
    from types import SimpleNamespace

    import tune.driver.sweep as sweep

    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # nothing listens there
    plan = SimpleNamespace(options=SweepOptions(address=None, driver_resource="", shared_fs=False),
                           storage=str(tmp_path / "ray"))
    started = sweep.start_ray(plan)
    try:
        assert started and ray.cluster_resources()[sweep.DRIVER_RESOURCE] == sweep.DRIVER_SLOTS
        assert sweep.driver_placement(plan) == {"CPU": 0.0, sweep.DRIVER_RESOURCE: 0.01}
        plan.options = dataclasses.replace(plan.options, driver_resource="head")
        assert sweep.driver_placement(plan) == {"CPU": 0.0, "head": 0.01}
    finally:
        sweep.stop_ray(started)
    monkeypatch.setattr(sweep.ray, "cluster_resources", lambda: {"CPU": 2.0})
    plan.options = dataclasses.replace(plan.options, driver_resource="")
    assert sweep.driver_placement(plan) == {"CPU": 0.01}
