"""``make_tables.py --rungs``: the table at every rung of a budget ladder, each row's convergence and each paired
verdict's stability, on fabricated runs whose rung histories are known exactly."""

import pytest
from fabricated_runs import Store, mlflow_store  # noqa: F401  (mlflow_store: the `store` fixture)
from mlflow.entities import Metric

from ablations import make_tables
from ablations.ladder import build_ladder
from ablations.render import paired_comparisons
from ablations.runs import from_experiment
from ablations.specs import SPECS, spec_for_keys

EXPERIMENT = "contralord-losses"
RUNGS = (20, 40, 80)


def _d(row: str, rung: int, seed: int) -> float:
    """D of row A (loss.con=0) and B (loss.con=1): A rises then settles (moves 0.10, then 0.01); B is above A at
    rung 40 and below it at 80 (its verdict against A flips: moving)."""
    a = {20: 0.30, 40: 0.40, 80: 0.41}[rung] + 0.01 * seed
    b = {20: 0.50, 40: a + 0.05 + 0.002 * seed, 80: a - 0.05 - 0.002 * seed}[rung]
    return a if row == "A" else b


def _fabricate(store: Store) -> None:
    for row, con in (("A", "0.0"), ("B", "1.0")):
        for seed in range(3):
            final = {"disentanglement": _d(row, 80, seed), "content_corr_min": 0.9}
            run_id = store.trial(EXPERIMENT, {"loss.con": con, "encoder.rungs": "20,40,80"}, final, seed)
            points = [Metric(f"rung/encoder/eval/{name}", value, 0, rung) for rung in RUNGS
                      for name, value in (("disentanglement", _d(row, rung, seed)), ("content_corr_min", 0.9))]
            store.client.log_batch(run_id, metrics=points)


def test_ladder__rungs_convergence_and_verdict_stability(store):
    _fabricate(store)
    source = from_experiment(store.client, EXPERIMENT)
    ladder = build_ladder(store.client, source.runs, spec_for_keys(("loss.con",)), source.description)
    assert ladder.rungs == [20, 40, 80]
    at_80 = {row.key: row.cells["D"].mean for row in ladder.tables[80].rows}
    assert at_80 == {(0.0,): pytest.approx(0.42), (1.0,): pytest.approx(0.42 - 0.05 - 0.002)}
    moves = {label: {r: m for r, m in by_rung.items()} for label, by_rung in ladder.movement.items()}
    assert moves["loss.con=0"] == {20: None, 40: pytest.approx(0.10), 80: pytest.approx(0.01)}
    assert moves["loss.con=1"][80] == pytest.approx(0.098)  # from +0.05 above A to 0.05 below it, A +0.01: seed 2
    (verdict,) = [v for v in ladder.verdicts if v[0] == "D"]
    column, row, ref, at, state = verdict
    assert (row, ref, state) == ("loss.con=1", "loss.con=0", "moving")  # against the top rung's best
    assert at[40].mean > 0 and at[80].mean < 0 and at[40].ci_low > 0 and at[80].ci_high < 0


def test_ladder_command__prints_writes_and_refuses(store, tmp_path, capsys):
    _fabricate(store)
    argv = ["--tracking-uri", store.uri, "--experiment", EXPERIMENT, "--by", "loss.con", "--rungs",
            "--out", str(tmp_path / "out")]
    assert make_tables.main(argv) == 0
    text = capsys.readouterr().out
    assert "## At rung 20 (20 steps)" in text and "## At rung 80 (80 steps)" in text
    assert "| loss.con=0 | – | 0.100 ✗ | 0.010 ✓ |" in text and "→ **moving**" in text
    # every seed's values at every rung, read from the runs' rung histories (leakage not logged here: –)
    assert "| loss.con=0 | 2 | 0.320 | 0.420 | 0.430 | 0.900 | 0.900 | 0.900 | – | – | – |" in text
    assert text.index("## Per seed") < text.index("## Paired verdicts by rung")
    assert (tmp_path / "out" / "by-loss.con_rungs.md").read_text().strip() == text.strip()
    assert (tmp_path / "out" / "by-loss.con_rungs.png").stat().st_size > 0
    assert make_tables.main(argv) == 2  # written before: refused without --overwrite
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert make_tables.main([*argv[:-2], "--converged-within", "2"]) == 2
    plain = store.trial("contralord-other", {"loss.con": "0.0"}, {"disentanglement": 0.5}, 0)
    assert plain and make_tables.main(["--tracking-uri", store.uri, "--experiment", "contralord-other", "--by",
                                       "loss.con", "--rungs"]) == 2
    assert "no run of the table logged a rung" in capsys.readouterr().err


def test_schedule_table__each_wsd_row_paired_with_its_cosine_twin_at_the_cosine_budget(store):
    """The schedule spec: cosine runs of one budget (no rungs) stand at that budget beside a WSD ladder's rungs,
    and each WSD row is compared with the cosine row of the same losses only (no best-mean comparisons)."""
    spec = SPECS["schedule"]
    for con in ("0.0", "0.1"):
        for seed in range(3):
            cosine = store.trial(spec.experiment, {"loss.con": con, "loss.res": con, "encoder.schedule": "cosine",
                                                   "encoder.steps": "80"}, {"disentanglement": 0.4 + seed / 100}, seed)
            store.client.log_batch(cosine, metrics=[Metric("encoder/train/epoch", e, 0, 40 * e) for e in (1, 2)])
            wsd = store.trial(spec.experiment, {"loss.con": con, "loss.res": con, "encoder.schedule": "wsd",
                                                "encoder.rungs": "40,80"}, {"disentanglement": 0.5 + seed / 50}, seed)
            store.client.log_batch(wsd, metrics=[Metric("rung/encoder/eval/disentanglement", 0.3 + rung / 160 +
                                                        seed / 50, 0, rung) for rung in (40, 80)])
    source = from_experiment(store.client, spec.experiment)
    ladder = build_ladder(store.client, source.runs, spec, source.description)
    assert ladder.rungs == [40, 80]
    assert [row.key[2] for row in ladder.tables[40].rows] == ["wsd", "wsd"]  # cosine has no rung of 40 steps
    assert sorted(row.key[2] for row in ladder.tables[80].rows) == ["cosine", "cosine", "wsd", "wsd"]
    pairs = {(row, ref) for column, row, ref, _ in paired_comparisons(ladder.tables[80]) if column == "D"}
    assert pairs == {(f"loss.con={c}, loss.res={c}, encoder.schedule=wsd",
                      f"loss.con={c}, loss.res={c}, encoder.schedule=cosine") for c in ("0", "0.1")}
    (d,) = {p.mean for column, _, _, p in paired_comparisons(ladder.tables[80]) if column == "D"}
    assert d == pytest.approx(0.3 + 0.5 - 0.4 + 0.01)  # per seed: (0.8 + 2s/100) - (0.4 + s/100), mean over s


def test_separate_budget_runs__stand_at_their_encoder_steps_a_history_less_copy_too(store):
    """A ladder of separate cosine runs (encoder.steps 40 and 80): each stands at its steps, the 80-step run of seed
    2 a reused copy that logged no training history (copies made before they kept one) included."""
    for steps in ("40", "80"):
        for seed in range(3):
            run_id = store.trial(EXPERIMENT, {"loss.con": "0.0", "encoder.steps": steps},
                                 {"disentanglement": 0.3 + int(steps) / 400 + seed / 100,
                                  "content_corr_min": 0.9 - (seed == 1) * int(steps) / 1000}, seed)
            if not (steps == "80" and seed == 2):
                store.client.log_batch(run_id, metrics=[Metric("encoder/train/epoch", 1, 0, int(steps))])
    source = from_experiment(store.client, EXPERIMENT)
    ladder = build_ladder(store.client, source.runs, spec_for_keys(("loss.con",)), source.description)
    assert ladder.rungs == [40, 80]
    assert [row.n for row in ladder.tables[80].rows] == [3]
    assert ladder.tables[80].rows[0].cells["D"].mean == pytest.approx(0.5 + 0.01)
    # convergence seed by seed across the separate runs: D moved 0.1 in every seed, content_corr_min 0.04 in seed 1
    assert ladder.movement["loss.con=0"] == {40: None, 80: pytest.approx(0.1)}


def test_ladder_of_separate_sweeps__read_together_with_comma_separated_sweep_runs(store, capsys, monkeypatch,
                                                                                  tmp_path):
    """``--sweep-run A,B``: a ladder run as one sweep per budget is one ladder table; sweeps of different kinds are
    refused in one line."""
    parents = {steps: store.parent(EXPERIMENT, "losses") for steps in ("40", "80")}
    for steps, parent in parents.items():
        for seed in range(2):
            run_id = store.trial(EXPERIMENT, {"loss.con": "0.0", "encoder.steps": steps},
                                 {"disentanglement": 0.3 + int(steps) / 400 + seed / 100, "content_corr_min": 0.9},
                                 seed, parent=parent)
            store.client.log_batch(run_id, metrics=[Metric("encoder/train/epoch", 1, 0, int(steps)),
                                                    Metric("time/total", int(steps) * 3.0, 0, 0)])
    store.trial(EXPERIMENT, {"loss.con": "0.0", "encoder.steps": "320"}, {"disentanglement": 0.9}, 0)  # no sweep's
    both = ",".join(parents.values())
    assert make_tables.main(["--tracking-uri", store.uri, "--spec", "table4", "--rungs", "--sweep-run", both]) == 0
    text = capsys.readouterr().out
    assert "## At rung 40 (40 steps)" in text and "## At rung 80 (80 steps)" in text and "rung 320" not in text
    assert "- ending at rung 40: 2 run(s), 4.0 trial-minutes" in text  # 2 x 120 s
    assert "- ending at rung 80: 2 run(s), 8.0 trial-minutes" in text
    from ablations import ladder as ladder_module
    lines = []
    monkeypatch.setattr("matplotlib.axes.Axes.plot", lambda self, *xy, **kw: lines.append(xy))
    source = make_tables.from_sweep_runs(store.client, list(parents.values()))
    built = ladder_module.build_ladder(store.client, source.runs, SPECS["table4"], source.description)
    ladder_module.plot_ladder(built, tmp_path / "ladder.png")
    assert [(x, pytest.approx(y)) for x, y in sorted(lines)] == [((40, 80), (0.4, 0.5)), ((40, 80), (0.41, 0.51))]
    other = store.parent("contralord-negatives", "negatives")
    store.trial("contralord-negatives", {"encoder.queue_size": "128"}, {"disentanglement": 0.5}, 0, parent=other)
    argv = ["--tracking-uri", store.uri, "--spec", "table4", "--rungs", "--sweep-run", f"{both},{other}"]
    assert make_tables.main(argv) == 2
    assert "--sweep-run: the sweeps are of different kinds (losses, negatives)" in capsys.readouterr().err
