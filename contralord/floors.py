"""Table 1's floors (``eval.floors``): two references beside the linear probe of a method's frozen features,
scored on the same held-out images (``evaluation._linear_probe``).

- **Raw pixels**: the same linear probe (``metrics.compute_linear_probe``: standardised inputs, multinomial
  logistic regression, C = 1) fitted on the flattened pixels of the same training images. Features that a
  linear classifier reads worse than the pixels themselves have lost class information.
- **Supervised on the few labels**: the stage-2 backbone architecture (``encoder.backbone``) with a linear head,
  trained from scratch with cross-entropy on the classes of ``data.num_labels`` images alone (a seeded draw of
  the training images; Adam at ``encoder.lr``, batches of at most 64, ``eval.floor_steps`` steps, no
  augmentation), scored on the held-out images. What those labels give without any other training.

Top-5 is reported only where the class has more than 5 values (with 5 or fewer it is 1 by construction).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from contralord import metrics
from contralord.config import ContraLordConfig
from contralord.data import ImageFactorData
from contralord.models.encoders import build_backbone

FLOOR_SALT = 450_001  # the labelled draw and the classifier's init: run.seed + this
TOP5_MIN_CLASSES = 6  # top-5 of 5 or fewer classes is 1 whatever the classifier


def top_k(scores: dict[str, float], prefix: str, num_classes: int) -> dict[str, float]:
    """``{prefix}_top1`` and, with more than 5 classes, ``{prefix}_top5`` of a probe's ``{"top1", "top5"}``."""
    found = {f"{prefix}_top1": scores["top1"]}
    if num_classes >= TOP5_MIN_CLASSES:
        found[f"{prefix}_top5"] = scores["top5"]
    return found


def pixel_probe(train_images: torch.Tensor, train_classes: np.ndarray, test_images: torch.Tensor,
                test_classes: np.ndarray, num_classes: int) -> dict[str, float]:
    """The linear probe on raw pixels: images (N, C, H, W) uint8 -> ``floor_pixels_top1`` (and, with more than 5 of
    the training set's ``num_classes``, top-5: the same rule as the probe beside it)."""
    flat = lambda images: images.reshape(len(images), -1).float().div(255).numpy()  # noqa: E731
    scores = metrics.compute_linear_probe(flat(train_images), train_classes, flat(test_images), test_classes)
    return top_k(scores, "floor_pixels", num_classes)


def labelled_images(cfg: ContraLordConfig, num_images: int) -> torch.Tensor:
    """(n,) the training images whose classes the supervised floor sees: a seeded draw of ``data.num_labels``."""
    draw = torch.randperm(num_images, generator=torch.Generator().manual_seed(cfg.run.seed + FLOOR_SALT))
    return draw[:min(cfg.data.num_labels, num_images)]


def supervised_floor(cfg: ContraLordConfig, train: ImageFactorData, test_images: torch.Tensor,
                     test_classes: np.ndarray, device: torch.device) -> dict[str, float]:
    """The backbone and a linear head trained on the labelled images' classes: ``floor_supervised_top1`` (and top-5)
    on ``test_images`` (N, C, H, W) uint8."""
    index = labelled_images(cfg, len(train))
    values = np.unique(train.classes.numpy())  # every class of the training set, seen by the labels or not
    targets = torch.as_tensor(np.searchsorted(values, train.classes[index].numpy()))
    model = _classifier(cfg, train, len(values)).to(device)
    _fit(cfg, model, train.images[index], targets, device)
    proba = _probabilities(model, test_images, device)
    scores = {"top1": metrics.topk_accuracy(proba, values, test_classes, 1),
              "top5": metrics.topk_accuracy(proba, values, test_classes, min(5, len(values)))}
    return top_k(scores, "floor_supervised", len(values))


def _classifier(cfg: ContraLordConfig, train: ImageFactorData, num_classes: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):  # its own init draw; the caller's generator state is left as it was
        torch.manual_seed(cfg.run.seed + FLOOR_SALT)
        return _build(cfg, train, num_classes)


def _build(cfg: ContraLordConfig, train: ImageFactorData, num_classes: int) -> nn.Module:
    backbone, features = build_backbone(cfg.encoder.backbone, train.channels, cfg.data.image_size,
                                        width=cfg.encoder.backbone_width)
    return nn.Sequential(backbone, nn.Linear(features, num_classes))


def _fit(cfg: ContraLordConfig, model: nn.Module, images: torch.Tensor, targets: torch.Tensor,
         device: torch.device) -> None:
    """``eval.floor_steps`` Adam steps of cross-entropy on batches drawn without replacement, epoch by epoch."""
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.encoder.lr)
    rng = torch.Generator().manual_seed(cfg.run.seed + FLOOR_SALT)
    batch, order = min(64, len(images)), torch.empty(0, dtype=torch.long)
    model.train()
    for _ in range(cfg.eval.floor_steps):
        if len(order) < batch:
            order = torch.randperm(len(images), generator=rng)
        chunk, order = order[:batch], order[batch:]
        x = images[chunk].to(device).float().div_(255)  # (b, C, H, W)
        loss = F.cross_entropy(model(x), targets[chunk].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


@torch.no_grad()
def _probabilities(model: nn.Module, images: torch.Tensor, device: torch.device) -> np.ndarray:
    model.eval()
    chunks = [F.softmax(model(part.to(device).float().div(255)), dim=1).cpu() for part in images.split(256)]
    return torch.cat(chunks).numpy()  # (M, K)
