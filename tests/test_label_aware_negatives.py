"""encoder.label_aware_negatives: L_con drops from its negatives the queued keys of images that share the anchor's
labelled-factor values (the labels where given, else stage 1's classifiers' first choice)."""

import math

import pytest
import torch
import torch.nn.functional as F

from contralord import labels
from contralord.config import ConfigError, ContraLordConfig
from contralord.latent_result import load_factor_codes
from contralord.losses import info_nce_loss
from contralord.models.queue import FeatureQueue
from contralord.run.preflight import prepare
from contralord.setup import Setup, build_data
from contralord.stage1.latent_stage import train_latent
from contralord.stage2.encoder_stage import EncoderTrainer
from contralord.training.runtime import LocalRuntime

CPU = torch.device("cpu")


def test_info_nce__masked_keys_are_as_if_absent_from_the_queue():
    g = torch.Generator().manual_seed(0)
    anchor, positive, queue = (torch.randn(n, 5, generator=g) for n in (4, 4, 9))
    mask = torch.rand(4, 9, generator=g) < 0.4
    got = info_nce_loss(anchor, positive, queue, 0.2, not_negative=mask)
    each = [info_nce_loss(anchor[i:i + 1], positive[i:i + 1], queue[~mask[i]], 0.2) for i in range(4)]
    torch.testing.assert_close(got, torch.stack(each).mean())
    alone = info_nce_loss(anchor, positive, queue, 0.2, not_negative=torch.ones(4, 9, dtype=torch.bool))
    torch.testing.assert_close(alone, torch.zeros(()))  # the positive alone: -log 1
    none = torch.zeros(4, 9, dtype=torch.bool)
    torch.testing.assert_close(info_nce_loss(anchor, positive, queue, 0.2, not_negative=none),
                               info_nce_loss(anchor, positive, queue, 0.2))


def test_labelled_queue__labels_follow_their_keys_through_the_ring():
    plain = FeatureQueue(5, 3, torch.Generator().manual_seed(1))
    labelled = FeatureQueue(5, 3, torch.Generator().manual_seed(1), labelled=True)
    assert labelled.labels.tolist() == [-1] * 5  # random initial keys belong to nobody
    for step in range(4):
        keys = torch.randn(3, 3, generator=torch.Generator().manual_seed(step))
        ids = torch.arange(3) + 10 * step
        plain.enqueue(keys)
        labelled.enqueue(keys, labels=ids)
        torch.testing.assert_close(plain.features, labelled.features)
        for row in range(5):  # each stored label is the label its stored key came with
            match = [i for i in range(3) if torch.allclose(F.normalize(keys[i], dim=0), labelled.features[row])]
            if match:
                assert labelled.labels[row] == ids[match[0]]
    with pytest.raises(ValueError, match="labels"):
        plain.enqueue(torch.randn(2, 3), labels=torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="labels"):
        labelled.enqueue(torch.randn(2, 3))


def test_stage1_combinations__labels_where_known_else_the_classifiers_choice(tmp_path, tiny_overrides):
    cfg = ContraLordConfig.from_overrides(tiny_overrides)
    data = build_data(cfg)
    latent = train_latent(Setup.of(cfg, data), tmp_path / "cache")
    found = labels.resolve(cfg, data)
    ids = latent.combinations(Setup.of(cfg, data), "encoder.label_aware_negatives", CPU)
    radix = [math.prod(found.sizes[j + 1:]) for j in range(len(found.sizes))]
    truth = (data.factors[:, list(found.columns)] * torch.tensor(radix)).sum(1)
    assert torch.equal(ids[found.labelled], truth[found.labelled])
    model = load_factor_codes(Setup.of(cfg, data), latent.factor_codes, CPU)
    with torch.no_grad():
        chosen = torch.stack([lg.argmax(1) for lg in model.logits(data.images.float().div(255))], 1)
    unlabelled = ~found.mask
    assert torch.equal(ids[unlabelled], (chosen * torch.tensor(radix)).sum(1)[unlabelled])
    assert 0 <= int(ids.min()) and int(ids.max()) < math.prod(found.sizes)


def test_trainer__masks_the_keys_of_the_anchors_combination(tmp_path, tiny_overrides):
    cfg = ContraLordConfig.from_overrides(tiny_overrides | {"encoder.label_aware_negatives": True,
                                                           "loss.res": 0.0, "encoder.queue_size": 32})
    data = build_data(cfg)
    trainer = EncoderTrainer(Setup.of(cfg, data), train_latent(Setup.of(cfg, data), tmp_path / "cache"), LocalRuntime())
    for step in range(3):
        trainer.step(0, step, step)
    queue = trainer.momentum.content_queue
    index = torch.arange(8)
    mask = trainer._same_combination(index, queue)
    expected = trainer.combinations[index][:, None] == queue.labels[None, :]
    assert torch.equal(mask, expected) and mask.any()  # some queued keys share an anchor's combination
    assert (queue.labels >= 0).sum() == min(32, 3 * cfg.encoder.batch_size)


@pytest.mark.parametrize("extra", [{"loss.con": 0.0}, {"encoder.negatives": "batch"}, {"latent.structure": "class"}])
def test_refused_before_work_where_it_cannot_apply(tmp_path, tiny_overrides, extra):
    cfg = ContraLordConfig.from_overrides(tiny_overrides | {"encoder.label_aware_negatives": True} | extra)
    with pytest.raises(ConfigError, match=r"encoder\.label_aware_negatives"):
        prepare(cfg, tmp_path / "run")
    assert not any(tmp_path.iterdir())
