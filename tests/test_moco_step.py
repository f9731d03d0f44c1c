"""One stage-2 step against MoCo's own step, written out by hand from MoCo v2's published algorithm
(He et al. 2020; facebookresearch/moco, ``moco/builder.py``: EMA-update the key encoder, keys k of the key view
under no_grad, q of the query view, logits [q·k, q·queue] / τ, cross-entropy with label 0, then the keys
enqueued at the pointer), on the same tiny networks, images and queue.

With ``encoder.positive=momentum``, ``encoder.augment_anchor=true`` and L_con alone, our step is MoCo's: our
online anchor of the augmented anchor view is MoCo's q, our momentum key of the query view is MoCo's k. The
default reading (``encoder.positive=online``, Algorithm 1 line 12) differs in exactly one place: the positive is
the online encoding of the query view, with gradient, so its logit compares online with online."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from contralord.config import ContraLordConfig
from contralord.setup import Setup, build_data
from contralord.stage2.encoder_stage import EncoderTrainer
from contralord.training import sampling
from contralord.training.runtime import LocalRuntime

MOCO = {"loss.rec": 0.0, "loss.sup": 0.0, "loss.con": 1.0, "loss.res": 0.0, "encoder.momentum": 0.9,
        "encoder.temperature": 0.2, "encoder.augment_anchor": True}


class _Reference:
    """MoCo v2's step on copies of our modules: encoder_q = projection ∘ h_c ∘ f, encoder_k its EMA."""

    def __init__(self, trainer: EncoderTrainer):
        online, momentum = trainer.online, trainer.momentum
        self.q = nn.Sequential(copy.deepcopy(online.backbone), copy.deepcopy(online.heads.content_head),
                               copy.deepcopy(online.projectors.content))
        self.k = nn.Sequential(copy.deepcopy(momentum.backbone_momentum),
                               copy.deepcopy(momentum.content_head_momentum))
        self.queue = momentum.content_queue.features.clone().T  # MoCo keeps (dim, K)
        self.ptr = int(momentum.content_queue.ptr)
        cfg = trainer.cfg.encoder
        self.m, self.tau = cfg.momentum, cfg.temperature
        self.optimizer = torch.optim.Adam(self.q.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def step(self, im_q: torch.Tensor, im_k: torch.Tensor, lr: float, online_positive: bool = False) -> float:
        """One step at learning rate ``lr`` (MoCo anneals it with a cosine as we do; the schedule is not the
        algorithm, so it is taken from ours)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        q = F.normalize(self.q(im_q), dim=1)  # queries: N x C
        with torch.no_grad():  # no gradient to keys
            for param_q, param_k in zip(self.q.parameters(), self.k.parameters(), strict=True):
                param_k.data = param_k.data * self.m + param_q.data * (1.0 - self.m)
            k = F.normalize(self.k(im_k), dim=1)  # keys: N x C
        positive = F.normalize(self.q(im_k), dim=1) if online_positive else k  # the default reading's positive
        l_pos = torch.einsum("nc,nc->n", q, positive).unsqueeze(-1)  # N x 1
        l_neg = torch.einsum("nc,ck->nk", q, self.queue.clone().detach())  # N x K
        logits = torch.cat([l_pos, l_neg], dim=1) / self.tau
        loss = F.cross_entropy(logits, torch.zeros(logits.shape[0], dtype=torch.long))
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        size = self.queue.shape[1]  # dequeue and enqueue (ours wraps where MoCo asserts K % N == 0)
        positions = (self.ptr + torch.arange(k.shape[0])) % size
        self.queue[:, positions] = k.T
        self.ptr = (self.ptr + k.shape[0]) % size
        return float(loss)


def _trainer(tiny_overrides, **extra) -> tuple[EncoderTrainer, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Our trainer before its first step, and the (anchor view, query view) of its first two steps."""
    cfg = ContraLordConfig.from_overrides(tiny_overrides | MOCO | extra)
    data = build_data(cfg)
    trainer = EncoderTrainer(Setup.of(cfg, data), None, LocalRuntime())
    order = sampling.epoch_order(len(data), cfg.run.seed, "encoder", 0)
    views = []
    for step in range(2):  # drawn from each step's own generator: the steps draw the same
        _, anchor, query = trainer.views(sampling.global_batch(order, step, cfg.encoder.batch_size), step)
        views.append((anchor, query))
    return trainer, views


def _close(ours: nn.Module, reference: nn.Module) -> None:
    for (name, a), b in zip(ours.named_parameters(), reference.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6, rtol=0), name


def test_stage2_step__is_mocos_step(tiny_overrides):
    """Two steps: at the first the key encoder is still a copy of the query encoder, so only the second sees
    whether the EMA (its order and m) is MoCo's."""
    trainer, views = _trainer(tiny_overrides, **{"encoder.positive": "momentum"})
    reference = _Reference(trainer)
    for step, (anchor, query) in enumerate(views):
        expected = reference.step(anchor, query, trainer.scheduler.get_last_lr()[0])
        got = trainer.step(0, step, step)
        assert got["nce_content"] == pytest.approx(expected, abs=1e-6) == got["total"], step
    online, momentum = trainer.online, trainer.momentum
    _close(nn.Sequential(online.backbone, online.heads.content_head, online.projectors.content), reference.q)
    _close(nn.Sequential(momentum.backbone_momentum, momentum.content_head_momentum), reference.k)
    queue = momentum.content_queue
    assert torch.allclose(queue.features, reference.queue.T, atol=1e-6, rtol=0) and int(queue.ptr) == reference.ptr
    untouched = [p for name, p in online.named_parameters() if name.startswith(("heads.class", "heads.residual"))]
    assert untouched and all(p.grad is None for p in untouched)  # no other head moved (Adam skips them)


def test_default_online_positive__differs_from_moco_only_in_the_positive(tiny_overrides):
    """``encoder.positive=online``: the same step with the positive q' = the online encoding of the key view
    (gradient flows through it), the negatives still the queue of momentum keys, and the momentum key is what
    is enqueued. At the first step the momentum encoder is still a copy of the online one, so the loss is
    MoCo's; the update is not (the positive's gradient)."""
    trainer, views = _trainer(tiny_overrides)
    (anchor, query), _ = views
    assert trainer.cfg.encoder.positive == "online"
    moco = _Reference(trainer)
    lr = trainer.scheduler.get_last_lr()[0]
    moco_loss = moco.step(anchor, query, lr)
    reference = _Reference(trainer)
    expected = reference.step(anchor, query, lr, online_positive=True)
    got = trainer.step(0, 0, 0)
    assert got["nce_content"] == pytest.approx(expected, abs=1e-6) and expected == pytest.approx(moco_loss, abs=1e-6)
    online, momentum = trainer.online, trainer.momentum
    ours = nn.Sequential(online.backbone, online.heads.content_head, online.projectors.content)
    _close(ours, reference.q)
    apart = max(float((a - b).abs().max()) for a, b in zip(ours.parameters(), moco.q.parameters(), strict=True))
    assert apart > 1e-5  # Adam's first step moves each weight by about lr = 1e-3: a different gradient shows
    _close(nn.Sequential(momentum.backbone_momentum, momentum.content_head_momentum), reference.k)
    assert torch.allclose(momentum.content_queue.features, reference.queue.T, atol=1e-6, rtol=0)
