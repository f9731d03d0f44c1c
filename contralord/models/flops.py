"""Forward-pass FLOP counting, used to report the compute of the models of paper Secs. 3.2-3.3.

A thin wrapper around ``torch.utils.flop_counter.FlopCounterMode``. Conventions are PyTorch's: a
multiply-add counts as 2 FLOPs, so ``Linear(in, out)`` on a (B, in) batch costs ``2 * B * in * out``;
bias additions, activations and normalisations are not counted.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_forward_flops(module: nn.Module, *inputs: torch.Tensor) -> int:
    """Count the FLOPs of one forward pass ``module(*inputs)`` (run under ``no_grad``).

    Args:
        module: any module; its mode (train/eval) is left as it is.
        *inputs: the forward inputs, e.g. a (B, C, H, W) image batch; B scales the count linearly.

    Returns:
        Total FLOPs of the forward pass for the whole batch.
    """
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module(*inputs)
    return int(counter.get_total_flops())
