"""The MoCo feature queue (ContraLORD Sec. 3.3: the content and residual momentum queues).

K keys of dimension D live in a ring buffer; each step enqueues the (all-gathered) keys of the batch
over the oldest ones. Unlike MoCo we do not require K % batch == 0: a batch that runs past the end
wraps around to the start, so FIFO order holds for any K and batch size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from contralord.training import distributed

TAG_QUEUES = {"labels": "a labelled", "ids": "an indexed"}  # a per-key tag -> the queue that keeps it


class FeatureQueue(nn.Module):
    """Ring buffer of L2-normalised keys.

    Buffers: ``features`` (K, D), the keys; ``ptr`` (), where the next key goes; with ``labelled``, ``labels``
    (K,), an int64 label per key (-1 for the random initial keys: never anyone's positive); with ``indexed``,
    ``ids`` (K,), the training image each key was encoded from (-1 for the initial keys). All are saved in
    ``state_dict`` so a resumed run continues with the same negatives.
    """

    def __init__(self, size: int, dim: int, generator: torch.Generator | None = None, labelled: bool = False,
                 indexed: bool = False):
        super().__init__()
        init = F.normalize(torch.randn(size, dim, generator=generator), dim=1)  # (K, D) random unit keys, as MoCo
        self.register_buffer("features", init)
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        if labelled:
            self.register_buffer("labels", torch.full((size,), -1, dtype=torch.long))
        if indexed:
            self.register_buffer("ids", torch.full((size,), -1, dtype=torch.long))

    @property
    def size(self) -> int:
        return self.features.shape[0]

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor, gather: bool = True, labels: torch.Tensor | None = None,
                ids: torch.Tensor | None = None) -> None:
        """Write ``keys`` (B, D) from every rank over the oldest entries, wrapping around.

        Args:
            keys: (B, D) this rank's keys (normalised here).
            gather: all-gather across ranks first (identity in one process).
            labels: (B,) int64 labels of the keys; required by a ``labelled`` queue, refused by another.
            ids: (B,) int64 training-image indices of the keys; required by an ``indexed`` queue, refused by another.
        """
        tags = {"labels": labels, "ids": ids}  # per-key int64 buffers, each kept only by a queue built with it
        for name, values in tags.items():
            if (values is None) != (not hasattr(self, name)):
                raise ValueError(f"FeatureQueue.enqueue: {name} go with {TAG_QUEUES[name]} queue, and only with one")
        keys = distributed.gather(keys.detach()) if gather else keys.detach()  # (world*B, D)
        total, start = keys.shape[0], int(self.ptr)
        keys = F.normalize(keys, dim=1)[-self.size :]  # more keys than K: only the newest K survive
        first = start + total - keys.shape[0]  # where the first surviving key goes in FIFO order
        positions = (first + torch.arange(keys.shape[0], device=keys.device)) % self.size  # wrap-around
        self.features[positions] = keys.to(self.features.dtype)
        for name, values in tags.items():
            if values is not None:
                values = distributed.gather(values) if gather else values  # (world*B,) in the keys' order
                buffer = getattr(self, name)
                buffer[positions] = values[-self.size:].to(buffer.device)
        self.ptr.fill_((start + total) % self.size)

    def own_keys(self, index: torch.Tensor) -> torch.Tensor:
        """(B, K) True where queued key k was encoded from the anchor's own image ``index[b]`` (an indexed
        queue): that key is the anchor's own view from an earlier step, no negative (``encoder.mask_own_keys``)."""
        return index.to(self.ids.device)[:, None] == self.ids[None, :]

    def negatives(self) -> torch.Tensor:
        """(K, D) the current keys, detached (no gradient ever flows into the queue)."""
        return self.features.detach()
