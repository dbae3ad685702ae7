"""Outlines of the shapes in a unit frame (scaled by an object's radius when drawn).

Scales are chosen so all shapes cover about the same area (2.4-3.1 radius^2), so "large" looks equally large
for every shape, and spiky shapes stay recognisable at the small size.
"""

from __future__ import annotations

import math

import numpy as np


def _regular(n: int, radius: float, phase: float = -math.pi / 2) -> list[tuple[float, float]]:
    return [
        (radius * math.cos(phase + 2 * math.pi * i / n), radius * math.sin(phase + 2 * math.pi * i / n))
        for i in range(n)
    ]


def _star(points: int, outer: float, inner: float) -> list[tuple[float, float]]:
    tips = _regular(points, outer)
    dents = _regular(points, inner, phase=-math.pi / 2 + math.pi / points)
    return [vertex for pair in zip(tips, dents, strict=True) for vertex in pair]


def _plus(half_width: float, half_length: float) -> list[tuple[float, float]]:
    w, h = half_width, half_length
    return [
        (-w, -h),
        (w, -h),
        (w, -w),
        (h, -w),
        (h, w),
        (w, w),
        (w, h),
        (-w, h),
        (-w, w),
        (-h, w),
        (-h, -w),
        (-w, -w),
    ]


# Polygons (vertices in order); the circle is drawn analytically as x^2 + y^2 <= 1.
SHAPE_POLYGONS: dict[str, np.ndarray] = {
    "square": np.array(_regular(4, 1.21, phase=-math.pi / 4)),
    "triangle": np.array(_regular(3, 1.38)),
    "star": np.array(_star(5, 1.38, 0.60)),
    "cross": np.array(_plus(0.36, 1.15)),
}


def _polygon_area(vertices: np.ndarray) -> float:
    x, y = vertices[:, 0], vertices[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


# Area of each shape at radius 1 (pixels^2 per radius^2): the analyzer inverts it to estimate a radius.
SHAPE_UNIT_AREA: dict[str, float] = {"circle": math.pi} | {
    s: _polygon_area(p) for s, p in SHAPE_POLYGONS.items()
}
# Radius of the enclosing circle at radius 1: keeps shapes inside the frame and apart.
SHAPE_EXTENT: dict[str, float] = {"circle": 1.0} | {
    s: float(np.hypot(p[:, 0], p[:, 1]).max()) for s, p in SHAPE_POLYGONS.items()
}
# Rotations beyond this repeat the same picture.
SHAPE_SYMMETRY: dict[str, float] = {
    "circle": 2 * math.pi,
    "square": math.pi / 2,
    "triangle": 2 * math.pi / 3,
    "star": 2 * math.pi / 5,
    "cross": math.pi / 2,
}
