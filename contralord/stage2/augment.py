"""Batched MoCo-style augmentations for the query view x_i^query (ContraLORD Sec. 4.1: "we closely
follow MoCo and use the same data augmentation").

All random parameters are drawn for the *global* batch from an explicit ``torch.Generator`` seeded by
(seed, step), then sliced per rank. So a run is reproducible, a resumed run draws exactly what the
straight run drew, and a 2-process run augments each image exactly as 1 process does. Crops and flips
are one ``affine_grid``/``grid_sample`` call for the whole batch instead of a Python loop per image.
Gaussian blur (MoCo v2, ImageNet scale) is left out: at 32-64 px it destroys most of the image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentParams:
    """Per-image random draws for a batch of B images (all tensors have leading dim B)."""

    scale: torch.Tensor  # (B,) crop area fraction
    log_ratio: torch.Tensor  # (B,) log aspect ratio of the crop
    center: torch.Tensor  # (B, 2) crop centre in [-1, 1] before clamping
    flip: torch.Tensor  # (B,) bool
    jitter: torch.Tensor  # (B, 3) brightness, contrast, saturation factors
    jitter_on: torch.Tensor  # (B,) bool, colour jitter applied with p = 0.8
    gray: torch.Tensor  # (B,) bool, grayscale with p = 0.2 (RGB only)

    def slice(self, start: int, stop: int) -> AugmentParams:
        return AugmentParams(*(getattr(self, f)[start:stop] for f in self.__dataclass_fields__))


COLOUR_WORDS = ("hue", "color", "colour", "lighting")  # factors colour jitter / grayscale would change
GEOMETRY_WORDS = ("scale", "pos", "azimuth", "elevation", "orientation")  # factors crops / flips would change


def preserving(crop_scale_min: float, flip: bool, color_jitter: float,
               labelled: tuple[str, ...]) -> tuple[float, bool, float]:
    """(crop_scale_min, flip, color_jitter) with every augmentation that changes a labelled factor off.

    A positive pair must share the labelled factors, or InfoNCE would teach the factor codes to ignore
    them: no colour jitter when a hue (or lighting) is labelled, no crop or flip when a scale, position
    or viewing angle is. Decided from the factor names (``COLOUR_WORDS``, ``GEOMETRY_WORDS``).
    """
    lowered = [name.lower() for name in labelled]
    if any(word in name for name in lowered for word in COLOUR_WORDS):
        color_jitter = 0.0
    if any(word in name for name in lowered for word in GEOMETRY_WORDS):
        crop_scale_min, flip = 1.0, False
    return crop_scale_min, flip, color_jitter


def draw_params(batch: int, generator: torch.Generator, crop_scale_min: float, flip: bool,
                color_jitter: float) -> AugmentParams:
    """Draw every random choice of one global batch from ``generator`` (CPU)."""
    u = torch.rand(batch, 9, generator=generator)  # (B, 9) uniforms, one column per choice
    ratio = math.log(3 / 4), math.log(4 / 3)
    return AugmentParams(
        scale=crop_scale_min + (1.0 - crop_scale_min) * u[:, 0],
        log_ratio=ratio[0] + (ratio[1] - ratio[0]) * u[:, 1] if crop_scale_min < 1 else torch.zeros(batch),
        center=u[:, 2:4] * 2 - 1,
        flip=(u[:, 4] < 0.5) & flip,
        jitter=1.0 + color_jitter * (2 * u[:, 5:8] - 1),
        jitter_on=(u[:, 8] < 0.8) & (color_jitter > 0),
        gray=(torch.rand(batch, generator=generator) < 0.2) & (color_jitter > 0),
    )


def augment(x: torch.Tensor, params: AugmentParams) -> torch.Tensor:
    """Apply random resized crop, flip, colour jitter and grayscale to x (B, C, H, W) in [0, 1]."""
    p = _to(params, x.device)
    x = _crop_and_flip(x, p)
    x = _color(x, p)
    return x.clamp(0.0, 1.0)


def _to(params: AugmentParams, device: torch.device) -> AugmentParams:
    return AugmentParams(*(getattr(params, f).to(device) for f in params.__dataclass_fields__))


def _crop_and_flip(x: torch.Tensor, p: AugmentParams) -> torch.Tensor:
    ratio = p.log_ratio.exp()  # (B,) width / height
    half_w = (p.scale * ratio).sqrt().clamp(max=1.0)  # (B,) crop half-width in [-1, 1] units
    half_h = (p.scale / ratio).sqrt().clamp(max=1.0)  # (B,)
    cx = p.center[:, 0] * (1 - half_w)  # (B,) keep the crop inside the image
    cy = p.center[:, 1] * (1 - half_h)
    sign = 1.0 - 2.0 * p.flip.to(x.dtype)  # (B,) -1 flips horizontally
    theta = torch.zeros(x.shape[0], 2, 3, dtype=x.dtype, device=x.device)  # (B, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = half_w * sign, cx
    theta[:, 1, 1], theta[:, 1, 2] = half_h, cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # (B, H, W, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _color(x: torch.Tensor, p: AugmentParams) -> torch.Tensor:
    on = p.jitter_on.to(x.dtype).view(-1, 1, 1, 1)  # (B, 1, 1, 1)
    b, c, s = (p.jitter[:, i].to(x.dtype).view(-1, 1, 1, 1) for i in range(3))
    jittered = x * b
    mean = jittered.mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1) contrast pivots on the mean
    jittered = (jittered - mean) * c + mean
    if x.shape[1] == 3:
        gray = _grayscale(jittered)
        jittered = (jittered - gray) * s + gray
    x = on * jittered + (1 - on) * x
    if x.shape[1] == 3:
        g = p.gray.to(x.dtype).view(-1, 1, 1, 1)
        x = g * _grayscale(x).expand_as(x) + (1 - g) * x
    return x


def _grayscale(x: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)  # (B, 1, H, W)
