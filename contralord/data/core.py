"""Core data types shared by every ContraLORD dataset loader.

ContraLORD (Sec. 3.1, after LORD) optimises one generative code per image and one discriminative code
per class, so a dataset is a fixed, indexable table of images with a class id each and, for the
synthetic benchmarks of Sec. 4.1, the ground-truth factors that the disentanglement metrics need.
`ImageFactorData` is that table. Images stay uint8 (N, C, H, W); the trainer converts each batch to
float in [0, 1], which keeps Shapes3D at 5.9 GB instead of LORD's 24 GB of float32.

`LazyImages` produces images only when indexed (the full procedural grids: 737280 dSprites images
would take 3 GB at 64x64 if rendered up front).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# A kept subset whose images fit in this many bytes is rendered once and stored as a tensor; larger
# ones stay lazy. 256 MiB: 65536 dSprites or 21845 Shapes3D images at 64x64.
MATERIALISE_BYTES = 256 * 2**20
# Pixels rendered per chunk, which bounds the float temporaries of a renderer to a few hundred MB.
RENDER_CHUNK_PIXELS = 2**21


class DataError(ValueError):
    """A dataset could not be built; the message names the config key or the file and key."""


class LazyImages:
    """uint8 images (N, C, H, W) rendered or loaded only when indexed.

    Args:
        render: maps source ids (B,) int64 numpy to a uint8 tensor (B, C, H, W). Must be picklable
            (a module-level function or a `functools.partial` of one) so DataLoader workers can use it.
        ids: (N,) int64 source ids; dataset position i shows source item `ids[i]`.
        channels: C.
        image_size: H = W.
    """

    def __init__(self, render: Callable[[np.ndarray], torch.Tensor], ids: np.ndarray,
                 channels: int, image_size: int) -> None:
        self.render = render
        self.ids = np.asarray(ids, dtype=np.int64)
        self.shape = (len(self.ids), channels, image_size, image_size)
        self.dtype = torch.uint8

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, idx: torch.Tensor | np.ndarray | list[int] | slice | int) -> torch.Tensor:
        """Renders the images at positions `idx`.

        Args:
            idx: an int, a slice, or positions (B,) as a LongTensor, numpy array or list.

        Returns:
            uint8 tensor (B, C, H, W), or (C, H, W) for an int.
        """
        if isinstance(idx, torch.Tensor):
            idx = idx.cpu().numpy()
        if isinstance(idx, (int, np.integer)):
            return self[np.array([idx])][0]
        ids = self.ids[idx]  # (B,)
        chunk = max(1, RENDER_CHUNK_PIXELS // (self.shape[2] * self.shape[3]))
        parts = [self.render(ids[start:start + chunk]) for start in range(0, len(ids), chunk)]
        if not parts:
            return torch.empty((0, *self.shape[1:]), dtype=torch.uint8)
        return torch.cat(parts)  # (B, C, H, W)

    def materialise(self) -> torch.Tensor:
        """Renders every image: uint8 (N, C, H, W)."""
        return self[np.arange(len(self))]

    def __repr__(self) -> str:
        return f"LazyImages(shape={self.shape}, render={getattr(self.render, 'func', self.render)})"


def materialise_if_small(images: LazyImages) -> torch.Tensor | LazyImages:
    """Returns `images` rendered as a tensor when they fit in MATERIALISE_BYTES, else unchanged."""
    n, c, h, w = images.shape
    return images.materialise() if n * c * h * w <= MATERIALISE_BYTES else images


@dataclass(frozen=True)
class ImageFactorData:
    """A dataset as a table: uint8 images, a class per image, optional ground-truth factors.

    Attributes:
        name: dataset name (one of DATASET_NAMES).
        images: uint8 (N, C, H, W), a tensor or a LazyImages; indexing with positions (B,)
            returns uint8 (B, C, H, W).
        classes: int64 (N,) class ids in [0, num_classes); they index the class codes d of Eq. 1.
        factors: int64 (N, F) ground-truth factor value indices, or None.
        factor_names: the F factor names (empty when factors is None).
        num_classes: number of classes (the class factor's cardinality; some may be absent from
            a filtered subset).
        fingerprint: hex sha256 of the content and the kept subset, for checkpoint compatibility.
        factor_sizes: cardinality of each factor; derived as factors.max(0) + 1 when left empty.
        positions: int64 (N,) the kept items' positions in the full source (what a held-out set
            excludes), or None.
    """

    name: str
    images: torch.Tensor | LazyImages
    classes: torch.Tensor
    factors: torch.Tensor | None
    factor_names: tuple[str, ...]
    num_classes: int
    fingerprint: str
    factor_sizes: tuple[int, ...] = ()
    positions: torch.Tensor | None = None

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.dtype != torch.uint8 or len(self.images.shape) != 4:
            raise DataError(f"images: expected uint8 (N, C, H, W), found {self.images.dtype} "
                            f"{tuple(self.images.shape)}")
        if self.classes.dtype != torch.int64 or tuple(self.classes.shape) != (n,):
            raise DataError(f"classes: expected int64 ({n},), found {self.classes.dtype} "
                            f"{tuple(self.classes.shape)}")
        if n and (int(self.classes.min()) < 0 or int(self.classes.max()) >= self.num_classes):
            raise DataError(f"classes: values must lie in [0, num_classes={self.num_classes})")
        self._check_factors(n)

    def _check_factors(self, n: int) -> None:
        if self.factors is None:
            if self.factor_names or self.factor_sizes:
                raise DataError("factor_names: must be empty when factors is None")
            return
        if self.factors.dtype != torch.int64 or self.factors.ndim != 2 or len(self.factors) != n:
            raise DataError(f"factors: expected int64 ({n}, F), found {self.factors.dtype} "
                            f"{tuple(self.factors.shape)}")
        num_factors = self.factors.shape[1]
        if len(self.factor_names) != num_factors:
            raise DataError(f"factor_names: expected {num_factors} names, found "
                            f"{len(self.factor_names)}")
        if not self.factor_sizes:
            sizes = (self.factors.amax(0) + 1).tolist() if n else [0] * num_factors
            object.__setattr__(self, "factor_sizes", tuple(int(s) for s in sizes))
        if len(self.factor_sizes) != num_factors:
            raise DataError(f"factor_sizes: expected {num_factors} sizes, found "
                            f"{len(self.factor_sizes)}")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def channels(self) -> int:
        """C: 1 (grayscale) or 3 (RGB)."""
        return int(self.images.shape[1])

    @property
    def image_size(self) -> int:
        """H = W in pixels."""
        return int(self.images.shape[2])


def resize_images(images: torch.Tensor, image_size: int, chunk: int = 1024) -> torch.Tensor:
    """Bilinear (antialiased when shrinking) resize of uint8 images.

    Args:
        images: uint8 (N, C, H, W) square images.
        image_size: target side S.
        chunk: images converted to float at a time (bounds the temporary memory).

    Returns:
        uint8 (N, C, S, S); `images` itself when H == S.
    """
    if images.shape[-1] == image_size and images.shape[-2] == image_size:
        return images
    out = torch.empty((len(images), images.shape[1], image_size, image_size), dtype=torch.uint8)
    shrink = image_size < images.shape[-1]
    for start in range(0, len(images), chunk):
        x = images[start:start + chunk].float()  # (b, C, H, W)
        y = F.interpolate(x, size=(image_size, image_size), mode="bilinear",
                          align_corners=False, antialias=shrink)
        out[start:start + chunk] = y.round().clamp(0, 255).to(torch.uint8)
    return out


def nhwc_to_tensor(array: np.ndarray) -> torch.Tensor:
    """Wraps uint8 (N, H, W) or (N, H, W, C) numpy images as a (N, C, H, W) tensor view (no copy); the alpha
    channel of LA (C = 2) or RGBA (C = 4) images is dropped (``arrays.check_images`` warned of it)."""
    t = torch.from_numpy(np.ascontiguousarray(array))
    if t.ndim == 4 and t.shape[3] in (2, 4):
        t = t[..., :-1]
    return t[:, None] if t.ndim == 3 else t.permute(0, 3, 1, 2)
