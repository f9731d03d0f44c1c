"""Stage 2's learning-rate schedules and the budget ladder (``encoder.schedule``, ``encoder.rungs``).

``cosine`` (the default) anneals the lr to 0 at the budget: a run cannot be extended, every longer budget is a
new run. ``wsd`` is warmup-stable-decay: a linear warm-up over ``encoder.warmup_steps``, a constant lr, then a
cooldown over the last ``encoder.decay_fraction`` of the budget in the 1-sqrt shape of Hägele et al. 2024
("Scaling Laws and Compute-Optimal Training Beyond Fixed Training Durations", arXiv 2405.18392), where a 20 %
cooldown from a constant lr matches cosine at equal length. Until its cooldown a WSD run does not depend on its
budget, so one trunk serves every budget: ``encoder.rungs=160,640,2560`` trains the stable phase towards the top
rung and, at each lower rung r, branches a cooldown from the stable state at ``branch_start(r)``, evaluates it,
and continues the trunk from the state before the branch (``encoder_stage.train_encoders``).
"""

from __future__ import annotations

import math

import torch


def parse_rungs(text: str) -> tuple[int, ...]:
    """``"160,640,2560"`` -> (160, 640, 2560); ``""`` -> (). ValueError naming what is wrong."""
    if not text.strip():
        return ()
    try:
        rungs = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"expected comma-separated step counts such as 160,640,2560, got {text!r}") from None
    if any(r <= 0 for r in rungs):
        raise ValueError(f"every rung must be a positive step count, got {text!r}")
    if any(b <= a for a, b in zip(rungs, rungs[1:], strict=False)):
        raise ValueError(f"rungs must increase, got {text!r}")
    return rungs


def cooldown_steps(budget: int, decay_fraction: float) -> int:
    """Steps of the cooldown that ends a WSD run of ``budget`` steps (at least one)."""
    return max(1, round(decay_fraction * budget))


def branch_start(budget: int, decay_fraction: float) -> int:
    """The step at which a WSD run of ``budget`` steps leaves its constant lr (its cooldown starts)."""
    return budget - cooldown_steps(budget, decay_fraction)


def wsd_factor(step: int, budget: int, warmup_steps: int, decay_fraction: float) -> float:
    """The lr multiplier at 0-based ``step`` of a WSD run of ``budget`` steps: (step + 1) / warmup during the
    warm-up, 1 on the plateau, 1 - sqrt((step - start) / cooldown) in the cooldown (1 at its first step, above 0 at
    the budget's last, as cosine annealing is), 0 past the budget."""
    start, cooldown = branch_start(budget, decay_fraction), cooldown_steps(budget, decay_fraction)
    if step >= budget:
        return 0.0
    if step >= start:
        return 1.0 - math.sqrt((step - start) / cooldown)
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return 1.0


class WarmupStableDecay(torch.optim.lr_scheduler.LRScheduler):
    """``wsd_factor`` times each group's base lr, stepped once per optimiser step. ``budget`` is the run's (the top
    rung's); ``retarget`` points a branch at a lower rung. The budget is part of the state (``state_dict``)."""

    def __init__(self, optimizer: torch.optim.Optimizer, budget: int, warmup_steps: int, decay_fraction: float):
        self.budget, self.warmup_steps, self.decay_fraction = budget, warmup_steps, decay_fraction
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        factor = wsd_factor(self.last_epoch, self.budget, self.warmup_steps, self.decay_fraction)
        return [base * factor for base in self.base_lrs]

    def retarget(self, budget: int) -> None:
        """Cool down towards ``budget`` from the current step on: the lr of this step is set at once."""
        self.budget = budget
        for group, lr in zip(self.optimizer.param_groups, self.get_lr(), strict=True):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]


def build_scheduler(cfg, optimizer: torch.optim.Optimizer, total: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Stage 2's schedule over ``total`` steps (``encoder.schedule``)."""
    enc = cfg.encoder
    if enc.schedule == "wsd":
        return WarmupStableDecay(optimizer, total, enc.warmup_steps, enc.decay_fraction)
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
