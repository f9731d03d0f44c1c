"""Procedural Shapes3D: a stand-in for the 3D-shapes factor grid of Kim & Mnih (2018).

ContraLORD reports disentanglement on Shapes3D (Sec. 4.1, Tables 2 and 4-6): 10 floor hues x 10
wall hues x 10 object hues x 8 scales x 4 shapes x 15 orientations = 480000 RGB images, class =
shape. This module renders the same factor grid procedurally (a 2.5D sketch with flat shading), so
tests and smoke runs need no download. It is NOT DeepMind's rendering: numbers on it are not
comparable with published ones; for those load the official `3dshapes.h5` with `shapes3d_h5`.

Scene (fractions of the image side; u right, v down):
    * orientation theta in linspace(-30, 30, 15) degrees orbits the camera: the room corner moves
      over u in [0.1, 0.9], the cube turns (its faces are at 45 + theta degrees), and the light
      direction turns with the view, so the shading of every object changes.
    * wall: above the horizon v = 0.5 + 0.25 |u - corner|; the left wall is darker (x 0.72).
    * floor: below the horizon, darker far away (x (0.55 + 0.45 v)).
    * object: centred at u = 0.5, base at v = 0.85, unit r = 0.2 * scale (scale in
      linspace(0.75, 1.25, 8)); cube, cylinder, sphere or capsule, seen from slightly above.
    * hues: hsv(k / 10, 0.75, 1.0), k = 0..9, for floor, wall and object alike.
Every one-step change of any factor changes pixels at 32x32 and at 64x64 (checked once over all
one-step pairs of the grid at both sizes; the tests re-check random base points).
"""

from __future__ import annotations

import colorsys
import math

import numpy as np
import torch

from contralord.data.grid import grid_factors

SHAPES3D_FACTOR_NAMES = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
SHAPES3D_FACTOR_SIZES = (10, 10, 10, 8, 4, 15)
SHAPE_NAMES = ("cube", "cylinder", "sphere", "capsule")
R_UNIT = 0.2  # object unit at scale 1, as a fraction of the image side
V_BASE = 0.85  # screen row of the object's base centre
TILT = 0.35  # how much depth z shows as screen height (camera elevation)
AMBIENT, DIFFUSE = 0.35, 0.65
_PALETTE = torch.tensor([colorsys.hsv_to_rgb(k / 10, 0.75, 1.0) for k in range(10)],
                        dtype=torch.float32)  # (10, 3)
_SCALES = torch.linspace(0.75, 1.25, 8, dtype=torch.float64).float()
_THETA = np.deg2rad(np.linspace(-30.0, 30.0, 15))
_CORNER = torch.from_numpy(0.5 + 0.4 * _THETA / _THETA[-1]).float()  # (15,)
_PHI = _THETA + math.pi / 4  # cube yaw seen from the camera
_TAN = torch.from_numpy(np.tan(_PHI)).float()
_COS, _SIN = torch.from_numpy(np.cos(_PHI)).float(), torch.from_numpy(np.sin(_PHI)).float()


def _light_table() -> torch.Tensor:
    """Fixed world light direction seen from each camera orbit angle: (15, 3) as (x, y up, z)."""
    lx, ly, lz = np.array([-0.55, 0.75, 0.45]) / np.linalg.norm([-0.55, 0.75, 0.45])
    c, s = np.cos(_THETA), np.sin(_THETA)
    return torch.from_numpy(np.stack([lx * c + lz * s, np.full(15, ly), lz * c - lx * s], 1)).float()


_LIGHT = _light_table()


def _lit(n_dot_l: torch.Tensor) -> torch.Tensor:
    return AMBIENT + DIFFUSE * n_dot_l.clamp(min=0.0)


def _cube(x: torch.Tensor, y: torch.Tensor, light: torch.Tensor, o: torch.Tensor):
    """Cube of side 1.3 with yaw 45 deg + theta. x, y: (b, S, S) object frame, y up; light (b, 3)."""
    half, height = 0.65, 1.3
    tan, cos, sin = _TAN[o][:, None, None], _COS[o][:, None, None], _SIN[o][:, None, None]
    width = half * (cos + sin)  # (b, 1, 1) half-width of the silhouette
    x_front, z_corner = half * (cos - sin), half * (cos + sin)  # nearest vertical edge
    z_front = torch.minimum(z_corner + (x - x_front) * tan, z_corner - (x - x_front) / tan)
    z_back = torch.maximum(-z_corner - (x + x_front) / tan, -z_corner + (x + x_front) * tan)
    inside_x = x.abs() <= width
    body = inside_x & (y >= -TILT * z_front) & (y <= height - TILT * z_front)
    top = inside_x & (y > height - TILT * z_front) & (y <= height - TILT * z_back)
    lx, ly, lz = (light[:, i, None, None] for i in range(3))
    side = torch.where(x < x_front, _lit(lz * cos - lx * sin), _lit(lx * cos + lz * sin))
    return body | top, torch.where(top, _lit(ly), side)


def _cylinder(x: torch.Tensor, y: torch.Tensor, light: torch.Tensor, o: torch.Tensor):
    """Upright cylinder of radius 0.8 and height 1.4 (yaw-invariant; o unused)."""
    radius, height = 0.8, 1.4
    nx = (x / radius).clamp(-1.0, 1.0)
    nz = (1.0 - nx * nx).sqrt()  # (b, S, S) front surface normal z
    z_front = radius * nz
    inside_x = x.abs() <= radius
    body = inside_x & (y >= -TILT * z_front) & (y <= height - TILT * z_front)
    top = inside_x & (y > height - TILT * z_front) & (y <= height + TILT * z_front)
    lx, ly, lz = (light[:, i, None, None] for i in range(3))
    return body | top, torch.where(top, _lit(ly), _lit(nx * lx + nz * lz))


def _round(x: torch.Tensor, dy: torch.Tensor, radius: float, light: torch.Tensor):
    """Shaded disk of `radius` around offsets (x, dy): mask and shade (b, S, S)."""
    d2 = (x * x + dy * dy) / (radius * radius)
    nz = (1.0 - d2).clamp(min=0.0).sqrt()
    lx, ly, lz = (light[:, i, None, None] for i in range(3))
    return d2 <= 1.0, _lit((x * lx + dy * ly) / radius + nz * lz)


def _sphere(x: torch.Tensor, y: torch.Tensor, light: torch.Tensor, o: torch.Tensor):
    """Sphere of radius 1 resting on the floor."""
    return _round(x, y - 1.0, 1.0, light)


def _capsule(x: torch.Tensor, y: torch.Tensor, light: torch.Tensor, o: torch.Tensor):
    """Upright capsule (pill) of radius 0.55 and total height 2."""
    radius = 0.55
    return _round(x, y - y.clamp(radius, 2.0 - radius), radius, light)


_OBJECTS = (_cube, _cylinder, _sphere, _capsule)


def _room(f: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Wall and floor colours: (B, 3, S, S) float in [0, 1]. f: (B, 6) factors; u: (S,) centres."""
    corner = _CORNER[f[:, 5]][:, None, None]  # (B, 1, 1)
    col, row = u[None, None, :], u[None, :, None]  # (1, 1, S), (1, S, 1)
    floor = (row > 0.5 + 0.25 * (col - corner).abs())[:, None]  # (B, 1, S, S)
    wall_shade = torch.where(col < corner, 0.72, 1.0)[:, None]  # (B, 1, 1, S)
    wall = _PALETTE[f[:, 1]][:, :, None, None] * wall_shade  # (B, 3, 1, S)
    ground = _PALETTE[f[:, 0]][:, :, None, None] * (0.55 + 0.45 * row)  # (B, 3, S, 1)
    return torch.where(floor, ground, wall)


def _object(f: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Object mask and shade, both (B, S, S). f: (B, 6) factors; u: (S,) pixel centres."""
    r = (_SCALES[f[:, 3]] * R_UNIT)[:, None, None]  # (B, 1, 1)
    x, y = torch.broadcast_tensors((u[None, None, :] - 0.5) / r, (V_BASE - u[None, :, None]) / r)
    mask = torch.zeros(x.shape, dtype=torch.bool)
    shade = torch.zeros(x.shape)
    for k, draw in enumerate(_OBJECTS):
        sel = f[:, 4] == k  # (B,)
        if sel.any():
            mask[sel], shade[sel] = draw(x[sel], y[sel], _LIGHT[f[sel, 5]], f[sel, 5])
    return mask, shade


def render_shapes3d(ids: np.ndarray, image_size: int = 64) -> torch.Tensor:
    """Renders procedural Shapes3D grid images.

    Args:
        ids: (B,) grid indices in [0, 480000) (factors in SHAPES3D_FACTOR_NAMES order, orientation
            fastest, as in the real dataset).
        image_size: S.

    Returns:
        uint8 (B, 3, S, S).
    """
    f = torch.from_numpy(grid_factors(ids, SHAPES3D_FACTOR_SIZES))  # (B, 6)
    u = (torch.arange(image_size, dtype=torch.float32) + 0.5) / image_size  # (S,)
    rgb = _room(f, u)  # (B, 3, S, S)
    mask, shade = _object(f, u)  # (B, S, S)
    obj = _PALETTE[f[:, 2]][:, :, None, None] * shade[:, None]  # (B, 3, S, S)
    rgb = torch.where(mask[:, None], obj, rgb)
    return (rgb * 255.0).round().clamp(0, 255).to(torch.uint8)
