import pytest

from contralord.config import ConfigError, ContraLordConfig, all_keys, parse_factor_filter, parse_set_args
from contralord.presets import resolve_presets


def test_defaults__match_the_paper_where_it_gives_values():
    cfg = ContraLordConfig()
    assert cfg.encoder.queue_size == 12800  # K
    assert cfg.latent.code_penalty == 0.001 and cfg.latent.noise_std == 1.0  # lambda, sigma
    assert cfg.latent.class_dim == 256 and cfg.latent.content_dim + cfg.latent.residual_dim == 128  # d, g


def test_from_overrides__typed_and_string_values():
    cfg = ContraLordConfig.from_overrides({"encoder.queue_size": "512", "encoder.temperature": 1,
                                           "encoder.flip": "false", "data.name": "dsprites"})
    assert cfg.encoder.queue_size == 512 and cfg.encoder.temperature == 1.0
    assert cfg.encoder.flip is False and cfg.data.name == "dsprites"


def test_to_flat_dict__round_trips():
    cfg = ContraLordConfig.from_overrides({"loss.con": 0.5, "run.seed": 3})
    flat = cfg.to_flat_dict()
    assert set(flat) == set(all_keys())
    assert ContraLordConfig.from_overrides(flat) == cfg


@pytest.mark.parametrize("overrides, key", [
    ({"encoder.queue_sise": 1}, "encoder.queue_sise"),
    ({"nosection.x": 1}, "nosection.x"),
    ({"encoder.queue_size": "abc"}, "encoder.queue_size"),
    ({"encoder.queue_size": 1.5}, "encoder.queue_size"),
    ({"encoder.flip": "maybe"}, "encoder.flip"),
    ({"encoder.flip": 1}, "encoder.flip"),
    ({"encoder.queue_size": 0}, "encoder.queue_size"),
    ({"encoder.queue_size": -5}, "encoder.queue_size"),
    ({"encoder.temperature": 0}, "encoder.temperature"),
    ({"encoder.temperature": -0.1}, "encoder.temperature"),
    ({"encoder.momentum": 1.01}, "encoder.momentum"),
    ({"encoder.momentum": -0.01}, "encoder.momentum"),
    ({"loss.con": -1}, "loss.con"),
    ({"loss.rec": 0, "loss.sup": 0, "loss.con": 0, "loss.res": 0}, "loss"),
    ({"latent.batch_size": 0}, "latent.batch_size"),
    ({"encoder.backbone": "vit"}, "encoder.backbone"),
    ({"latent.recon_loss": "l1"}, "latent.recon_loss"),
    ({"data.factor_filter": "shape=1"}, "data.factor_filter"),
])
def test_from_overrides__bad_input_names_the_key(overrides, key):
    with pytest.raises(ConfigError) as error:
        ContraLordConfig.from_overrides(overrides)
    assert str(error.value).startswith(key)
    assert "\n" not in str(error.value)


def test_momentum_bounds__inclusive():
    assert ContraLordConfig.from_overrides({"encoder.momentum": 0}).encoder.momentum == 0.0
    assert ContraLordConfig.from_overrides({"encoder.momentum": 1}).encoder.momentum == 1.0


def test_parse_factor_filter__syntax():
    assert parse_factor_filter("shape:0,1; scale:2") == {"shape": [0, 1], "scale": [2]}
    assert parse_factor_filter("") == {}


def test_parse_set_args__needs_equals():
    assert parse_set_args(["a.b=1", "c.d = x"]) == {"a.b": "1", "c.d": "x"}
    with pytest.raises(ConfigError, match="key=value"):
        parse_set_args(["a.b"])


def test_presets__compose_and_reject_unknown():
    merged = resolve_presets(["cpu", "lord"], {"encoder.queue_size": 64})
    cfg = ContraLordConfig.from_overrides(merged)
    assert cfg.loss.con == 0 and cfg.loss.res == 0 and cfg.encoder.queue_size == 64
    for name in ("smoke", "cpu", "paper", "moco", "simclr"):
        ContraLordConfig.from_overrides(resolve_presets([name]))
    with pytest.raises(ConfigError, match="unknown preset"):
        resolve_presets(["gpu"])


def test_paper_preset__has_the_paper_settings():
    cfg = ContraLordConfig.from_overrides(resolve_presets(["paper"]))
    assert (cfg.encoder.backbone, cfg.data.image_size, cfg.encoder.batch_size) == ("resnet50", 64, 256)
    assert (cfg.encoder.queue_size, cfg.encoder.epochs, cfg.latent.epochs) == (12800, 200, 200)


def test_from_saved__a_config_from_before_split_bn_keeps_one_bn_batch():
    saved = ContraLordConfig.from_overrides({"encoder.backbone": "resnet18", "encoder.batch_size": 12,
                                           "encoder.bn_splits": 4}).to_flat_dict()
    del saved["encoder.bn_splits"]  # as config.json was written before the key
    assert ContraLordConfig.from_saved(saved).encoder.bn_splits == 1
