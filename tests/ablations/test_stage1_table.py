"""``make_tables.py --spec stage1`` (ablations/stage1_table.py): stage 1's classifiers against their supervised-only
reference per factor and seed, read from fabricated stage-1 runs whose numbers are known, with the paired verdict;
runs of different stage-1 configs are refused, a sweep's own stage-1 runs are selected by its parent's tag."""

import json

import pytest
from fabricated_runs import mlflow_store  # noqa: F401  (the `store` fixture)

from ablations import make_tables
from ablations.stage1_table import EXPERIMENT

ACC = {"floor_hue": (0.95, 0.90), "object_hue": (0.60, 0.50)}  # (stage 1, reference) at seed 0
BEST = {"floor_hue": 0.97, "object_hue": 0.70}  # the best reference at every seed


def _stage1(store, seed: int, epochs: str = "30", best: bool = True, shift: float = 0.0, params: dict | None = None,
            machine: str = "m1") -> str:
    experiment = store.experiment(EXPERIMENT)
    run = store.client.create_run(experiment, tags={"role": "stage1", "seed": str(seed), "machine": machine})
    metrics = {f"latent/final/classifier_acc/{f}": ours + 0.01 * seed + shift for f, (ours, _) in ACC.items()}
    metrics |= {f"latent/final/ref_accuracy/{f}": ref + 0.02 * seed * (f == "floor_hue") for f, (_, ref) in ACC.items()}
    metrics |= {f"latent/final/best_ref_accuracy/{f}": acc for f, acc in BEST.items() if best}
    for step in (64, 128) if best else ():  # the accuracy curves, logged by stage 1 since the best reference
        for prefix in ("latent/train/probe_acc/", "latent/ref/probe_acc/", "latent/best_ref/probe_acc/"):
            for f in ACC:
                store.client.log_metric(run.info.run_id, prefix + f, 0.5 + step / 1000, step=step)
    metrics |= {"latent/final/codes/disentanglement": 0.8, "latent/final/codes/residual_leakage": 0.5,
                "latent/final/codes/residual_leakage_chance": 0.125}
    for key, value in metrics.items():
        store.client.log_metric(run.info.run_id, key, value)
    params = {"data.name": "shapes3d", "latent.epochs": epochs, "run.seed": str(seed)} | (params or {})
    for key, value in params.items():
        store.client.log_param(run.info.run_id, key, value)
    store.client.set_terminated(run.info.run_id)
    return run.info.run_id


def test_stage1_table__per_seed_rows_a_mean_and_paired_verdicts(store, capsys, tmp_path):
    for seed in range(3):
        _stage1(store, seed)
    assert make_tables.main(["--tracking-uri", store.uri, "--spec", "stage1", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "| 0 | 0.950 / 0.900 / 0.970 | 0.600 / 0.500 / 0.700 | 0.800 |" in text
    assert "| 2 | 0.970 / 0.940 / 0.970 | 0.620 / 0.500 / 0.700 |" in text
    assert "| mean | 0.960 / 0.920 / 0.970 | 0.610 / 0.500 / 0.700 | 0.800 |" in text and "0.500 (0.125)" in text
    # object hue: +0.10, +0.11, +0.12; floor hue: +0.05, +0.04, +0.03: both above their matched reference in
    # every seed; against the best: object hue -0.10, -0.09, -0.08 (below), floor hue -0.02, -0.01, 0 (not separated)
    assert ("stage 1 minus matched reference, object_hue: +0.110 [+0.085, +0.135], higher in 3 and lower in 0 of 3 "
            "seeds → **above**") in text
    assert "stage 1 minus matched reference, floor_hue: +0.040 [+0.015, +0.065]" in text
    assert ("stage 1 minus best reference, object_hue: -0.090 [-0.115, -0.065], higher in 0 and lower in 3 of 3 "
            "seeds → **below**") in text
    assert "stage 1 minus best reference, floor_hue: -0.010 [-0.035, +0.015]" in text
    assert "not separated" in text.split("best reference, floor_hue")[1].splitlines()[0]
    assert (tmp_path / "stage1.md").read_text().strip() == text.strip()
    assert (tmp_path / "stage1_curves.png").stat().st_size > 0
    from ablations.stage1_curves import read_curves
    from ablations.stage1_table import build_stage1_table, stage1_runs
    table = build_stage1_table(*stage1_runs(store.client, None))
    curves = read_curves(store.client, table.runs, table.factors)
    assert len(curves) == 3 * 3 * 2
    assert curves[("1", "matched reference", "object_hue")] == [(64, pytest.approx(0.564)), (128, pytest.approx(0.628))]


def test_stage1_table__one_seed_prints_its_difference_without_an_interval(store, capsys, tmp_path):
    _stage1(store, 0, params={"data.labelled_factors": "floor_hue,object_hue", "data.factor_filter": "",
                              "data.size": "2048"})
    assert make_tables.main(["--tracking-uri", store.uri, "--spec", "stage1", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert ("stage 1 minus matched reference, object_hue: +0.100 (no interval from one seed), higher in 1 and lower "
            "in 0 of 1 seeds → no paired test") in text
    assert "nan" not in text
    # the setting names the labelled factors where set, and leaves out an empty factor filter
    assert ("setting: data.name=shapes3d, data.size=2048, data.labelled_factors=floor_hue,object_hue, "
            "latent.epochs=30") in text


def test_stage1_table__other_configs_refused_and_a_sweep_selects_its_own(store, capsys):
    ids = {str(seed): _stage1(store, seed, best=False) for seed in range(2)}
    _stage1(store, 0, epochs="10")  # another stage-1 config in the same experiment
    assert make_tables.main(["--tracking-uri", store.uri, "--spec", "stage1"]) == 2
    assert "refusing to average stage-1 runs that differ in latent.epochs (10, 30)" in capsys.readouterr().err
    parent = store.client.create_run(store.experiment("contralord-negatives"), tags={
        "role": "sweep", "stage1_run_ids": json.dumps(ids)}).info.run_id
    assert make_tables.main(["--tracking-uri", store.uri, "--spec", "stage1", "--sweep-run", parent]) == 0
    text = capsys.readouterr().out
    assert f"the stage-1 runs of sweep run {parent}; 2 seed(s)" in text
    assert "| 0 | 0.950 / 0.900 / – |" in text and "minus best reference" not in text  # runs before the best ref
    # a stage-1 run named by its own id (a sweep stopped while stage 1 trained never tags its parent)
    assert make_tables.main(["--tracking-uri", store.uri, "--spec", "stage1", "--sweep-run", ids["1"]]) == 0
    text = capsys.readouterr().out
    assert f"stage-1 run {ids['1']}; 1 seed(s)" in text and "| 1 | 0.960 / 0.920 / – |" in text
    assert "| 0 |" not in text
    unnamed = store.client.create_run(store.experiment("contralord-methods"), tags={"role": "sweep"}).info.run_id
    assert make_tables.main(["--tracking-uri", store.uri, "--spec", "stage1", "--sweep-run", unnamed]) == 2
    assert f"run {unnamed} is not a stage-1 run and names no stage-1 runs" in capsys.readouterr().err


def _sweep(store, stage1_ids: dict[str, str]) -> str:
    return store.client.create_run(store.experiment("contralord-methods"), tags={
        "role": "sweep", "stage1_run_ids": json.dumps(stage1_ids)}).info.run_id


def test_stage1_compare__two_recipes_paired_by_seed_naming_what_differs(store, capsys, tmp_path):
    new = _sweep(store, {str(s): _stage1(store, s, shift=0.05 + 0.01 * s, params={"latent.classifier_beta1": "0.9"})
                         for s in range(3)})
    old = _sweep(store, {str(s): _stage1(store, s) for s in range(3)})
    argv = ["--tracking-uri", store.uri, "--spec", "stage1", "--out", str(tmp_path)]
    assert make_tables.main([*argv, "--sweep-run", f"{new},{old}"]) == 0
    text = capsys.readouterr().out
    # B predates the key: read at the value it ran with (config.KEYS_ADDED_WITH_OLD_BEHAVIOUR)
    assert "A and B differ in: `latent.classifier_beta1` 0.9 (A) against 0.5 (B)" in text
    # stage 1 moved by +0.05, +0.06, +0.07; the references and the codes did not move
    assert "| object_hue: stage 1 | 0.670 | 0.610 | +0.060 [+0.035, +0.085] | 3 / 0 of 3 | **above** |" in text
    assert "| object_hue: matched reference | 0.500 | 0.500 | +0.000 [+0.000, +0.000] | 0 / 0 of 3 |" in text
    assert "| codes D | 0.800 | 0.800 | +0.000" in text
    assert (tmp_path / "stage1_compare.md").read_text().strip() == text.strip()
    elsewhere = _sweep(store, {str(s): _stage1(store, s, machine="m2") for s in range(3)})
    assert make_tables.main([*argv, "--overwrite", "--sweep-run", f"{new},{elsewhere}"]) == 2
    assert "refusing to compare stage-1 runs of 2 machines" in capsys.readouterr().err
    assert make_tables.main([*argv, "--overwrite", "--sweep-run", f"{new},{old},{old}"]) == 2
    assert "takes one sweep's parent run id, or two (A,B)" in capsys.readouterr().err
    for sides in (f"{new},", f",{old}", f"latest,{old}"):  # never the whole store or the newest sweep by accident
        assert make_tables.main([*argv, "--overwrite", "--sweep-run", sides]) == 2
        assert "--sweep-run: two sweeps' parent run ids, A,B (not empty, not latest)" in capsys.readouterr().err


def test_stage1_compare__columns_read_at_the_shared_seeds_only(store, capsys):
    one = _stage1(store, 0, epochs="120", shift=-0.10)  # one stage-1 run named by its id, seed 0 only
    three = _sweep(store, {str(s): _stage1(store, s) for s in range(3)})
    assert make_tables.main(["--tracking-uri", store.uri, "--spec", "stage1", "--sweep-run", f"{one},{three}"]) == 0
    text = capsys.readouterr().out
    # B's 3-seed mean would be 0.610; at seed 0 it is 0.600, and A is 0.500 there
    assert "| object_hue: stage 1 | 0.500 | 0.600 | -0.100 (no interval from one seed) | 0 / 1 of 1 |" in text
    assert ("seeds: A, B and A − B are each read at seed(s) 0; B's seed(s) 1, 2 left out (the other side has "
            "none)") in text


def test_stage1_compare__different_labelled_factors_refused_naming_them():
    from ablations.runs import AblationError, TrialRun
    from ablations.stage1_compare import build_comparison
    from ablations.stage1_table import Stage1Table

    run = TrialRun("r", "FINISHED", {"run.seed": "0"}, {}, "0", 0, {"machine": "m1"})
    with pytest.raises(AblationError, match="label different factors \\(floor_hue, object_hue against posX\\)"):
        build_comparison(Stage1Table([run], ["floor_hue", "object_hue"], "A"), Stage1Table([run], ["posX"], "B"))


@pytest.mark.parametrize("extra, needle", [
    (["--sweep-run", "latest"], "give --sweep-run the id of a sweep's parent run"),
    (["--rungs"], "--spec stage1: takes --tracking-uri, --sweep-run, --confusion, --out and --overwrite only"),
    (["--sweep-run", "nope"], "--sweep-run: no run 'nope'"),
])
def test_stage1_table__refusals_in_one_line(store, capsys, extra, needle):
    _stage1(store, 0)
    assert make_tables.main(["--tracking-uri", store.uri, "--spec", "stage1", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err


def test_stage1_table__drift_reads_each_seeds_peak_against_its_last_point(store, capsys, tmp_path):
    """Stage 1's curve climbs to 0.628 at step 128 and falls to 0.40 at 192 in every seed; the matched reference
    ends at 0.628: the drift table says +0.228 per seed and as the mean, and the last point's step."""
    for seed in range(3):
        run_id = _stage1(store, seed)
        store.client.log_metric(run_id, "latent/train/probe_acc/object_hue", 0.40, step=192)
    assert make_tables.main(["--tracking-uri", store.uri, "--spec", "stage1", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    drift = text.split("Stage 1's drift")[1]
    for seed in range(3):
        assert f"| object_hue | {seed} | 0.628 (128) | 0.400 (192) | +0.228 | 0.628 |" in drift
        assert f"| floor_hue | {seed} | 0.628 (128) | 0.628 (128) | +0.000 | 0.628 |" in drift
    assert "| object_hue | mean | | | +0.228 | 0.628 |" in drift
    assert (tmp_path / "stage1.md").read_text().strip() == text.strip()


def test_stage1_table__runs_without_curves_print_no_drift(store, capsys, tmp_path):
    for seed in range(2):
        _stage1(store, seed, best=False)
    assert make_tables.main(["--tracking-uri", store.uri, "--spec", "stage1", "--out", str(tmp_path)]) == 0
    assert "drift" not in capsys.readouterr().out and not (tmp_path / "stage1_curves.png").exists()
