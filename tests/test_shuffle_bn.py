"""Split-batch BN and shuffled query views (``encoder.bn_splits``, MoCo's shuffle-BN on one device): the layer
against per-group BatchNorm2d, and a stage-2 step whose BN groups are read off the backbone's inputs."""

import copy

import pytest
import torch
from torch import nn

from contralord.config import ConfigError, ContraLordConfig
from contralord.models.encoders import build_backbone
from contralord.models.split_bn import SplitBatchNorm2d, split_batch_norms
from contralord.setup import Setup, build_data
from contralord.stage2.encoder_stage import EncoderTrainer
from contralord.training import sampling
from contralord.training.runtime import LocalRuntime

RESNET = {"encoder.backbone": "resnet18", "data.image_size": 16, "encoder.batch_size": 8, "loss.rec": 0.0,
          "loss.sup": 0.0, "loss.con": 1.0, "loss.res": 0.0, "encoder.queue_size": 16}


def _bn_with_stats(channels: int, seed: int) -> nn.BatchNorm2d:
    torch.manual_seed(seed)
    bn = nn.BatchNorm2d(channels)
    nn.init.normal_(bn.weight), nn.init.normal_(bn.bias)
    bn.running_mean.normal_(), bn.running_var.uniform_(0.5, 2.0)
    return bn


def test_split_batch_norm__is_batch_norm_per_group_of_consecutive_rows():
    bn, groups, size = _bn_with_stats(3, 0), 4, 5
    split = SplitBatchNorm2d(3, size)
    split.load_state_dict(bn.state_dict())
    x = torch.randn(groups * size, 3, 6, 6, generator=torch.Generator().manual_seed(1)) * 3 + 1
    copies = [copy.deepcopy(bn) for _ in range(groups)]  # each group normalised alone, each updating its copy
    expected = torch.cat([c(chunk) for c, chunk in zip(copies, x.split(size), strict=True)])
    assert torch.allclose(split(x), expected, atol=1e-5)
    for name in ("running_mean", "running_var"):
        mean_of_copies = torch.stack([getattr(c, name) for c in copies]).mean(dim=0)
        assert torch.allclose(getattr(split, name), mean_of_copies, atol=1e-6), name
    split.eval(), bn.eval()
    bn.load_state_dict(split.state_dict())
    assert torch.equal(split(x), bn(x))  # eval mode: an ordinary BatchNorm on the running statistics


def test_split_batch_norm__refuses_a_batch_that_does_not_split():
    with pytest.raises(ValueError, match="bn_splits"):
        SplitBatchNorm2d(3, 4)(torch.randn(6, 3, 2, 2))


def test_split_batch_norms__replaces_every_bn_and_keeps_the_state_dict():
    net, _ = build_backbone("resnet18", 3, 16)
    before = copy.deepcopy(net.state_dict())
    assert split_batch_norms(net, 2) == 20  # bn1, two per basic block (8), three downsample BNs
    assert all(type(m) is not nn.BatchNorm2d for m in net.modules())
    after = net.state_dict()
    assert list(after) == list(before) and all(torch.equal(after[k], before[k]) for k in before)


def _groups_of_one_step(tiny_overrides, **extra) -> tuple[list[list[list[int]]], int]:
    """The image of every row of every BN group, per backbone forward of one stage-2 step (the online forward of
    both views, then the momentum keys'), read off the backbone's inputs: anchor rows are the original images in
    batch order, query rows are matched to the step's query views."""
    cfg = ContraLordConfig.from_overrides(tiny_overrides | RESNET | extra)
    trainer = EncoderTrainer(Setup.of(cfg, build_data(cfg)), None, LocalRuntime())
    index = sampling.global_batch(sampling.epoch_order(len(trainer.data), cfg.run.seed, "encoder", 0), 0, 8)
    _, anchor, query = trainer.views(index, 0)
    inputs = []
    for backbone in (trainer.online.backbone, trainer.momentum.backbone_momentum):
        backbone.register_forward_pre_hook(lambda module, args: inputs.append(args[0].detach().clone()))
    trainer.step(0, 0, 0)
    splits = [m for m in trainer.online.backbone.modules() if isinstance(m, SplitBatchNorm2d)]
    size = splits[0].group_size if splits else None
    forwards = []
    for rows in inputs:
        images = [_image_of(row, anchor, query, position < len(anchor) and len(rows) > len(anchor))
                  for position, row in enumerate(rows)]
        group = size or len(images)  # plain BatchNorm: the whole forward is one group
        forwards.append([images[i:i + group] for i in range(0, len(images), group)])
    keys, online = forwards  # MoCo's order: the keys first (contralord/stage2/encoder_stage.py)
    return [online, keys], len(anchor)


def _image_of(row: torch.Tensor, anchor: torch.Tensor, query: torch.Tensor, is_anchor: bool) -> int:
    views = anchor if is_anchor else query
    (found,) = [i for i in range(len(views)) if torch.equal(views[i], row)]
    return found


def test_stage2_step__no_bn_group_holds_both_views_of_an_image(tiny_overrides):
    forwards, batch = _groups_of_one_step(tiny_overrides, **{"encoder.bn_splits": 2})
    online, keys = forwards
    assert [len(g) for g in online] == [4, 4, 4, 4] and [len(g) for g in keys] == [4, 4]  # groups of batch / 2
    assert all(len(set(group)) == len(group) for group in online)  # the one forward of both views
    anchor_groups = {frozenset(g) for g in online[:2]}
    assert anchor_groups == {frozenset(range(4)), frozenset(range(4, 8))}
    shuffled = [frozenset(g) for g in online[2:] + keys]
    assert not anchor_groups & set(shuffled)  # this step's positive and key groups are not its anchors' groups


def test_stage2_step__one_bn_batch_puts_both_views_together(tiny_overrides):
    """``encoder.bn_splits=1`` (the behaviour before it): what the check above catches."""
    (online, keys), batch = _groups_of_one_step(tiny_overrides, **{"encoder.bn_splits": 1})
    assert len(online) == 1 and sorted(online[0]) == sorted([*range(batch)] * 2)
    assert sorted(keys[0]) == list(range(batch))  # the keys normalised with exactly the anchors' images


@pytest.mark.parametrize("positive", ["momentum", "online"])
def test_shuffled_views__come_back_in_the_anchors_order(tiny_overrides, positive):
    """Shuffled keys and positives are put back before the loss and the queue: the step with shuffle-BN and the one
    without differ only through BN (no BatchNorm: equal losses and queues)."""
    overrides = tiny_overrides | {"loss.rec": 0.0, "loss.sup": 0.0, "loss.con": 1.0, "loss.res": 0.0,
                                  "encoder.positive": positive}
    results = []
    for splits in (1, 2):
        cfg = ContraLordConfig.from_overrides(overrides | {"encoder.bn_splits": splits})
        trainer = EncoderTrainer(Setup.of(cfg, build_data(cfg)), None, LocalRuntime())
        trainer.shuffle_bn = splits > 1  # lord has no BN: force the shuffle to see that it is undone exactly
        results.append((trainer.step(0, 0, 0)["nce_content"], trainer.momentum.content_queue.features.clone()))
    assert results[0][0] == pytest.approx(results[1][0], abs=1e-6)
    assert torch.allclose(results[0][1], results[1][1], atol=1e-6)


def test_bn_splits__must_divide_the_batch():
    with pytest.raises(ConfigError, match="encoder.bn_splits.*divisor of encoder.batch_size=12"):
        ContraLordConfig.from_overrides({"encoder.backbone": "resnet18", "encoder.batch_size": 12})
    assert ContraLordConfig.from_overrides({"encoder.batch_size": 12}).encoder.bn_splits == 8  # lord: no BN
