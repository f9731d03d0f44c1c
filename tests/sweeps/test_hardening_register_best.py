"""Issue 18, class 7, second look. ``--register-best`` names a metric some trial logs: under encoder/eval/, one
the evaluation writes (a typo such as disentanglment, FID without eval.inception_weights, a partial-labels
metric in an all-factors sweep used to run the whole sweep first); refused before Ray, the dry run included.
``--address`` to a running cluster: a worker that fits no node of a fixed cluster (nor of the node groups its
autoscaler publishes) is refused from the cluster's GCS, read in a child process, before anything joins it.
``--num-samples 100000`` (Optuna trials) is refused like --seeds 100000."""

import pytest

ray = pytest.importorskip("ray")

from test_hardening_sweep_flags import _refused  # noqa: E402

from tune.checks import EVAL_METRICS, SweepError, check_register_best  # noqa: E402
from tune.driver.run import main  # noqa: E402


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])
@pytest.mark.parametrize("args, needle", [
    (["--register-best", "encoder/eval/nosuch"], "--register-best: no trial logs 'encoder/eval/nosuch'"),
    (["--register-best", "encoder/eval/disentanglment:max"], "did you mean encoder/eval/disentanglement?"),
    (["--register-best", "encoder/eval/fid_translation"], "only with eval.inception_weights set"),
    (["--register-best", "encoder/eval/within_combination_variance:min", "--set", "eval.protocol=all-factors"],
     "only under eval.protocol=partial-labels"),
    (["--register-best", "encoder/eval/mig", "--set", "eval.enabled=false"], "turns off (eval.enabled=false)"),
])
def test_register_best__a_metric_no_trial_logs__refused_before_ray(capsys, tmp_path, args, needle, dry_run):
    assert needle in _refused(capsys, tmp_path, *args, *dry_run)


@pytest.mark.parametrize("spec", ["encoder/eval/mig", "encoder/eval/disentanglement:max", "encoder/eval/sap:min",
                                  "encoder/eval/dci_importance/floor_hue/floor_hue", "encoder/eval/content_corr_min",
                                  "encoder/train/rec:min"])
def test_register_best__metrics_trials_log__accepted(spec):
    check_register_best(spec)


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["partial-labels", "all-factors"])
def test_register_best__every_metric_a_trial_logs_is_known(tmp_path, tiny_overrides, protocol):
    """Trains the tiny config to its end once per protocol: every encoder/eval/ name it logs is accepted, so the
    list in tune/checks.py follows the evaluation."""
    from contralord.config import ContraLordConfig
    from contralord.run.trainer import train

    summary = train(ContraLordConfig.from_overrides(tiny_overrides | {"eval.protocol": protocol}), tmp_path / "run")
    logged = [k for k, v in summary.items() if k.startswith("encoder/eval/") and isinstance(v, float)]
    assert logged and {k.removeprefix("encoder/eval/") for k in logged} & EVAL_METRICS
    for name in logged:
        check_register_best(name)


@pytest.mark.slow
def test_address__a_worker_larger_than_every_node__refused_from_the_gcs(capsys, tmp_path):
    """A one-CPU cluster started here (ray.init in this process, stopped at the end: only its own processes)."""
    ray.init(address="local", num_cpus=1, include_dashboard=False, logging_level="ERROR")  # not a running one
    try:
        address = ray.get_runtime_context().gcs_address
        base = ["--preset", "smoke", "--storage", str(tmp_path / "ray"), "--tracking-uri",
                f"sqlite:///{tmp_path}/m.db", "--address", address, "--dry-run"]
        for args, needle in ((["--cpus-per-worker", "2"], "a worker needs 2 CPU(s) and 0 GPU(s) on one node"),
                             (["--gpus-per-worker", "1"], "a worker needs 1 CPU(s) and 1 GPU(s) on one node"),
                             (["--workers-per-trial", "2", "--trainer", "train"], "a trial needs 2 CPU(s)"),
                             (["--trainer", "train"], "a train-path trial needs 1.01 CPU(s) (1 worker(s) x 1 + its "
                                                      "driver's 0.01)")):
            assert main("negatives", base + args) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and needle in err[0] and address in err[0], err
        assert sorted(p.name for p in tmp_path.iterdir()) == []
        # --trainer auto takes the tune path there (the trial is its one worker), which fits: it hung on the train
        # path for 65 minutes before (2026-12-07)
        assert main("negatives", base) == 0
        out = capsys.readouterr().out
        assert "trainer: tune (auto): a train-path trial's driver would not fit" in out
        assert "trainer path: tune (--trainer tune" in out
    finally:
        ray.shutdown()


def test_register_best__a_table_column_still_names_itself():
    with pytest.raises(SweepError, match="a table column, not a run metric"):
        check_register_best("D")


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])
def test_num_samples__huge__refused_before_ray(capsys, tmp_path, dry_run):
    base = ["--preset", "smoke", "--storage", str(tmp_path / "ray"), "--tracking-uri", f"sqlite:///{tmp_path}/m.db"]
    assert main("optuna", base + ["--num-samples", "100000", *dry_run]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["sweep: error: --num-samples: expected at most 1000 Optuna trials, got 100000"]
    assert not ray.is_initialized() and sorted(p.name for p in tmp_path.iterdir()) == []
