"""Frozen-encoder codes of images for the evaluation (ContraLORD Sec. 4.2-4.3): f(x), h_d, h_c, h_r.

The end of a run reads the codes of the same training images several times: the summary's head
agreement, the scored codes of the partial-labels protocol and the linear probe's training features
(at the cpu preset these are all the 2048 training images). ``CodeCache`` encodes each image once and
hands out gathered copies, so every metric sees the floats it saw when each caller encoded
its own images: in eval mode a code depends on its image alone, not on which images share its batch
(``tests/test_encoding.py`` checks it against separate ``encode`` calls: bit for bit where the CPU's GEMM
kernels are batch-invariant, as on the AMD EPYC machines it was measured on; to float32 rounding on an Intel
Xeon, whose MKL/oneDNN kernels move a row's last bits with its batch's size).
"""

from __future__ import annotations

import numpy as np
import torch

BATCH = 256
PARTS = ("features", "class_code", "content", "residual")


@torch.inference_mode()
def encode(online, images: torch.Tensor, index: torch.Tensor, device: torch.device) -> dict[str, np.ndarray]:
    """f(x), h_d, h_c, h_r of ``images[index]`` in eval mode: arrays (N, F), (N, Dd), (N, Dc), (N, Dr).

    Args:
        online: an ``OnlineEncoder`` (anything with ``backbone`` and ``heads``).
        images: (M, C, H, W) uint8 images.
        index: (N,) int64 positions into ``images``.
        device: where the forward passes run.
    """
    was_training = online.training
    online.eval()
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in PARTS}
    for chunk in index.split(BATCH):
        x = images[chunk].to(device).float().div_(255)  # (B, C, H, W)
        features = online.backbone(x)  # (B, F)
        heads = online.heads(features)  # 3 x (B, D_head)
        for name, value in zip(PARTS, (features, *heads), strict=True):
            parts[name].append(value.cpu())
    online.train(was_training)
    return {name: torch.cat(values).numpy().astype(np.float64) for name, values in parts.items()}


@torch.inference_mode()
def encode_classifier(factor_codes, images: torch.Tensor, index: torch.Tensor, device: torch.device) -> np.ndarray:
    """Stage 1's labelled-factor codes of ``images[index]`` from its classifiers alone, softmax(C_j(x)) @ E_j
    for every image (no label used; zerodim's evaluation): float64 (N, Dc).

    Args:
        factor_codes: a ``models.latent.FactorCodes``.
        images: (M, C, H, W) uint8 images.
        index: (N,) int64 positions into ``images``.
        device: where the forward passes run.
    """
    was_training = factor_codes.training
    factor_codes.eval()
    codes = []
    for chunk in index.split(BATCH):
        x = images[chunk].to(device).float().div_(255)  # (B, C, H, W)
        unknown = torch.full((len(chunk), len(factor_codes.tables)), -1, dtype=torch.int64, device=device)
        codes.append(factor_codes(x, unknown)[0].cpu())  # (B, Dc)
    factor_codes.train(was_training)
    return torch.cat(codes).numpy().astype(np.float64)


class CodeCache:
    """``encode`` of one image set, each image encoded at most once.

    Calling the cache with (N,) positions returns what ``encode(online, images, index, device)`` would:
    float64 arrays (N, F), (N, Dd), (N, Dc), (N, Dr), rows in the order of ``index``. Positions not yet
    encoded are encoded in ascending order. The encoder must not change while the cache is in use.
    """

    def __init__(self, online, images: torch.Tensor, device: torch.device):
        self.online, self.images, self.device = online, images, device
        self._row = torch.full((len(images),), -1, dtype=torch.int64)  # position -> row of ._codes, -1: not yet
        self._codes: dict[str, np.ndarray] = {}

    def __call__(self, index: torch.Tensor) -> dict[str, np.ndarray]:
        index = torch.as_tensor(index, dtype=torch.int64)
        missing = torch.unique(index[self._row[index] < 0])  # sorted, each position once
        if len(missing):
            self._add(missing)
        rows = self._row[index].numpy()  # (N,)
        return {name: codes[rows] for name, codes in self._codes.items()}

    def _add(self, positions: torch.Tensor) -> None:
        new = encode(self.online, self.images, positions, self.device)
        stored = len(next(iter(self._codes.values()))) if self._codes else 0
        self._row[positions] = torch.arange(stored, stored + len(positions))
        self._codes = {name: np.concatenate([self._codes[name], new[name]]) if self._codes else new[name]
                       for name in PARTS}

    @property
    def num_encoded(self) -> int:
        """How many distinct images have been encoded."""
        return int((self._row >= 0).sum())
