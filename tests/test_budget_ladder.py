"""The extendable schedule (``encoder.schedule=wsd``) and the budget ladder (``encoder.rungs``): the schedule in
closed form, the refusals, each rung's branch equal to a straight run of that budget, and a run stopped inside a
branch resumed bit for bit."""

import json
import math

import pytest
import torch

from contralord.config import ConfigError, ContraLordConfig
from contralord.run.preflight import validate_against_data
from contralord.run.trainer import train
from contralord.schedules import WarmupStableDecay, branch_start, cooldown_steps, parse_rungs, wsd_factor
from contralord.setup import Setup, build_data
from contralord.stage1.latent_stage import train_latent
from contralord.stage2.encoder_stage import train_encoders
from contralord.training.runtime import LocalRuntime
from contralord.training.tracking import NullLogger


class RecordingLogger(NullLogger):
    def __init__(self):
        self.metrics = []

    def log_metrics(self, metrics, step):
        self.metrics.append((step, dict(metrics)))


def test_wsd_factor__warmup_plateau_and_1_sqrt_cooldown():
    # budget 100, 20 % cooldown from step 80, 10 warm-up steps
    assert [wsd_factor(t, 100, 10, 0.2) for t in (0, 4, 9)] == [0.1, 0.5, 1.0]
    assert all(wsd_factor(t, 100, 10, 0.2) == 1.0 for t in range(10, 81))
    assert wsd_factor(85, 100, 10, 0.2) == pytest.approx(1 - math.sqrt(5 / 20))
    assert wsd_factor(99, 100, 10, 0.2) == pytest.approx(1 - math.sqrt(19 / 20)) and wsd_factor(99, 100, 10, 0.2) > 0
    assert wsd_factor(100, 100, 10, 0.2) == 0.0
    assert (cooldown_steps(160, 0.2), branch_start(160, 0.2), cooldown_steps(3, 0.2)) == (32, 128, 1)


def test_wsd_scheduler__steps_the_factor_and_retargets_a_branch():
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=2.0)
    scheduler = WarmupStableDecay(optimizer, budget=10, warmup_steps=0, decay_fraction=0.5)
    seen = []
    for _ in range(10):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([2.0 * wsd_factor(t, 10, 0, 0.5) for t in range(10)])
    assert seen[:6] == [2.0] * 6 and seen[6] < 2.0  # constant until step 5, the cooldown from there
    fresh = WarmupStableDecay(torch.optim.SGD([weight], lr=2.0), budget=10, warmup_steps=0, decay_fraction=0.5)
    for _ in range(3):
        fresh.optimizer.step()
        fresh.step()
    fresh.retarget(4)  # a rung of 4 steps cools down over steps 2-3: step 3 is its last
    assert fresh.optimizer.param_groups[0]["lr"] == pytest.approx(2.0 * wsd_factor(3, 4, 0, 0.5))
    assert fresh.state_dict()["budget"] == 4


@pytest.mark.parametrize("overrides, key", [
    ({"encoder.rungs": "40,20"}, "encoder.rungs"), ({"encoder.rungs": "0,20"}, "encoder.rungs"),
    ({"encoder.rungs": "20,x"}, "encoder.rungs"), ({"encoder.rungs": "20,40", "encoder.schedule": "cosine"},
                                                    "encoder.rungs"),
    ({"encoder.rungs": "20,40", "encoder.steps": 30}, "encoder.steps"),
    ({"encoder.decay_fraction": 1.0}, "encoder.decay_fraction"), ({"encoder.decay_fraction": 0.0},
                                                                  "encoder.decay_fraction"),
    ({"encoder.schedule": "linear"}, "encoder.schedule"), ({"encoder.warmup_steps": -1}, "encoder.warmup_steps"),
    ({"encoder.rungs": "20,40", "encoder.warmup_steps": 17}, "encoder.warmup_steps"),
])
def test_ladder_config__refused_naming_the_key(overrides, key):
    with pytest.raises(ConfigError, match=f"^{key}: "):
        ContraLordConfig.from_overrides({"encoder.schedule": "wsd"} | overrides)


def test_ladder_config__budget_is_the_top_rung(tiny_overrides):
    cfg = ContraLordConfig.from_overrides(tiny_overrides | {"encoder.schedule": "wsd", "encoder.rungs": "3,6"})
    assert parse_rungs(cfg.encoder.rungs) == (3, 6)
    from contralord.training.sampling import encoder_steps

    assert encoder_steps(cfg, 96) == (6, 2)
    with pytest.raises(ConfigError, match="^encoder.warmup_steps: 9 runs into the cooldown"):
        validate_against_data(ContraLordConfig.from_overrides(tiny_overrides | {
            "encoder.schedule": "wsd", "encoder.epochs": 3, "encoder.warmup_steps": 9}), 96)


def _cfg(tiny_overrides, tmp_path, **extra):
    return ContraLordConfig.from_overrides(tiny_overrides | {"encoder.schedule": "wsd", "loss.con": 0.1,
                                                             "run.latent_cache": str(tmp_path / "cache")} | extra)


def _ladder(tiny_overrides, tmp_path, out: str):
    """A 3, 6, 9-step ladder's config, data and stage 1, and its straight run into ``out`` with every lower
    rung's branch parameters: (cfg, data, latent, trainer, {rung: parameters})."""
    cfg = _cfg(tiny_overrides, tmp_path, **{"encoder.rungs": "3,6,9"})
    data = build_data(cfg)
    latent = train_latent(Setup.of(cfg, data), tmp_path / "cache")
    branches = {}
    trainer = train_encoders(Setup.of(cfg, data), latent, tmp_path / out,
                             on_rung=lambda rung, branch: branches.__setitem__(rung, _params(branch)) or {})
    return cfg, data, latent, trainer, branches


def _params(trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.online.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_each_rung__equals_a_straight_run_of_its_budget(tmp_path, tiny_overrides):
    """3 steps an epoch; rungs 3, 6, 9: each lower rung's branch, and the trunk at 9, equal straight WSD runs of
    3, 6 and 9 steps, parameters and queues bit for bit; metrics.json and MLflow-bound records hold every rung."""
    ladder, data, latent, top, branches = _ladder(tiny_overrides, tmp_path, "ladder")
    assert sorted(branches) == [3, 6]
    for steps in (3, 6, 9):
        straight = train_encoders(Setup.of(_cfg(tiny_overrides, tmp_path, **{"encoder.steps": steps}), data), latent,
                                  tmp_path / f"straight{steps}")
        assert _same(branches.get(steps) or _params(top), _params(straight)), steps
    assert _same({k: v for k, v in top.momentum.state_dict().items()},
                 {k: v for k, v in straight.momentum.state_dict().items()})  # queues and pointers too

    logger, reports = RecordingLogger(), []
    runtime = LocalRuntime(report=lambda metrics, path: reports.append(dict(metrics)))
    summary = train(ladder, tmp_path / "run", runtime=runtime, logger=logger)  # the whole run: one evaluation a rung
    logged = {step: m for step, m in logger.metrics if "rung/encoder/eval/disentanglement" in m}
    assert sorted(logged) == [3, 6, 9]  # MLflow step = the rung's steps
    assert logged[9]["rung/encoder/eval/disentanglement"] == summary["encoder/eval/disentanglement"]
    rung_reports = [r for r in reports if "rung/steps" in r]  # Tune: one report per rung, its epoch on the axis
    assert [(r["rung/steps"], r["epoch"]) for r in rung_reports] == [(3.0, 1.0), (6.0, 2.0), (9.0, 3.0)]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert sorted(metrics["rungs"], key=int) == ["3", "6", "9"] and summary["rungs"] == metrics["rungs"]
    assert metrics["rungs"]["9"]["encoder/eval/disentanglement"] == summary["encoder/eval/disentanglement"]
    assert all((tmp_path / "run" / "rungs" / r / "metrics.json").is_file() for r in ("3", "6"))


@pytest.mark.slow
def test_run_stopped_inside_a_branch__resumes_bit_for_bit(tmp_path, tiny_overrides):
    cfg, data, latent, straight, straight_rungs = _ladder(tiny_overrides, tmp_path, "straight")
    resumed_rungs = {}

    def stop_at_six(rung, trainer):
        if rung == 6:
            raise KeyboardInterrupt  # killed while rung 6's branch is evaluated
        resumed_rungs[rung] = _params(trainer)
        return {"rung": float(rung)}

    with pytest.raises(KeyboardInterrupt):
        train_encoders(Setup.of(cfg, data), latent, tmp_path / "resumed", on_rung=stop_at_six)
    # rung 3 is in the checkpoint: not run again
    resumed = train_encoders(Setup.of(cfg, data), latent, tmp_path / "resumed",
                             on_rung=lambda rung, trainer: resumed_rungs.__setitem__(rung, _params(trainer)) or {})
    assert sorted(resumed_rungs) == [3, 6] and resumed.rungs[3] == {"rung": 3.0}
    assert all(_same(resumed_rungs[r], straight_rungs[r]) for r in (3, 6))
    assert _same(_params(resumed), _params(straight)) and straight.last_step == resumed.last_step
