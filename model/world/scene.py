"""Scenes of the procedural world: one or two coloured shapes on a plain background.

A scene is pure data (no pixels); it is the ground truth that captions describe and that the analyzer checks.
All geometry is in pixels of a 64x64 frame, whatever size the renderer later draws at.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from model.world.geometry import SHAPE_EXTENT

FRAME = 64  # the frame every scene's geometry is expressed in

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 130, 20),
    "yellow": (245, 225, 40),
    "green": (40, 165, 60),
    "blue": (40, 80, 220),
    "purple": (140, 50, 190),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")
SIZES: dict[str, float] = {"small": 7.5, "medium": 10.5, "large": 14.0}
POSITIONS: dict[str, tuple[float, float]] = {
    "top left": (0.25, 0.25),
    "top": (0.5, 0.25),
    "top right": (0.75, 0.25),
    "left": (0.25, 0.5),
    "centre": (0.5, 0.5),
    "right": (0.75, 0.5),
    "bottom left": (0.25, 0.75),
    "bottom": (0.5, 0.75),
    "bottom right": (0.75, 0.75),
}

POSITION_JITTER = 2.0
COLOUR_JITTER = 10
_MIN_GAP = 2.0  # pixels between the bounding circles of two objects
_PAIR_ATTEMPTS = 20


@dataclass(frozen=True)
class SceneObject:
    """One shape; the names are the ground truth, the numbers what gets drawn."""

    shape: str
    colour: str
    size: str
    position: str
    cx: float
    cy: float
    radius: float
    rotation: float
    rgb: tuple[int, int, int]

    @property
    def extent(self) -> float:
        """Radius of the circle that encloses the drawn shape, in pixels."""
        return self.radius * SHAPE_EXTENT[self.shape]


@dataclass(frozen=True)
class Scene:
    background: str
    background_rgb: tuple[int, int, int]
    objects: tuple[SceneObject, ...]


def grid_cell(position: str) -> tuple[int, int]:
    """(column, row) of a named position in the 3x3 grid, 0 = left/top."""
    fx, fy = POSITIONS[position]
    return round((fx - 0.25) * 4), round((fy - 0.25) * 4)


def position_of_cell(column: int, row: int) -> str:
    for name in POSITIONS:
        if grid_cell(name) == (column, row):
            return name
    raise ValueError(f"cell ({column}, {row}) is outside the 3x3 grid")


def relation(scene: Scene) -> str | None:
    """How the first object of a two-object scene relates to the second: "left of" or "above"; None otherwise.

    sample_scene orders two objects so that exactly this relation holds on the 3x3 grid.
    """
    if len(scene.objects) != 2:
        return None
    (col_a, row_a), (col_b, row_b) = (grid_cell(o.position) for o in scene.objects)
    if col_a < col_b:
        return "left of"
    if row_a < row_b:
        return "above"
    raise ValueError("the first object is neither left of nor above the second")


def _jitter_rgb(rng: np.random.Generator, colour: str) -> tuple[int, int, int]:
    base = np.array(COLOURS[colour])
    jittered = np.clip(base + rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, size=3), 0, 255)
    red, green, blue = (int(v) for v in jittered)
    return red, green, blue


def _place(rng: np.random.Generator, shape: str, colour: str, size: str, position: str) -> SceneObject:
    radius = SIZES[size]
    extent = radius * SHAPE_EXTENT[shape]
    fx, fy = POSITIONS[position]
    # Clamp so the whole shape stays in the frame; the centre stays inside its grid cell for every size.
    cx = float(np.clip(fx * FRAME + rng.uniform(-POSITION_JITTER, POSITION_JITTER), extent, FRAME - extent))
    cy = float(np.clip(fy * FRAME + rng.uniform(-POSITION_JITTER, POSITION_JITTER), extent, FRAME - extent))
    rotation = 0.0 if shape == "circle" else float(rng.uniform(0.0, 2.0 * math.pi))
    return SceneObject(shape, colour, size, position, cx, cy, radius, rotation, _jitter_rgb(rng, colour))


def _choice(rng: np.random.Generator, options) -> str:
    options = list(options)
    return options[int(rng.integers(len(options)))]


def sample_scene(rng: np.random.Generator, two_object_prob: float = 0.25) -> Scene:
    """Draw a random scene. Objects never share a colour with the background or with each other.

    Two objects sit in opposite columns (first left of second) or opposite rows (first above second), so the
    relation a caption states is true, and they never overlap.
    """
    if not 0.0 <= two_object_prob <= 1.0:
        raise ValueError(f"two_object_prob must be in [0, 1], got {two_object_prob}")
    colours = list(COLOURS)
    background = _choice(rng, colours)
    two = bool(rng.random() < two_object_prob)
    object_colours = [c for c in colours if c != background]
    picked = rng.choice(len(object_colours), size=2 if two else 1, replace=False)
    colours_of_objects = [object_colours[int(i)] for i in picked]
    shapes = [_choice(rng, SHAPES) for _ in colours_of_objects]
    objects: tuple[SceneObject, ...]
    if not two:
        position = _choice(rng, POSITIONS)
        objects = (_place(rng, shapes[0], colours_of_objects[0], _choice(rng, SIZES), position),)
    else:
        objects = _place_pair(rng, shapes, colours_of_objects)
    return Scene(background, _jitter_rgb(rng, background), objects)


def _place_pair(
    rng: np.random.Generator, shapes: list[str], colours: list[str]
) -> tuple[SceneObject, SceneObject]:
    side_by_side = bool(rng.random() < 0.5)
    lines = [int(rng.integers(3)), int(rng.integers(3))]  # the row (side by side) or column (stacked) of each
    if side_by_side:
        positions = [position_of_cell(0, lines[0]), position_of_cell(2, lines[1])]
    else:
        positions = [position_of_cell(lines[0], 0), position_of_cell(lines[1], 2)]
    for _ in range(_PAIR_ATTEMPTS):
        sizes = [_choice(rng, SIZES), _choice(rng, SIZES)]
        a, b = (_place(rng, s, c, z, p) for s, c, z, p in zip(shapes, colours, sizes, positions, strict=True))
        if math.hypot(a.cx - b.cx, a.cy - b.cy) >= a.extent + b.extent + _MIN_GAP:
            return a, b
    # Two small shapes in opposite cells are always far enough apart.
    a, b = (_place(rng, s, c, "small", p) for s, c, p in zip(shapes, colours, positions, strict=True))
    return a, b
