"""encoder.content_head: h_c copied from stage 1's labelled-factor classifiers, frozen (zerodim's amortisation)
or as the starting point of a trained h_c; the default head is untouched."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from contralord.config import ConfigError, ContraLordConfig
from contralord.encoding import encode, encode_classifier
from contralord.latent_result import load_factor_codes, scored_factor_model
from contralord.models.stage1_content import StackedBackbone
from contralord.run.preflight import prepare
from contralord.run.trainer import train
from contralord.setup import Setup, build_data
from contralord.stage1.latent_stage import train_latent
from contralord.stage2.encoder_stage import EncoderTrainer, build_online, train_encoders
from contralord.training.runtime import LocalRuntime

CPU = torch.device("cpu")


def _stage1(tmp_path, tiny_overrides, **extra):
    cfg = ContraLordConfig.from_overrides(tiny_overrides | extra)
    data = build_data(cfg)
    return cfg, data, train_latent(Setup.of(cfg, data), tmp_path / "latent_cache")


def _classifier_codes(cfg, data, latent):
    model = load_factor_codes(Setup.of(cfg, data), latent.factor_codes, CPU)
    return encode_classifier(model, data.images, torch.arange(len(data)), CPU)


@pytest.mark.parametrize("trunks", ["per_factor", "shared"])
def test_frozen__h_c_is_stage1_classifier_code_before_and_after_training(tmp_path, tiny_overrides, trunks):
    cfg, data, latent = _stage1(tmp_path, tiny_overrides, **{"encoder.content_head": "stage1_frozen",
                                                             "latent.classifier_trunks": trunks})
    expected = _classifier_codes(cfg, data, latent)  # softmax(C_j(x)) @ E_j, no label used
    index = torch.arange(len(data))
    online = build_online(Setup.of(cfg, data), latent)
    assert isinstance(online.backbone, StackedBackbone)
    np.testing.assert_allclose(encode(online, data.images, index, CPU)["content"], expected, rtol=1e-5, atol=1e-6)
    trainer = train_encoders(Setup.of(cfg, data), latent, tmp_path / "run")
    codes = encode(trainer.online, data.images, index, CPU)
    np.testing.assert_allclose(codes["content"], expected, rtol=1e-5, atol=1e-6)  # stage 2 left it as it was
    assert codes["features"].shape[1] > codes["content"].shape[1]  # f(x) then the classifier trunks' features
    frozen = [n for n, p in trainer.online.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith(("backbone.trunks", "heads.content_head", "generator")) for n in frozen)


def test_init__h_c_starts_at_the_stage1_code_and_trains(tmp_path, tiny_overrides):
    cfg, data, latent = _stage1(tmp_path, tiny_overrides, **{"encoder.content_head": "stage1_init"})
    expected, index = _classifier_codes(cfg, data, latent), torch.arange(len(data))
    online = build_online(Setup.of(cfg, data), latent)
    np.testing.assert_allclose(encode(online, data.images, index, CPU)["content"], expected, rtol=1e-5, atol=1e-6)
    before = {n: p.detach().clone() for n, p in online.heads.content_head.named_parameters()}
    trainer = train_encoders(Setup.of(cfg, data), latent, tmp_path / "run")
    after = dict(trainer.online.heads.content_head.named_parameters())
    assert all(p.requires_grad for p in after.values())
    assert any(not torch.equal(before[n], after[n]) for n in before)  # the copy was trained


def test_residual_and_class_heads_read_f_alone(tmp_path, tiny_overrides):
    cfg, data, latent = _stage1(tmp_path, tiny_overrides, **{"encoder.content_head": "stage1_frozen"})
    online = build_online(Setup.of(cfg, data), latent).eval()
    x = data.images[:4].float().div(255)
    features = online.backbone(x)
    shifted = features.clone()
    shifted[:, online.heads.residual_head.width:] += 1.0  # the trunk columns move, f(x) does not
    with torch.no_grad():
        _, _, residual = online.heads(features)
        _, _, residual_shifted = online.heads(shifted)
    torch.testing.assert_close(residual, residual_shifted, rtol=0, atol=0)


def test_saved_run__rebuilds_from_its_checkpoint_without_stage1(tmp_path, tiny_overrides):
    cfg, data, latent = _stage1(tmp_path, tiny_overrides, **{"encoder.content_head": "stage1_init"})
    trainer = train_encoders(Setup.of(cfg, data), latent, tmp_path / "run")
    rebuilt = build_online(Setup.of(cfg, data), None)  # what evaluating a saved run does: the checkpoint fills the copy
    rebuilt.load_state_dict(trainer.online.state_dict())
    index = torch.arange(8)
    for part, values in encode(rebuilt, data.images, index, CPU).items():
        np.testing.assert_array_equal(values, encode(trainer.online, data.images, index, CPU)[part], err_msg=part)


def test_train__frozen_content_scores_as_the_classifier_codes(tmp_path, tiny_overrides):
    """zerodim's two views of one model: h_c = the frozen copy scores what eval.scored_code=classifier scores."""
    frozen = tiny_overrides | {"encoder.content_head": "stage1_frozen", "run.latent_cache": str(tmp_path / "cache")}
    train(ContraLordConfig.from_overrides(frozen), tmp_path / "frozen")
    train(ContraLordConfig.from_overrides(frozen | {"eval.scored_code": "classifier"}), tmp_path / "classifier")
    first, second = (json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("frozen", "classifier"))
    for metric in ("disentanglement", "completeness", "informativeness_test", "mig", "sap"):
        assert first[metric] == pytest.approx(second[metric], abs=1e-6), metric


@pytest.mark.parametrize("extra", [{"latent.structure": "class"}, {"encoder.model": "vae", "loss.sup": 0.0,
                                                                   "loss.con": 0.0, "loss.res": 0.0},
                                   {"loss.rec": 0.0, "loss.sup": 0.0}])
def test_refused_before_work_without_labelled_factor_stage1(tmp_path, tiny_overrides, extra):
    cfg = ContraLordConfig.from_overrides(tiny_overrides | {"encoder.content_head": "stage1_frozen"} | extra)
    with pytest.raises(ConfigError, match=r"encoder\.content_head"):
        prepare(cfg, tmp_path / "run")
    assert not any(tmp_path.iterdir())


def test_bad_value__names_the_key():
    with pytest.raises(ConfigError, match=r"encoder\.content_head.*learned, stage1_frozen, stage1_init"):
        ContraLordConfig.from_overrides({"encoder.content_head": "frozen"})


def test_old_stage1_artifact__each_setting_that_needs_its_classifiers_names_itself(tmp_path, tiny_overrides):
    cfg, data, latent = _stage1(tmp_path, tiny_overrides)
    old = dataclasses.replace(latent, factor_codes=None)  # an artifact saved before the classifiers were kept
    for key, overrides in (("encoder.content_head", {"encoder.content_head": "stage1_frozen"}),
                           ("encoder.label_aware_negatives", {"encoder.label_aware_negatives": True})):
        with pytest.raises(ConfigError, match=rf"{key}: needs a stage-1 artifact with its classifiers; .*retrain"):
            EncoderTrainer(Setup.of(ContraLordConfig.from_overrides(tiny_overrides | overrides), data), old,
                           LocalRuntime())
    with pytest.raises(ConfigError, match=r"eval\.scored_code: needs a stage-1 artifact"):
        scoring = ContraLordConfig.from_overrides(tiny_overrides | {"eval.scored_code": "classifier"})
        scored_factor_model(Setup.of(scoring, data), old, CPU)
