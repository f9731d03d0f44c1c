"""The pieces that let a sweep killed at any moment be finished by --resume, each without Ray: a restarted trial
continues from the newest of its checkpoints, a run resumed at its last step still reports its last epoch,
--resume is accepted for a sweep stopped before its Tuner started, and the exit codes."""

import contextlib
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from mlflow import MlflowClient

from contralord.config import ContraLordConfig
from contralord.latent_result import ARTIFACT, latent_key
from contralord.run.trainer import train
from contralord.setup import Setup, build_data
from tune.checks import SweepError, SweepInterrupted, TrialsFailed
from tune.driver import run, sweep
from tune.options import SweepOptions
from tune.trial.worker import _restore, _saved_step


class _TuneCheckpoint:
    """What ``tune.get_checkpoint()`` hands a trial: a folder holding encoder.pt."""

    def __init__(self, folder: Path):
        self.folder = folder

    @contextlib.contextmanager
    def as_directory(self):
        yield str(self.folder)


def _write(path: Path, step: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"step": step, "marker": torch.tensor([step])}, path)
    return path


@pytest.mark.parametrize("own, reported, kept", [(None, 4, 4), (2, 4, 4), (6, 4, 6), (4, 4, 4), ("corrupt", 4, 4)])
def test_restore__keeps_the_newest_of_the_trials_own_and_tunes_checkpoint(tmp_path, own, reported, kept):
    target = tmp_path / "trial" / "checkpoints" / "encoder.pt"
    if own == "corrupt":
        target.parent.mkdir(parents=True)
        target.write_bytes(b"not a checkpoint")
    elif own is not None:
        _write(target, own)
    _restore(_TuneCheckpoint(_write(tmp_path / "tune" / "encoder.pt", reported).parent), tmp_path / "trial")
    assert _saved_step(target) == kept
    assert not list(target.parent.glob(".*tmp"))  # the copy went through a temporary file, renamed


def test_restore__without_tunes_checkpoint_leaves_the_trials_own(tmp_path):
    target = _write(tmp_path / "trial" / "checkpoints" / "encoder.pt", 3)
    _restore(None, tmp_path / "trial")
    assert _saved_step(target) == 3 and _saved_step(tmp_path / "missing.pt") == -1


@pytest.mark.slow
def test_run_resumed_at_its_last_step__reports_the_last_epochs_metrics(tmp_path, tiny_overrides):
    """A trial restarted after its last checkpoint (its driver killed during the evaluation) trains no step; its
    summary still holds the last epoch's training metrics, as a straight run's does (they were missing, so the
    sweep took the trial for unfinished). Stage 1 likewise: its artifact, rebuilt from its last checkpoint,
    keeps the last epoch's metrics."""
    cfg = ContraLordConfig.from_overrides(tiny_overrides | {"encoder.epochs": 2, "latent.epochs": 2})
    straight = train(cfg, tmp_path)
    key = latent_key(Setup.of(cfg, build_data(cfg)))
    artifact = tmp_path / "latent_cache" / key / ARTIFACT
    first = torch.load(artifact, weights_only=True)["metrics"]
    artifact.unlink()  # as if killed after stage 1's last checkpoint, before its artifact
    again = train(cfg, tmp_path, resume=True)
    final = [k for k in straight if k.startswith(("encoder/final/", "latent/final/")) and "images_per_s" not in k]
    assert "encoder/final/total" in final and "latent/final/total" in final
    assert {k: again[k] for k in final} == {k: straight[k] for k in final}
    rebuilt = torch.load(artifact, weights_only=True)["metrics"]
    assert {k: v for k, v in rebuilt.items() if "images_per_s" not in k} == {
        k: v for k, v in first.items() if "images_per_s" not in k}


def _store_with_sweep(tmp_path: Path, storage: str, name: str) -> str:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.create_experiment("contralord-negatives", artifact_location=str(tmp_path / "artifacts"))
    client.create_run(experiment, tags={"sweep_path": f"{storage}/{name}", "role": "sweep"})
    return uri


def test_resume__of_a_sweep_stopped_before_its_tuner(tmp_path):
    """Killed during stage 1, a sweep has its parent run but no Tuner state: --resume goes on; a sweep that never
    ran is still refused, naming it."""
    storage = str(tmp_path / "ray")
    uri = _store_with_sweep(tmp_path, storage, "early")
    run._check_resumable("negatives", storage, "early", uri, resume=True)  # accepted
    with pytest.raises(SweepError, match="--resume: no sweep named 'other' ran under"):
        run._check_resumable("negatives", storage, "other", uri, resume=True)
    assert not Path(storage).exists()  # read only


def test_resume_command__the_same_flags_with_resume():
    argv = ["--preset", "smoke", "--set", "encoder.temperature=0.2", "--name", "a b", "--resume", "--dry-run"]
    assert run.resume_command("negatives", argv) == ("python tune/sweep_negatives.py --preset smoke --set "
                                                     "encoder.temperature=0.2 --name 'a b' --resume")


@pytest.mark.parametrize("raised, code, last", [
    (TrialsFailed("2 trials ended in error (error files: /r/a/error.txt, /r/b/error.txt); no table could be built"),
     1, "sweep: failed: 2 trials ended in error (error files: /r/a/error.txt, /r/b/error.txt); no table could be "
        "built; after fixing the cause, rerun what failed with: python tune/sweep_negatives.py --seeds 2 --resume"),
    (SweepInterrupted("interrupted: 1 of 2 trials of this round finished"), 130,
     "sweep: interrupted: 1 of 2 trials of this round finished; continue with: python tune/sweep_negatives.py "
     "--seeds 2 --resume"),
    (KeyboardInterrupt(), 130, "sweep: interrupted; continue with: python tune/sweep_negatives.py --seeds 2 --resume"),
    (SweepError("--register-best: no finished trial has both"), 2, "sweep: error: --register-best: no finished "
     "trial has both"),
    (None, 0, None),
])
def test_exit_codes(monkeypatch, capsys, raised, code, last):
    def run_sweep(plan):
        if raised is not None:
            raise raised

    monkeypatch.setattr(run, "plan_sweep", lambda kind, options: SimpleNamespace(options=options))
    monkeypatch.setattr(sweep, "run_sweep", run_sweep)
    assert run.main("negatives", ["--seeds", "2"]) == code
    assert code in run.EXIT_CODES
    if last is not None:
        assert capsys.readouterr().err.strip().splitlines()[-1] == last


def test_failure_line__counts_failed_trials_and_what_the_table_holds():
    table = SimpleNamespace(rows=[SimpleNamespace(n=2), SimpleNamespace(n=1)])
    failed = [f"/r/t{i}/error.txt" for i in range(5)]
    state = SimpleNamespace(failed=failed)
    assert sweep._failure(state, table) == ("5 trials ended in error (error files: /r/t0/error.txt, /r/t1/error.txt, "
                                            "/r/t2/error.txt and 2 more); the table holds the 3 trials that finished")
    assert sweep._failure(SimpleNamespace(failed=[]), table) == ""
    assert sweep._failure(SimpleNamespace(failed=[]), None) == "no table could be built from the sweep's runs"
    assert json.dumps(sweep._failure(SimpleNamespace(failed=failed[:1]), None)).startswith('"1 trial ended')


def test_resumed_sweep__keeps_its_first_estimate_without_timing_again(tmp_path, monkeypatch, capsys):
    """--resume reads the estimate and trainer path the first attempt logged on the parent run (the whole sweep's;
    calibrating again cost each resume ~10 s); a parent run without one is estimated as a new sweep is."""
    from tune.pricing import cost

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.create_experiment("contralord-negatives", artifact_location=str(tmp_path / "artifacts"))
    parent = client.create_run(experiment).info.run_id
    first = SimpleNamespace(path="tune", why="1 worker: in the trial", parts={"ray_start": 20.0, "trials": 30.5,
                                                                             "estimate": 1.5}, later=None,
                            calibrations=(), unpriced="")
    first = SimpleNamespace(**vars(first), wall_s=sum(first.parts.values()))
    from tune.driver.records import ParentRun

    ParentRun(client, parent).log_estimate(first)
    monkeypatch.setattr(cost, "estimate_sweep", lambda *a, **k: pytest.fail("timed again on --resume"))
    plan = SimpleNamespace(options=SweepOptions(resume=True), estimate=None)
    sweep._log_cost(plan, client, parent)
    assert (plan.estimate.path, plan.estimate.wall_s, plan.estimate.parts) == ("tune", 52.0, first.parts)
    assert "the first attempt's, ~52 s wall for the whole sweep (not timed again)" in capsys.readouterr().out
    assert ParentRun(client, client.create_run(experiment).info.run_id).logged_estimate() is None
