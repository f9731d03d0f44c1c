"""Split-batch BatchNorm: MoCo's shuffle-BN on one device (``encoder.bn_splits``).

BatchNorm normalises each image with statistics of its whole batch, so two views of one image that share a BN
batch can find each other through those statistics instead of through their content: InfoNCE's positive pair
leaks. MoCo (He et al. 2020, Sec. 3.3) prevents it with shuffle-BN: each GPU normalises its own part of the batch,
and the key batch is shuffled across GPUs first, so a query and its key are never normalised with the same
images. On one device, MoCo's CIFAR demo emulates the GPUs by splitting the batch into groups, each normalised
with its own statistics.

Here a group is ``group_size`` consecutive rows (``encoder.batch_size`` per rank over ``encoder.bn_splits``), so a
forward of the anchor views followed by the query views (stage 2's one forward of both) never puts both views of
an image in one group; the stage-2 trainer also permutes the query views (``EncoderTrainer._query_order``), so the
group of a positive or a key is a random mix of the batch, not its anchor's group (about 1/bn_splits of their
images in common on average, as across MoCo's GPUs). In eval mode the layer is an
ordinary BatchNorm with the running statistics, which are the mean over the groups of each group's update (all
groups have the same size). The state dict is a BatchNorm2d's: checkpoints and pretrained weights load as they are.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SplitBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training-mode statistics are taken per group of ``group_size`` consecutive rows."""

    def __init__(self, num_features: int, group_size: int, **kwargs):
        super().__init__(num_features, **kwargs)
        if group_size < 1:
            raise ValueError(f"SplitBatchNorm2d: group_size must be >= 1, got {group_size}")
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        rows, channels = x.shape[:2]
        if rows % self.group_size:
            raise ValueError(f"SplitBatchNorm2d: a training batch of {rows} rows does not split into groups of "
                             f"{self.group_size} (encoder.batch_size per rank must be a multiple of encoder.bn_splits)")
        groups = rows // self.group_size
        # (G * g, C, H, W) -> (g, G * C, H, W): group k's rows become channels k*C .. k*C + C-1 of one batch of g
        grouped = x.view(groups, self.group_size, channels, *x.shape[2:]).transpose(0, 1)
        grouped = grouped.reshape(self.group_size, groups * channels, *x.shape[2:])
        tracking = self.running_mean is not None
        mean = self.running_mean.repeat(groups) if tracking else None
        var = self.running_var.repeat(groups) if tracking else None
        weight = self.weight.repeat(groups) if self.affine else None
        bias = self.bias.repeat(groups) if self.affine else None
        if self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
        momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked or 1)
        out = F.batch_norm(grouped, mean, var, weight, bias, True, momentum, self.eps)
        if tracking:
            with torch.no_grad():  # each group updated its copy of the running statistics: keep their mean
                self.running_mean.copy_(mean.view(groups, channels).mean(dim=0))
                self.running_var.copy_(var.view(groups, channels).mean(dim=0))
        out = out.view(self.group_size, groups, channels, *x.shape[2:]).transpose(0, 1).reshape(x.shape)
        if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
            out = out.contiguous(memory_format=torch.channels_last)  # keep run.channels_last's layout
        return out


def split_batch_norms(module: nn.Module, group_size: int) -> int:
    """Replace every BatchNorm2d under ``module`` by a SplitBatchNorm2d of ``group_size`` with the same parameters
    and running statistics, in place; returns how many were replaced (0: the module has no BatchNorm)."""
    replaced = 0
    for name, child in list(module.named_children()):
        if isinstance(child, nn.BatchNorm2d) and not isinstance(child, SplitBatchNorm2d):
            split = SplitBatchNorm2d(child.num_features, group_size, eps=child.eps, momentum=child.momentum,
                                     affine=child.affine, track_running_stats=child.track_running_stats)
            split.load_state_dict(child.state_dict())
            setattr(module, name, split.to(child.weight.device if child.affine else child.running_mean.device))
            replaced += 1
        else:
            replaced += split_batch_norms(child, group_size)
    return replaced


def has_batch_norm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())
