"""``latent.classifier_beta1``: Adam's beta1 of stage 1's classifiers and of the matched reference (the generator
and the code tables keep zerodim's 0.5); the best reference searches the same recipes whatever it is; left out of
the stage-1 cache key at 0.5 so the artifacts trained before the key existed keep their key, and a checkpoint saved
before it resumes."""

import dataclasses
import hashlib
import json

import pytest
import torch

from contralord import labels
from contralord.config import ConfigError, ContraLordConfig
from contralord.models.build import build_generator, build_recon_loss
from contralord.setup import Setup, build_data
from contralord.stage1 import best_reference
from contralord.stage1.best_reference import RECIPES
from contralord.stage1.latent_factors import FactorTrainer
from contralord.stage1.reference_classifier import train_reference
from contralord.training.runtime import LocalRuntime


def _hash_without(cfg: ContraLordConfig, key: str) -> str:
    """The stage-1 key's hash as it was before ``key`` existed: data and latent values, less the ignored ones."""
    flat = {k: v for k, v in cfg.to_flat_dict().items()
            if k.split(".")[0] in ("data", "latent") and k not in ("data.max_array_gib", key)}
    return hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()[:16]


def test_cache_key__unchanged_at_the_old_value_and_new_off_it():
    old = ContraLordConfig()
    assert old.latent.classifier_beta1 == 0.5
    assert old.section_hash("data", "latent") == _hash_without(old, "latent.classifier_beta1")
    new = dataclasses.replace(old, latent=dataclasses.replace(old.latent, classifier_beta1=0.9))
    assert new.section_hash("data", "latent") != old.section_hash("data", "latent")


@pytest.mark.parametrize("value", [1.0, -0.1, 1.5])
def test_classifier_beta1__outside_0_1_refused_naming_the_key(tiny_overrides, value):
    with pytest.raises(ConfigError, match=r"latent.classifier_beta1: expected a float in \[0, 1\)"):
        ContraLordConfig.from_overrides(tiny_overrides | {"latent.classifier_beta1": value})


def test_stage1__only_the_classifiers_take_it(tiny_overrides):
    cfg = ContraLordConfig.from_overrides(tiny_overrides | {"latent.classifier_beta1": 0.9})
    data = build_data(cfg)
    setup = Setup.of(cfg, data)
    trainer = FactorTrainer(setup, LocalRuntime(), build_generator(setup), build_recon_loss(cfg, "cpu"))
    generator, tables, classifiers = trainer.optimizer.param_groups
    assert generator["betas"] == tables["betas"] == (0.5, 0.999)
    assert classifiers["betas"] == (0.9, 0.999)
    trunk = next(trainer.state.decoder.factor_codes.trunks.parameters())
    assert any(p is trunk for p in classifiers["params"])


def test_matched_reference__trains_with_it(tiny_overrides, monkeypatch):
    cfg = ContraLordConfig.from_overrides(tiny_overrides | {"latent.classifier_beta1": 0.9})
    data = build_data(cfg)
    cfg = labels.resolved(cfg, data)
    found = labels.resolve(cfg, data)
    seen, adam = [], torch.optim.Adam

    def recording(params, **kwargs):
        seen.append(kwargs["betas"])
        return adam(params, **kwargs)

    monkeypatch.setattr(torch.optim, "Adam", recording)
    train_reference(cfg, data, found, torch.device("cpu"), steps=1, batches=lambda step: found.labelled[:8])
    assert seen == [(0.9, 0.999)]


def test_best_reference__the_same_search_whatever_stage1s_beta1(tiny_overrides, monkeypatch):
    """The best reference is one anchor for every stage-1 recipe: the same recipes, in the same tie order."""
    searched = {}
    for beta1 in (0.5, 0.9, 0.8):
        cfg = ContraLordConfig.from_overrides(tiny_overrides | {"latent.classifier_beta1": beta1,
                                                                 "latent.best_reference_steps": 2})
        data = build_data(cfg)
        cfg = labels.resolved(cfg, data)
        seen = []
        monkeypatch.setattr(best_reference, "train_recipe", _recording(seen, best_reference.train_recipe))
        best_reference.train_best_reference(cfg, data, labels.resolve(cfg, data), torch.device("cpu"))
        searched[beta1] = seen[:len(RECIPES)]
        assert best_reference.best_reference_steps(cfg.latent, 3) == 2 * (len(RECIPES) + 3)
        monkeypatch.undo()
    lr = cfg.latent.lr_classifier
    assert searched[0.5] == searched[0.9] == searched[0.8] == [(b, round(lr * m, 12)) for b, m in RECIPES]


def _recording(seen, train):
    def recording(cfg, data, labelled, device, recipe, *args, **kwargs):
        seen.append((recipe[0], round(recipe[1], 12)))
        return train(cfg, data, labelled, device, recipe, *args, **kwargs)

    return recording


def test_checkpoint_saved_before_the_key__resumes_at_its_old_value_and_is_refused_off_it(tmp_path):
    from contralord.training.checkpoint import check_compatible

    now = ContraLordConfig().to_flat_dict()
    before = {k: v for k, v in now.items() if k != "latent.classifier_beta1"}  # a config saved before the key
    check_compatible(before, now, tmp_path / "last.pt")  # it ran at 0.5: the same config
    changed = dataclasses.replace(ContraLordConfig(), latent=dataclasses.replace(ContraLordConfig().latent,
                                                                                 classifier_beta1=0.9))
    with pytest.raises(ValueError, match=r"latent.classifier_beta1: 0.5 in checkpoint vs 0.9 now"):
        check_compatible(before, changed.to_flat_dict(), tmp_path / "last.pt")


def test_cost_history__a_run_logged_before_the_key_is_the_same_config():
    from tune.pricing.history import _same

    flat = ContraLordConfig().to_flat_dict()
    logged = {k: str(v) for k, v in flat.items() if k != "latent.classifier_beta1"}
    assert _same(logged, flat, shape_only=False)
    assert not _same(logged, flat | {"latent.classifier_beta1": 0.9}, shape_only=False)
