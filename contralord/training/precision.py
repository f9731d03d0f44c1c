"""The fast path for accelerators, each a ``run.*`` key, fp32 eager by default.

- ``run.precision=bf16``: the forward passes and losses of both stages run under ``torch.autocast``
  with bfloat16 (no loss scaling needed: bf16 keeps fp32's exponent range); parameters, optimiser
  state, the backward's accumulation and the EMA updates stay fp32.
- ``run.channels_last``: convolution weights and input batches in NHWC memory order (what tensor
  cores and oneDNN prefer).
- ``run.compile``: the trained modules go through ``torch.compile`` (the raw module stays what the
  EMA, checkpoints and evaluation see: both share the parameters).
Tests bound how far each moves the numbers from fp32 eager on the CPU (tests/test_precision.py).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from contralord.config import RunConfig


def autocast(run: RunConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` when ``run.precision=bf16``, else a no-op."""
    if run.precision != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def fast_module(module: nn.Module, run: RunConfig) -> nn.Module:
    """``module`` in channels_last and/or compiled, as the run asks (the same object when neither)."""
    if run.channels_last:
        module.to(memory_format=torch.channels_last)
    return torch.compile(module) if run.compile else module


def fast_images(x: torch.Tensor, run: RunConfig) -> torch.Tensor:
    """A (B, C, H, W) batch in the memory order the run's modules expect."""
    return x.contiguous(memory_format=torch.channels_last) if run.channels_last else x
