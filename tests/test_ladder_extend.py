"""Extending a finished budget ladder (``run.extend_from``, contralord/run/ladder.py): a 3,6 ladder extended to 3,6,12
trains only the steps above its stable state and ends equal to a straight 3,6,12 run, rung by rung; a state it
cannot extend is refused naming the key, before any training."""

import pytest
import torch

from contralord.config import ConfigError, ContraLordConfig
from contralord.run.ladder import PREFIX, stable_path
from contralord.run.preflight import prepare
from contralord.run.trainer import train
from contralord.stage2 import encoder_stage
from tests.test_budget_ladder import RecordingLogger

TIMED = "images_per_s"  # a wall-clock rate, the one number a rerun changes


def _cfg(tiny_overrides, tmp_path, rungs: str, **extra) -> ContraLordConfig:
    return ContraLordConfig.from_overrides(tiny_overrides | {
        "encoder.schedule": "wsd", "encoder.rungs": rungs, "loss.con": 0.1,
        "run.latent_cache": str(tmp_path / "cache")} | extra)


def _counting_steps(monkeypatch) -> list[int]:
    steps, step = [], encoder_stage.EncoderTrainer.step
    monkeypatch.setattr(encoder_stage.EncoderTrainer, "step",
                        lambda self, epoch, in_epoch, global_step: steps.append(global_step) or step(
                            self, epoch, in_epoch, global_step))
    return steps


@pytest.fixture(scope="module")
def short_ladder(tmp_path_factory):
    """A finished 3,6 ladder (its stable state at step 5, where rung 6's one cooldown step starts)."""
    from tests.conftest import TINY

    tmp_path = tmp_path_factory.mktemp("ladder")
    train(_cfg(TINY, tmp_path, "3,6"), tmp_path / "short")
    return tmp_path


@pytest.mark.slow
def test_extended_ladder__trains_only_new_steps_and_equals_a_straight_run(short_ladder, tiny_overrides, monkeypatch):
    tmp_path, stable = short_ladder, stable_path(short_ladder / "short")
    assert torch.load(stable, weights_only=True)["step"] == 5
    straight = train(_cfg(tiny_overrides, tmp_path, "3,6,12"), tmp_path / "straight")
    steps, logger = _counting_steps(monkeypatch), RecordingLogger()
    extended = train(_cfg(tiny_overrides, tmp_path, "3,6,12", **{"run.extend_from": str(stable)}),
                     tmp_path / "extended", logger=logger)
    assert steps == list(range(5, 12))  # the trunk from the stable state to the top: no rung trained again
    assert sorted(extended["rungs"], key=int) == sorted(straight["rungs"], key=int) == ["3", "6", "12"]
    for rung, metrics in straight["rungs"].items():
        differ = [k for k in metrics if extended["rungs"][rung][k] != metrics[k] and not k.endswith(TIMED)]
        assert not differ, (rung, differ)
    scores = [k for k in straight if k.startswith("encoder/eval/")]
    assert scores and all(extended[k] == straight[k] for k in scores)
    online = lambda run: torch.load(tmp_path / run / "checkpoints" / "encoder.pt", weights_only=True)["online"]  # noqa: E731
    assert all(torch.equal(online("extended")[k], v) for k, v in online("straight").items())
    rungs_logged = sorted(step for step, m in logger.metrics if f"{PREFIX}encoder/eval/disentanglement" in m)
    assert rungs_logged == [3, 6, 12]  # the carried rungs are the new run's too
    epochs_logged = [step for step, m in logger.metrics if "encoder/train/epoch" in m]
    assert epochs_logged[:3] == [2, 3, 5] and epochs_logged[-1] == 12  # carried epochs (split at branch points)
    assert torch.load(stable_path(tmp_path / "extended"), weights_only=True)["step"] == 10  # 12's cooldown start


@pytest.mark.slow
@pytest.mark.parametrize("rungs, extra, message", [
    ("3,6", {}, "must go above 6"),
    ("4,12", {}, r"no rung at or below it that those lack \(4\)"),
    ("3,6,12", {"loss.con": 0.2}, "incompatible config.*loss.con"),
    ("", {"encoder.schedule": "cosine"}, "needs encoder.schedule=wsd and encoder.rungs"),
])
def test_state_it_cannot_extend__refused_before_training(short_ladder, tiny_overrides, rungs, extra, message):
    stable = stable_path(short_ladder / "short")
    overrides = {"run.extend_from": str(stable)} | extra
    cfg = _cfg(tiny_overrides, short_ladder, rungs, **overrides) if rungs else ContraLordConfig.from_overrides(
        tiny_overrides | overrides)
    with pytest.raises(ConfigError, match=f"^run.extend_from: .*{message}"):
        prepare(cfg, short_ladder / "refused")
    assert not (short_ladder / "refused").exists()


@pytest.mark.slow
def test_a_checkpoint_that_is_no_finished_ladder__refused(short_ladder, tiny_overrides, tmp_path):
    mid_run = torch.load(stable_path(short_ladder / "short"), weights_only=True)
    torch.save(mid_run | {"rungs": {"3": mid_run["rungs"]["3"]}}, tmp_path / "unfinished.pt")  # top rung not in
    cfg = _cfg(tiny_overrides, short_ladder, "3,6,12", **{"run.extend_from": str(tmp_path / "unfinished.pt")})
    with pytest.raises(ConfigError, match="^run.extend_from: .*not the stable state of a finished ladder"):
        prepare(cfg, tmp_path / "out")
    with pytest.raises(ConfigError, match="^run.extend_from: .*no such file"):
        prepare(_cfg(tiny_overrides, short_ladder, "3,6,12", **{"run.extend_from": str(tmp_path / "x.pt")}),
                tmp_path / "out")


@pytest.mark.slow
def test_a_state_of_another_stage1__refused_before_training(short_ladder, tiny_overrides, tmp_path):
    """The stable state records its stage 1's key; a run whose own stage 1 differs is refused by ``prepare``, before
    its stage 1 is trained (the check once ran after it)."""
    state = torch.load(stable_path(short_ladder / "short"), weights_only=True)
    torch.save(state | {"latent_key": "0123456789abcdef"}, tmp_path / "other_stage1.pt")
    cfg = _cfg(tiny_overrides, short_ladder, "3,6,12", **{"run.extend_from": str(tmp_path / "other_stage1.pt")})
    with pytest.raises(ConfigError, match="^run.extend_from: .*was trained on stage 1 0123456789abcdef, this run's"):
        prepare(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists()
