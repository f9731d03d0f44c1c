"""Sweep flags checked before Ray starts, the dry run included (issue 18, class 7): a --register-best metric
that no trial logs (a table column such as D used to run the whole sweep first), resources this machine cannot
supply (--cpus-per-worker 64 hung at stage 1; a tiny fraction printed "1999999999 trials at once"), seed counts
that hung the dry run, and a 300-character --name. One line, exit 2, Ray never initialised, nothing created."""

import os

import pytest

ray = pytest.importorskip("ray")

from tune.driver.run import main  # noqa: E402


def _refused(capsys, tmp_path, *args) -> str:
    base = ["--preset", "smoke", "--storage", str(tmp_path / "ray"), "--tracking-uri", f"sqlite:///{tmp_path}/m.db"]
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main("negatives", base + list(args)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sweep: error: ") and "Traceback" not in err[0], err
    assert not ray.is_initialized()
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    return err[0]


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])
@pytest.mark.parametrize("args, needle", [
    (["--register-best", "D"], "--register-best: expected a metric a trial run logs"),
    (["--register-best", "encoder/eval/mig:best"], "--register-best: expected METRIC or METRIC:max"),
    (["--cpus-per-worker", str(os.cpu_count() * 32)], "a trial needs"),
    (["--cpus-per-worker", "1e-9"], "--cpus-per-worker: expected a number >= 0.01"),
    (["--gpus-per-worker", "1e-9"], "--gpus-per-worker: expected 0 or a number >= 0.01"),
    (["--seeds", "100000"], "--seeds: expected at most 100"),
    (["--until-decided", "--max-seeds", "100000"], "--max-seeds: expected at most 100"),
    (["--name", "x" * 300], "--name: expected at most 100 characters"),
    (["--name", "train-sweep"], "--name: 'train-sweep' starts with 'train-'"),
    (["--row", "K=128", "--row", "K=999"], "--row: expected one of K=128, K=256, got 'K=999'"),
])
def test_sweep_flag__refused_before_ray_dry_run_too(capsys, tmp_path, args, needle, dry_run):
    assert needle in _refused(capsys, tmp_path, *args, *dry_run)
