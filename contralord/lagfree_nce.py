"""L_con's and L_res's InfoNCE without the momentum encoder's lag, at evaluation: does the trained projection tell
images apart?

In training (Algorithm 1's default reading, ``encoder.positive=online``) the anchor and the positive come from the
online encoder and the K negatives from the queue, encoded by the momentum encoder up to K / B steps earlier. A
projection that differs between the online and the momentum encoder then ranks the positive first without telling
images apart, and the training loss cannot show which of the two it learnt (``ablations/infonce.py``). Here every
vector comes from the trained online encoder, now, in eval mode, on ``n`` of the scored images (``n`` = K + 1 with
K = ``encoder.queue_size`` where the scored images allow, at most ``MAX_IMAGES``): the anchor view of image i (x_i,
or an augmented view with ``encoder.augment_anchor``), its positive (an augmented view of x_i, the query view's
augmentations with a seeded draw of its own), and as negatives the other n - 1 images' positives. That is our
``info_nce_loss`` with the positives as the negatives and each anchor's own positive masked out of them.
``nce_chance_lagfree`` = log(n) is its value for a projection that maps every image to one point.

``nce_content_lagfree`` (L_con's projection of h_c) and ``nce_residual_lagfree`` (L_res's of h_r) are logged for the
terms the run trained (weight > 0). What it is not, exactly, the training term:
- the anchor is always the online one: under ``encoder.anchor=stage1`` this reads the projection the online encoder
  learnt, not the stage-1 anchor's term;
- no negative is masked (``encoder.label_aware_negatives``, ``encoder.mask_own_keys`` are training choices);
- K is ``encoder.queue_size`` also for SimCLR's in-batch negatives (its training has 2B - 2);
- eval-mode BatchNorm: for a BN backbone the check also removes any batch-statistics leak between the views, so a
  gap to the training loss is then the lag or the BN leak (the cpu preset's ``lord`` backbone has no BN).
"""

from __future__ import annotations

import math

import torch

from contralord.config import ContraLordConfig
from contralord.losses import info_nce_loss
from contralord.stage2 import augment

LAGFREE_SALT = 7_919  # the views' augmentations draw from run.seed + this (no training draw is reused)
MAX_IMAGES = 4_097  # at most this many images (K + 1 for K up to 4096): an (n, n) similarity matrix
CHUNK = 1_024  # images per forward pass (the goldens' n = K + 1 = 257 is one pass)


def lagfree_size(cfg: ContraLordConfig, available: int) -> int:
    """How many scored images the check uses: K + 1 (the training's K), at most ``available`` and ``MAX_IMAGES``."""
    return min(cfg.encoder.queue_size + 1, available, MAX_IMAGES)


@torch.no_grad()
def lagfree_infonce(cfg: ContraLordConfig, online, images: torch.Tensor, augmentation: tuple[float, bool, float],
                    device: torch.device) -> dict[str, float]:
    """The lag-free InfoNCE of each trained contrastive term on ``images`` (n, C, H, W) uint8 (n >= 2), and chance;
    ``augmentation``: (crop_scale_min, flip, color_jitter) of the training's query view."""
    n, w = len(images), cfg.loss
    if n < 2 or not (w.con > 0 or w.res > 0):
        return {}
    rng = torch.Generator().manual_seed(cfg.run.seed + LAGFREE_SALT)
    positive_draw = augment.draw_params(n, rng, *augmentation)  # the positives' draw first, the anchors' second
    anchor_draw = augment.draw_params(n, rng, *augmentation) if cfg.encoder.augment_anchor else None
    was_training = online.training
    online.eval()
    try:
        anchors, positives = ([], []), ([], [])
        for start in range(0, n, CHUNK):
            stop = min(start + CHUNK, n)
            x = images[start:stop].to(device).float().div(255)  # (c, C, H, W)
            positive_view = augment.augment(x, positive_draw.slice(start, stop))
            anchor_view = x if anchor_draw is None else augment.augment(x, anchor_draw.slice(start, stop))
            for found, view in ((anchors, anchor_view), (positives, positive_view)):
                for branch, projected in enumerate(online(view, project=True)[2]):  # content, residual (c, P)
                    found[branch].append(projected)
    finally:
        online.train(was_training)
    anchors, positives = tuple(torch.cat(a) for a in anchors), tuple(torch.cat(p) for p in positives)
    own = torch.eye(n, dtype=torch.bool, device=device)  # each anchor's own positive is no negative of it
    out = {}
    for name, weight, branch in (("content", w.con, 0), ("residual", w.res, 1)):
        if weight > 0:
            loss = info_nce_loss(anchors[branch], positives[branch], positives[branch], cfg.encoder.temperature,
                                 not_negative=own)
            out[f"nce_{name}_lagfree"] = float(loss)
    return out | {"nce_chance_lagfree": math.log(n)}
