"""Procedural dSprites: the full factor grid of Higgins et al. (2017), rendered on demand.

ContraLORD evaluates disentanglement on dSprites (Sec. 4.1, Table 2): 3 shapes x 6 scales x 40
orientations x 32 x-positions x 32 y-positions = 737280 binary images, class = shape. This module
renders that grid at any resolution without files, so tests and smoke runs need no download; for
the paper's numbers load the official npz with `dsprites_npz`.

Geometry (fractions of the image side, pixel centres sampled, values 0/255):
    * shape: square |x|,|y| <= 1; ellipse (x/1.1)^2 + (y/0.55)^2 <= 1; heart
      (X^2 + Y^2 - 1)^3 <= X^2 Y^3 with X = 1.15 x, Y = 0.1 - 1.15 y (y points down).
    * scale s in linspace(0.5, 1, 6): local unit = 0.17 s of the image side.
    * orientation in 2 pi k / 40, k = 0..39: the sprite is rotated about its centre. As in the
      real dataset, the square repeats every 10 steps (90 degrees) and the ellipse every 20.
    * posX, posY: the centre moves over [0.25, 0.75] in 32 steps (1.03 px at 64x64).
At 64x64 every one-step change of any factor changes pixels and every scale step adds foreground
(checked once over all 3.2M one-step pairs of the grid; the tests re-check random base points). At
32x32 about 0.8% of one-step changes (scale, orientation, position) are sub-pixel and leave the
image unchanged.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from contralord.data.grid import grid_factors

DSPRITES_FACTOR_NAMES = ("shape", "scale", "orientation", "posX", "posY")
DSPRITES_FACTOR_SIZES = (3, 6, 40, 32, 32)
SHAPE_NAMES = ("square", "ellipse", "heart")
UNIT = 0.17  # half-size of a scale-1 square, as a fraction of the image side
POS_RANGE = (0.25, 0.75)  # range of the sprite centre, as a fraction of the image side
# Lookup tables, so a value never depends on which SIMD lane computed it (batch invariance).
_SCALES = torch.linspace(0.5, 1.0, 6, dtype=torch.float64).float()
_ANGLES = torch.arange(40, dtype=torch.float64) * (2 * math.pi / 40)
_COS, _SIN = torch.cos(_ANGLES).float(), torch.sin(_ANGLES).float()
_POS = (POS_RANGE[0] + (POS_RANGE[1] - POS_RANGE[0]) * torch.arange(32, dtype=torch.float64) / 31).float()


def _square(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.maximum(x.abs(), y.abs()) <= 1.0


def _ellipse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    a, b = x / 1.1, y / 0.55
    return a * a + b * b <= 1.0


def _heart(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    hx, hy = 1.15 * x, 0.1 - 1.15 * y
    r = hx * hx + hy * hy - 1.0
    return r * r * r <= hx * hx * hy * hy * hy


_SHAPES = (_square, _ellipse, _heart)


def _local_coords(f: torch.Tensor, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel centres in each sprite's own frame (scaled, un-rotated, centred).

    Args:
        f: int64 (B, 5) factor values.
        image_size: S.

    Returns:
        x, y: float32 (B, S, S) local coordinates; y points down.
    """
    u = (torch.arange(image_size, dtype=torch.float32) + 0.5) / image_size  # (S,)
    unit = (_SCALES[f[:, 1]] * UNIT)[:, None, None]  # (B, 1, 1)
    cos, sin = _COS[f[:, 2]][:, None, None], _SIN[f[:, 2]][:, None, None]  # (B, 1, 1)
    dx = u[None, None, :] - _POS[f[:, 3]][:, None, None]  # (B, 1, S)
    dy = u[None, :, None] - _POS[f[:, 4]][:, None, None]  # (B, S, 1)
    x = (cos * dx + sin * dy) / unit  # (B, S, S): rotate by -theta
    y = (cos * dy - sin * dx) / unit  # (B, S, S)
    return x, y


def render_dsprites(ids: np.ndarray, image_size: int = 64) -> torch.Tensor:
    """Renders dSprites grid images.

    Args:
        ids: (B,) grid indices in [0, 737280) (shape, scale, orientation, posX, posY; posY fastest).
        image_size: S.

    Returns:
        uint8 (B, 1, S, S) with values 0 and 255.
    """
    f = torch.from_numpy(grid_factors(ids, DSPRITES_FACTOR_SIZES))  # (B, 5)
    x, y = _local_coords(f, image_size)  # (B, S, S)
    mask = torch.zeros(x.shape, dtype=torch.bool)
    for k, inside in enumerate(_SHAPES):
        sel = f[:, 0] == k  # (B,)
        if sel.any():
            mask[sel] = inside(x[sel], y[sel])
    return (mask.to(torch.uint8) * 255)[:, None]  # (B, 1, S, S)
