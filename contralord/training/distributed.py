"""The only place in the package that touches ``torch.distributed``.

Every helper degrades to the single-process answer (rank 0, world 1, identity) when no process group
is initialised, so the trainer, the queues and the tests run in one plain CPU process; MoCo's own code
crashes there, which is its most common user complaint.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


@torch.no_grad()
def gather(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` (B, ...) from every rank in rank order -> (world*B, ...); no gradient.

    Used for the queue keys: every rank then enqueues the same keys and the queues stay identical.
    """
    if world_size() == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


@torch.no_grad()
def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place and return it (identity in one process)."""
    if world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()
