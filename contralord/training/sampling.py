"""Deterministic, stateless randomness for training (what makes resume and DDP exact).

Each epoch's order and each step's random draws (stage-1 noise, augmentations) come from a
``torch.Generator`` seeded by (seed, stage, epoch or step). Nothing depends on how many steps ran
in this process, so a resumed run draws exactly what a straight run draws. Each step's indices and
draws are made for the global batch; rank r takes the contiguous slice r, so with W ranks the
concatenated slices equal one process's batch.
"""

from __future__ import annotations

import hashlib

import torch

from contralord.training import distributed

_STAGES = {"latent": 1, "encoder": 2, "queue": 3, "eval": 4, "shuffle_bn": 5}


def step_generator(seed: int, stage: str, counter: int) -> torch.Generator:
    """A CPU generator unique to (seed, stage, counter)."""
    digest = hashlib.sha256(f"{seed}/{_STAGES[stage]}/{counter}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def epoch_order(num_items: int, seed: int, stage: str, epoch: int) -> torch.Tensor:
    """The permutation (N,) of training indices for one epoch."""
    return torch.randperm(num_items, generator=step_generator(seed, stage, 10_000_000 + epoch))


def steps_per_epoch(num_items: int, batch_size: int) -> int:
    """Full global batches per epoch (the last partial batch is dropped, as MoCo does)."""
    return num_items // batch_size


def global_batch(order: torch.Tensor, step_in_epoch: int, batch_size: int) -> torch.Tensor:
    return order[step_in_epoch * batch_size:(step_in_epoch + 1) * batch_size]


def rank_slice(batch_size: int) -> slice:
    """This rank's contiguous part of a global batch; the batch must split evenly."""
    world = distributed.world_size()
    if batch_size % world:
        raise ValueError(f"batch size {batch_size} does not split over {world} ranks")
    per_rank = batch_size // world
    return slice(distributed.rank() * per_rank, (distributed.rank() + 1) * per_rank)


def owned_order(num_items: int, seed: int, stage: str, epoch: int) -> torch.Tensor:
    """This rank's epoch order over the images it owns (i % world == rank), for stage 1.

    Stage 1's per-image codes must each be trained by one rank only (see models/latent.py), so its
    sampler shards by ownership rather than slicing a global batch. In one process this is exactly
    ``epoch_order``.
    """
    world, rank = distributed.world_size(), distributed.rank()
    order = epoch_order(num_items, seed, stage, epoch)
    return order[order % world == rank]


def encoder_steps(cfg, num_items: int) -> tuple[int, int]:
    """(total optimiser steps, epochs begun) of stage 2: the top of ``encoder.rungs``, else ``encoder.steps`` when
    set, else ``encoder.epochs`` full epochs. A step budget that ends inside an epoch runs that epoch's first steps
    only."""
    from contralord.schedules import parse_rungs

    per_epoch = steps_per_epoch(num_items, cfg.encoder.batch_size)
    rungs = parse_rungs(cfg.encoder.rungs)
    total = rungs[-1] if rungs else cfg.encoder.steps or cfg.encoder.epochs * per_epoch
    return total, -(-total // per_epoch)
