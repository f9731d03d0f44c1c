"""The fast path (run.precision, run.channels_last, run.compile) stays within stated tolerances of fp32
eager on the CPU, and the default is untouched (fp32 eager is what every other test pins)."""

import pytest
import torch

from contralord.config import ContraLordConfig
from contralord.setup import Setup, build_data
from contralord.stage1.latent_stage import build_trainer, train_latent
from contralord.stage2.encoder_stage import EncoderTrainer
from contralord.training.runtime import LocalRuntime

STEPS = 3


def _stage2_losses(tmp_path, overrides, **run):
    cfg = ContraLordConfig.from_overrides(overrides | run)
    data = build_data(cfg)
    latent = train_latent(Setup.of(cfg, data), tmp_path / "cache")  # the stage-1 key ignores run.* keys: one stage 1
    trainer = EncoderTrainer(Setup.of(cfg, data), latent, LocalRuntime())
    return [trainer.step(0, s, s) for s in range(STEPS)]


def _stage1_losses(overrides, **run):
    cfg = ContraLordConfig.from_overrides(overrides | run)
    trainer = build_trainer(Setup.of(cfg, build_data(cfg)), LocalRuntime())
    return [trainer.step(0, s, s)["total"] for s in range(STEPS)]


def test_channels_last__equals_fp32_eager(tmp_path, tiny_overrides):
    eager = _stage2_losses(tmp_path, tiny_overrides)
    nhwc = _stage2_losses(tmp_path, tiny_overrides, **{"run.channels_last": True})
    for a, b in zip(eager, nhwc, strict=True):
        for key in ("rec", "sup", "nce_content", "nce_residual", "total"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), key
    assert _stage1_losses(tiny_overrides, **{"run.channels_last": True}) == pytest.approx(
        _stage1_losses(tiny_overrides), rel=1e-4)


def test_bf16__within_two_percent_of_fp32(tmp_path, tiny_overrides):
    # bf16 keeps 8 bits of mantissa (~0.4% per operation): losses after 3 steps agree to 2%
    eager = _stage2_losses(tmp_path, tiny_overrides)
    bf16 = _stage2_losses(tmp_path, tiny_overrides, **{"run.precision": "bf16"})
    for a, b in zip(eager, bf16, strict=True):
        for key in ("rec", "sup", "nce_content", "nce_residual", "total"):
            assert b[key] == pytest.approx(a[key], rel=0.02, abs=1e-4), key
    for structure in ("class", "factors"):
        low = _stage1_losses(tiny_overrides, **{"run.precision": "bf16", "latent.structure": structure})
        assert low == pytest.approx(_stage1_losses(tiny_overrides, **{"latent.structure": structure}), rel=0.02)


@pytest.mark.slow
def test_compile__within_1e3_of_eager(tmp_path, tiny_overrides):
    torch._dynamo.reset()
    eager = _stage2_losses(tmp_path, tiny_overrides)
    compiled = _stage2_losses(tmp_path, tiny_overrides, **{"run.compile": True})
    for a, b in zip(eager, compiled, strict=True):
        assert b["total"] == pytest.approx(a["total"], rel=1e-3)
