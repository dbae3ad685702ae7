"""Vectorised, anti-aliased torch renderer for scenes.

Every object becomes a list of edge crossings per supersampled row: polygons are rotated, scaled and moved
into image coordinates, and each edge gives the x where it crosses the row (a circle crosses at cx +-
half-chord). By the crossing-number rule, a point is inside when an odd number of crossings lies to its right,
so the sorted crossings pair up into the row's inside spans. Each pixel's coverage on a row is then its exact
overlap with those spans, and averaging `supersample` rows per pixel anti-aliases vertically: the cost is a
few element-wise passes over (rows x spans x pixels), with no per-sample inside test.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from model.world.geometry import SHAPE_POLYGONS
from model.world.scene import FRAME, SHAPES, Scene

_MAX_VERTICES = max(len(p) for p in SHAPE_POLYGONS.values())


def _padded_outline(shape: str) -> np.ndarray:
    """Outline padded to _MAX_VERTICES by repeating the last vertex (zero-length edges never cross a row)."""
    if shape == "circle":
        return np.zeros((_MAX_VERTICES, 2))
    polygon = SHAPE_POLYGONS[shape]
    return np.concatenate([polygon, np.repeat(polygon[-1:], _MAX_VERTICES - len(polygon), axis=0)])


_OUTLINES = np.stack([_padded_outline(s) for s in SHAPES])  # (shapes, vertices, 2)


def _object_table(scenes: Sequence[Scene]) -> tuple[np.ndarray, ...]:
    """Pad objects to a (batch, max_objects) grid; absent objects have radius 0 and draw nothing."""
    count = max(1, max(len(s.objects) for s in scenes))
    shape_id = np.zeros((len(scenes), count), dtype=np.int64)
    params = np.zeros((len(scenes), count, 4))  # cx, cy, radius, rotation
    rgb = np.zeros((len(scenes), count, 3))
    for b, scene in enumerate(scenes):
        for k, obj in enumerate(scene.objects):
            shape_id[b, k] = SHAPES.index(obj.shape)
            params[b, k] = (obj.cx, obj.cy, obj.radius, obj.rotation)
            rgb[b, k] = obj.rgb
    return shape_id, params, rgb


def _row_crossings(shape_id: torch.Tensor, params: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """x of every outline crossing on every row, -inf where an edge misses the row: (B, K, rows, vertices)."""
    cx, cy, radius, rotation = params.unbind(-1)  # (B, K) each
    outline = torch.as_tensor(_OUTLINES, dtype=params.dtype, device=params.device)[shape_id]  # (B, K, V, 2)
    cos, sin = torch.cos(rotation)[..., None], torch.sin(rotation)[..., None]
    ux, uy = outline[..., 0] * radius[..., None], outline[..., 1] * radius[..., None]
    x0 = cos * ux - sin * uy + cx[..., None]
    y0 = sin * ux + cos * uy + cy[..., None]
    x1, y1 = x0.roll(-1, dims=-1), y0.roll(-1, dims=-1)
    x0, y0, x1, y1 = (t[..., None, :] for t in (x0, y0, x1, y1))  # (B, K, 1, V)
    y = rows[:, None]  # (rows, 1)
    spans = (y0 > y) != (y1 > y)
    slope = (x1 - x0) / torch.where(spans, y1 - y0, torch.ones_like(y0))
    minus_inf = torch.tensor(-math.inf, dtype=params.dtype, device=params.device)
    polygon_x = torch.where(spans, x0 + (y - y0) * slope, minus_inf)

    dy = y - cy[..., None, None]  # (B, K, rows, 1)
    half_chord = torch.sqrt(torch.clamp(radius[..., None, None] ** 2 - dy**2, min=0.0))
    chord = torch.cat([cx[..., None, None] - half_chord, cx[..., None, None] + half_chord], dim=-1)
    chord = torch.where(dy.abs() < radius[..., None, None], chord, minus_inf)
    circle_x = torch.cat([chord, minus_inf.expand(*chord.shape[:-1], _MAX_VERTICES - 2)], dim=-1)
    is_circle = (shape_id == SHAPES.index("circle"))[..., None, None]
    return torch.where(is_circle, circle_x, polygon_x)


def render_scenes(
    scenes: Sequence[Scene], size: int = 64, device: str | torch.device = "cpu", supersample: int = 4
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw scenes: pixels float32 (B,3,size,size) in [-1,1] and object coverage masks float32
    (B,1,size,size)."""
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    if not isinstance(supersample, int) or supersample < 1:
        raise ValueError(f"supersample must be a positive integer, got {supersample!r}")
    if len(scenes) == 0:
        raise ValueError("scenes must not be empty")
    shape_id_np, params_np, rgb_np = _object_table(scenes)
    shape_id = torch.as_tensor(shape_id_np, device=device)
    params = torch.as_tensor(params_np, dtype=torch.float32, device=device)
    rgb = torch.as_tensor(rgb_np, dtype=torch.float32, device=device) / 127.5 - 1.0
    background = (
        torch.as_tensor([s.background_rgb for s in scenes], dtype=torch.float32, device=device) / 127.5 - 1
    )

    rows = size * supersample
    row_centres = (torch.arange(rows, dtype=torch.float32, device=device) + 0.5) * (FRAME / rows)
    crossings = _row_crossings(shape_id, params, row_centres).sort(dim=-1).values * (size / FRAME)
    # Sorted crossings pair up into the row's inside spans; -inf padding sorts first and pairs into empty
    # spans, so only the last (most crossings any row has) entries matter.
    most = int((crossings > -math.inf).sum(dim=-1).max())
    crossings = crossings[..., _MAX_VERTICES - max(most, 2) :]
    starts, ends = crossings[..., 0::2, None], crossings[..., 1::2, None]  # (B, K, rows, spans, 1)
    left_edges = torch.arange(size, dtype=torch.float32, device=device)
    overlap = torch.minimum(ends, left_edges + 1) - torch.maximum(starts, left_edges)
    row_coverage = overlap.clamp_(min=0.0).sum(dim=-2)  # (B, K, rows, size): exact along the row
    batch, count = shape_id.shape
    coverage = row_coverage.view(batch, count, size, supersample, size).mean(dim=3)

    pixels = background[:, :, None, None].expand(batch, 3, size, size)
    uncovered = torch.ones(batch, 1, size, size, device=device)
    for k in range(count):  # objects never overlap, but compositing in order keeps edges exact anyway
        alpha = coverage[:, k : k + 1]
        pixels = pixels * (1 - alpha) + rgb[:, k, :, None, None] * alpha
        uncovered = uncovered * (1 - alpha)
    return pixels.contiguous(), 1 - uncovered


def to_uint8(pixels: torch.Tensor) -> np.ndarray:
    """(B,3,H,W) in [-1,1] -> (B,H,W,3) uint8."""
    return ((pixels.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def render_image(scene: Scene, size: int = 64) -> Image.Image:
    """One scene as an RGB PIL image."""
    pixels, _ = render_scenes([scene], size=size)
    return Image.fromarray(to_uint8(pixels)[0], mode="RGB")
