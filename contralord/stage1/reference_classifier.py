"""A supervised-only anchor for stage 1's labelled-factor classifiers (``latent.reference_classifier``).

Stage 1 trains its classifiers C_j from the few labels (cross-entropy) *and* from every unlabelled image
(reconstruction through softmax(C_j(x)) @ E_j, plus an entropy term). If the reconstruction helps, C_j
should classify the unlabelled images at least as well as the same network trained on the labels alone;
if it scores below that anchor, stage 1 is not using its labels, and every stage-2 row inherits it.

The reference is stage 1 minus the reconstruction: the same ``FactorCodes`` architecture
(``latent.classifier_trunks``, ``latent.classifier_width``), the same optimiser (Adam, betas
``latent.classifier_beta1``/0.999, ``latent.lr_classifier``, cosine over the same number of steps) and exactly
stage 1's labelled batches (``latent_factors.labelled_positions``: one draw per step), with the mean
cross-entropy over factors as its only loss. Both are scored by ``classifier_accuracy`` on the unlabelled images.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from contralord import labels
from contralord.config import ContraLordConfig
from contralord.data import ImageFactorData
from contralord.models.latent import FactorCodes, build_factor_codes

REFERENCE_SEED_SALT = 104_729  # the reference's init draws from run.seed + this (stage 1's own draws stay as they were)


PROBE_SIZE = 1024  # the images without labels whose accuracy is read during training (the curves)
PROBE_SALT = 611_953


def probe_positions(labelled: labels.LabelledFactors, seed: int) -> torch.Tensor:
    """(P,) a seeded draw of at most ``PROBE_SIZE`` images without labels, sorted: what the accuracy curves of
    stage 1 and its references read (every image without labels is read once at the end)."""
    unlabelled = torch.nonzero(~labelled.mask).squeeze(1)
    draw = torch.randperm(len(unlabelled), generator=torch.Generator().manual_seed(seed + PROBE_SALT))
    return unlabelled[draw[:PROBE_SIZE]].sort().values


@torch.no_grad()
def classifier_accuracy(factor_codes: FactorCodes, data: ImageFactorData, labelled: labels.LabelledFactors,
                        device: torch.device, positions: torch.Tensor | None = None) -> list[float]:
    """Accuracy of each labelled factor's classifier on ``positions`` (default: every image that carries no
    label), in eval mode."""
    was_training = factor_codes.training
    factor_codes.eval()
    positions = torch.nonzero(~labelled.mask).squeeze(1) if positions is None else positions
    hits = torch.zeros(len(labelled.names))
    for chunk in positions.split(256):
        x = data.images[chunk].to(device).float().div_(255)  # (B, C, H, W)
        truth = data.factors[chunk][:, list(labelled.columns)]  # (B, F_l)
        for j, logit in enumerate(factor_codes.logits(x)):
            hits[j] += float((logit.argmax(1).cpu() == truth[:, j]).sum())
    factor_codes.train(was_training)
    return (hits / max(len(positions), 1)).tolist()


def train_reference(cfg: ContraLordConfig, data: ImageFactorData, labelled: labels.LabelledFactors,
                    device: torch.device, steps: int, batches, every: int = 0,
                    probe: torch.Tensor | None = None, tick: Callable[[], None] | None = None
                    ) -> tuple[list[float], list[tuple[int, list[float]]]]:
    """Train the supervised-only classifier for ``steps`` steps on ``batches(step)`` (stage 1's labelled
    batches: positions into ``data``); return its accuracy per labelled factor on the unlabelled images and its
    curve: (steps done, accuracy on ``probe``) every ``every`` steps (none when 0). ``tick()`` after each step
    (the console's progress)."""
    lat = cfg.latent
    state = torch.random.get_rng_state()
    torch.manual_seed(cfg.run.seed + REFERENCE_SEED_SALT)  # the trunks draw from the global RNG
    rng = torch.Generator().manual_seed(cfg.run.seed + REFERENCE_SEED_SALT)
    model = build_factor_codes(lat, labelled.sizes, data.channels, cfg.data.image_size, rng).to(device)
    torch.random.set_rng_state(state)  # stage 1's own draws are unchanged by the reference
    params = [*model.trunks.parameters(), *model.classifiers.parameters()]
    optimizer = torch.optim.Adam(params, lr=lat.lr_classifier, betas=(lat.classifier_beta1, 0.999))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1))
    known, curve = labelled.known, []
    for step in range(steps):
        index = batches(step)  # (B,)
        x = data.images[index].to(device).float().div_(255)  # (B, C, H, W)
        y = known[index].to(device)  # (B, F_l)
        loss = sum(F.cross_entropy(lg, y[:, j]) for j, lg in enumerate(model.logits(x))) / len(labelled.names)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if tick:
            tick()
        if every and (step + 1) % every == 0:
            curve.append((step + 1, classifier_accuracy(model, data, labelled, device, probe)))
    return classifier_accuracy(model, data, labelled, device), curve
