"""Table 1's floors (contralord/floors.py): the linear probe on raw pixels and a classifier trained on the few
labelled images, on images whose class is written in their pixels (each floor must then be perfect), the top-5
rule, and the floors in a real run's evaluation."""

import json

import numpy as np
import pytest
import torch

from contralord import floors
from contralord.config import ContraLordConfig
from contralord.data import ImageFactorData
from contralord.run.trainer import train


def _images_with_class_in_pixels(n: int, classes: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """(n, 1, 16, 16) uint8 noise whose class c lights the c-th pixel row brightly; (n,) classes."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    images = rng.integers(0, 60, (n, 1, 16, 16)).astype(np.uint8)
    images[np.arange(n), 0, labels, :] = 255
    return torch.from_numpy(images), labels


def test_top_k__top5_only_above_five_classes():
    scores = {"top1": 0.4, "top5": 1.0}
    assert floors.top_k(scores, "probe", 5) == {"probe_top1": 0.4}
    assert floors.top_k(scores, "probe", 6) == {"probe_top1": 0.4, "probe_top5": 1.0}


def test_pixel_probe__reads_a_class_written_in_the_pixels():
    train_x, train_y = _images_with_class_in_pixels(200, 8, 0)
    test_x, test_y = _images_with_class_in_pixels(100, 8, 1)
    found = floors.pixel_probe(train_x, train_y, test_x, test_y, 8)
    assert found == {"floor_pixels_top1": 1.0, "floor_pixels_top5": 1.0}


def test_supervised_floor__learns_the_class_from_the_labelled_images_alone():
    images, classes = _images_with_class_in_pixels(400, 3, 2)
    train_set = ImageFactorData("digits", images[:300], torch.from_numpy(classes[:300]), None, (), 3, "f00d")
    cfg = ContraLordConfig.from_overrides({"data.image_size": 16, "data.num_labels": 60, "encoder.backbone_width": 8,
                                           "eval.floor_steps": 60, "run.seed": 0})
    assert len(floors.labelled_images(cfg, 300)) == 60
    found = floors.supervised_floor(cfg, train_set, images[300:], classes[300:], torch.device("cpu"))
    assert set(found) == {"floor_supervised_top1"} and found["floor_supervised_top1"] == pytest.approx(1.0, abs=0.02)


def test_run_with_floors__logs_them_beside_the_probe(tiny_overrides, tmp_path):
    cfg = ContraLordConfig.from_overrides(tiny_overrides | {"eval.floors": True, "eval.floor_steps": 5})
    train(cfg, tmp_path)
    scores = json.loads((tmp_path / "metrics.json").read_text())
    assert {"probe_top1", "floor_pixels_top1", "floor_supervised_top1"} <= set(scores)
    assert not any(key.endswith("_top5") for key in scores)  # Shapes3D's shape has 4 values
    assert all(0.0 <= scores[key] <= 1.0 for key in ("floor_pixels_top1", "floor_supervised_top1"))
