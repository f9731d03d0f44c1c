"""The lag-free InfoNCE check (``contralord/lagfree_nce.py``): closed-form cases and a hand-written reference."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from contralord.config import ContraLordConfig
from contralord.lagfree_nce import lagfree_infonce, lagfree_size
from contralord.stage2 import augment

NO_AUGMENT = (1.0, False, 0.0)  # a scale-1 crop, no flip, no jitter: the identity


class _Projecting(nn.Module):
    """``OnlineEncoder``'s interface for the check: forward(x, project=True) -> (_, _, (content, residual))."""

    def __init__(self, content, residual):
        super().__init__()
        self.content, self.residual = content, residual

    def forward(self, x, project=False):
        return None, None, (self.content(x), self.residual(x))


def _cfg(**extra):
    return ContraLordConfig.from_overrides({"encoder.queue_size": 8, "encoder.temperature": 0.1} | extra)


def _images(n, seed=0):
    return torch.randint(0, 256, (n, 3, 8, 8), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_one_point_for_every_image__is_chance_log_n():
    constant = lambda x: torch.ones(len(x), 4)  # noqa: E731
    out = lagfree_infonce(_cfg(), _Projecting(constant, constant), _images(9), NO_AUGMENT, torch.device("cpu"))
    assert out["nce_chance_lagfree"] == pytest.approx(math.log(9))
    assert out["nce_content_lagfree"] == pytest.approx(math.log(9), abs=1e-6)
    assert out["nce_residual_lagfree"] == pytest.approx(math.log(9), abs=1e-6)


def test_a_projection_that_tells_images_apart__scores_near_zero():
    """Each image's own centred pixels as its projection: without augmentation its positive equals its anchor, and
    at tau 0.01 every other image's is far less similar, so the loss is about 0."""
    flat = lambda x: x.flatten(1) - x.flatten(1).mean(1, keepdim=True)  # noqa: E731
    out = lagfree_infonce(_cfg(**{"encoder.temperature": 0.01}), _Projecting(flat, flat), _images(9), NO_AUGMENT,
                          torch.device("cpu"))
    assert out["nce_content_lagfree"] < 1e-3 and out["nce_residual_lagfree"] < 1e-3


def test_equals_a_hand_written_in_batch_infonce_with_the_query_views_augmentations():
    torch.manual_seed(0)
    content, residual = nn.Sequential(nn.Flatten(), nn.Linear(192, 5)), nn.Sequential(nn.Flatten(), nn.Linear(192, 5))
    model, images, cfg = _Projecting(content, residual), _images(9, seed=3), _cfg(**{"run.seed": 4})
    augmentation = (0.5, True, 0.4)
    out = lagfree_infonce(cfg, model, images, augmentation, torch.device("cpu"))
    x = images.float() / 255
    rng = torch.Generator().manual_seed(4 + 7_919)
    view = augment.augment(x, augment.draw_params(9, rng, *augmentation))
    with torch.no_grad():
        for name, head in (("content", content), ("residual", residual)):
            a, p = F.normalize(head(x), dim=1), F.normalize(head(view), dim=1)
            expected = F.cross_entropy(a @ p.T / 0.1, torch.arange(9))  # row i: p_i against every other p_j
            assert out[f"nce_{name}_lagfree"] == pytest.approx(float(expected), rel=1e-5)


def test_only_the_trained_terms__and_nothing_without_one():
    identity = nn.Flatten()
    model, images, device = _Projecting(identity, identity), _images(4), torch.device("cpu")
    only_res = lagfree_infonce(_cfg(**{"loss.con": 0.0}), model, images, NO_AUGMENT, device)
    assert set(only_res) == {"nce_residual_lagfree", "nce_chance_lagfree"}
    assert lagfree_infonce(_cfg(**{"loss.con": 0.0, "loss.res": 0.0}), model, images, NO_AUGMENT, device) == {}
    assert lagfree_infonce(_cfg(), model, images[:1], NO_AUGMENT, device) == {}


def test_size__is_the_trainings_k_plus_one_where_the_images_allow():
    assert lagfree_size(_cfg(), 2048) == 9
    assert lagfree_size(_cfg(**{"encoder.queue_size": 1024}), 500) == 500
    assert lagfree_size(_cfg(**{"encoder.queue_size": 65536, "encoder.allow_large_queue": True}), 100_000) == 4097


def test_augmented_anchor__draws_after_the_positive_and_chunks_change_nothing(monkeypatch):
    """With ``encoder.augment_anchor`` the anchors get the second draw of the check's generator (the positives the
    first); passes of a few images at a time give the one-pass value."""
    from contralord import lagfree_nce

    torch.manual_seed(1)
    head = nn.Sequential(nn.Flatten(), nn.Linear(192, 6))
    model, images = _Projecting(head, head), _images(7, seed=5)
    cfg, augmentation = _cfg(**{"encoder.augment_anchor": True, "run.seed": 2}), (0.5, True, 0.4)
    whole = lagfree_infonce(cfg, model, images, augmentation, torch.device("cpu"))
    x = images.float() / 255
    rng = torch.Generator().manual_seed(2 + 7_919)
    positive = augment.augment(x, augment.draw_params(7, rng, *augmentation))
    anchor = augment.augment(x, augment.draw_params(7, rng, *augmentation))
    with torch.no_grad():
        a, p = F.normalize(head(anchor), dim=1), F.normalize(head(positive), dim=1)
        expected = float(F.cross_entropy(a @ p.T / 0.1, torch.arange(7)))
    assert whole["nce_content_lagfree"] == pytest.approx(expected, rel=1e-5)
    monkeypatch.setattr(lagfree_nce, "CHUNK", 3)  # passes of 3, 3 and 1 images
    chunked = lagfree_infonce(cfg, model, images, augmentation, torch.device("cpu"))
    assert chunked == pytest.approx(whole, rel=1e-6)


def test_the_encoder_is_put_back_in_training_mode_even_when_it_fails():
    class Failing(nn.Module):
        def forward(self, x, project=False):
            raise RuntimeError("boom")

    model = Failing().train()
    with pytest.raises(RuntimeError):
        lagfree_infonce(_cfg(), model, _images(4), NO_AUGMENT, torch.device("cpu"))
    assert model.training
