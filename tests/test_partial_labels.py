"""The paper's partial-labels protocol: labelled factors, the labelled-factor stage 1, the readings of
Eq. 4/5 and Algorithm 1, and the evaluation that scores the labelled codes."""

import json

import numpy as np
import pytest
import torch

from contralord import labels
from contralord.config import ConfigError, ContraLordConfig
from contralord.models.latent import FactorCodes
from contralord.run.preflight import prepare
from contralord.run.trainer import train
from contralord.scoring import score_labelled_codes
from contralord.setup import Setup, build_data
from contralord.stage1.latent_stage import train_latent
from contralord.stage2 import augment
from contralord.stage2.encoder_stage import EncoderTrainer
from contralord.training.runtime import LocalRuntime

HUES = ["floor_hue", "wall_hue", "object_hue"]


def _cfg(overrides, **extra):
    return ContraLordConfig.from_overrides(overrides | extra)


def test_resolve__default_hues_one_seeded_subset(tiny_overrides):
    cfg = _cfg(tiny_overrides)
    data = build_data(cfg)
    found = labels.resolve(cfg, data)
    assert list(found.names) == HUES and found.sizes == (10, 10, 10)
    assert len(found.labelled) == 24 and int(found.mask.sum()) == 24
    assert (found.known[~found.mask] == -1).all()  # no other label is seen in training
    truth = data.factors[found.labelled][:, list(found.columns)]
    assert torch.equal(found.known[found.labelled], truth)
    again = labels.resolve(cfg, data)
    assert torch.equal(again.labelled, found.labelled)
    other = labels.resolve(_cfg(tiny_overrides, **{"run.seed": 1}), build_data(_cfg(tiny_overrides, **{"run.seed": 1})))
    assert not torch.equal(other.labelled, found.labelled)


@pytest.mark.parametrize("extra, needle", [
    ({"data.labelled_factors": "floor_hue,nosuch"}, "data.labelled_factors"),
    ({"data.labelled_factors": "floor_hue"}, "at least 2"),
    ({"data.labelled_factors": "floor_hue,floor_hue"}, "distinct"),
    ({"data.num_labels": 500}, "data.num_labels"),
])
def test_prepare__bad_labels_refused_before_training(tmp_path, tiny_overrides, extra, needle):
    with pytest.raises(ConfigError, match=needle):
        prepare(_cfg(tiny_overrides, **extra), tmp_path)
    assert not any(tmp_path.iterdir())


def test_structure__auto_follows_protocol_and_data(tiny_overrides):
    cfg = _cfg(tiny_overrides)
    data = build_data(cfg)
    assert labels.structure(cfg, data) == "factors"
    assert labels.layout(cfg, data).dims == (0, 3, 4)
    legacy = _cfg(tiny_overrides, **{"eval.protocol": "all-factors"})
    assert labels.structure(legacy, data) == "class" and labels.layout(legacy, data).dims == (8, 4, 4)
    assert labels.resolved(cfg, data).latent.structure == "factors"


def test_factor_codes__labelled_images_use_their_labels_code():
    torch.manual_seed(0)
    trunk = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 5))
    codes = FactorCodes((4, 3), 2, [trunk], 5, (0.0, 0.05), torch.Generator().manual_seed(0))
    x = torch.rand(3, 3, 4, 4)
    known = torch.tensor([[2, 1], [-1, -1], [0, -1]])
    out, logits = codes(x, known)
    t0, t1 = codes.tables
    assert torch.equal(out[0], torch.cat([t0[2], t1[1]]))  # labelled: exactly the label's rows
    assert torch.equal(out[2, :2], t0[0])
    torch.testing.assert_close(out[1, :2], logits[0][1].softmax(0) @ t0)  # unlabelled: the classifier's mean
    torch.testing.assert_close(out[2, 2:], logits[1][2].softmax(0) @ t1)
    out[0].sum().backward()  # a fully labelled image trains its table rows, not the classifier
    assert trunk[1].weight.grad is None or float(trunk[1].weight.grad.abs().sum()) == 0.0
    assert float(t0.grad[2].abs().sum()) > 0


def test_augmentations__keep_labelled_factors():
    assert augment.preserving(0.2, True, 0.4, ("floor_hue", "wall_hue")) == (0.2, True, 0.0)
    assert augment.preserving(0.2, True, 0.4, ("scale", "posX", "posY")) == (1.0, False, 0.4)
    assert augment.preserving(0.2, True, 0.4, ("elevation", "lighting")) == (1.0, False, 0.0)


def test_latent_factors__artifact_holds_label_codes_for_labelled_images(tmp_path, tiny_overrides):
    cfg = _cfg(tiny_overrides)
    data = build_data(cfg)
    latent = train_latent(Setup.of(cfg, data), tmp_path / "cache")
    found = labels.resolve(cfg, data)
    assert latent.content.shape == (96, 3) and latent.residual.shape == (96, 4) and latent.class_codes.shape[1] == 0
    state = torch.load(latent.path, weights_only=True)
    assert torch.equal(state["labelled"], found.labelled)
    assert all(f"latent/final/classifier_acc/{n}" in latent.metrics for n in HUES)
    # labelled images share their code with every other labelled image of the same value
    first = found.labelled[0]
    same = found.labelled[(found.known[found.labelled, 0] == found.known[first, 0])]
    assert torch.equal(latent.content[same, 0], latent.content[first, 0].expand(len(same)))
    assert np.isfinite(latent.content.numpy()).all()


def _one_step_backbone_grad(tmp_path, tiny_overrides, **extra):
    cfg = _cfg(tiny_overrides, **{"loss.rec": 0.0, "loss.sup": 0.0, "loss.res": 0.0, **extra})
    data = build_data(cfg)
    latent = train_latent(Setup.of(cfg, data), tmp_path / "cache")
    trainer = EncoderTrainer(Setup.of(cfg, data), latent, LocalRuntime())
    seen = {}
    original = trainer.optimizer.step

    def capture():
        grads = [p.grad for p in trainer.online.backbone.parameters() if p.grad is not None]
        seen["grad"] = sum(float(g.abs().sum()) for g in grads)
        original()

    trainer.optimizer.step = capture
    metrics = trainer.step(0, 0, 0)
    return seen["grad"], metrics


def test_positive_online__receives_gradient(tmp_path, tiny_overrides):
    # with the stage-1 code as anchor, the backbone can only learn through the positive g_q
    online, metrics = _one_step_backbone_grad(tmp_path, tiny_overrides, **{"encoder.anchor": "stage1"})
    momentum, _ = _one_step_backbone_grad(tmp_path, tiny_overrides, **{"encoder.anchor": "stage1",
                                                                     "encoder.positive": "momentum"})
    assert online > 0 and momentum == 0.0
    assert metrics["grad/con"] > 0  # the per-term gradient norm is reported at an epoch's first step


def test_partial_labels_metrics__identity_codes_disentangled_residual_noise_at_chance():
    rng = np.random.default_rng(0)
    values = rng.integers(0, 10, size=(600, 3))
    codes = {"content": values.astype(np.float64) + rng.normal(0, 0.05, (600, 3)),
             "residual": rng.normal(size=(600, 4))}
    cfg = ContraLordConfig.from_overrides({"eval.dci_jobs": 1})
    result = score_labelled_codes(cfg, codes["content"], codes["residual"], values, tuple(HUES), HUES)
    assert result["factors"] == HUES and result["num_metric_test"] == 120.0
    matrix = np.array(result["dci_importance"]["matrix"])  # (codes, factors): each code carries its own factor
    assert matrix.shape == (3, 3) and (matrix.argmax(axis=1) == np.arange(3)).all()
    assert result["dci_importance/wall_hue/wall_hue"] == matrix[1, 1]
    assert result["within_combination_variance"] < 0.01  # the code is (nearly) a function of the labels
    assert result["disentanglement"] > 0.9 and result["completeness"] > 0.9 and result["informativeness_test"] > 0.9
    assert result["mig"] > 0.5
    assert result["residual_leakage"] < result["residual_leakage_chance"] + 0.1


def test_train__partial_labels_metrics_json(tmp_path, tiny_overrides):
    train(_cfg(tiny_overrides), tmp_path)
    scores = json.loads((tmp_path / "metrics.json").read_text())
    assert scores["protocol"] == "partial-labels" and scores["factors"] == HUES and scores["structure"] == "factors"
    for key in ("disentanglement", "completeness", "informativeness_test", "sap", "mig", "residual_leakage",
                "residual_leakage_chance", "smoothness", "probe_top1"):
        assert np.isfinite(scores[key]), key
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["latent.structure"] == "factors"  # auto is recorded as what it meant


def test_generic_factors_file__two_named_labelled_factors(tmp_path, tiny_overrides):
    rng = np.random.default_rng(0)
    a, b, c = rng.integers(0, 4, 120), rng.integers(0, 5, 120), rng.integers(0, 3, 120)
    images = np.zeros((120, 16, 16), dtype=np.uint8)
    for i in range(120):  # a: brightness, b: bar position, c: the class (a square's corner)
        images[i] += np.uint8(40 + 40 * a[i])
        images[i, :, 2 + 2 * b[i]:4 + 2 * b[i]] = 255
        images[i, 12 * (c[i] % 2):12 * (c[i] % 2) + 4, 12 * (c[i] // 2):12 * (c[i] // 2) + 4] = 0
    path = tmp_path / "toy.npz"
    np.savez(path, images=images, factors=np.stack([c, a, b], 1), factor_names=np.array(["kind", "level", "bar"]))
    overrides = tiny_overrides | {"data.name": "factors_file", "data.path": str(path), "data.size": 0,
                                  "data.labelled_factors": "level,bar", "data.num_labels": 20}
    with pytest.raises(ConfigError, match="data.labelled_factors"):
        prepare(_cfg(overrides, **{"data.labelled_factors": ""}), tmp_path / "refused")
    train(_cfg(overrides), tmp_path / "run")
    scores = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert scores["factors"] == ["level", "bar"] and np.isfinite(scores["disentanglement"])
