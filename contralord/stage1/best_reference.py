"""The best supervised-only reference (``latent.best_reference_steps``): stage 1's classifier networks with their
own optimiser recipe, chosen on a validation split of the labelled images, never on the images it is scored on.

The matched reference (``reference_classifier.py``) is stage 1 minus the reconstruction: it inherits stage 1's
Adam beta1 (``latent.classifier_beta1``, 0.5 as zerodim's) and lr, chosen with the generator rather than for a
small classifier alone. This one searches the same ``RECIPES`` whatever stage 1's recipe, so it stays one anchor
when stage-1 recipes are compared. A stage 1 that beats it may still
lose to the same networks trained well on the same labels. This one picks its recipe:

1. **Split.** A fifth of the labelled images (at least one) is held out as a validation split, drawn from the
   run's seed (``VALIDATION_FRACTION``; its own generator, so stage 1's draws are unchanged).
2. **Search.** Every recipe of ``RECIPES`` (Adam beta1 in {0.5, 0.9} x lr in {1, 3} x ``latent.lr_classifier``,
   cosine to 0 over ``latent.best_reference_steps`` steps, batches of ``latent.batch_size`` drawn from the
   training split) trains the same architecture (``latent.classifier_trunks``, ``latent.classifier_width``) from
   the same initialisation, with the mean cross-entropy over the labelled factors.
3. **Choice, per factor.** Each factor's classifier is its own network when the trunks are per factor (Adam's step
   does not see the other factors' losses), so each factor takes the recipe of highest validation accuracy; a tie
   goes to the earlier recipe of ``RECIPES`` (zerodim's beta1 0.5 and ``latent.lr_classifier`` first).
4. **Refit.** Each chosen recipe trains again, from the same initialisation, on every labelled image (the usual
   refit after a validation search); the factor's accuracy on the images without labels is
   ``latent/final/best_ref_accuracy/<factor>``, with the recipe and its validation accuracy beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from contralord import labels
from contralord.config import ContraLordConfig
from contralord.data import ImageFactorData
from contralord.models.latent import FactorCodes, build_factor_codes
from contralord.stage1.reference_classifier import classifier_accuracy

BEST_SEED_SALT = 130_363  # the split, the batches and the initialisation draw from run.seed + this
VALIDATION_FRACTION = 0.2
CURVE_READS = 10  # the refit's accuracy on the probe images, every tenth of its steps
RECIPES = ((0.5, 1.0), (0.5, 3.0), (0.9, 1.0), (0.9, 3.0))  # (Adam beta1, x latent.lr_classifier), in tie order
Recipe = tuple[float, float]  # (beta1, lr)


@dataclass(frozen=True)
class Choice:
    """One factor's pick: the recipe and the validation accuracy it was picked by."""

    beta1: float
    lr: float
    val_accuracy: float


def best_reference_steps(lat, factors: int) -> int:
    """The best reference's classifier steps at most: every recipe's search, then a refit per chosen recipe (at
    most one per labelled factor)."""
    return lat.best_reference_steps * (len(RECIPES) + min(factors, len(RECIPES)))


def split_labelled(labelled: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, validation) dataset positions: a seeded fifth (at least one) of ``labelled`` held out, sorted."""
    if len(labelled) < 2:
        raise ValueError(f"a validation split needs at least 2 labelled images, got {len(labelled)}")
    held = max(1, round(VALIDATION_FRACTION * len(labelled)))
    order = torch.randperm(len(labelled), generator=torch.Generator().manual_seed(seed + BEST_SEED_SALT))
    return labelled[order[held:]].sort().values, labelled[order[:held]].sort().values


def _batches(pool: torch.Tensor, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    """An endless, seeded stream of batches drawn without replacement from ``pool`` (the same for every recipe)."""
    rng = torch.Generator().manual_seed(seed + BEST_SEED_SALT)
    size = min(batch_size, len(pool))
    while True:
        yield pool[torch.randperm(len(pool), generator=rng)[:size]]


def _images(data: ImageFactorData, index: torch.Tensor, device: torch.device) -> torch.Tensor:
    return data.images[index].to(device).float().div_(255)


def train_recipe(cfg: ContraLordConfig, data: ImageFactorData, labelled: labels.LabelledFactors,
                 device: torch.device, recipe: Recipe, pool: torch.Tensor, probe: torch.Tensor | None = None,
                 curve: list | None = None, tick: Callable[[], None] | None = None) -> FactorCodes:
    """The classifier networks trained with ``recipe`` on batches of ``pool`` (dataset positions), from the best
    reference's own initialisation (the global RNG is restored), returned in eval mode. With ``probe``, every
    tenth of the steps appends (steps done, accuracy on ``probe``) to ``curve``."""
    state = torch.random.get_rng_state()
    torch.manual_seed(cfg.run.seed + BEST_SEED_SALT)  # the trunks draw from the global RNG
    rng = torch.Generator().manual_seed(cfg.run.seed + BEST_SEED_SALT)
    model = build_factor_codes(cfg.latent, labelled.sizes, data.channels, cfg.data.image_size, rng).to(device)
    torch.random.set_rng_state(state)
    steps = cfg.latent.best_reference_steps
    optimizer = torch.optim.Adam([*model.trunks.parameters(), *model.classifiers.parameters()], lr=recipe[1],
                                 betas=(recipe[0], 0.999))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    batches = _batches(pool, cfg.latent.batch_size, cfg.run.seed)
    reads = {max(1, round(steps * (i + 1) / CURVE_READS)) for i in range(CURVE_READS)} if probe is not None else ()
    for step in range(1, steps + 1):
        index = next(batches)
        y = labelled.known[index].to(device)  # (B, F_l)
        logits = model.logits(_images(data, index, device))
        loss = sum(F.cross_entropy(lg, y[:, j]) for j, lg in enumerate(logits)) / len(labelled.names)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if tick:
            tick()
        if step in reads:
            curve.append((step, classifier_accuracy(model, data, labelled, device, probe)))
    return model.eval()


def validation_accuracy(model: FactorCodes, data: ImageFactorData, labelled: labels.LabelledFactors,
                        held: torch.Tensor, device: torch.device) -> list[float]:
    """Every factor's accuracy on the validation images (labelled: their truth is their label), in chunks."""
    return classifier_accuracy(model, data, labelled, device, held)


def choose(scores: dict[Recipe, list[float]]) -> list[Recipe]:
    """Per factor, the recipe of highest validation accuracy; a tie goes to the earlier recipe of ``scores``."""
    recipes = list(scores)
    factors = len(scores[recipes[0]])
    return [max(recipes, key=lambda r: (scores[r][j], -recipes.index(r))) for j in range(factors)]


def train_best_reference(cfg: ContraLordConfig, data: ImageFactorData, labelled: labels.LabelledFactors,
                         device: torch.device, probe: torch.Tensor | None = None,
                         tick: Callable[[], None] | None = None
                         ) -> tuple[list[float], list[Choice], list[tuple[int, list[float]]]]:
    """The best reference's accuracy per labelled factor on the images without labels, each factor's choice, and
    its curve on ``probe`` (every tenth of the refit; each factor's from its own recipe's refit)."""
    train, held = split_labelled(labelled.labelled, cfg.run.seed)
    recipes = [(beta1, cfg.latent.lr_classifier * scale) for beta1, scale in RECIPES]
    scores = {r: validation_accuracy(train_recipe(cfg, data, labelled, device, r, train, tick=tick), data, labelled,
                                     held, device) for r in recipes}
    picks = choose(scores)
    accuracy, curves = [float("nan")] * len(picks), {}
    for recipe in dict.fromkeys(picks):  # each chosen recipe refits once, on every labelled image
        curves[recipe] = []
        model = train_recipe(cfg, data, labelled, device, recipe, labelled.labelled, probe, curves[recipe], tick)
        refit = classifier_accuracy(model, data, labelled, device)
        for j in (j for j, pick in enumerate(picks) if pick == recipe):
            accuracy[j] = refit[j]
    steps = [step for step, _ in curves[picks[0]]]
    curve = [(step, [dict(curves[r])[step][j] for j, r in enumerate(picks)]) for step in steps]
    return accuracy, [Choice(r[0], r[1], scores[r][j]) for j, r in enumerate(picks)], curve


def best_reference_metrics(names: tuple[str, ...], accuracy: list[float], choices: list[Choice]) -> dict[str, float]:
    """``latent/final/best_ref_*/<factor>``: the accuracy on the images without labels and what it was chosen by."""
    out: dict[str, float] = {}
    for name, acc, choice in zip(names, accuracy, choices, strict=True):
        out |= {f"latent/final/best_ref_accuracy/{name}": acc,
                f"latent/final/best_ref_val_accuracy/{name}": choice.val_accuracy,
                f"latent/final/best_ref_beta1/{name}": choice.beta1,
                f"latent/final/best_ref_lr/{name}": choice.lr}
    return out
