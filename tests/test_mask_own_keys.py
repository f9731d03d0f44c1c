"""``encoder.mask_own_keys``: a queued key encoded from the anchor's own image (its view from an earlier step) is
no negative. At the paper's K/N it is rare; at ours (K up to half of N) it is common, and it makes an image its
own negative (the Table 6 issue)."""

import math

import pytest
import torch

from contralord.config import ConfigError, ContraLordConfig
from contralord.losses import info_nce_loss
from contralord.models.queue import FeatureQueue
from contralord.run.preflight import validate_against_data
from contralord.setup import Setup, build_data
from contralord.stage2.encoder_stage import EncoderTrainer
from contralord.training import sampling
from contralord.training.runtime import LocalRuntime


def test_own_key_mask__closed_form():
    """Anchor = positive = e1; queue keys e1 (from the anchor's own image 5) and e2 (image 7). Masked, the
    loss is log(1 + e^(-1/τ)); unmasked, e1 is a negative as similar as the positive: log(2 + e^(-1/τ))."""
    queue = FeatureQueue(4, 2, generator=torch.Generator().manual_seed(0), indexed=True)
    queue.enqueue(torch.tensor([[1.0, 0.0], [0.0, 3.0]]), ids=torch.tensor([5, 7]))  # normalised when queued
    queue.enqueue(torch.tensor([[0.0, -1.0], [0.0, -2.0]]), ids=torch.tensor([8, 9]))
    assert queue.ids.tolist() == [5, 7, 8, 9] and int(queue.ptr) == 0
    anchor, index, tau = torch.tensor([[2.0, 0.0]]), torch.tensor([5]), 0.5
    mask = queue.own_keys(index)
    assert mask.tolist() == [[True, False, False, False]]
    masked = info_nce_loss(anchor, anchor, queue.negatives(), tau, not_negative=mask)
    plain = info_nce_loss(anchor, anchor, queue.negatives(), tau)
    assert float(masked) == pytest.approx(math.log(1 + 3 * math.exp(-1 / tau)))  # e2, -e2, -e2: cosine 0, 0, 0
    assert float(plain) == pytest.approx(math.log(2 + 3 * math.exp(-1 / tau)))
    with pytest.raises(ValueError, match="ids go with an indexed queue"):
        queue.enqueue(torch.ones(1, 2))


def _losses(tiny_overrides, mask: bool, steps: int) -> tuple[list[float], EncoderTrainer, list[int], list]:
    cfg = ContraLordConfig.from_overrides(tiny_overrides | {"encoder.mask_own_keys": mask, "loss.con": 0.1,
                                                            "loss.res": 0.2, "loss.rec": 0.0, "loss.sup": 0.0})
    data = build_data(cfg)
    trainer = EncoderTrainer(Setup.of(cfg, data), None, LocalRuntime())
    per_epoch = sampling.steps_per_epoch(len(data), cfg.encoder.batch_size)
    losses, own, batches = [], [], []
    for step in range(steps):
        epoch, within = divmod(step, per_epoch)
        index = sampling.global_batch(sampling.epoch_order(len(data), cfg.run.seed, "encoder", epoch), within,
                                      cfg.encoder.batch_size)
        own.append(int(trainer.momentum.content_queue.own_keys(index).sum()) if mask else 0)
        batches.append(index.tolist())
        result = trainer.step(epoch, within, step)
        losses.append(result["nce_content"] + result["nce_residual"])
    return losses, trainer, own, batches


def test_mask_own_keys__changes_only_the_steps_whose_queue_holds_own_keys(tiny_overrides):
    """96 images, batch 32, K 40: the first epoch's three batches are disjoint, so no anchor meets its own key
    and the masked run equals the plain one step for step; in the second epoch it does, and dropping those
    negatives (as similar to their anchor as any) lowers the loss."""
    plain, *_ = _losses(tiny_overrides, False, 4)
    masked, trainer, own, batches = _losses(tiny_overrides, True, 4)
    assert own[:3] == [0, 0, 0] and own[3] > 0
    assert masked[:3] == plain[:3] and masked[3] < plain[3]
    ids = trainer.momentum.residual_queue.ids.tolist()  # the newest 40 keys: step 3's 32, step 2's last 8
    assert sorted(ids) == sorted(batches[3] + batches[2][-8:])


def test_mask_own_keys__needs_a_queue(tiny_overrides):
    cfg = ContraLordConfig.from_overrides(tiny_overrides | {"encoder.mask_own_keys": True,
                                                            "encoder.negatives": "batch"})
    with pytest.raises(ConfigError, match="^encoder.mask_own_keys: "):
        validate_against_data(cfg, 96)
