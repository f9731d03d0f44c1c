"""Stage 1's labelled-factor classifiers as zerodim trains them (one CNN per factor, tables in +-0.05 learnt
only from labelled rows, entropy after a warm-up), the supervised-only reference beside them, the scores of
stage 1's own codes, and zerodim's evaluation of the classifier codes (eval.scored_code=classifier)."""

import json

import numpy as np
import pytest
import torch

from contralord import labels
from contralord.config import ConfigError, ContraLordConfig
from contralord.encoding import encode_classifier
from contralord.latent_result import load_factor_codes
from contralord.models.build import build_generator, build_recon_loss
from contralord.models.latent import FactorCodes, build_factor_codes
from contralord.run.preflight import prepare
from contralord.run.summary import per_dim_correlation
from contralord.run.trainer import train
from contralord.scoring import within_combination_variance
from contralord.setup import Setup, build_data
from contralord.stage1.latent_factors import FactorTrainer, labelled_positions
from contralord.stage1.latent_stage import train_latent
from contralord.stage1.reference_classifier import classifier_accuracy
from contralord.training import sampling
from contralord.training.loop import LoopSpec, run_loop
from contralord.training.runtime import LocalRuntime
from contralord.training.tracking import NullLogger

HUES = ["floor_hue", "wall_hue", "object_hue"]


def _cfg(overrides, **extra):
    return ContraLordConfig.from_overrides(overrides | extra)


def _linear_trunk():
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 5))


def test_factor_codes__one_trunk_per_factor_each_trained_by_its_own_factor():
    trunks = [_linear_trunk(), _linear_trunk()]
    codes = FactorCodes((4, 3), 1, trunks, 5, (-0.05, 0.05), torch.Generator().manual_seed(0))
    logits = codes.logits(torch.rand(2, 3, 4, 4))
    logits[1].sum().backward()
    assert trunks[0][1].weight.grad is None and float(trunks[1][1].weight.grad.abs().sum()) > 0
    table = torch.cat([t.detach() for t in codes.tables])
    assert float(table.min()) < 0 < float(table.max()) and float(table.abs().max()) <= 0.05  # +-init, zerodim


def test_factor_codes__unlabelled_codes_do_not_train_the_tables_without_soft_table_grad():
    for soft_grad in (False, True):
        codes = FactorCodes((4,), 1, [_linear_trunk()], 5, (0, 0.05), torch.Generator().manual_seed(0),
                            soft_table_grad=soft_grad)
        out, _ = codes(torch.rand(2, 3, 4, 4), torch.tensor([[-1], [-1]]))
        out.sum().backward()
        grad = codes.tables[0].grad
        assert (grad is not None and float(grad.abs().sum()) > 0) == soft_grad
        assert float(codes.classifiers[0].weight.grad.abs().sum()) > 0  # the classifier learns either way


def test_build_factor_codes__follows_the_config(tiny_overrides):
    cfg = _cfg(tiny_overrides)
    per_factor = build_factor_codes(cfg.latent, (10, 10, 10), 3, 32, torch.Generator().manual_seed(0))
    shared = build_factor_codes(_cfg(tiny_overrides, **{"latent.classifier_trunks": "shared",
                                                        "latent.factor_init": "positive"}).latent,
                                (10, 10, 10), 3, 32, torch.Generator().manual_seed(0))
    assert len(per_factor.trunks) == 3 and len(shared.trunks) == 1
    assert float(torch.cat(list(shared.tables.parameters())).detach().min()) >= 0


def test_entropy__off_before_its_start_epoch(tiny_overrides):
    cfg = _cfg(tiny_overrides, **{"latent.entropy": 100.0, "latent.entropy_start_epoch": 1,
                                  "latent.code_penalty": 0.0})
    data = build_data(cfg)
    torch.manual_seed(0)
    setup = Setup.of(cfg, data)
    trainer = FactorTrainer(setup, LocalRuntime(), build_generator(setup), build_recon_loss(cfg, "cpu"))
    lat = cfg.latent
    without = lambda m: m["recon"] + lat.labelled_weight * (m["recon_labelled"] + lat.label_ce * m["label_ce"])  # noqa
    before, after = trainer.step(0, 0, 0), trainer.step(1, 0, 1)
    assert before["entropy"] > 0.1 and before["total"] == pytest.approx(without(before), rel=1e-5)
    assert after["total"] == pytest.approx(without(after) + 100.0 * after["entropy"], rel=1e-5)


def test_classifier_accuracy__counts_unlabelled_images_only(tiny_overrides):
    cfg = _cfg(tiny_overrides)
    data = build_data(cfg)
    found = labels.resolve(cfg, data)
    model = build_factor_codes(cfg.latent, found.sizes, data.channels, 32, torch.Generator().manual_seed(0))
    truth = data.factors[:, list(found.columns)]  # (N, 3)
    positions = {}

    def oracle(x):  # the right value for the first two factors, always value 0 for the third
        rows = positions["rows"][: len(x)]
        positions["rows"] = positions["rows"][len(x):]
        return [torch.nn.functional.one_hot(truth[rows, 0], 10).float(),
                torch.nn.functional.one_hot(truth[rows, 1], 10).float(), torch.zeros(len(x), 10)]

    positions["rows"] = torch.arange(len(data))[~found.mask]
    model.logits = oracle
    accuracy = classifier_accuracy(model, data, found, torch.device("cpu"))
    third = float((truth[~found.mask, 2] == 0).float().mean())
    assert accuracy[:2] == [1.0, 1.0] and accuracy[2] == pytest.approx(third)


def test_reference__leaves_stage1_bit_identical_and_is_logged(tmp_path, tiny_overrides):
    with_ref = train_latent(Setup.of(_cfg(tiny_overrides), build_data(_cfg(tiny_overrides))), tmp_path / "a")
    off = _cfg(tiny_overrides, **{"latent.reference_classifier": False})
    without = train_latent(Setup.of(off, build_data(off)), tmp_path / "b")
    assert torch.equal(with_ref.content, without.content) and torch.equal(with_ref.residual, without.residual)
    for name in HUES:
        assert 0.0 <= with_ref.metrics[f"latent/final/ref_accuracy/{name}"] <= 1.0
        assert f"latent/final/ref_accuracy/{name}" not in without.metrics
    assert 0.0 <= with_ref.metrics["latent/final/codes/disentanglement"] <= 1.0
    assert "latent/final/codes/dci_importance/object_hue/object_hue" in with_ref.metrics
    assert with_ref.factor_codes is not None


def test_labelled_positions__the_labelled_images_of_each_step(tiny_overrides):
    cfg = _cfg(tiny_overrides)
    found = labels.resolve(cfg, build_data(cfg))
    first, again, other = (labelled_positions(cfg, found, s) for s in (0, 0, 1))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert bool(found.mask[first].all()) and len(first) == min(cfg.latent.batch_size, len(found.labelled))


def test_scored_code_classifier__scores_stage1_classifier_codes(tmp_path, tiny_overrides):
    cfg = _cfg(tiny_overrides, **{"eval.scored_code": "classifier", "loss.con": 0.0, "loss.res": 0.0})
    train(cfg, tmp_path / "run")
    scores = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert scores["scored_code"] == "stage1-classifier" and 0.0 <= scores["disentanglement"] <= 1.0
    data = build_data(cfg)
    latent = train_latent(Setup.of(cfg, data), tmp_path / "run" / "latent_cache")
    model = load_factor_codes(Setup.of(cfg, data), latent.factor_codes, torch.device("cpu"))
    index = torch.arange(len(data))
    soft = encode_classifier(model, data.images, index, torch.device("cpu"))
    with torch.no_grad():
        logits = model.logits(data.images.float().div(255))
        expected = np.concatenate([(lg.softmax(1) @ t).numpy() for lg, t in zip(logits, model.tables, strict=True)], 1)
    np.testing.assert_allclose(soft, expected, rtol=1e-5, atol=1e-7)


def test_scored_code_classifier__refused_without_labelled_factor_stage1(tmp_path, tiny_overrides):
    for extra in ({"latent.structure": "class"}, {"eval.protocol": "all-factors"}):
        with pytest.raises(ConfigError, match="eval.scored_code"):
            prepare(_cfg(tiny_overrides, **{"eval.scored_code": "classifier"}, **extra), tmp_path)
    assert not any(tmp_path.iterdir())


def test_from_saved__a_config_saved_before_the_classifier_keys_keeps_its_readings():
    saved = {"latent.structure": "factors", "eval.protocol": "partial-labels"}
    cfg = ContraLordConfig.from_saved(saved)
    assert (cfg.latent.classifier_trunks, cfg.latent.factor_init, cfg.latent.entropy_start_epoch,
            cfg.latent.soft_code_table_grad) == ("shared", "positive", 0, True)
    assert ContraLordConfig.from_saved(saved | {"latent.classifier_trunks": "per_factor"}).latent.factor_init == \
        "symmetric"


@pytest.mark.parametrize("key, value", [("latent.classifier_trunks", "two"), ("latent.factor_init", "zero"),
                                        ("latent.entropy_start_epoch", -1), ("eval.scored_code", "head"),
                                        ("encoder.steps", -5)])
def test_new_keys__bad_values_name_the_key(key, value):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        ContraLordConfig.from_overrides({key: value})


def test_loop__a_step_budget_ends_inside_an_epoch():
    seen = []
    spec = LoopSpec("encoder", 3, 4, 8, total_steps=10)
    run_loop(spec, 0, lambda e, s, g: seen.append((e, s, g)) or {"total": 1.0}, lambda step: "", NullLogger(),
             lambda m, p: None)
    assert [g for _, _, g in seen] == list(range(10)) and seen[-1][:2] == (2, 1)
    assert [h["encoder/train/epoch"] for h in spec.history] == [1.0, 2.0, 3.0]


def test_encoder_steps__replace_epochs(tiny_overrides):
    cfg = _cfg(tiny_overrides, **{"encoder.steps": 5})
    assert sampling.encoder_steps(cfg, 96) == (5, 2)  # 3 steps of 32 per epoch
    assert sampling.encoder_steps(_cfg(tiny_overrides), 96) == (3, 1)


def test_per_dim_correlation__closed_forms():
    target = torch.randn(50, 3, generator=torch.Generator().manual_seed(0))
    pred = torch.stack([2 * target[:, 0] + 1, -target[:, 1], torch.zeros(50)], 1)
    found = per_dim_correlation(pred, target, ["a", "b", "c"])
    assert found["encoder/eval/content_corr/a"] == pytest.approx(1.0)
    assert found["encoder/eval/content_corr/b"] == pytest.approx(-1.0)
    assert found["encoder/eval/content_corr/c"] == 0.0
    assert found["encoder/eval/content_corr_min"] == pytest.approx(-1.0)


def test_within_combination_variance__closed_form():
    values = np.array([[0, 1], [0, 1], [1, 1], [1, 1]])
    codes = np.array([[-1.0], [1.0], [1.0], [3.0]])  # group means 0 and 2: within SS 4 of total SS 8
    assert within_combination_variance(codes, values) == pytest.approx(0.5)
    assert within_combination_variance(values[:, :1].astype(float), values) == 0.0


@pytest.mark.slow
def test_train__convergence_metrics_in_summary_and_metrics_json(tmp_path, tiny_overrides):
    summary = train(_cfg(tiny_overrides, **{"encoder.steps": 2}), tmp_path)
    for name in HUES:
        assert -1.0 <= summary[f"encoder/eval/content_corr/{name}"] <= 1.0
    scores = json.loads((tmp_path / "metrics.json").read_text())
    matrix = np.array(scores["dci_importance"]["matrix"])
    assert matrix.shape == (3, 3) and scores["dci_importance"]["codes"] == HUES
    assert summary["encoder/eval/dci_importance/object_hue/floor_hue"] == matrix[2, 0]
    assert summary["encoder/final/epoch"] == 1.0
