"""The evaluation pipeline end to end on a tiny run, held-out selection, and the metrics/evaluate CLIs."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from contralord.config import ContraLordConfig
from contralord.evaluation import heldout_dataset
from contralord.run.trainer import train
from contralord.setup import Setup, build_data


def _cfg(tiny, **extra):
    return ContraLordConfig.from_overrides(tiny | extra)


def test_heldout__excludes_training_images(tiny_overrides):
    cfg = _cfg(tiny_overrides)
    train_data = build_data(cfg)
    held, is_heldout = heldout_dataset(cfg, train_data, 200)
    assert is_heldout and len(held) == 200
    assert np.intersect1d(held.positions.numpy(), train_data.positions.numpy()).size == 0


def test_heldout__falls_back_to_training_images_when_none_left(tiny_overrides):
    cfg = _cfg(tiny_overrides, **{"data.name": "digits", "data.size": 0})
    train_data = build_data(cfg)
    held, is_heldout = heldout_dataset(cfg, train_data, 100)
    assert not is_heldout and held is train_data


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from conftest import TINY

    out = tmp_path_factory.mktemp("run")
    summary = train(ContraLordConfig.from_overrides(TINY), out)
    return out, summary


def test_spread__uniformity_of_the_projection_l_con_acts_on(tiny_overrides):
    """``evaluation.spread``: the centred h_c's uniformity, and the projection's, computed through the encoder's own
    projectors (h_c itself, uncentred, with no projection)."""
    from contralord.evaluation import spread
    from contralord.metrics import uniformity
    from contralord.models.contralord import Projectors

    content = np.random.default_rng(0).normal(size=(40, 3)) + 5.0
    with_projection = type("Encoder", (), {"projectors": Projectors(3, 3, 8)})()
    torch.manual_seed(0)
    projected = with_projection.projectors.content(torch.from_numpy(content).float()).double().detach().numpy()
    out = spread(with_projection, content)
    assert out["uniformity_content"] == pytest.approx(uniformity(content, "c"))
    assert out["uniformity_projection"] == pytest.approx(uniformity(projected, "p", centre=False), rel=1e-6)
    plain = spread(type("Encoder", (), {"projectors": Projectors(3, 3, 0)})(), content)
    assert plain["uniformity_projection"] == pytest.approx(uniformity(content, "c", centre=False))
    assert "uniformity_projection" not in spread(object(), content)  # a baseline without projectors


def test_train__writes_metrics_and_grids(trained_run):
    out, summary = trained_run
    scores = json.loads((out / "metrics.json").read_text())
    for key in ("mig", "sap", "disentanglement", "completeness", "informativeness_test", "smoothness",
                "smoothness_content", "smoothness_residual", "smoothness_centred", "uniformity_content",
                "uniformity_projection", "nce_content_lagfree", "nce_residual_lagfree", "nce_chance_lagfree",
                "probe_top1", "probe_classes", "recon_mse"):
        assert key in scores and np.isfinite(scores[key]), key
    assert scores["probe_classes"] == 4 and "probe_top5" not in scores  # Shapes3D's shape: top-5 would be 1
    assert scores["uniformity_content"] <= 0 and scores["uniformity_projection"] <= 0  # logs of a mean potential
    assert scores["protocol"] == "partial-labels" and scores["heldout"] is False  # training images, as zerodim
    assert scores["factors"] == ["floor_hue", "wall_hue", "object_hue"]
    assert summary["encoder/eval/mig"] == scores["mig"]
    for name in ("reconstructions.png", "translation.png"):
        assert (out / name).stat().st_size > 0


@pytest.mark.slow
def test_evaluate_cli__recomputes_with_another_protocol(trained_run):
    out, _ = trained_run
    cmd = [sys.executable, "-m", "contralord", "evaluate", "--checkpoint", str(out), "--protocol", "all-factors",
           "--set", "eval.num_test=20"]
    result = subprocess.run(cmd, capture_output=True, text=True, check=True)
    scores = json.loads(result.stdout)
    assert scores["protocol"] == "all-factors" and scores["num_metric_test"] == 20.0
    assert scores["heldout"] is True and "shape" not in scores["factors"] and "object_hue" in scores["factors"]


@pytest.mark.slow
def test_evaluate_cli__bad_folder_one_line(tmp_path):
    cmd = [sys.executable, "-m", "contralord", "evaluate", "--checkpoint", str(tmp_path)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "config.json" in result.stderr


def _save(tmp_path, **arrays):
    for name, value in arrays.items():
        np.save(tmp_path / f"{name}.npy", value)
    return {name: str(tmp_path / f"{name}.npy") for name in arrays}


@pytest.mark.slow
def test_metrics_cli__identity_codes_score_high(tmp_path):
    rng = np.random.default_rng(0)
    factors = rng.integers(0, 4, size=(600, 2))
    codes = factors + 0.01 * rng.standard_normal(factors.shape)
    paths = _save(tmp_path, codes=codes, factors=factors)
    cmd = [sys.executable, "-m", "contralord", "metrics", "--codes", paths["codes"], "--factors", paths["factors"]]
    result = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    assert result["mig"] > 0.9 and result["disentanglement"] > 0.9 and result["split"].startswith("first 400")


@pytest.mark.slow
def test_metrics_cli__smoothness_and_errors(tmp_path):
    rng = np.random.default_rng(1)
    paths = _save(tmp_path, a=rng.standard_normal((50, 3)), b=rng.standard_normal((50, 2)),
                  bad=rng.standard_normal((40, 3)), f=rng.integers(0, 2, size=(50, 1)))
    base = [sys.executable, "-m", "contralord", "metrics"]
    ok = subprocess.run(base + ["--content", paths["a"], "--residual", paths["b"]], capture_output=True, text=True)
    assert ok.returncode == 0 and "smoothness_content" in json.loads(ok.stdout)
    for args, needle in ((["--content", paths["a"]], "--residual"),
                         (["--codes", paths["bad"], "--factors", paths["f"]], "40"),
                         (["--codes", "/no/such.npy", "--factors", paths["f"]], "--codes")):
        result = subprocess.run(base + args, capture_output=True, text=True)
        assert result.returncode == 2 and needle in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_encode__eval_mode_is_deterministic(trained_run, tiny_overrides):
    from contralord.encoding import encode
    from contralord.stage2.encoder_stage import build_online

    cfg = _cfg(tiny_overrides)
    data = build_data(cfg)
    online = build_online(Setup.of(cfg, data), None)
    index = torch.arange(10)
    a, b = (encode(online, data.images, index, torch.device("cpu")) for _ in range(2))
    np.testing.assert_array_equal(a["content"], b["content"])
    assert a["features"].shape == (10, 256) and online.training


@pytest.mark.slow
def test_generative_scores__lpips_and_fid_with_user_weight_files(tmp_path, tiny_overrides):
    """The real weight-loading path, fed random weights (nothing can be downloaded here)."""
    import torchvision

    from contralord.evaluation import generative_scores
    from contralord.stage2.encoder_stage import build_online

    torch.save(torchvision.models.alexnet(weights=None).state_dict(), tmp_path / "alex.pt")
    torch.save(torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict(),
               tmp_path / "inception.pt")
    cfg = _cfg(tiny_overrides, **{"eval.lpips_weights": str(tmp_path / "alex.pt"),
                                  "eval.inception_weights": str(tmp_path / "inception.pt")})
    data = build_data(cfg)
    online = build_online(Setup.of(cfg, data), None)
    scores = generative_scores(cfg, online, data, torch.arange(12), torch.device("cpu"))
    assert scores["lpips_reconstruction"] > 0 and np.isfinite(scores["fid_translation"])


def test_prepare__missing_eval_weights_refused(tmp_path, tiny_overrides):
    from contralord.run.preflight import prepare

    with pytest.raises(ValueError, match="eval.inception_weights"):
        prepare(_cfg(tiny_overrides, **{"eval.inception_weights": "/no/inception.pt"}), tmp_path)
