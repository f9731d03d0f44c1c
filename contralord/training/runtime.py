"""How the trainer meets its surroundings, injected so the core never imports Ray or MLflow.

``LocalRuntime`` (the default) is one process on one device. ``DDPRuntime`` wraps models in
DistributedDataParallel for a process group that the caller has initialised (torchrun, a test's
``mp.spawn``, or Ray Train, whose adapter lives in ``tune/``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from contralord.training import progress


def resolve_device(name: str) -> torch.device:
    """``run.device`` -> torch.device; ``auto`` picks CUDA when present."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"run.device: {name!r} asked for, but torch sees no CUDA device")
    return torch.device(name)


@dataclass
class LocalRuntime:
    """One process, no process group. ``report`` receives (metrics, checkpoint_path) after each epoch."""

    device: torch.device = torch.device("cpu")
    report: Callable[[dict[str, float], str | None], Any] = lambda metrics, checkpoint: None
    # (total steps, steps done, description) -> what is told of each step (contralord/training/progress.py)
    progress: Callable[[int, int, str], Any] = progress.console

    def wrap_model(self, model: nn.Module) -> nn.Module:
        return model


@dataclass
class DDPRuntime(LocalRuntime):
    """DistributedDataParallel over an already initialised process group."""

    def wrap_model(self, model: nn.Module) -> nn.Module:
        if not any(p.requires_grad for p in model.parameters()):
            return model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        # Heads switched off by a zero loss weight get no gradient: let DDP tolerate that.
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=True)
