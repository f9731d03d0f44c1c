"""``latent.classifier_beta1``: Adam's beta1 of stage 1's classifiers and of the matched reference (the generator
and the code tables keep zerodim's 0.5), first in the best reference's tie order, and left out of the stage-1
cache key at 0.5 so the artifacts trained before the key existed keep their key."""

import dataclasses
import hashlib
import json

import pytest
import torch

from contralord import labels
from contralord.best_reference import RECIPES, best_reference_steps, recipe_order
from contralord.config import ConfigError, ContraLordConfig
from contralord.latent_factors import FactorTrainer
from contralord.latent_stage import build_generator, build_recon_loss
from contralord.reference_classifier import train_reference
from contralord.runtime import LocalRuntime
from contralord.trainer import build_data


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
    trainer = FactorTrainer(cfg, data, LocalRuntime(), build_generator(cfg, data), build_recon_loss(cfg, "cpu"))
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


def test_best_reference__the_matched_recipe_first_and_searched_when_off_the_grid(tiny_overrides):
    assert recipe_order(0.5) == list(RECIPES)
    assert recipe_order(0.9) == [(0.9, 1.0), (0.5, 1.0), (0.5, 3.0), (0.9, 3.0)]
    assert recipe_order(0.8) == [(0.8, 1.0), *RECIPES]
    lat = ContraLordConfig.from_overrides(tiny_overrides | {"latent.classifier_beta1": 0.8}).latent
    assert best_reference_steps(lat, 3) == lat.best_reference_steps * (5 + 3)
    assert best_reference_steps(lat, 9) == lat.best_reference_steps * (5 + 5)
