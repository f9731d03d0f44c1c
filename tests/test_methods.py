"""Table 2's rows are presets of the same service: each trains and is scored under partial labels."""

import json

import numpy as np
import pytest
import torch

from contralord.config import ConfigError, ContraLordConfig
from contralord.presets import resolve_presets
from contralord.run.preflight import prepare
from contralord.run.trainer import train
from contralord.stage2.vae_baseline import label_loss


@pytest.mark.parametrize("method, structure", [("lord", "class"), ("gabbay", "factors"), ("locatello", "factors")])
def test_method_preset__trains_and_scores_labelled_factors(tmp_path, tiny_overrides, method, structure):
    cfg = ContraLordConfig.from_overrides(resolve_presets([method], tiny_overrides))
    summary = train(cfg, tmp_path)
    scores = json.loads((tmp_path / "metrics.json").read_text())
    assert scores["protocol"] == "partial-labels" and scores["structure"] == structure
    assert scores["factors"] == ["floor_hue", "wall_hue", "object_hue"]
    assert np.isfinite(scores["disentanglement"]) and np.isfinite(scores["residual_leakage"])
    assert json.loads((tmp_path / "config.json").read_text())["run.method"] == method
    if method == "locatello":
        assert "latent_key" not in summary  # no stage 1: the VAE trains its own decoder
        assert np.isfinite(summary["encoder/final/kl"]) and np.isfinite(summary["encoder/final/label"])
        assert scores["scored_code"] == "content"
    if method == "lord":
        assert scores["scored_code"] == "content+residual"  # LORD has no labelled-factor code


def test_vae__refuses_other_losses(tmp_path, tiny_overrides):
    overrides = resolve_presets(["locatello"], tiny_overrides | {"loss.sup": 1.0})
    with pytest.raises(ConfigError, match="loss.sup=0"):
        prepare(ContraLordConfig.from_overrides(overrides), tmp_path)


def test_label_loss__closed_form_and_unlabelled_rows_ignored():
    mean = torch.tensor([[0.0, 5.0, 0.0], [9.0, 9.0, 9.0]])  # (B, F_l * factor_dim), factor_dim 1
    known = torch.tensor([[1, 0, 2], [-1, -1, -1]])
    # sigmoid(0) = 0.5 against 1/1; sigmoid(5) against 0; sigmoid(0) against 2/4
    expected = -np.log(0.5) + np.log1p(np.exp(5.0)) + -np.log(0.5)
    assert float(label_loss(mean, known, (2, 3, 5), [0, 1, 2])) == pytest.approx(expected, rel=1e-6)
    assert float(label_loss(mean[1:], known[1:], (2, 3, 5), [0, 1, 2])) == 0.0
