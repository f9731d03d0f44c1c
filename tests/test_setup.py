"""A run's Setup (contralord/setup.py): the config resolved once on its data, what each stage reads instead of
asking contralord.labels again."""

import pytest
import torch

from contralord import labels
from contralord.config import ConfigError, ContraLordConfig
from contralord.setup import Setup, build_data


def _setup(tiny_overrides, **extra) -> Setup:
    cfg = ContraLordConfig.from_overrides(tiny_overrides | extra)
    return Setup.of(cfg, build_data(cfg))


def test_setup__holds_what_labels_resolves_for_the_config_on_its_data(tiny_overrides):
    setup = _setup(tiny_overrides)  # latent.structure=auto under partial labels on shapes3d: factors
    cfg = ContraLordConfig.from_overrides(tiny_overrides)
    assert cfg.latent.structure == "auto" and setup.cfg == labels.resolved(cfg, setup.data)
    assert setup.structure == setup.cfg.latent.structure == "factors"
    assert setup.layout == labels.layout(cfg, setup.data)
    expected = labels.resolve(cfg, setup.data)
    assert setup.labelled_names == expected.names == ("floor_hue", "wall_hue", "object_hue")
    assert torch.equal(setup.labelled.labelled, expected.labelled) and torch.equal(setup.labelled.known, expected.known)


def test_setup__no_labelled_factors_where_the_run_has_none(tiny_overrides):
    setup = _setup(tiny_overrides, **{"latent.structure": "class", "eval.protocol": "all-factors"})
    assert setup.structure == "class" and setup.labelled is None and setup.labelled_names == ()


def test_setup__a_saved_runs_evaluation_draws_no_labels_and_checks_no_label_count(tiny_overrides):
    """``contralord evaluate`` scores a saved run under partial labels: it reads which factors are labelled, never
    which images carried labels, so a label count that does not fit this data is no reason to refuse it."""
    overrides = tiny_overrides | {"latent.structure": "class", "data.num_labels": 500}  # 96 images
    cfg = ContraLordConfig.from_overrides(overrides)
    data = build_data(cfg)
    with pytest.raises(ConfigError, match="data.num_labels: expected at most the 96 training images, got 500"):
        Setup.of(cfg, data)  # training would use them: refused
    scored = Setup.of(cfg, data, draw_labels=False)
    assert scored.labelled_names == ("floor_hue", "wall_hue", "object_hue")
    assert len(scored.labelled.labelled) == 0 and bool((scored.labelled.known == -1).all())


def test_setup__with_eval_changes_sizes_never_the_protocol(tiny_overrides):
    setup = _setup(tiny_overrides)
    smaller = setup.with_eval(num_train=50, floors=False)
    assert smaller.cfg.eval.num_train == 50 and not smaller.cfg.eval.floors
    assert smaller.labelled is setup.labelled and smaller.layout == setup.layout and smaller.data is setup.data
    with pytest.raises(ValueError, match="eval.protocol"):
        setup.with_eval(protocol="all-factors")
