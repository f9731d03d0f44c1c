"""The best supervised-only reference (contralord/stage1/best_reference.py): a validation split carved from the labelled
images, a recipe chosen per factor on it (never on the images it is scored on), a refit on every label, and
stage 1 unchanged by it."""

import dataclasses

import pytest
import torch

from contralord import labels
from contralord.config import ConfigError, ContraLordConfig
from contralord.data import ImageFactorData
from contralord.setup import Setup, build_data
from contralord.stage1.best_reference import RECIPES, choose, split_labelled, train_best_reference
from contralord.stage1.latent_factors import labelled_positions
from contralord.stage1.latent_stage import train_latent
from contralord.stage1.reference_classifier import probe_positions, train_reference
from contralord.training import sampling
from contralord.training.tracking import NullLogger

HUES = ["floor_hue", "wall_hue", "object_hue"]


def test_split__a_seeded_fifth_held_out_disjoint_and_covering():
    labelled = torch.arange(0, 300, 3)
    train, held = split_labelled(labelled, seed=0)
    assert len(held) == 20 and len(train) == 80
    assert sorted(torch.cat([train, held]).tolist()) == labelled.tolist()
    assert torch.equal(held, split_labelled(labelled, seed=0)[1])
    assert not torch.equal(held, split_labelled(labelled, seed=1)[1])
    assert len(split_labelled(torch.tensor([4, 9]), seed=0)[1]) == 1
    with pytest.raises(ValueError, match="at least 2 labelled images"):
        split_labelled(torch.tensor([4]), seed=0)


def test_choose__per_factor_highest_validation_accuracy_ties_to_the_earlier_recipe():
    scores = {"a": [0.5, 0.9, 0.7], "b": [0.6, 0.9, 0.7], "c": [0.6, 0.8, 0.75]}
    assert choose(scores) == ["b", "a", "c"]
    assert RECIPES[0] == (0.5, 1.0)  # the matched reference's beta1 and lr win a tie


def _with_unlabelled_factors_shifted(data: ImageFactorData, found: labels.LabelledFactors) -> ImageFactorData:
    """The same images with every unlabelled image's factor values moved on by one (labelled rows as they were)."""
    sizes = torch.as_tensor(data.factor_sizes)
    factors = torch.where(found.mask[:, None], data.factors, (data.factors + 1) % sizes)
    return dataclasses.replace(data, factors=factors)


def test_best_reference__chosen_without_the_scored_images_and_leaves_the_global_rng(tiny_overrides):
    cfg = ContraLordConfig.from_overrides(tiny_overrides | {"latent.best_reference_steps": 6})
    data = build_data(cfg)
    cfg = labels.resolved(cfg, data)
    found = labels.resolve(cfg, data)
    torch.manual_seed(11)
    before = torch.random.get_rng_state()
    accuracy, choices, curve = train_best_reference(cfg, data, found, torch.device("cpu"))
    assert torch.equal(torch.random.get_rng_state(), before)  # stage 1's own draws are untouched
    assert len(accuracy) == len(choices) == 3 and all(0.0 <= a <= 1.0 for a in accuracy)
    recipes = {(beta1, round(cfg.latent.lr_classifier * scale, 12)) for beta1, scale in RECIPES}
    assert all((c.beta1, round(c.lr, 12)) in recipes for c in choices)
    assert curve == []  # no probe, no curve
    again = train_best_reference(cfg, data, found, torch.device("cpu"))
    assert again[:2] == (accuracy, choices)  # deterministic
    # the truth of the images without labels scores the reference, never picks its recipe
    shuffled = train_best_reference(cfg, _with_unlabelled_factors_shifted(data, found), found, torch.device("cpu"))
    assert shuffled[1] == choices and shuffled[0] != accuracy


def test_best_reference__logged_beside_the_matched_one_and_stage1_unchanged(tmp_path, tiny_overrides):
    on = ContraLordConfig.from_overrides(tiny_overrides)
    off = ContraLordConfig.from_overrides(tiny_overrides | {"latent.best_reference_steps": 0})
    with_best = train_latent(Setup.of(on, build_data(on)), tmp_path / "a")
    without = train_latent(Setup.of(off, build_data(off)), tmp_path / "b")
    assert torch.equal(with_best.content, without.content) and torch.equal(with_best.residual, without.residual)
    for name in HUES:
        assert 0.0 <= with_best.metrics[f"latent/final/best_ref_accuracy/{name}"] <= 1.0
        assert with_best.metrics[f"latent/final/best_ref_beta1/{name}"] in (0.5, 0.9)
        assert f"latent/final/best_ref_accuracy/{name}" not in without.metrics
        assert with_best.metrics[f"latent/final/ref_accuracy/{name}"] == without.metrics[
            f"latent/final/ref_accuracy/{name}"]


@pytest.mark.parametrize("overrides, needle", [
    ({"latent.best_reference_steps": -1}, "latent.best_reference_steps: expected an int in [0, 100000]"),
    ({"latent.best_reference_steps": 10**6}, "latent.best_reference_steps: expected an int in [0, 100000]"),
])
def test_best_reference_steps__out_of_range_refused_naming_the_key(tiny_overrides, overrides, needle):
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        ContraLordConfig.from_overrides(tiny_overrides | overrides)


def test_best_reference__one_label_is_refused_naming_both_keys(tiny_overrides):
    cfg = ContraLordConfig.from_overrides(tiny_overrides | {"data.num_labels": 1})
    with pytest.raises(ConfigError, match="latent.best_reference_steps: .* data.num_labels >= 2, got 1"):
        labels.resolve(cfg, build_data(cfg))
    zero = ContraLordConfig.from_overrides(tiny_overrides | {"data.num_labels": 1, "latent.best_reference_steps": 0})
    assert len(labels.resolve(zero, build_data(zero)).labelled) == 1


class _Recording(NullLogger):
    def __init__(self):
        self.logged: list[tuple[int, dict[str, float]]] = []

    def log_metrics(self, metrics, step):
        self.logged.append((step, dict(metrics)))


def test_curves__stage1_per_epoch_and_both_references_at_their_steps(tmp_path, tiny_overrides):
    cfg = ContraLordConfig.from_overrides(tiny_overrides | {"latent.epochs": 2, "latent.best_reference_steps": 10})
    data = build_data(cfg)
    logger = _Recording()
    result = train_latent(Setup.of(cfg, data), tmp_path / "a", logger=logger)
    spe = sampling.steps_per_epoch(len(data), cfg.latent.batch_size)
    epochs = [(step, m) for step, m in logger.logged if "latent/train/epoch" in m]
    assert [step for step, _ in epochs] == [spe, 2 * spe]
    assert all(0.0 <= m[f"latent/train/probe_acc/{h}"] <= 1.0 for _, m in epochs for h in HUES)
    matched = [step for step, m in logger.logged if "latent/ref/probe_acc/object_hue" in m]
    assert matched == [spe, 2 * spe]  # the matched reference, every stage-1 epoch of its steps
    best = [step for step, m in logger.logged if "latent/best_ref/probe_acc/object_hue" in m]
    assert best == list(range(1, 11))  # every tenth of its 10 refit steps
    # the curve's reads change no number: the reference's final accuracy is the one it reports without them
    found = labels.resolve(labels.resolved(cfg, data), data)
    batches = lambda step: labelled_positions(cfg, found, step)  # noqa: E731
    plain, none = train_reference(cfg, data, found, torch.device("cpu"), 2 * spe, batches)
    read, curve = train_reference(cfg, data, found, torch.device("cpu"), 2 * spe, batches, spe,
                                  probe_positions(found, cfg.run.seed))
    assert none == [] and read == plain and [step for step, _ in curve] == [spe, 2 * spe]
    assert [result.metrics[f"latent/final/ref_accuracy/{h}"] for h in HUES] == plain


def test_probe__a_seeded_draw_of_images_without_labels(tiny_overrides):
    cfg = ContraLordConfig.from_overrides(tiny_overrides)
    found = labels.resolve(cfg, build_data(cfg))
    probe = probe_positions(found, 0)
    assert len(probe) == min(1024, int((~found.mask).sum())) and not bool(found.mask[probe].any())
    assert torch.equal(probe, probe_positions(found, 0))
