"""EMA ("momentum") copies of online modules, as MoCo (He et al., 2020) and ContraLORD Sec. 3.3:
f_m <- m * f_m + (1 - m) * f, on parameters only (buffers such as BatchNorm statistics are the
momentum module's own), under no_grad, once per step before the keys are computed.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def init_momentum(online: nn.Module) -> nn.Module:
    """A frozen deep copy of ``online``: same weights, ``requires_grad=False``."""
    momentum = copy.deepcopy(online)
    for param in momentum.parameters():
        param.requires_grad_(False)
    return momentum


@torch.no_grad()
def update_momentum(online: nn.Module, momentum: nn.Module, m: float) -> None:
    """In place: every momentum parameter becomes ``m * momentum + (1 - m) * online``.

    m = 1 freezes the momentum copy; m = 0 makes it an exact copy of the online module.
    """
    online_params = [p.detach() for p in online.parameters()]
    momentum_params = list(momentum.parameters())
    if len(online_params) != len(momentum_params):
        raise ValueError("update_momentum: online and momentum modules have different parameter lists")
    torch._foreach_mul_(momentum_params, m)
    torch._foreach_add_(momentum_params, online_params, alpha=1.0 - m)
