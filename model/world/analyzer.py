"""The judge: reads a picture back into background, colours, shapes, positions and sizes, without learning.

Background = palette colour nearest the median border colour. Objects are found colour by colour: foreground
pixels are grouped by nearest palette colour, the group with the largest solid core becomes an object, and
every pixel that is a blend of that object's colour and the background (its anti-aliased or blurred edge) is
explained away before the next group is considered, so edge blends (red on yellow looks orange) never become
objects. Each object gets a soft coverage mask; its shape is the world's own rendering (at the mask's
centroid, with the radius that matches its area, over a sweep of rotations) with the best soft IoU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from model.world.captions import ATTRIBUTES, Caption
from model.world.geometry import SHAPE_SYMMETRY, SHAPE_UNIT_AREA
from model.world.render import render_scenes
from model.world.scene import COLOURS, FRAME, SHAPES, SIZES, Scene, SceneObject, position_of_cell, relation

_PALETTE_NAMES = tuple(COLOURS)
_PALETTE = np.array([COLOURS[c] for c in _PALETTE_NAMES], dtype=np.float32)
_FOREGROUND_DISTANCE = 60.0  # RGB distance from the background that counts as foreground
_CORE_DISTANCE = 60.0  # a core pixel is this close to its palette colour
_EXPLAINED_DISTANCE = 45.0  # a pixel this close to a background/object blend belongs to that object
_MIN_CORE = 6  # pixels of solid interior an object needs
_MIN_AREA = 12.0  # pixels of coverage an object needs
_EDGE_WIDTH = 2  # pixels around an object's solid part that may hold its blurred edge
_SOLID_ALPHA = 0.75  # coverage above which a pixel is the object itself rather than its edge
_COARSE_ROTATIONS = 8
_FINE_ROTATIONS = 6
_TEMPLATE_SUPERSAMPLE = 2


@dataclass(frozen=True)
class DetectedObject:
    shape: str
    colour: str
    position: str
    size: str
    area: float  # pixels of coverage in the 64x64 frame
    cx: float
    cy: float


@dataclass(frozen=True)
class Analysis:
    background: str
    objects: tuple[DetectedObject, ...]  # largest first


def _as_frame(image: Image.Image | np.ndarray) -> np.ndarray:
    """float32 (64, 64, 3) RGB in 0..255, resized from any size."""
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image array must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
        image = Image.fromarray(image, mode="RGB")
    elif not isinstance(image, Image.Image):
        raise TypeError(f"image must be a PIL image or a numpy array, got {type(image).__name__}")
    image = image.convert("RGB")
    if image.size != (FRAME, FRAME):
        image = image.resize(
            (FRAME, FRAME), Image.Resampling.BOX if image.width > FRAME else Image.Resampling.BICUBIC
        )
    return np.asarray(image, dtype=np.float32)


def _nearest_palette(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of and distance to the nearest palette colour for every RGB value in the last axis."""
    distances = np.linalg.norm(rgb[..., None, :] - _PALETTE, axis=-1)
    return distances.argmin(-1), distances.min(-1)


def _erode(mask: np.ndarray) -> np.ndarray:
    """3x3 binary erosion (the border counts as outside)."""
    padded = np.pad(mask, 1, constant_values=False)
    out = np.ones_like(mask)
    for dy in range(3):
        for dx in range(3):
            out &= padded[dy : dy + mask.shape[0], dx : dx + mask.shape[1]]
    return out


def _dilate(mask: np.ndarray, steps: int) -> np.ndarray:
    """3x3 binary dilation, `steps` times."""
    for _ in range(steps):
        mask = ~_erode(~mask)
    return mask


def _blend(pixels: np.ndarray, background: np.ndarray, colour: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel: coverage alpha of `colour` over `background`, and how far the pixel is from that blend."""
    axis = colour - background
    alpha = np.clip(((pixels - background) @ axis) / max(float(axis @ axis), 1e-6), 0.0, 1.0)
    residual = np.linalg.norm(pixels - (background + alpha[..., None] * axis), axis=-1)
    return alpha, residual


def _object_masks(
    pixels: np.ndarray, background: np.ndarray, background_index: int
) -> list[tuple[int, np.ndarray]]:
    """(palette index, soft coverage mask) per object, found largest core first."""
    nearest, palette_distance = _nearest_palette(pixels)
    foreground = np.linalg.norm(pixels - background, axis=-1) > _FOREGROUND_DISTANCE
    unexplained = foreground.copy()
    found: list[tuple[int, np.ndarray, np.ndarray]] = []  # (index, alpha, residual)
    while True:
        cores = {}
        for index in range(len(_PALETTE)):
            if index == background_index or any(index == f[0] for f in found):
                continue
            core = _erode(unexplained & (nearest == index)) & (palette_distance < _CORE_DISTANCE)
            if core.sum() >= _MIN_CORE:
                cores[index] = core
        if not cores:
            break
        index = max(cores, key=lambda i: cores[i].sum())
        colour = np.median(pixels[cores[index]], axis=0)
        alpha, residual = _blend(pixels, background, colour)
        blended = residual < _EXPLAINED_DISTANCE
        # Only the object and a thin band around it: a blend of two colours can look like a third (red and
        # blue make purple), so a distant object of that colour must not be explained away, nor noise count as
        # coverage.
        near = _dilate(blended & (alpha > _SOLID_ALPHA), _EDGE_WIDTH)
        found.append((index, alpha, np.where(near, residual, np.inf)))
        unexplained &= ~(near & blended)
    if not found:
        return []
    residuals = np.stack([f[2] for f in found])
    owner = residuals.argmin(0)
    return [
        (index, np.where((owner == k) & (residuals[k] < _EXPLAINED_DISTANCE), alpha, 0.0))
        for k, (index, alpha, _) in enumerate(found)
    ]


def _template_scene(shape: str, cx: float, cy: float, radius: float, rotation: float) -> Scene:
    obj = SceneObject(shape, "white", "medium", "centre", cx, cy, radius, rotation, (255, 255, 255))
    return Scene("black", (0, 0, 0), (obj,))


def _best_rotations(
    mask: torch.Tensor, candidates: list[tuple[str, float]], cx: float, cy: float, area: float
) -> dict[str, tuple[float, float]]:
    """Soft IoU of the mask with each (shape, rotation) template -> the best (iou, rotation) per shape."""
    scenes = [_template_scene(s, cx, cy, math.sqrt(area / SHAPE_UNIT_AREA[s]), r) for s, r in candidates]
    _, templates = render_scenes(scenes, supersample=_TEMPLATE_SUPERSAMPLE)
    templates = templates[:, 0]
    ious = torch.minimum(templates, mask).sum((1, 2)) / torch.maximum(templates, mask).sum((1, 2))
    best: dict[str, tuple[float, float]] = {}
    for (shape, rotation), iou in zip(candidates, ious.tolist(), strict=True):
        if shape not in best or iou > best[shape][0]:
            best[shape] = (iou, rotation)
    return best


def _classify_shape(mask: np.ndarray, cx: float, cy: float, area: float) -> str:
    """Best-fitting shape: a coarse sweep of rotations over each shape's symmetry, then a finer one around the
    best."""
    soft = torch.as_tensor(mask, dtype=torch.float32)
    coarse = [
        (s, SHAPE_SYMMETRY[s] * i / _COARSE_ROTATIONS)
        for s in SHAPES
        if s != "circle"
        for i in range(_COARSE_ROTATIONS)
    ]
    best = _best_rotations(soft, [("circle", 0.0), *coarse], cx, cy, area)
    fine = []
    for shape, (_, rotation) in best.items():
        if shape != "circle":
            step = SHAPE_SYMMETRY[shape] / _COARSE_ROTATIONS
            fine += [
                (shape, rotation + step * ((i + 0.5) / _FINE_ROTATIONS - 0.5)) for i in range(_FINE_ROTATIONS)
            ]
    for shape, (iou, rotation) in _best_rotations(soft, fine, cx, cy, area).items():
        if iou > best[shape][0]:
            best[shape] = (iou, rotation)
    return max(best, key=lambda s: best[s][0])


def _size_name(radius: float) -> str:
    """Nearest named size on a log scale."""
    return min(SIZES, key=lambda name: abs(math.log(radius / SIZES[name])))


def _position_name(cx: float, cy: float) -> str:
    cell = FRAME / 3
    return position_of_cell(min(2, max(0, int(cx // cell))), min(2, max(0, int(cy // cell))))


def analyze(image: Image.Image | np.ndarray) -> Analysis:
    """Describe a picture of the world: background colour and the objects on it."""
    pixels = _as_frame(image)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    background = np.median(border, axis=0)
    background_index = int(_nearest_palette(background)[0])
    centres = np.arange(FRAME, dtype=np.float32) + 0.5
    objects = []
    for index, mask in _object_masks(pixels, background, background_index):
        area = float(mask.sum())
        if area < _MIN_AREA:
            continue
        cx = float((mask.sum(0) * centres).sum() / area)
        cy = float((mask.sum(1) * centres).sum() / area)
        shape = _classify_shape(mask, cx, cy, area)
        size = _size_name(math.sqrt(area / SHAPE_UNIT_AREA[shape]))
        objects.append(
            DetectedObject(shape, _PALETTE_NAMES[index], _position_name(cx, cy), size, area, cx, cy)
        )
    objects.sort(key=lambda o: o.area, reverse=True)
    return Analysis(_PALETTE_NAMES[background_index], tuple(objects))


def score(scene: Scene, caption: Caption, analysis: Analysis) -> dict[str, bool]:
    """Whether the analysis agrees with the scene on every attribute the caption mentions, plus "all".

    One object: the largest detected object is judged. Two objects: each scene object is matched to the
    detected object of its colour; "position" means the stated relation (left of / above) holds between the
    matches.
    """
    unknown = caption.mentions - set(ATTRIBUTES)
    if unknown:
        raise ValueError(f"caption.mentions has unknown attributes {sorted(unknown)}")
    if len(scene.objects) == 1:
        matches = [analysis.objects[0] if analysis.objects else None]
    else:
        by_colour = {o.colour: o for o in reversed(analysis.objects)}  # the largest of a colour wins
        matches = [by_colour.get(o.colour) for o in scene.objects]
    pairs = list(zip(scene.objects, matches, strict=True))
    checks = {
        "colour": all(m is not None and m.colour == o.colour for o, m in pairs),
        "shape": all(m is not None and m.shape == o.shape for o, m in pairs),
        "size": all(m is not None and m.size == o.size for o, m in pairs),
        "background": analysis.background == scene.background,
    }
    if len(scene.objects) == 1:
        only = matches[0]
        checks["position"] = only is not None and only.position == scene.objects[0].position
    else:
        first, second = matches
        above = relation(scene) == "above"
        checks["position"] = (
            first is not None
            and second is not None
            and (first.cy < second.cy if above else first.cx < second.cx)
        )
    result = {attribute: checks[attribute] for attribute in ATTRIBUTES if attribute in caption.mentions}
    result["all"] = all(result.values())
    return result
